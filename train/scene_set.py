"""Write the scene task (:mod:`segzero_train.scene_queries`) as ReasonSeg (LabelMe) folders.

    python -m segzero_train.scene_set --out DIR --split train --n 2000 [--seed 0]
        [--size 448 336]

One sample per scene: ``000000.jpg`` + ``000000.json`` ... and ``manifest.json``, written
atomically (a temporary folder, then a rename). Sample ``i`` of a split is drawn by
``numpy.random.default_rng([seed, SPLIT_SALT[split], i])``, so a folder is a pure function of
(seed, split, n, size) and two splits never share a scene.

The JSON has ReasonSeg's fields, as LISA's ``utils/data_processing.py`` ``get_mask_from_json``
and Seg-Zero's ``evaluation_scripts`` read them: ``text`` (a list; ``text[0]`` is the query),
``is_sentence``, ``shapes`` (``label``, ``points`` ``[[x, y], ...]`` in pixels,
``shape_type: "polygon"``, ``group_id``: the object's index, shared by the pieces of an object
that occlusion split), ``imagePath``, ``imageHeight``, ``imageWidth``. A target's polygons carry
``label: "target"``; a sample of the ``none`` family has no shape. Extra fields the readers
ignore: ``reasoning`` (a short thinking text, :func:`segzero_train.scene_queries.reasoning`:
the SFT target's ``<think>``), ``family``, ``template``, ``split``, ``novel``, ``targets``
(object indexes) and
``objects`` (every object: ``kind``, ``colour``, ``box`` ``[x1, y1, x2, y2]`` of its visible
mask, inclusive pixels, ``visible`` fraction).

The polygons are the outer contours of each target's visible mask (OpenCV ``findContours``
with ``CHAIN_APPROX_SIMPLE``: the boundary pixels, straight runs kept as their end points),
which the ReasonSeg rasteriser (int32 ``fillPoly`` + 1-pixel ``polylines``,
:func:`segzero_train.datasets.rasterise`) fills back to that mask exactly, except where
occlusion leaves a hole inside an object (the hole is filled).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .scene_queries import SPLIT_SALT, SPLITS, Query, reasoning, sample_scene_query
from .scenes import RenderedScene


def mask_polygons(mask: np.ndarray) -> list[list[list[int]]]:
    """The outer contours of a bool H x W mask as ``[[[x, y], ...], ...]`` pixel polygons (one
    per connected piece, largest first)."""
    import cv2

    m = np.ascontiguousarray(np.asarray(mask, np.uint8))
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted(contours, key=lambda c: -cv2.contourArea(c))
    return [[[int(x), int(y)] for x, y in c.reshape(-1, 2)] for c in contours]


def tight_box(mask: np.ndarray) -> list[int]:
    """Inclusive ``[x1, y1, x2, y2]`` of a non-empty bool mask."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def sample_json(
    scene: RenderedScene, query: Query, image_name: str, split: str, labels: dict[int, str] | None
) -> dict[str, Any]:
    """The ReasonSeg JSON of one (scene, query); ``labels`` renames target objects' polygons
    (``{object index: label}``; default ``"target"``)."""
    h, w = scene.labels.shape
    shapes = []
    for k in query.targets:
        label = (labels or {}).get(k, "target")
        for poly in mask_polygons(scene.mask(k)):
            shapes.append(
                {"label": label, "points": poly, "shape_type": "polygon", "group_id": k,
                 "flags": {}}
            )  # fmt: skip
    objects = [
        {
            "kind": o.kind,
            "colour": o.colour,
            "box": tight_box(scene.mask(k)),
            "visible": round(scene.visible_fraction(k), 4),
        }
        for k, o in enumerate(scene.objects)
    ]
    return {
        "text": [query.text],
        "is_sentence": query.is_sentence,
        "shapes": shapes,
        "imagePath": image_name,
        "imageHeight": h,
        "imageWidth": w,
        "reasoning": reasoning(scene, query),
        "family": query.family,
        "template": query.template,
        "split": split,
        "novel": query.novel,
        "targets": list(query.targets),
        "objects": objects,
    }


def make_sample(
    seed: int, split: str, index: int, size: tuple[int, int] = (448, 336)
) -> tuple[RenderedScene, Query]:
    """Sample ``index`` of ``split``: deterministic in (seed, split, index, size)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    rng = np.random.default_rng([seed, SPLIT_SALT[split], index])
    return sample_scene_query(rng, split, size)


def make_scene_set(
    out_dir: str | Path,
    n: int,
    *,
    split: str = "train",
    seed: int = 0,
    size: tuple[int, int] = (448, 336),
    overwrite: bool = False,
) -> Path:
    """Write ``n`` samples of ``split`` into ``out_dir`` (atomically) and return its path.

    Raises ``ValueError`` for ``n < 1``, an unknown split or a size under 64 x 64;
    ``FileExistsError`` (from :func:`segzero_edge.fileio.atomic_dir`) when ``out_dir`` exists
    and ``overwrite`` is false."""
    from segzero_edge.fileio import atomic_dir

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    w, h = (int(v) for v in size)
    if w < 64 or h < 64:
        raise ValueError(f"size must be at least 64 x 64, got {w} x {h}")
    from PIL import Image

    with atomic_dir(Path(out_dir), overwrite=overwrite) as tmp:
        for i in range(n):
            scene, query = make_sample(seed, split, i, (w, h))
            name = f"{i:06d}.jpg"
            Image.fromarray(scene.image).save(tmp / name, format="JPEG", quality=92)
            meta = sample_json(scene, query, name, split, None)
            (tmp / f"{i:06d}.json").write_text(json.dumps(meta))
        manifest = {
            "generator": "segzero_train.scene_set",
            "split": split,
            "seed": seed,
            "n": n,
            "size": [w, h],
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return Path(out_dir)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m segzero_train.scene_set", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--split", choices=SPLITS, default="train")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=2, default=[448, 336], metavar=("W", "H"))
    p.add_argument("--overwrite", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        out = make_scene_set(
            args.out, args.n, split=args.split, seed=args.seed, size=tuple(args.size),
            overwrite=args.overwrite,
        )  # fmt: skip
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["make_sample", "make_scene_set", "mask_polygons", "sample_json", "tight_box"]
