"""SAM2 video tracking, by job.

- :mod:`segzero_edge.tracking.memory_selection`: SAM2's pure rules of which past frames and
  object pointers a frame attends to, which conditioning frames are chosen, which decoder
  output is kept (functions of frame indices and settings, no state, no backend).
- :mod:`segzero_edge.tracking.result`: :class:`~segzero_edge.tracking.result.TrackedSegmentation`,
  what one tracked frame gives, and :func:`~segzero_edge.tracking.result.object_present`,
  the one rule for "object present".
- :mod:`segzero_edge.tracker`: the stateful :class:`~segzero_edge.tracker.Tracker` that runs
  those rules on the backends of a :class:`~segzero_edge.pipeline.SegZeroEdge`.

What it mirrors, from Meta's sam2 1.1.0 (``sam2/sam2_video_predictor.py``,
``sam2/modeling/sam2_base.py``), one object at a time as ``propagate_in_video`` does:

* Seeding = ``add_new_points_or_box(box=..., points=..., labels=...)`` with the model
  family's SAM2 prompt (the points and labels ``segment()`` gave SAM2) on the frame, then
  ``propagate_in_video_preflight``: the decoder output chosen by ``_use_multimask`` (a box +
  point is 3 points -> single mask, with SAM2.1's dynamic fallback to the best multimask
  output), masked to ``NO_OBJECT_SCORE`` when the object score is <= 0, encoded into a
  *conditioning* memory with the mask binarised (``is_mask_from_pts``).
* Each update = ``_run_single_frame_inference(is_init_cond_frame=False)`` without prompts:
  memory attention over the conditioning frame plus the last ``num_maskmem - 1`` frames
  (``memory_temporal_stride_for_eval``), and object pointers of the conditioning frame and
  up to ``max_obj_ptrs_in_encoder - 1`` previous frames, temporal distances normalised by
  ``t_diff_max`` (``_prepare_memory_conditioned_features``); the best of the three
  multimask outputs (``multimask_output_for_tracking``); the memory encoder on its mask.
* Memory features are kept in bfloat16, as the predictor stores them.

Two differences, both stated: SAM2VideoPredictor's ``fill_hole_area`` post-processing runs
only with Meta's CUDA connected-components kernel (on CPU it warns and skips it), and is not
applied here; and ``t_diff_max`` is ``min(num_frames, max_obj_ptrs_in_encoder) - 1`` when
``num_frames`` is given (a clip), else ``max_obj_ptrs_in_encoder - 1`` (a live stream).
"""
