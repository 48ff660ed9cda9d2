"""Draw the README's picture: the demo query on examples/kitchen.png, ``result.plot()`` saved.

    .venv/bin/python scripts/readme_plot.py [--bundle B] [-o docs/images/kitchen_plot.png]

The bundle is the one ``segzero-edge segment`` picks without ``--bundle``: ``$SEGZERO_BUNDLE``,
else the demo bundle (built on first use, which needs the [export] extra). A demo bundle's
picture is stamped "random weights" (its masks mean nothing). The PNG has a 256-colour
palette (Pillow's median cut, no dithering) to keep the repository small.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERY = "the thing I can use to cut the bread"


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from segzero_edge.commands.segment import resolve_bundle
    from segzero_edge.fileio import atomic_path
    from segzero_edge.owned import RANDOM_WEIGHTS_STAMP, random_weights
    from segzero_edge.pipeline import SegZeroEdge

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, default=None, help="bundle folder (default: as segment)")
    p.add_argument("--image", type=Path, default=ROOT / "examples" / "kitchen.png")
    p.add_argument("--query", default=QUERY)
    p.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "images" / "kitchen_plot.png")
    args = p.parse_args(argv)
    bundle = resolve_bundle(args.bundle)
    stamp = RANDOM_WEIGHTS_STAMP if random_weights(bundle) else None
    with SegZeroEdge.from_bundle(bundle) as model:
        result = model.segment(args.image, args.query)
    pic = Image.fromarray(result.plot(stamp=stamp), "RGB")
    pic = pic.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    with atomic_path(args.out) as tmp:
        pic.save(tmp, format="PNG", optimize=True)
    boxes = [o.box for o in result.objects]
    print(f"{args.out}: {result.status.value}, boxes {boxes}, bundle {bundle}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
