"""Evaluate reasoning segmentation on a ReasonSeg-style folder: gIoU / cIoU report.

Two predictors run the same protocol (``segzero_edge.prompt.build_prompt`` on ``text[0]``,
answers parsed by ``segzero_edge.answer.parse_answer``; an unparseable or truncated answer
is a parse failure: ``I = 0, U = |gt|``):

- :class:`BundlePredictor`: the on-device pipeline, ``SegZeroEdge.from_bundle(B).segment``;
- :class:`HFPredictor`: the Hugging Face reference: ``Qwen2_5_VLForConditionalGeneration``
  (greedy ``generate`` on the image resized to 840 x 840 with PIL bilinear) then Meta's
  ``SAM2ImagePredictor`` on the original image (box + point per object,
  ``multimask_output=True``, keep the best predicted IoU, OR over objects).

:func:`evaluate` runs one over the samples with a tqdm bar and returns the JSON report (see
:func:`segzero_train.metrics.summarise_splits` for the metric definitions).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import SegSample
from .metrics import score_sample, summarise_splits

PARSE_FAILURE_STATUSES = frozenset({"unparseable", "truncated"})
REPORT_VERSION = 1
CONVENTIONS = {
    "giou_lisa": "mean of I/U; an empty union (empty target, empty prediction) counts 1.0 (LISA)",
    "giou_exclude": "mean of I/U over samples with a non-empty union (empty unions left out)",
    "ciou": "sum I / sum U",
    "parse_failure": "unparseable or truncated answer: I = 0, U = ground-truth area",
    "ignore": "ground-truth pixels labelled 'ignore' (255) are left out of I and U",
}


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
    limit: int | None = None,
    progress: bool = True,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``predict`` on each sample (at most ``limit``) and build the report."""
    from tqdm import tqdm

    samples = list(samples)[:limit] if limit is not None else list(samples)
    if not samples:
        raise ValueError("no samples to evaluate")
    rows: list[dict[str, Any]] = []
    scores = []
    bar = tqdm(samples, desc="eval", unit="sample", disable=not progress)
    for sample in bar:
        gt = sample.mask
        t0 = time.perf_counter()
        pred = predict(sample)
        seconds = pred.seconds or time.perf_counter() - t0
        score = score_sample(
            pred.mask, gt, is_sentence=sample.is_sentence, parse_failed=pred.parse_failed
        )
        scores.append(score)
        rows.append(
            {
                "name": sample.name,
                "query": sample.query,
                "is_sentence": sample.is_sentence,
                "status": pred.status,
                "intersection": score.intersection,
                "union": score.union,
                "iou": score.iou(1.0),
                "gt_area": int((gt == 1).sum()),
                "pred_area": int(np.asarray(pred.mask, bool).sum()),
                "objects": pred.objects,
                "answer": pred.answer,
                "seconds": round(float(seconds), 4),
            }
        )
        done = summarise_splits(scores)["all"]
        bar.set_postfix(giou=f"{done['giou_lisa']:.3f}", ciou=f"{done['ciou']:.3f}")
    return {
        "version": REPORT_VERSION,
        "source": source or {},
        "conventions": CONVENTIONS,
        "summary": summarise_splits(scores),
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

    def close(self) -> None:
        self.model.close()


class HFPredictor:
    """Hugging Face Qwen2.5-VL + Meta's SAM2 image predictor (the reference), on CPU or CUDA."""

    def __init__(
        self,
        model_dir: str | Path,
        sam2_checkpoint: str | Path,
        *,
        sam2_config: str | None = None,
        max_new_tokens: int = 1024,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        import torch
        from sam2.sam2_image_predictor import SAM2ImagePredictor
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        from segzero_export.sam2_model import build_sam2_model, infer_config

        model_dir, sam2_checkpoint = Path(model_dir), Path(sam2_checkpoint)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"HF model folder not found: {model_dir}")
        if not sam2_checkpoint.is_file():
            raise FileNotFoundError(f"SAM2 checkpoint not found: {sam2_checkpoint}")
        self.torch = torch
        self.device = device
        self.max_new_tokens = int(max_new_tokens)
        self.processor = AutoProcessor.from_pretrained(model_dir)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            model_dir, dtype=getattr(torch, dtype)
        )
        self.model = model.to(device)  # type: ignore[arg-type]
        self.model.eval()
        sam = build_sam2_model(sam2_config or infer_config(sam2_checkpoint), sam2_checkpoint)
        self.sam = SAM2ImagePredictor(sam.to(device))

    def generate(self, image: np.ndarray, query: str) -> tuple[str, bool]:
        """Greedy generation for an H x W x 3 image; returns (text, hit the token budget)."""
        from PIL import Image

        from segzero_edge.layout import REASONER_SIZE
        from segzero_edge.prompt import build_prompt

        square = Image.fromarray(image, "RGB").resize(
            (REASONER_SIZE, REASONER_SIZE), Image.Resampling.BILINEAR
        )
        messages = [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": build_prompt(query)}],
            }
        ]
        text = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        inputs = self.processor(text=[text], images=[square], return_tensors="pt").to(self.device)
        grid = inputs["image_grid_thw"].tolist()
        side = REASONER_SIZE // 14
        if grid != [[1, side, side]]:
            raise ValueError(f"processor resized the 840 x 840 image: grid {grid}")
        with self.torch.inference_mode():
            out = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1
            )
        new = out[0, inputs["input_ids"].shape[1] :]
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        truncated = len(new) >= self.max_new_tokens and int(new[-1]) not in eos_ids
        return self.processor.decode(new, skip_special_tokens=True), truncated

    def masks_for(self, image: np.ndarray, objects: list[Any]) -> tuple[np.ndarray, list[float]]:
        """OR of SAM2's best mask per object (image-frame ``ObjectPrompt``s)."""
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        scores: list[float] = []
        if not objects:
            return mask, scores
        with self.torch.inference_mode():
            self.sam.set_image(np.array(image))  # a writable copy for torch
            for o in objects:
                pts = np.asarray(o.points, np.float32).reshape(-1, 2)
                masks, ious, _ = self.sam.predict(
                    point_coords=pts if len(pts) else None,
                    point_labels=np.ones(len(pts), np.int32) if len(pts) else None,
                    box=np.asarray(o.box, np.float32),
                    multimask_output=True,
                )
                best = int(np.argmax(ious))
                mask |= masks[best].astype(bool)
                scores.append(float(ious[best]))
        return mask, scores

    def predict_text(self, image: np.ndarray, text: str, truncated: bool = False) -> Prediction:
        """Parse a generation and segment it (the second half of :meth:`__call__`)."""
        from segzero_edge.answer import parse_answer, to_image_frame

        parsed = parse_answer(text, truncated=truncated)
        objects = to_image_frame(parsed.objects, image.shape[:2])
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
    limit: int | None = None,
    split: str = "val",
    progress: bool = True,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`evaluate` over a ReasonSeg folder (``text[0]`` of each JSON) or a RefCOCO layout
    (``split`` of its refs; see :func:`segzero_train.datasets.iter_folder`)."""
    from .datasets import iter_folder

    src = {"data": str(data_dir), **(source or {})}
    samples = iter_folder(data_dir, split=split, limit=limit)
    return evaluate(samples, predictor, progress=progress, source=src)


__all__ = [
    "CONVENTIONS",
    "BundlePredictor",
    "HFPredictor",
    "Prediction",
    "evaluate",
    "evaluate_folder",
    "write_report",
]
