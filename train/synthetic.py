"""A small synthetic ReasonSeg-format set: coloured shapes, spatial relations, referring queries.

``make_synthetic_set(out_dir, n, seed=0, image_size=(W, H))`` writes ``n`` samples
``000000.jpg`` + ``000000.json`` ... (plus ``manifest.json``) into ``out_dir`` atomically
(temporary folder, then rename). Each scene holds 3-5 non-overlapping shapes (circle, square,
triangle, diamond) with distinct (colour, shape) pairs; each query names exactly one of them
unambiguously, e.g. ``"the red circle"``, ``"the shape left of the blue square"``,
``"the largest shape"`` (short phrases, ``is_sentence: false``) or
``"Which shape is directly above the green triangle?"`` (sentences, ``is_sentence: true``).
About a quarter of the samples carry an ``"ignore"`` polygon (a grey smudge over part of the
target's border, drawn into the image); with ``multi_fraction > 0`` some queries name every shape
of one colour ("all the red shapes": one ``target`` polygon per shape).

The JSON follows ReasonSeg (LabelMe) fields: ``text`` (list; ``text[0]`` is evaluated),
``is_sentence``, ``shapes`` (``label``, ``points`` as ``[[x, y], ...]``, ``shape_type``
"polygon", ``group_id``), ``imagePath``, ``imageHeight``, ``imageWidth``. Everything is
deterministic from ``seed`` (sample ``i`` uses ``numpy.random.default_rng([seed, i])``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 130, 20),
}
KINDS = ("circle", "square", "triangle", "diamond")
RELATIONS = {  # name -> (phrase, sentence) templates; {ref} is the reference object
    "left": ("the shape left of the {ref}", "Which shape is directly to the left of the {ref}?"),
    "right": ("the shape right of the {ref}", "Which shape is just to the right of the {ref}?"),
    "above": ("the shape above the {ref}", "Which shape is directly above the {ref}?"),
    "below": ("the shape below the {ref}", "Which shape is right below the {ref}?"),
}
EXTREMES = {  # name -> (phrase, sentence)
    "leftmost": ("the leftmost shape", "Which shape is closest to the left edge of the picture?"),
    "rightmost": (
        "the rightmost shape",
        "Which shape is closest to the right edge of the picture?",
    ),
    "topmost": ("the topmost shape", "Which shape is nearest to the top of the picture?"),
    "bottommost": ("the lowest shape", "Which shape sits lowest in the picture?"),
    "largest": ("the largest shape", "Which shape takes up the most space in the picture?"),
    "smallest": ("the smallest shape", "Which shape is the smallest one in the picture?"),
}
NAME_SENTENCES = (
    "Please find the {name} in this picture.",
    "Where is the {name}?",
    "Can you point out the {name} among these shapes?",
)


@dataclass(frozen=True)
class Shape:
    """One drawn shape: colour, kind, centre (cx, cy), radius r, polygon vertices."""

    colour: str
    kind: str
    cx: float
    cy: float
    r: float
    polygon: tuple[tuple[float, float], ...]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.kind}"


def _polygon(kind: str, cx: float, cy: float, r: float) -> tuple[tuple[float, float], ...]:
    if kind == "circle":
        n, phase = 32, 0.0
    elif kind == "square":
        n, phase = 4, math.pi / 4
    elif kind == "triangle":
        n, phase = 3, -math.pi / 2
    else:  # diamond
        n, phase = 4, 0.0
    pts = []
    for k in range(n):
        a = phase + 2 * math.pi * k / n
        pts.append((round(cx + r * math.cos(a), 1), round(cy + r * math.sin(a), 1)))
    return tuple(pts)


def _place_shapes(
    rng: np.random.Generator, w: int, h: int, shapes_range: tuple[int, int] = (3, 5)
) -> list[Shape]:
    count = int(rng.integers(shapes_range[0], shapes_range[1] + 1))
    pairs = [(c, k) for c in COLOURS for k in KINDS]
    order = rng.permutation(len(pairs))
    shapes: list[Shape] = []
    r_min, r_max = 0.06 * min(w, h), 0.16 * min(w, h)
    for idx in order:
        if len(shapes) == count:
            break
        colour, kind = pairs[int(idx)]
        for _ in range(50):
            r = float(rng.uniform(r_min, r_max))
            cx = float(rng.uniform(r + 2, w - r - 2))
            cy = float(rng.uniform(r + 2, h - r - 2))
            if all(math.hypot(cx - s.cx, cy - s.cy) > r + s.r + 6 for s in shapes):
                shapes.append(Shape(colour, kind, cx, cy, r, _polygon(kind, cx, cy, r)))
                break
    return shapes


def _relation_target(shapes: list[Shape], ref: Shape, rel: str) -> Shape | None:
    """The single shape on ``rel`` side of ``ref`` (centres, with a half-radius margin)."""

    def side(s: Shape) -> bool:
        m = 0.5 * ref.r
        return {
            "left": s.cx < ref.cx - m and abs(s.cy - ref.cy) < ref.r + s.r,
            "right": s.cx > ref.cx + m and abs(s.cy - ref.cy) < ref.r + s.r,
            "above": s.cy < ref.cy - m and abs(s.cx - ref.cx) < ref.r + s.r,
            "below": s.cy > ref.cy + m and abs(s.cx - ref.cx) < ref.r + s.r,
        }[rel]

    hits = [s for s in shapes if s is not ref and side(s)]
    return hits[0] if len(hits) == 1 else None


def _extreme_target(shapes: list[Shape], which: str) -> Shape | None:
    key = {
        "leftmost": lambda s: s.cx,
        "rightmost": lambda s: -s.cx,
        "topmost": lambda s: s.cy,
        "bottommost": lambda s: -s.cy,
        "largest": lambda s: -s.r,
        "smallest": lambda s: s.r,
    }[which]
    if len(shapes) < 2:
        return None
    ranked = sorted(shapes, key=key)
    gap = 0.25 * min(s.r for s in shapes)
    return ranked[0] if abs(key(ranked[1]) - key(ranked[0])) > gap else None


DEFAULT_QUERY_KINDS = ("name", "relation", "extreme")
QUERY_KINDS = (*DEFAULT_QUERY_KINDS, "region")
"""``region``: one shape near a 3 x 3 grid cell centre, named with its cell (see
:func:`_place_on_grid`); the other kinds place shapes anywhere."""
REGIONS = (
    ("top left", "top centre", "top right"),
    ("centre left", "centre", "centre right"),
    ("bottom left", "bottom centre", "bottom right"),
)
GRID_RADIUS = (0.12, 0.16)
"""Shape radius on the grid, as a fraction of min(W, H)."""
GRID_JITTER = 0.03
"""Largest offset of a grid shape from its cell centre, as a fraction of W (x) and H (y)."""


def _place_on_grid(rng: np.random.Generator, w: int, h: int) -> tuple[Shape, str]:
    """One shape near the centre of a random cell of a 3 x 3 grid, and the cell's name."""
    row, col = int(rng.integers(3)), int(rng.integers(3))
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    kind = KINDS[int(rng.integers(len(KINDS)))]
    r = float(rng.uniform(*GRID_RADIUS)) * min(w, h)
    cx = (col + 0.5) * w / 3 + float(rng.uniform(-GRID_JITTER, GRID_JITTER)) * w
    cy = (row + 0.5) * h / 3 + float(rng.uniform(-GRID_JITTER, GRID_JITTER)) * h
    cx, cy = min(max(cx, r + 1), w - r - 1), min(max(cy, r + 1), h - r - 1)
    return Shape(colour, kind, cx, cy, r, _polygon(kind, cx, cy, r)), REGIONS[row][col]


def _candidates(
    shapes: list[Shape], kinds: tuple[str, ...] = DEFAULT_QUERY_KINDS
) -> list[tuple[list[Shape], str, str]]:
    """Every unambiguous (targets, phrase, sentence) of the given query kinds."""
    out: list[tuple[list[Shape], str, str]] = []
    for s in shapes:
        if "name" in kinds:
            out.append(([s], f"the {s.name}", "{name}"))
    for rel, (phrase, sentence) in RELATIONS.items():
        if "relation" not in kinds:
            break
        for ref in shapes:
            t = _relation_target(shapes, ref, rel)
            if t is not None:
                out.append(([t], phrase.format(ref=ref.name), sentence.format(ref=ref.name)))
    for which, (phrase, sentence) in EXTREMES.items():
        if "extreme" not in kinds:
            break
        t = _extreme_target(shapes, which)
        if t is not None:
            out.append(([t], phrase, sentence))
    return out


def _multi_candidates(shapes: list[Shape]) -> list[tuple[list[Shape], str, str]]:
    out = []
    for colour in COLOURS:
        group = [s for s in shapes if s.colour == colour]
        if len(group) >= 2:
            out.append(
                (group, f"all the {colour} shapes", f"Find every {colour} shape in the picture.")
            )
    return out


def _ignore_polygon(rng: np.random.Generator, target: Shape) -> list[list[float]]:
    a = float(rng.uniform(0, 2 * math.pi))
    x, y = target.cx + target.r * math.cos(a), target.cy + target.r * math.sin(a)
    half = max(2.0, 0.25 * target.r)
    return [[x - half, y - half], [x + half, y - half], [x + half, y + half], [x - half, y + half]]


def _render(
    rng: np.random.Generator, w: int, h: int, shapes: list[Shape], ignore: list[list[float]] | None
) -> Any:
    from PIL import Image, ImageDraw

    base = np.array(rng.integers(200, 245, size=3), dtype=np.float32)
    ramp = np.linspace(-12, 12, w, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 3, size=(h, w, 1)).astype(np.float32)
    bg = np.clip(base[None, None, :] + ramp + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(bg, "RGB")
    draw = ImageDraw.Draw(img)
    for s in shapes:
        draw.polygon(list(s.polygon), fill=COLOURS[s.colour])
    if ignore is not None:
        draw.polygon([tuple(p) for p in ignore], fill=(128, 128, 128))
    return img


def make_sample(
    seed: int,
    index: int,
    image_size: tuple[int, int] = (640, 480),
    multi_fraction: float = 0.0,
    shapes: tuple[int, int] = (3, 5),
    query_kinds: tuple[str, ...] = DEFAULT_QUERY_KINDS,
) -> tuple[Any, dict[str, Any]]:
    """One (PIL image, ReasonSeg JSON dict) pair; deterministic in (seed, index).

    ``shapes``: (min, max) shapes per scene; ``query_kinds``: any of ``"name"`` ("the red
    circle"), ``"relation"`` ("the shape left of ..."), ``"extreme"`` ("the largest shape"),
    or ``"region"`` alone (one shape near a 3 x 3 grid cell: "the red circle in the top left").
    """
    w, h = image_size
    rng = np.random.default_rng([seed, index])
    scene_shapes = shapes
    region = None
    if "region" in query_kinds:
        shape, region = _place_on_grid(rng, w, h)
        placed = [shape]
    else:
        while True:
            placed = _place_shapes(rng, w, h, scene_shapes)
            if len(placed) >= scene_shapes[0] and _candidates(placed, query_kinds):
                break
    multi = _multi_candidates(placed) if rng.random() < multi_fraction else []
    pool = multi or _candidates(placed, query_kinds)
    if region is not None:
        name = placed[0].name
        sentence = f"Where is the {name} in the {region}?"
        pool = [([placed[0]], f"the {name} in the {region}", sentence)]
    targets, phrase, sentence = pool[int(rng.integers(len(pool)))]
    is_sentence = bool(rng.random() < 0.5)
    if sentence == "{name}":
        template = NAME_SENTENCES[int(rng.integers(len(NAME_SENTENCES)))]
        sentence = template.format(name=targets[0].name)
    text = [sentence, phrase] if is_sentence else [phrase, sentence]
    ignore = _ignore_polygon(rng, targets[0]) if rng.random() < 0.25 else None
    img = _render(rng, w, h, placed, ignore)
    records: list[dict[str, Any]] = [
        {
            "label": "target",
            "points": [list(p) for p in t.polygon],
            "shape_type": "polygon",
            "group_id": None if len(targets) == 1 else k,
            "flags": {},
        }
        for k, t in enumerate(targets)
    ]
    if ignore is not None:
        records.append(
            {
                "label": "ignore",
                "points": ignore,
                "shape_type": "polygon",
                "group_id": None,
                "flags": {},
            }
        )
    meta = {
        "text": text,
        "is_sentence": is_sentence,
        "shapes": records,
        "imagePath": f"{index:06d}.jpg",
        "imageHeight": h,
        "imageWidth": w,
        "scene": [{"name": s.name, "cx": s.cx, "cy": s.cy, "r": s.r} for s in placed],
    }
    return img, meta


def make_synthetic_set(
    out_dir: str | Path,
    n: int,
    *,
    seed: int = 0,
    image_size: tuple[int, int] = (640, 480),
    multi_fraction: float = 0.0,
    shapes: tuple[int, int] = (3, 5),
    query_kinds: tuple[str, ...] = DEFAULT_QUERY_KINDS,
    overwrite: bool = False,
) -> Path:
    """Write ``n`` samples into ``out_dir`` (atomically) and return its path."""
    from segzero_edge.fileio import atomic_dir

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 1 <= shapes[0] <= shapes[1]:
        raise ValueError(f"shapes must be (min, max) with 1 <= min <= max, got {shapes}")
    if not query_kinds or set(query_kinds) - set(QUERY_KINDS):
        raise ValueError(f"query_kinds must be a subset of {QUERY_KINDS}, got {query_kinds}")
    w, h = (int(v) for v in image_size)
    if w < 64 or h < 64:
        raise ValueError(f"image_size must be at least 64 x 64, got {w} x {h}")
    out = Path(out_dir)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for i in range(n):
            img, meta = make_sample(seed, i, (w, h), multi_fraction, shapes, query_kinds)
            img.save(tmp / f"{i:06d}.jpg", format="JPEG", quality=92)
            (tmp / f"{i:06d}.json").write_text(json.dumps(meta, indent=1))
        manifest = {"generator": "segzero_train.synthetic", "seed": seed, "n": n, "size": [w, h]}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


__all__ = ["make_sample", "make_synthetic_set"]
