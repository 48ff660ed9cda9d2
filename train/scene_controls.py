"""The two controls of the scene task: what can be scored without looking at the image.

    python -m segzero_train.scene_controls --train DIR --heldout DIR [DIR ...] [--out FILE]

- **Query only** (:class:`QueryOnlyControl`): the best answer from the query text alone. From a
  training folder it keeps, per normalised query text, the mean of the targets' boxes (the tight
  box of the union of a sample's targets, in fractions of the image's width and height) and how
  often the query had no target. On a held-out sample it predicts that mean box, filled, in the
  sample's pixels; nothing when most training samples of the text had no target; the mean box of
  every training target for a text training never had. If a task can be solved from the query
  this scores high; the scene task is built so that it cannot (goal: gIoU <= 0.30).
- **Flat images** (:func:`flat_image_samples` + :func:`segzero_train.evaluate.evaluate`): the
  held-out samples with every image replaced by one flat grey (128) image of the same size,
  scored against the real masks. A model that reads the image must fall to about the query-only
  score on them; one that scores the same on flat and real images ignores the image.

Scores are :mod:`segzero_train.metrics` (``segzero`` and ``lisa`` protocols, gIoU and cIoU),
overall and per query family (``family`` of the sample's JSON, :mod:`segzero_train.scene_set`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import SegSample, iter_reasonseg
from .metrics import PROTOCOLS, SCORERS, summarise

FLAT_GREY = 128


def normalise_text(text: str) -> str:
    """The key of a query: lower case, outer spaces and ``."?!`` stripped, inner spaces single."""
    return " ".join(text.lower().strip().strip('."?!').split())


def sample_meta(sample: SegSample) -> dict[str, Any]:
    """The JSON beside a sample's image (``{}`` when it has none)."""
    path = Path(sample.image_path).with_suffix(".json")
    return json.loads(path.read_text()) if path.is_file() else {}


def target_box(sample: SegSample) -> tuple[float, float, float, float] | None:
    """Tight box of the sample's target pixels as fractions ``(x1/W, y1/H, (x2+1)/W, (y2+1)/H)``;
    ``None`` when it has no target."""
    ys, xs = np.nonzero(sample.target)
    if ys.size == 0:
        return None
    w, h = sample.size
    return xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h


def box_mask(box: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    """H x W bool: the fractional box ``(x1, y1, x2, y2)`` filled in a ``size`` = (W, H) image."""
    w, h = size
    x1, y1 = round(box[0] * w), round(box[1] * h)
    x2, y2 = round(box[2] * w), round(box[3] * h)
    m = np.zeros((h, w), bool)
    m[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    return m


class QueryOnlyControl:
    """Per-query mean target box from a training set (see the module docstring).

    ``fit(samples)`` raises ``ValueError`` when no training sample has a target.
    """

    def __init__(self) -> None:
        self.boxes: dict[str, list[tuple[float, ...]]] = {}
        self.empty: dict[str, int] = {}
        self.global_box: tuple[float, ...] | None = None

    def fit(self, samples: Iterable[SegSample]) -> QueryOnlyControl:
        boxes: dict[str, list[tuple[float, ...]]] = {}
        empty: dict[str, int] = {}
        for s in samples:
            key = normalise_text(s.query)
            box = target_box(s)
            if box is None:
                empty[key] = empty.get(key, 0) + 1
            else:
                boxes.setdefault(key, []).append(box)
        every = [b for bs in boxes.values() for b in bs]
        if not every:
            raise ValueError("the query-only control needs training samples with a target")
        self.boxes, self.empty = boxes, empty
        self.global_box = tuple(np.mean(every, axis=0).tolist())
        return self

    def box_for(self, query: str) -> tuple[float, ...] | None:
        """The predicted fractional box for ``query``; ``None`` predicts nothing."""
        if self.global_box is None:
            raise ValueError("QueryOnlyControl is not fitted (call fit(training samples))")
        key = normalise_text(query)
        seen = self.boxes.get(key, [])
        if self.empty.get(key, 0) > len(seen):
            return None
        return tuple(np.mean(seen, axis=0).tolist()) if seen else self.global_box

    def predict_mask(self, sample: SegSample) -> np.ndarray:
        """H x W bool: the predicted box filled (all False for no target)."""
        box = self.box_for(sample.query)
        w, h = sample.size
        return np.zeros((h, w), bool) if box is None else box_mask(box, sample.size)


def score_masks(
    samples: Sequence[SegSample],
    masks: Sequence[np.ndarray],
    protocols: Sequence[str] = PROTOCOLS,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{protocol: {"all" | "family:<f>" | "novel" | "seen": summarise(...)}}`` of predicted
    masks against the samples' ground truth."""
    if len(samples) != len(masks):
        raise ValueError(f"{len(samples)} samples but {len(masks)} masks")
    metas = [sample_meta(s) for s in samples]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for protocol in protocols:
        scores = [
            SCORERS[protocol](m, s.mask, is_sentence=s.is_sentence)
            for s, m in zip(samples, masks, strict=True)
        ]
        groups: dict[str, list[Any]] = {"all": scores}
        for sc, meta in zip(scores, metas, strict=True):
            if "family" in meta:
                groups.setdefault(f"family:{meta['family']}", []).append(sc)
            if "novel" in meta:
                groups.setdefault("novel" if meta["novel"] else "seen", []).append(sc)
        out[protocol] = {name: summarise(g, protocol) for name, g in sorted(groups.items())}
    return out


def query_only_scores(
    train: Iterable[SegSample], heldout: Sequence[SegSample]
) -> dict[str, dict[str, dict[str, Any]]]:
    """The query-only control fitted on ``train`` and scored on ``heldout``."""
    control = QueryOnlyControl().fit(train)
    return score_masks(heldout, [control.predict_mask(s) for s in heldout])


def flat_image_samples(samples: Iterable[SegSample], folder: str | Path) -> list[SegSample]:
    """Copies of ``samples`` whose images are flat grey (:data:`FLAT_GREY`) PNGs of the same
    size, written into ``folder`` (created; existing files of the same names are replaced), with
    the JSON beside each so that the family is kept. The ground truth is unchanged."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for s in samples:
        w, h = s.size
        path = folder / f"{s.name}.png"
        Image.new("RGB", (w, h), (FLAT_GREY,) * 3).save(path)
        meta = sample_meta(s)
        if meta:
            path.with_suffix(".json").write_text(json.dumps(meta))
        out.append(dataclasses.replace(s, image_path=path))
    return out


def format_table(scores: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Markdown table: one row per (protocol, group), gIoU and cIoU in percent."""
    lines = ["| protocol | group | n | gIoU | cIoU |", "|---|---|---|---|---|"]
    for protocol, groups in scores.items():
        for name, s in groups.items():
            giou, ciou = 100 * s["giou"], 100 * s["ciou"]
            lines.append(f"| {protocol} | {name} | {s['n']} | {giou:.1f} | {ciou:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m segzero_train.scene_controls", description=__doc__.split("\n")[0]
    )
    p.add_argument("--train", type=Path, required=True, help="training ReasonSeg folder")
    p.add_argument("--heldout", type=Path, nargs="+", required=True, help="held-out folder(s)")
    p.add_argument("--out", type=Path, default=None, help="write the scores as JSON here")
    args = p.parse_args(argv)
    try:
        control = QueryOnlyControl().fit(iter_reasonseg(args.train))
        report = {}
        for folder in args.heldout:
            held = list(iter_reasonseg(folder))
            report[str(folder)] = score_masks(held, [control.predict_mask(s) for s in held])
            print(f"## query-only control on {folder}\n\n{format_table(report[str(folder)])}\n")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out is not None:
        from segzero_edge.fileio import atomic_path

        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "FLAT_GREY",
    "QueryOnlyControl",
    "box_mask",
    "flat_image_samples",
    "format_table",
    "normalise_text",
    "query_only_scores",
    "sample_meta",
    "score_masks",
    "target_box",
]
