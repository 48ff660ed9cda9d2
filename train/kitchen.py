"""The README's example picture, ``examples/kitchen.png``, drawn by the scene generator, and its
ground truth ``examples/kitchen.json``.

    python -m segzero_train.kitchen [--out examples]

A 640 x 480 kitchen counter (wood) with a loaf of bread, a knife beside it, a cup, a plate, an
apple and a banana (:data:`KITCHEN_OBJECTS`, drawn by :func:`segzero_train.scenes.render` with
the fixed seed :data:`KITCHEN_SEED`). The JSON is a ReasonSeg (LabelMe) annotation of the
README's query, "the thing I can use to cut the bread": ``text``, ``is_sentence``, ``shapes``
with the knife's polygon (its visible mask's outer contour) labelled with its object name,
``"knife"`` (ReasonSeg's readers, LISA's ``get_mask_from_json`` and
:func:`segzero_train.datasets.rasterise`, take any label but ``ignore``/``flag`` as target),
``imagePath``, ``imageHeight``, ``imageWidth``; plus ``objects`` (every object's kind, colour and
visible box) for overlays and checks.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .scene_queries import Query
from .scene_set import sample_json
from .scenes import RenderedScene, SceneObject, render

KITCHEN_SIZE = (640, 480)
KITCHEN_SEED = 2024
KITCHEN_QUERY = "the thing I can use to cut the bread"
KITCHEN_OBJECTS = (
    SceneObject("plate", "white", 530, 120, 180, 0.0),
    SceneObject("bread", "brown", 230, 250, 300, 0.2),
    SceneObject("cup", "blue", 90, 105, 120, 0.08),
    SceneObject("banana", "yellow", 150, 400, 190, 2.9),
    SceneObject("apple", "red", 560, 395, 95, 0.0),
    SceneObject("knife", "black", 420, 290, 270, 0.55),
)
KNIFE = 5
"""Index of the knife in :data:`KITCHEN_OBJECTS`."""


def kitchen_scene() -> RenderedScene:
    """The kitchen picture (deterministic)."""
    return render(KITCHEN_OBJECTS, KITCHEN_SIZE, np.random.default_rng(KITCHEN_SEED), "wood")


def kitchen_json(scene: RenderedScene, image_name: str = "kitchen.png") -> dict[str, Any]:
    """The ReasonSeg annotation of :data:`KITCHEN_QUERY` on ``scene`` (the knife is the target,
    its polygon labelled ``"knife"``)."""
    query = Query(KITCHEN_QUERY, "use", (KNIFE,), "use.cut_bread.0", False, False)
    meta = sample_json(scene, query, image_name, "example", {KNIFE: "knife"})
    for key in ("split", "novel", "template"):
        meta.pop(key)
    return meta


def _compact_points(text: str) -> str:
    """Indented JSON with every ``[x, y]`` pair (and short number lists) on one line."""
    return re.sub(
        r"\[\s*(-?\d+(?:\.\d+)?(?:,\s*-?\d+(?:\.\d+)?)*)\s*\]",
        lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]",
        text,
    )


def write_kitchen(folder: str | Path) -> tuple[Path, Path]:
    """Write ``kitchen.png`` and ``kitchen.json`` into ``folder`` (each atomically)."""
    from PIL import Image

    from segzero_edge.fileio import atomic_path

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder not found: {folder}")
    scene = kitchen_scene()
    png, js = folder / "kitchen.png", folder / "kitchen.json"
    with atomic_path(png) as tmp:
        Image.fromarray(scene.image).save(tmp, format="PNG", optimize=True)
    with atomic_path(js) as tmp:
        Path(tmp).write_text(_compact_points(json.dumps(kitchen_json(scene), indent=1)) + "\n")
    return png, js


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m segzero_train.kitchen", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", type=Path, default=Path("examples"))
    args = p.parse_args(argv)
    try:
        for path in write_kitchen(args.out):
            print(path)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["KITCHEN_OBJECTS", "KITCHEN_QUERY", "KNIFE", "kitchen_json", "kitchen_scene"]
