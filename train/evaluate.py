"""Evaluate reasoning segmentation on a ReasonSeg-style folder: gIoU / cIoU report.

Every sample is scored under the protocols of :mod:`segzero_train.metrics` (``segzero`` and
``lisa`` by default). The prompt is the model family's for ``text[0]``
(``segzero_edge.families``; the bundle's, or ``HFPredictor(family=...)``). What counts as a
parse failure differs:

- ``lisa``: the runtime's parse (``segzero_edge.answer.parse_answer``): an unparseable or
  truncated answer is a failure, i.e. an empty prediction;
- ``segzero``: the rule of the model family's own reference evaluation script
  (:func:`segzero_answer_objects`, i.e. ``ModelFamily.evaluation_objects``): Seg-Zero's
  ``evaluation_scripts/evaluation.py`` for ``segzero-v1`` (one ``{"bbox", "points_1",
  "points_2"}`` dict, ``round(int(v) * W / 840)``), ``evaluation_visionreasoner.py`` for the
  multi-object families (a list of ``bbox_2d`` / ``point_2d`` items, ``int(v * W / 840 +
  0.5)``). When its objects differ from the runtime's (the runtime salvages almost-JSON, and
  reads either schema) the objects are segmented again where the predictor can
  (``segment_objects``, the HF reference); otherwise the run's mask is used and the row says
  ``objects_differ``.

Two predictors:

- :class:`BundlePredictor`: the on-device pipeline, ``SegZeroEdge.from_bundle(B).segment``;
- :class:`HFPredictor`: the Hugging Face reference, run as the family's reference script
  (Seg-Zero ``evaluation_scripts/evaluation.py`` for ``segzero-v1``,
  ``evaluation_visionreasoner.py`` for ``multi-object``): ``Qwen2_5_VLForConditionalGeneration``
  (greedy ``generate`` with the family's token budget on the image resized to 840 x 840 with
  PIL bilinear), the family's mapping, then Meta's ``SAM2ImagePredictor`` on the original image
  with the family's SAM2 prompt per object through the one object loop
  (``segzero_edge.segmenter.decode``: ``multimask_output=True``, keep the best predicted IoU,
  OR over objects).

:func:`evaluate` runs one over the samples with a tqdm bar and returns the JSON report (see
:func:`segzero_train.metrics.summarise_splits` for the metric definitions).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segzero_edge.families import ModelFamily, get_family
from segzero_edge.layout import PATCH_MERGE
from segzero_edge.segmenter.prompts import ObjectSamPrompt
from segzero_edge.types import ObjectPrompt

from .datasets import SegSample
from .metrics import PROTOCOLS, SCORERS, summarise_splits

PARSE_FAILURE_STATUSES = frozenset({"unparseable", "truncated"})
REPORT_VERSION = 2
CONVENTIONS = {
    "lisa": (
        "LISA train_ds.py validate: ignore (255) pixels left out of I and U; gIoU = mean of "
        "I/(U+1e-5), U = 0 counts 1.0; cIoU = sum I/(sum U+1e-10); a runtime parse failure "
        "is an empty prediction"
    ),
    "segzero": (
        "the family's reference evaluation script (source.evaluation_reference) + "
        "calculate_iou.py: ignore pixels count as target; an answer that script cannot read "
        "is I = 0, U = target area (kept even if 0); a read answer with U = 0 is skipped; "
        "gIoU = mean I/U, cIoU = sum I/sum U"
    ),
}


def segzero_answer_objects(
    text: str, image_hw: tuple[int, int], family: str | ModelFamily
) -> list[ObjectPrompt] | None:
    """Objects (image pixels) of a generation by the ``family``'s reference evaluation script,
    ``None`` where that script scores a parse failure.

    ``ModelFamily.evaluation_objects``: the one parser's strict rule for the family's answer
    schema (``segzero_edge.answer.parse_answer(text, strict=True, schema=...)``) and the
    family's mapping; see :attr:`ModelFamily.evaluation_reference` for the script. Raises
    ``ValueError`` for an unknown family.
    """
    fam = get_family(family)
    return fam.evaluation_objects(text if isinstance(text, str) else "", image_hw)


def _same_objects(strict: list[ObjectPrompt], objects: list[dict[str, Any]]) -> bool:
    runtime = [(list(o["box"]), [list(p) for p in o["points"]]) for o in objects]
    return runtime == [(list(o.box), [list(p) for p in o.points]) for o in strict]


@dataclass
class Prediction:
    """What a predictor returns for one sample."""

    mask: np.ndarray
    status: str
    answer: str = ""
    objects: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def parse_failed(self) -> bool:
        return self.status in PARSE_FAILURE_STATUSES


Predictor = Callable[[SegSample], Prediction]


def evaluate(
    samples: Iterable[SegSample],
    predict: Predictor,
    *,
    family: str | ModelFamily,
    protocols: Sequence[str] = PROTOCOLS,
    limit: int | None = None,
    progress: bool = True,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``predict`` on each sample (at most ``limit``) and build the report.

    ``family`` is the model family of the predictor's checkpoint: the ``segzero`` protocol reads
    each answer with that family's reference evaluation rule, and the report's ``source`` names
    it (``family``, ``evaluation_reference``). The report holds ``summary[protocol][split]``
    (:func:`segzero_train.metrics.summarise`) and one row per sample with each protocol's ``I``
    and ``U``. Raises ``ValueError`` for an unknown protocol or family, or no sample.
    """
    from tqdm import tqdm

    fam = get_family(family)
    unknown = [p for p in protocols if p not in SCORERS]
    if unknown or not protocols:
        raise ValueError(f"protocols must be among {PROTOCOLS}, got {list(protocols)}")
    samples = list(samples)[:limit] if limit is not None else list(samples)
    if not samples:
        raise ValueError("no samples to evaluate")
    rows: list[dict[str, Any]] = []
    scores: dict[str, list[Any]] = {p: [] for p in protocols}
    resegment = getattr(predict, "segment_objects", None)
    bar = tqdm(samples, desc="eval", unit="sample", disable=not progress)
    for sample in bar:
        gt = sample.mask
        t0 = time.perf_counter()
        pred = predict(sample)
        seconds = pred.seconds or time.perf_counter() - t0
        row: dict[str, Any] = {
            "name": sample.name,
            "query": sample.query,
            "is_sentence": sample.is_sentence,
            "status": pred.status,
            "gt_area": int((gt == 1).sum()),
            "ignore_area": int((gt == 255).sum()),
            "pred_area": int(np.asarray(pred.mask, bool).sum()),
            "objects": pred.objects,
            "answer": pred.answer,
            "seconds": round(float(seconds), 4),
        }
        for protocol in protocols:
            if protocol == "lisa":
                mask = None if pred.parse_failed else pred.mask
            else:
                strict = segzero_answer_objects(pred.answer, gt.shape, fam)
                mask = None if strict is None else pred.mask
                if strict is not None and not _same_objects(strict, pred.objects):
                    if resegment is not None:
                        mask = resegment(sample, strict)
                    else:
                        row["objects_differ"] = True
            score = SCORERS[protocol](mask, gt, is_sentence=sample.is_sentence)
            scores[protocol].append(score)
            row[protocol] = {k: v for k, v in score.to_json().items() if k != "is_sentence"}
        rows.append(row)
        done = summarise_splits(scores[protocols[0]], protocols[0])["all"]
        bar.set_postfix(giou=f"{done['giou']:.3f}", ciou=f"{done['ciou']:.3f}")
    src = {**(source or {}), "family": fam.name}
    src["evaluation_reference"] = fam.evaluation_reference
    return {
        "version": REPORT_VERSION,
        "source": src,
        "conventions": {p: CONVENTIONS[p] for p in protocols},
        "summary": {p: summarise_splits(scores[p], p) for p in protocols},
        "rows": rows,
    }


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report as JSON atomically."""
    from segzero_edge.fileio import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=1, allow_nan=True))
    return path


# --------------------------------------------------------------------------- predictors


class BundlePredictor:
    """The on-device pipeline: ``SegZeroEdge.from_bundle(bundle, **options)``."""

    def __init__(self, bundle: str | Path | None = None, *, model: Any = None, **options: Any):
        if model is None:
            if bundle is None:
                raise ValueError("BundlePredictor needs a bundle path or a SegZeroEdge model")
            from segzero_edge.pipeline import SegZeroEdge

            model = SegZeroEdge.from_bundle(bundle, **options)
        self.model = model

    def __call__(self, sample: SegSample) -> Prediction:
        t0 = time.perf_counter()
        seg = self.model.segment(sample.image_path, sample.query)
        return Prediction(
            mask=np.asarray(seg.mask, bool),
            status=seg.status.value,
            answer=seg.answer_raw,
            objects=[o.to_json() for o in seg.objects],
            seconds=time.perf_counter() - t0,
        )

    @property
    def family(self) -> ModelFamily:
        """The model's family (from the bundle's manifest, or the ``family`` override)."""
        return self.model.family

    def close(self) -> None:
        self.model.close()


class HFPredictor:
    """Hugging Face Qwen2.5-VL + Meta's SAM2 image predictor (the reference), on CPU or CUDA."""

    def __init__(
        self,
        model_dir: str | Path,
        sam2_checkpoint: str | Path | None,
        *,
        family: str | ModelFamily,
        sam2_config: str | None = None,
        max_new_tokens: int | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        image_size: int | None = None,
        sam2_model: Any = None,
    ) -> None:
        """``family``: the checkpoint's model family; ``max_new_tokens``: default the family's
        budget (1024). ``image_size``: the square side the reasoner sees (a multiple of 28;
        default the family's ``resize_size``: 840 as the references, 336 for ``micro-scene``; a
        model trained on another size is shown its own size, while its coordinates stay in the
        family's coordinate range). ``sam2_model``: an already built SAM2 (e.g.
        :func:`segzero_export.micro_sam2.build_micro_sam2`) instead of ``sam2_checkpoint``,
        which may then be ``None``."""
        import torch
        from sam2.sam2_image_predictor import SAM2ImagePredictor
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        from segzero_export.sam2_model import build_sam2_model, infer_config

        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"HF model folder not found: {model_dir}")
        if sam2_model is None and (sam2_checkpoint is None or not Path(sam2_checkpoint).is_file()):
            raise FileNotFoundError(f"SAM2 checkpoint not found: {sam2_checkpoint}")
        self.family = get_family(family)
        if image_size is None:
            image_size = self.family.resize_size
        if image_size < PATCH_MERGE or image_size % PATCH_MERGE:
            raise ValueError(f"image_size must be a multiple of {PATCH_MERGE}, got {image_size}")
        self.image_size = int(image_size)
        self.torch = torch
        self.device = device
        self.max_new_tokens = int(max_new_tokens or self.family.max_new_tokens)
        self.processor = AutoProcessor.from_pretrained(model_dir)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            model_dir, dtype=getattr(torch, dtype)
        )
        self.model = model.to(device)  # type: ignore[arg-type]
        self.model.eval()
        if sam2_model is None:
            ckpt = Path(sam2_checkpoint)  # type: ignore[arg-type]
            sam2_model = build_sam2_model(sam2_config or infer_config(ckpt), ckpt)
        self.sam = SAM2ImagePredictor(sam2_model.eval().to(device))

    def generate(self, image: np.ndarray, query: str) -> tuple[str, bool]:
        """Greedy generation for an H x W x 3 image; returns (text, hit the token budget)."""
        from PIL import Image

        prompt = self.family.build_prompt(query)
        square = Image.fromarray(image, "RGB").resize(
            (self.image_size, self.image_size), Image.Resampling.BILINEAR
        )
        messages = [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": prompt}],
            }
        ]
        text = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        inputs = self.processor(text=[text], images=[square], return_tensors="pt").to(self.device)
        grid = inputs["image_grid_thw"].tolist()
        side = self.image_size // 14
        if grid != [[1, side, side]]:
            raise ValueError(
                f"processor resized the {self.image_size} x {self.image_size} image: grid {grid}"
            )
        with self.torch.inference_mode():
            out = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1
            )
        new = out[0, inputs["input_ids"].shape[1] :]
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        truncated = len(new) >= self.max_new_tokens and int(new[-1]) not in eos_ids
        return self.processor.decode(new, skip_special_tokens=True), truncated

    def sam2_decode(self, prompts: Sequence[ObjectSamPrompt]) -> list[tuple[Any, Any]]:
        """The :data:`segzero_edge.segmenter.decode.DecodeFn` on Meta's predictor (image set):
        ``predict(point_coords, point_labels, box, multimask_output=True)`` per prompt."""
        out = []
        for p in prompts:
            pts = np.asarray(p.points, np.float32).reshape(-1, 2)
            masks, ious, _ = self.sam.predict(
                point_coords=pts if len(pts) else None,
                point_labels=np.asarray(p.labels, np.int32) if len(pts) else None,
                box=None if p.box is None else np.asarray(p.box, np.float32),
                multimask_output=True,
            )
            out.append((masks, ious))
        return out

    def masks_for(self, image: np.ndarray, objects: list[Any]) -> tuple[np.ndarray, list[float]]:
        """OR of SAM2's best mask per object (``ObjectPrompt`` objects in image pixels), through
        the one object loop with the family's SAM2 prompt."""
        from segzero_edge.segmenter.decode import decode_objects

        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        if not objects:
            return mask, []
        with self.torch.inference_mode():
            self.sam.set_image(np.array(image))  # a writable copy for torch
            decoded = decode_objects(objects, self.family.sam2, self.sam2_decode)
        for m in decoded.masks:
            mask |= np.asarray(m, bool)
        return mask, decoded.scores

    def segment_objects(self, sample: SegSample, objects: list[ObjectPrompt]) -> np.ndarray:
        """Mask for objects in image pixels (the ``segzero`` protocol's), with the family's SAM2
        prompt."""
        return self.masks_for(sample.load_image(), objects)[0]

    def predict_text(self, image: np.ndarray, text: str, truncated: bool = False) -> Prediction:
        """Parse a generation (the runtime's parse) and segment it with the family's mapping and
        SAM2 prompt (the second half of :meth:`__call__`)."""
        from segzero_edge.answer import parse_answer

        parsed = parse_answer(text, truncated=truncated)
        objects = self.family.to_image_pixels(parsed.objects, image.shape[:2])
        mask, _ = self.masks_for(image, objects)
        return Prediction(
            mask=mask,
            status=parsed.status.value,
            answer=text,
            objects=[o.to_json() for o in objects],
        )

    def __call__(self, sample: SegSample) -> Prediction:
        t0 = time.perf_counter()
        image = sample.load_image()
        text, truncated = self.generate(image, sample.query)
        pred = self.predict_text(image, text, truncated)
        pred.seconds = time.perf_counter() - t0
        return pred

    def close(self) -> None:
        pass


def evaluate_folder(
    data_dir: str | Path,
    predictor: Predictor,
    *,
    family: str | ModelFamily,
    limit: int | None = None,
    split: str = "val",
    protocols: Sequence[str] = PROTOCOLS,
    progress: bool = True,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`evaluate` over a ReasonSeg folder (``text[0]`` of each JSON) or a RefCOCO layout
    (``split`` of its refs; see :func:`segzero_train.datasets.iter_folder`)."""
    from .datasets import iter_folder

    src = {"data": str(data_dir), **(source or {})}
    samples = iter_folder(data_dir, split=split, limit=limit)
    return evaluate(
        samples, predictor, family=family, protocols=protocols, progress=progress, source=src
    )


__all__ = [
    "CONVENTIONS",
    "BundlePredictor",
    "HFPredictor",
    "Prediction",
    "evaluate",
    "evaluate_folder",
    "segzero_answer_objects",
    "write_report",
]
