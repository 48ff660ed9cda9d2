"""The bundle layout: file names, manifest keys, graph tensor names and fixed sizes.

A leaf module (it imports nothing of the project): the exporter, the engine builder, the
runtime and the benchmarks all read these names from here.

```
bundle/
  manifest.json      MANIFEST (schema SCHEMA_VERSION)
  .segzero-edge-owner.json  the exporter's marker (segzero_edge.owned): what --force replaces
  reasoner.gguf      REASONER_FILE: Qwen2.5-VL text model (llama.cpp arch ``qwen2vl``)
  mmproj.gguf        MMPROJ_FILE: vision tower + merger (projector ``qwen2.5vl_merger``)
  sam2_encoder.onnx  SAM2_ENCODER_FILE   sam2_decoder.onnx  SAM2_DECODER_FILE
  sam2_memory_attention.onnx  sam2_memory_encoder.onnx   SAM2_MEMORY_FILES (video tracking;
                     optional: bundles exported before them still run ``segment()``)
  engines/<device-fingerprint>/{sam2_encoder,sam2_decoder,...}.plan, engines.json, timing.cache
```
"""

from __future__ import annotations

# --- files ---------------------------------------------------------------------------------
MANIFEST = "manifest.json"
SCHEMA_VERSION = 2
"""2: the manifest names the model family (``FAMILY_KEY``); 1 did not."""
FAMILY_KEY = "family"
"""Manifest key: the reasoner's model family (``segzero_edge.families``)."""
REASONER_FILE = "reasoner.gguf"
MMPROJ_FILE = "mmproj.gguf"
SAM2_ENCODER = "sam2_encoder"
SAM2_DECODER = "sam2_decoder"
SAM2_ENCODER_FILE = f"{SAM2_ENCODER}.onnx"
SAM2_DECODER_FILE = f"{SAM2_DECODER}.onnx"
SAM2_GRAPHS = (SAM2_ENCODER, SAM2_DECODER)
REQUIRED_FILES = (REASONER_FILE, MMPROJ_FILE, SAM2_ENCODER_FILE, SAM2_DECODER_FILE)
SAM2_MEMORY_ATTENTION = "sam2_memory_attention"
SAM2_MEMORY_ENCODER = "sam2_memory_encoder"
SAM2_MEMORY_ATTENTION_FILE = f"{SAM2_MEMORY_ATTENTION}.onnx"
SAM2_MEMORY_ENCODER_FILE = f"{SAM2_MEMORY_ENCODER}.onnx"
SAM2_MEMORY_GRAPHS = (SAM2_MEMORY_ATTENTION, SAM2_MEMORY_ENCODER)
SAM2_MEMORY_FILES = (SAM2_MEMORY_ATTENTION_FILE, SAM2_MEMORY_ENCODER_FILE)
TRACKING_KEY = "tracking"
TRACKING_METADATA_KEY = "segzero.tracking"
"""ONNX ``metadata_props`` key of the memory attention graph holding the same settings."""
"""Manifest ``segmenter.tracking``: SAM2's memory settings the tracker follows (see
``segzero_export.sam2_memory_onnx.tracking_config``); absent in bundles without tracking."""

ENGINES_DIR = "engines"
ENGINE_META_FILE = "engines.json"
TIMING_CACHE_FILE = "timing.cache"

# --- answers -------------------------------------------------------------------------------
DEFAULT_MAX_OBJECTS = 8
"""Objects one answer may name, by default: the bound of the list answer grammar (the reasoner
cannot write more) and the number of objects ``SegZeroEdge`` decodes (a lenient parse of an
answer without the grammar keeps the first ones). ``SegZeroEdge.from_bundle(max_objects=N)``
sets both."""

# --- reasoner (Qwen2.5-VL) -----------------------------------------------------------------
REASONER_SIZE = 840
"""The reasoner sees the image resized to exactly this square (Seg-Zero's ``resize_size``)."""
PATCH_MERGE = 28
"""Qwen2.5-VL: 14-pixel patches merged 2 x 2 into one image token."""
IMAGE_TOKENS = (REASONER_SIZE // PATCH_MERGE) ** 2
"""Image tokens of one 840 x 840 image: 30 x 30 = 900."""
QWEN3VL_PATCH_MERGE = 32
"""Qwen3-VL: 16-pixel patches merged 2 x 2 into one image token."""
QWEN3VL_RESIZE_SIZE = 832
"""The ``resize_size`` of the generic Qwen3-VL family (the square its reasoner sees): the
multiple of 32 nearest Seg-Zero's 840 (26 x 26 = 676 image tokens; 840 is not a whole number of
Qwen3-VL tokens)."""
QWEN3VL_COORD_RANGE = 1000
"""Qwen3-VL grounds in coordinates relative to the image on a 0-1000 grid per axis."""
MAX_N_CTX = 1 << 20
"""Largest reasoner context (``n_ctx``, KV cells) a bundle or caller may ask for; llama.cpp
keeps ``n_ctx`` in 32 bits, so larger values would wrap (Qwen2.5-VL is trained to 128 Ki)."""

# --- segmenter (SAM2) ----------------------------------------------------------------------
SAM2_SIZE = 1024
"""SAM2's square input (``SAM2Base.image_size``); prompt coordinates are scaled to it."""
SAM2_LOW_RES = 256
"""Side of SAM2's low-resolution mask logits (``SAM2_SIZE // 4``)."""
SAM2_MASK_TOKENS = 4
"""Masks per decoder call: index 0 single-mask, 1..3 multimask (``num_multimask_outputs + 1``)."""

SAM2_IMAGE_SHAPE = (1, 3, SAM2_SIZE, SAM2_SIZE)
"""The encoder's input ``image``: one mean/std-normalised float32 picture, NCHW."""
SAM2_MASK_INPUT_SHAPE = (1, 1, SAM2_LOW_RES, SAM2_LOW_RES)
"""The decoder's ``mask_input``: one low-res mask logits prompt (all prompts of a call)."""
SAM2_FEATURES = ("image_embed", "high_res_feats_0", "high_res_feats_1")
"""The image features the encoder writes and the decoder reads (``ImageEmbedding`` fields)."""

SAM2_ENCODER_INPUTS = ("image",)
SAM2_ENCODER_OUTPUTS = ("high_res_feats_0", "high_res_feats_1", "image_embed")
SAM2_DECODER_INPUTS = (
    "image_embed",
    "high_res_feats_0",
    "high_res_feats_1",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
)
SAM2_DECODER_OUTPUTS = ("masks", "iou_predictions")
SAM2_DECODER_TRACK_OUTPUTS = ("object_score_logits", "obj_ptr")
"""Extra decoder outputs the tracker needs: ``[1, 1]`` object score logit (> 0: the object is
present) and ``[1, 4, 256]`` the object pointer of each of the four mask tokens."""
SAM2_POINT_INPUTS = ("point_coords", "point_labels")

# --- segmenter video memory (SAM2 ``track_step``) --------------------------------------------
SAM2_FEAT_SIZE = SAM2_SIZE // 16
"""Side of the stride-16 image embedding and of a memory feature map (64)."""
SAM2_MEMORY_ATTENTION_INPUTS = ("image_embed", "memory", "memory_tpos", "obj_ptrs", "obj_ptr_tpos")
SAM2_MEMORY_ATTENTION_OUTPUTS = ("pix_feat_with_mem",)
SAM2_MEMORY_ENCODER_INPUTS = (
    "image_embed",
    "mask_logits",
    "object_score_logits",
    "is_mask_from_pts",
)
SAM2_MEMORY_ENCODER_OUTPUTS = ("maskmem_features",)
SAM2_MEMORY_DYNAMIC = {
    "memory": "num_memory",
    "memory_tpos": "num_memory",
    "obj_ptrs": "num_obj_ptrs",
    "obj_ptr_tpos": "num_obj_ptrs",
}
"""The memory-attention inputs whose dimension 0 is dynamic: memory frames / object pointers."""

SAM2_SIZES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
"""SAM2 model sizes: checkpoint name part (``sam2.1_hiera_<size>``) -> config suffix."""


def sam2_size(variant: str) -> str:
    """The size name (``tiny``/``small``/``base_plus``/``large``) in a SAM2 config or checkpoint
    name (``sam2.1_hiera_t``, ``sam2_hiera_large.pt``, ``sam2.1_hiera_b+``).

    Raises ``ValueError`` when no size can be read from ``variant``.
    """
    v = variant.lower().replace("-", "_").replace("+", "_plus")
    for key, names in (
        ("base_plus", ("base_plus", "hiera_b")),
        ("large", ("large", "hiera_l")),
        ("small", ("small", "hiera_s")),
        ("tiny", ("tiny", "hiera_t")),
    ):
        if any(n in v for n in names):
            return key
    raise ValueError(f"unknown SAM2 variant {variant!r}; expected tiny, small, base+ or large")
