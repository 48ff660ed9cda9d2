"""Cheap checks of whether a micro reasoner grounds: box IoU against the controls, and how much
its answer-token loss depends on the image.

    python -m segzero_train.micro_probe --model RUN/sft --train RUN/data/train \
        --heldout RUN/data/heldout_scenes [--n 40] [--dependence 16]

* :func:`box_scores`: greedy answers on held-out samples with a target, scored by box IoU in the
  answer frame (840 range): for each target instance the best IoU of any answered box, averaged
  over the instances (0 for an unparseable or empty answer); ``hit`` is that score >= 0.5. The
  same on flat grey images (the flat-image control) and the query-only control
  (:class:`segzero_train.scene_controls.QueryOnlyControl`, its box for the query).
* :func:`image_dependence`: the teacher-forced cross-entropy of the SFT targets (nats per token)
  split into coordinate digits, think text and the rest of the answer, with each sample's own
  image, with another sample's image (the batch rolled by one) and with flat grey images. A
  model that reads the image has a lower digit loss with its own image than with the others.

These are box-level measures of the reasoner alone (no SAM2), cheaper than
:func:`segzero_train.evaluate.evaluate`; they say whether the boxes follow the image.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segzero_edge.families import get_family

FAMILY = "micro-scene"
GREY = (128, 128, 128)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``(x1, y1, x2, y2)`` boxes (0 for an empty union)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (
        max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
        + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
        - inter
    )
    return inter / union if union > 0 else 0.0


def instance_score(pred: Sequence[Sequence[float]], truth: Sequence[Sequence[float]]) -> float:
    """Mean over ``truth`` boxes of the best IoU with any ``pred`` box (0 with no prediction).

    Raises ``ValueError`` for an empty ``truth``."""
    if not truth:
        raise ValueError("instance_score needs at least one true box")
    return float(np.mean([max((box_iou(p, t) for p in pred), default=0.0) for t in truth]))


def _truth_boxes(sample: Any, frame: int) -> list[list[int]]:
    from .gt import ground_truth_from_masks

    return [
        list(map(int, b)) for b in ground_truth_from_masks(sample.instance_masks(), frame).boxes
    ]


def _summary(scores: list[float]) -> dict[str, float]:
    arr = np.asarray(scores, float)
    return {"n": float(arr.size), "mean_iou": float(arr.mean()), "hit": float((arr >= 0.5).mean())}


def box_scores(
    model_dir: str | Path,
    train_dir: str | Path,
    heldout_dir: str | Path,
    *,
    n: int = 40,
    image_size: int | None = None,
    max_new_tokens: int = 160,
) -> dict[str, Any]:
    """Box IoU of ``model_dir`` on the first ``n`` held-out samples with a target (greedy), of the
    same on flat grey images, and of the query-only control fitted on ``train_dir``.

    Returns ``{"model" | "flat_images" | "query_only": {"n", "mean_iou", "hit"}, "answers": [...]}``
    (boxes in the family's 840 answer range). Raises ``ValueError`` when ``heldout_dir`` has no
    sample with a target."""
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from segzero_edge.answer import parse_answer
    from segzero_edge.types import Status

    from .datasets import iter_reasonseg
    from .scene_controls import QueryOnlyControl

    fam = get_family(FAMILY)
    size = fam.resize_size if image_size is None else int(image_size)
    frame = fam.coord_span
    samples = []
    for s in iter_reasonseg(Path(heldout_dir)):
        if len(samples) >= n:
            break
        truth = _truth_boxes(s, frame)
        if truth:
            samples.append((s, truth))
    if not samples:
        raise ValueError(f"no held-out sample with a target in {heldout_dir}")
    control = QueryOnlyControl().fit(iter_reasonseg(Path(train_dir)))
    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()

    def answer(image: Any, query: str) -> str:
        messages = [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": fam.build_prompt(query)}],
            }
        ]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1
            )
        return processor.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    def boxes_of(text: str) -> list[list[float]]:
        parsed = parse_answer(text, strict=True, schema=fam.schema)
        if parsed.status is not Status.OK:
            return []
        return [list(o.box) for o in parsed.objects if o.box is not None]

    rows: dict[str, list[float]] = {"model": [], "flat_images": [], "query_only": []}
    answers = []
    for s, truth in samples:
        image = Image.open(s.image_path).convert("RGB").resize((size, size), Image.BILINEAR)
        text = answer(image, s.query)
        flat = answer(Image.new("RGB", (size, size), GREY), s.query)
        box = control.box_for(s.query)
        q_boxes = [] if box is None else [[v * frame for v in box]]
        rows["model"].append(instance_score(boxes_of(text), truth))
        rows["flat_images"].append(instance_score(boxes_of(flat), truth))
        rows["query_only"].append(instance_score(q_boxes, truth))
        answers.append({"query": s.query, "truth": truth, "answer": text, "flat": flat})
    return {k: _summary(v) for k, v in rows.items()} | {"answers": answers}


def token_kinds(tokens: Sequence[str]) -> list[str]:
    """``"digit"`` (a coordinate digit inside ``<answer>``), ``"think"`` (before ``<answer>``)
    or ``"answer"`` (the rest) for each decoded completion token, in order."""
    kinds, text, in_answer = [], "", False
    for tok in tokens:
        text += tok
        in_answer = in_answer or "<answer>" in text
        coord = in_answer and tok.strip().isdigit() and not text.endswith("_2")
        kinds.append("digit" if coord else ("answer" if in_answer else "think"))
    return kinds


def image_dependence(
    model_dir: str | Path,
    data_dir: str | Path,
    *,
    n: int = 16,
    image_size: int | None = None,
    think: bool = True,
    coord_step: int = 1,
    families: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Teacher-forced loss (nats per token) of the SFT targets of the first ``n`` samples of
    ``data_dir`` by token kind (:func:`token_kinds`), with ``own`` images, ``rolled`` (each
    sample shown the next sample's image) and ``flat`` grey images, built by the SFT trainer's
    own collator (TRL's prompt-completion vision collator), so it is what SFT optimises.

    Returns ``{"own" | "rolled" | "flat": {"digit" | "think" | "answer": loss}}`` plus
    ``"share"``: each kind's share of the own-image loss. ``think``: the targets carry the
    samples' thinking text (else an empty think, as :func:`segzero_train.sft.train_sft` with
    ``think=False`` trains); ``coord_step`` and ``families`` as
    :func:`segzero_train.data.training_dataset` takes them."""
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from .data import training_dataset

    fam = get_family(FAMILY)
    size = fam.resize_size if image_size is None else int(image_size)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    ds = training_dataset(
        data_dir, image_size=size, completion=True, family=fam, per_instance=True,
        keep_empty=True, max_samples=n, think=think, coord_step=coord_step, families=families,
    )  # fmt: skip
    collate = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    images = [ds[i]["image"] for i in range(len(ds))]
    variants = {
        "own": images,
        "rolled": images[1:] + images[:1],
        "flat": [Image.new("RGB", im.size, GREY) for im in images],
    }
    out: dict[str, dict[str, float]] = {}
    for name, ims in variants.items():
        batch = collate([dict(ds[i], image=im) for i, im in enumerate(ims)])
        labels = batch.pop("labels")
        with torch.no_grad():
            logits = model(**batch).logits[:, :-1].float()
        target = labels[:, 1:]
        ce = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), target.clamp(min=0), reduction="none"
        )
        sums: dict[str, list[float]] = {}
        for i in range(target.shape[0]):
            keep = (target[i] != -100).nonzero().flatten().tolist()
            toks = [processor.tokenizer.decode([int(target[i, j])]) for j in keep]
            for j, kind in zip(keep, token_kinds(toks), strict=True):
                sums.setdefault(kind, []).append(float(ce[i, j]))
        out[name] = {k: float(np.mean(v)) for k, v in sums.items()}
        if name == "own":
            total = sum(sum(v) for v in sums.values())
            out["share"] = {k: float(sum(v) / total) for k, v in sums.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m segzero_train.micro_probe", description=__doc__)
    p.add_argument("--model", type=Path, required=True, help="Hugging Face reasoner folder")
    p.add_argument("--train", type=Path, required=True, help="training scene set (control)")
    p.add_argument("--heldout", type=Path, required=True, help="held-out scene set")
    p.add_argument("--n", type=int, default=40, help="held-out samples with a target")
    p.add_argument("--dependence", type=int, default=16, help="samples for image_dependence")
    p.add_argument("--no-think", action="store_true", help="targets with an empty think")
    p.add_argument("--coord-step", type=int, default=1, help="targets rounded to this step")
    p.add_argument("--families", default=None, help="comma-separated query families only")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    a = p.parse_args(argv)
    try:
        result: dict[str, Any] = {}
        if a.dependence:
            result["image_dependence"] = image_dependence(
                a.model, a.heldout, n=a.dependence, image_size=a.image_size,
                think=not a.no_think, coord_step=a.coord_step,
                families=None if a.families is None else a.families.split(","),
            )  # fmt: skip
        if a.n:
            result["boxes"] = box_scores(
                a.model, a.train, a.heldout, n=a.n, image_size=a.image_size
            )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=1)
    if a.out is not None:
        a.out.write_text(text)
    summary = {k: v for k, v in result.get("boxes", {}).items() if k != "answers"}
    print(json.dumps({"image_dependence": result.get("image_dependence"), "boxes": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "box_iou",
    "box_scores",
    "image_dependence",
    "instance_score",
    "token_kinds",
]
