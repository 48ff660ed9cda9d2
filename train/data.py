"""Training rows for GRPO and SFT: Seg-Zero's released sets, ReasonSeg and RefCOCO folders.

:func:`training_dataset` turns any source into one ``datasets.Dataset`` with the columns

- ``prompt``: the user turn of the model family (``segzero_edge.families``),
  ``[{"role": "user", "content": family.build_prompt(query)}]`` (TRL inserts the image block in
  front of the text);
- ``image``: the picture shown to the model, ``image_size`` x ``image_size`` RGB (PIL bilinear,
  as the runtime resizes to 840; the released sets are stored at 840 x 840 already);
- ``gt_boxes`` / ``gt_points``: the ground truth in the coordinates the family's answers use
  (``ModelFamily.coord_span``: pixels of the 840 x 840 resize for Qwen2.5-VL, Qwen3-VL's 0-1000
  grid per axis; int32 lists), which is where the rewards compare it with the answer;
- ``query``; and with ``completion=True`` (SFT) the assistant turn ``completion`` holding the
  answer built from the ground truth in the family's format (:func:`target_text`), with the
  sample's own thinking text where its annotation has one (a ``reasoning`` field, as the scene
  task writes), else :data:`DEFAULT_REASONING`.

Sources (:func:`open_source`):

- Seg-Zero's released training sets, as Seg-Zero publishes and reads them (Hugging Face
  datasets with ``problem``, ``solution`` and an 840 x 840 ``image``; Seg-Zero's
  ``verl/utils/rl_dataset.py`` reads ``load_from_disk(path)["train"]``): a ``save_to_disk``
  folder, a downloaded hub snapshot (parquet files), or the hub id itself
  (``Ricky06662/refCOCOg_9k_840``, ``Ricky06662/VisionReasoner_multi_object_7k_840``; needs
  the network). ``solution`` comes in two forms, both read by :func:`parse_solution`;
- a ReasonSeg folder (JPG + JSON polygons) or a RefCOCO folder (``instances.json`` +
  ``refs(umd).p`` + ``train2014/``), see :mod:`segzero_train.datasets`: the ground truth is the
  tight box and the inscribed point of the target mask (:mod:`segzero_train.gt`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segzero_edge.families import ModelFamily, get_family
from segzero_edge.layout import REASONER_SIZE

from .gt import ground_truth_from_mask, ground_truth_from_masks, rescale_ground_truth
from .rewards import GroundTruth

SEGZERO_COLUMNS = ("problem", "solution", "image")
"""Columns of Seg-Zero's released training sets that training reads."""

_V1_BOX_RE = re.compile(r"<box>\((\d+),(\d+)\),\((\d+),(\d+)\)</box>")
_V1_POINTS_RE = re.compile(r"<points>\((\d+),(\d+)\),\((\d+),(\d+)\)</points>")

DEFAULT_REASONING = "I look at the image and compare the objects."
"""Placeholder thinking for the SFT targets: the data has no reasoning text."""


def parse_solution(text: str) -> GroundTruth:
    """The ``solution`` of a Seg-Zero training row as ground truth in the 840 frame.

    Two published forms:

    - ``<box>(x1,y1),(x2,y2)</box><points>(x1,y1),(x2,y2)</points>``: the RefCOCOg sets of the
      first release (one box, the two inscribed-circle centres; Seg-Zero's
      ``verl/utils/reward_score/seg_restrict.py`` reads them with these patterns);
    - a JSON list ``[{"bbox_2d": [x1, y1, x2, y2], "point_2d": [x, y]}, ...]``: the
      multi-object sets (``prepare_dataset/gen_training_dataset.py``), one point per box.

    Raises ``ValueError`` naming the text when it is neither.
    """
    if not isinstance(text, str):
        raise ValueError(f"solution must be a string, got {type(text).__name__}")
    box = _V1_BOX_RE.search(text)
    if box is not None:
        points = _V1_POINTS_RE.search(text)
        values = [] if points is None else [int(v) for v in points.groups()]
        pts = [values[i : i + 2] for i in range(0, len(values), 2)]
        return GroundTruth(boxes=[[int(v) for v in box.groups()]], points=pts)
    try:
        items = json.loads(text)
    except ValueError:
        raise ValueError(f"unreadable solution (not <box>... nor JSON): {text[:120]!r}") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError(f"solution JSON must be a list of objects, got {text[:120]!r}")
    try:
        return GroundTruth(
            boxes=[i["bbox_2d"] for i in items], points=[i["point_2d"] for i in items]
        )
    except (KeyError, ValueError) as e:
        raise ValueError(
            f"solution item without a valid bbox_2d/point_2d ({e}): {text[:120]!r}"
        ) from None


# --------------------------------------------------------------------------- sources


def is_hf_dataset_dir(path: Path) -> bool:
    """A ``save_to_disk`` folder (Dataset or DatasetDict) or a hub snapshot with parquet files."""
    return (
        (path / "dataset_dict.json").is_file()
        or (path / "dataset_info.json").is_file()
        or any(path.glob("data/*.parquet"))
        or any(path.glob("*.parquet"))
    )


def load_segzero_set(source: str | Path, split: str = "train") -> Any:
    """One split of a Seg-Zero training set (``datasets.Dataset``) from a folder or the hub.

    Raises ``ValueError`` when the split or a needed column is missing, or when a hub id cannot
    be reached.
    """
    import datasets

    path = Path(source)
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(str(path))
    else:
        try:
            loaded = datasets.load_dataset(str(source))
        except Exception as e:  # the hub client raises many types (offline, missing, auth)
            raise ValueError(
                f"cannot load the dataset {source!r} (not a local folder; from the hub: {e})"
            ) from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"{source}: no split {split!r} (has {sorted(loaded)})")
        loaded = loaded[split]
    missing = [c for c in SEGZERO_COLUMNS if c not in loaded.column_names]
    if missing:
        raise ValueError(
            f"{source}: not a Seg-Zero training set, missing column(s) {missing} "
            f"(has {loaded.column_names})"
        )
    return loaded


@dataclass(frozen=True)
class TrainingSource:
    """An opened source: a Seg-Zero set (``hf``) or a list of masks (``samples``)."""

    name: str
    hf: Any = None
    samples: Any = None


def open_source(data: str | Path, split: str = "train") -> TrainingSource:
    """Open ``data``: an HF Seg-Zero set (folder or hub id), a ReasonSeg or a RefCOCO folder."""
    from .datasets import iter_folder

    path = Path(data)
    if path.is_dir() and not is_hf_dataset_dir(path):
        return TrainingSource(name=str(data), samples=iter_folder(path, split=split))
    if not path.exists() and (str(data).startswith((".", "/")) or "/" not in str(data)):
        raise ValueError(f"data folder not found: {data}")
    return TrainingSource(name=str(data), hf=load_segzero_set(data, split))


# --------------------------------------------------------------------------- rows


def user_turn(query: str, family: str | ModelFamily = "multi-object") -> list[dict[str, str]]:
    """The user turn of ``family`` (text only; TRL puts the image block in front of it)."""
    return [{"role": "user", "content": get_family(family).build_prompt(query)}]


def target_text(
    gt: GroundTruth,
    reasoning: str = DEFAULT_REASONING,
    family: str | ModelFamily = "multi-object",
) -> str:
    """The answer a well-behaved model of ``family`` writes.

    Multi-object: one ``bbox_2d``/``point_2d`` item per box (the box's own point, or the first
    point when there are fewer points than boxes). Seg-Zero v1: the first box with the first two
    points (``ValueError`` when the ground truth has fewer, as the sets built from masks here,
    one point per object, do; Seg-Zero's released RefCOCOg sets have two).
    """
    from segzero_edge.answer import AnswerObject

    fam = get_family(family)
    if fam.schema == "object":
        if not gt.boxes or len(gt.points) < 2:
            raise ValueError(
                f"a {fam.name} answer needs a box and two points; the ground truth has "
                f"{len(gt.boxes)} box(es) and {len(gt.points)} point(s)"
            )
        obj = AnswerObject(
            box=tuple(gt.boxes[0]), points=(tuple(gt.points[0]), tuple(gt.points[1]))
        )  # type: ignore[arg-type]
        return fam.format_answer([obj], reasoning)
    objects = []
    for k, box in enumerate(gt.boxes):
        point = gt.points[k] if k < len(gt.points) and len(gt.points) == len(gt.boxes) else None
        if point is None:
            point = gt.points[0] if gt.points else ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2)
        objects.append(AnswerObject(box=tuple(box), points=(tuple(point),)))  # type: ignore[arg-type]
    return fam.format_answer(objects, reasoning)


def image_token_count(processor: Any, image_size: int) -> int:
    """Image tokens the processor gives one ``image_size`` square image: its image processor's
    ``image_grid_thw`` product over ``merge_size ** 2`` (Qwen2.5-VL: 14 px patches, Qwen3-VL:
    16 px, both merged 2 x 2; the processor's pixel bounds may resize the image first)."""
    from PIL import Image

    ip = processor.image_processor
    grid = ip(images=[Image.new("RGB", (image_size, image_size))], return_tensors="np")
    t, h, w = (int(v) for v in grid["image_grid_thw"][0])
    return t * h * w // int(ip.merge_size) ** 2


def prompt_token_count(
    processor: Any,
    query: str,
    image_size: int,
    family: str | ModelFamily = "multi-object",
    image_tokens: int | None = None,
) -> int:
    """Tokens of the templated prompt of ``family`` including the image's merged patch tokens
    (``image_tokens``, else :func:`image_token_count`)."""
    text = get_family(family).build_prompt(query)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    n_text = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])
    if image_tokens is None:
        image_tokens = image_token_count(processor, image_size)
    return n_text - 1 + image_tokens


def square(image: Any, size: int) -> Any:
    """``image`` (PIL) as RGB ``size`` x ``size``, PIL bilinear (as the runtime resizes)."""
    from PIL import Image

    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return image


def _ground_truth_rows(
    source: TrainingSource,
    per_instance: bool,
    limit: int | None,
    frame: int = REASONER_SIZE,
    keep_empty: bool = False,
) -> list[Any]:
    """``(query, GroundTruth in the ``frame`` square, image or row index, reasoning)`` for every
    usable sample, in order (Seg-Zero's sets are in the 840 frame and are rescaled into
    ``frame``; ``reasoning``: the sample's own thinking text, ``""`` when it has none); samples
    without a target only with ``keep_empty``."""
    rows: list[Any] = []
    if source.hf is not None:
        ds = source.hf
        n = len(ds) if limit is None else min(limit, len(ds))
        problems = ds.select(range(n))["problem"]
        solutions = ds.select(range(n))["solution"]
        for k, (query, solution) in enumerate(zip(problems, solutions, strict=True)):
            try:
                gt = parse_solution(solution)
            except ValueError as e:
                raise ValueError(f"{source.name} row {k}: {e}") from None
            if per_instance and len(gt.points) != len(gt.boxes):
                raise ValueError(
                    f"{source.name} row {k}: the multi-object reward needs one point per box "
                    f"(got {len(gt.boxes)} box(es), {len(gt.points)} point(s))"
                )
            if gt.boxes or keep_empty:
                rows.append((query, rescale_ground_truth(gt, REASONER_SIZE, frame), k, ""))
        return rows

    for sample in source.samples:
        if limit is not None and len(rows) >= limit:
            break
        gt = (
            ground_truth_from_masks(sample.instance_masks(), frame)
            if per_instance
            else ground_truth_from_mask(sample.target, frame)
        )
        if gt.boxes or keep_empty:
            rows.append((sample.query, gt, sample.image_path, sample.reasoning))
    return rows


def training_dataset(
    data: str | Path | TrainingSource,
    *,
    image_size: int = REASONER_SIZE,
    split: str = "train",
    per_instance: bool = False,
    processor: Any = None,
    max_prompt_length: int | None = None,
    max_samples: int | None = None,
    completion: bool = False,
    family: str | ModelFamily = "multi-object",
    keep_empty: bool = False,
    think: bool = True,
    families: Sequence[str] | None = None,
    coord_step: int = 1,
) -> Any:
    """The training rows of ``data`` as a ``datasets.Dataset`` (see the module docstring), with
    ``family``'s prompt (and answer format for ``completion``), the ground truth in the
    coordinates of ``family``'s answers (``coord_span``).

    ``per_instance``: one box/point per instance (the multi-object reward) instead of the whole
    target as one object. Samples without a target are left out (``keep_empty``: kept, their
    answer is the empty list; for SFT of a list-schema family); so are prompts longer than
    ``max_prompt_length`` tokens (TRL cannot truncate a prompt that holds image tokens; with a
    ``processor``), and the count is printed. Raises ``ValueError`` when no row is left.

    ``think``: the completion's thinking is the sample's own text (or the placeholder); ``False``
    leaves it empty (``<think></think>``), so the targets are the answer alone. ``families``:
    only samples whose annotation's ``family`` field (the scene task's query family: ``name``,
    ``relation``, ``use``, ``multi``, ``none``) is one of these (a folder source only).
    ``coord_step``: the completion's coordinates rounded to multiples of this many answer units
    (:func:`coarse_ground_truth`; the ``gt_boxes`` / ``gt_points`` columns stay exact).
    """
    import datasets

    fam = get_family(family)
    source = data if isinstance(data, TrainingSource) else open_source(data, split)
    if families is not None:
        source = _only_families(source, families)
    rows = _ground_truth_rows(source, per_instance, max_samples, fam.coord_span, keep_empty)
    if processor is not None and max_prompt_length is not None:
        n_image = image_token_count(processor, image_size)
        kept = [
            r
            for r in rows
            if prompt_token_count(processor, r[0], image_size, fam, n_image) <= max_prompt_length
        ]
        if len(kept) < len(rows):
            print(
                f"left out {len(rows) - len(kept)} prompt(s) longer than {max_prompt_length} "
                "tokens",
                flush=True,
            )
        rows = kept
    if not rows:
        raise ValueError(
            f"no training prompts in {source.name} (no sample with a target, or all longer than "
            "max_prompt_length)"
        )
    columns: dict[str, Any] = {
        "prompt": [user_turn(q, family) for q, _, _, _ in rows],
        "gt_boxes": [[list(map(int, b)) for b in gt.boxes] for _, gt, _, _ in rows],
        "gt_points": [[list(map(int, p)) for p in gt.points] for _, gt, _, _ in rows],
        "query": [q for q, _, _, _ in rows],
    }
    features: dict[str, Any] = {
        "prompt": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        "gt_boxes": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
        "gt_points": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
        "query": datasets.Value("string"),
    }
    if completion:
        columns["completion"] = [
            [
                {
                    "role": "assistant",
                    "content": target_text(
                        coarse_ground_truth(gt, coord_step, fam.coord_span),
                        _thinking(why, think),
                        family,
                    ),
                }
            ]
            for _, gt, _, why in rows
        ]
        features["completion"] = features["prompt"]
    if source.hf is not None:
        # The images stay in the source's Arrow files (no copy); only the row order is selected.
        images = source.hf.select([k for _, _, k, _ in rows]).select_columns(["image"])
        light = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
        out = datasets.concatenate_datasets([images, light], axis=1)
        return out.with_transform(_SquareImages(image_size), columns=["image"],
                                  output_all_columns=True)  # fmt: skip
    columns["image"] = [str(p) for _, _, p, _ in rows]
    features["image"] = datasets.Image()
    out = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    return out.with_transform(_SquareImages(image_size), columns=["image"], output_all_columns=True)


def coarse_ground_truth(gt: GroundTruth, step: int, coord_range: int) -> GroundTruth:
    """``gt`` with every coordinate rounded to the nearest multiple of ``step`` answer units,
    within ``[0, coord_range]``; a box keeps a positive size (``x2 >= x1 + step``). ``step`` 1
    returns ``gt`` unchanged; ``ValueError`` for ``step`` < 1."""
    if step < 1:
        raise ValueError(f"coord_step must be >= 1, got {step}")
    if step == 1:
        return gt

    def r(v: float) -> int:
        return int(min(max(round(v / step) * step, 0), coord_range))

    def span(lo: float, hi: float) -> tuple[int, int]:
        a, b = r(lo), r(hi)
        if b - a >= step:
            return a, b
        return (a, a + step) if a + step <= coord_range else (b - step, b)

    boxes = []
    for x1, y1, x2, y2 in gt.boxes:
        (a, c), (b, d) = span(x1, x2), span(y1, y2)
        boxes.append((a, b, c, d))
    return GroundTruth(boxes=boxes, points=[(r(x), r(y)) for x, y in gt.points])


def _only_families(source: TrainingSource, families: Sequence[str]) -> TrainingSource:
    """``source`` with the samples whose annotation's ``family`` is in ``families``."""
    import dataclasses

    if source.hf is not None:
        raise ValueError(f"families= needs a folder of annotated samples, not {source.name}")
    wanted = set(families)
    kept = [
        s
        for s in source.samples
        if json.loads(Path(s.image_path).with_suffix(".json").read_text()).get("family") in wanted
    ]
    return dataclasses.replace(source, samples=kept)


def _thinking(reasoning: str, think: bool) -> str:
    """The thinking text of a target: the sample's own, the placeholder, or none."""
    if not think:
        return ""
    return reasoning or DEFAULT_REASONING


class _SquareImages:
    """Dataset transform: decode and square the ``image`` column on access (no copy on disk)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {"image": [square(im, self.size) for im in batch["image"]]}


__all__ = [
    "TrainingSource",
    "coarse_ground_truth",
    "image_token_count",
    "is_hf_dataset_dir",
    "load_segzero_set",
    "open_source",
    "parse_solution",
    "prompt_token_count",
    "square",
    "target_text",
    "training_dataset",
    "user_turn",
]
