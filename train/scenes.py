"""Procedurally drawn table-top scenes of everyday objects, with exact per-object masks.

A :class:`Scene` is a background plus several :class:`SceneObject` (one of :data:`KINDS`: knife,
bread, cup, plate, apple, bottle, scissors, book, spoon, banana) at a random position, size,
rotation and colour (:data:`KIND_COLOURS`), drawn back to front so that later objects partly hide
earlier ones. Everything is deterministic from the seed (:func:`random_scene` takes a
``numpy.random.Generator``).

Exactness: every part of an object is a polygon rasterised once with Pillow
(``ImageDraw.polygon``, outline included) into a boolean mask; the same boolean masks colour the
pixels and make the label map, so an object's visible mask (:attr:`RenderedScene.labels` ``==
index + 1``) is exactly the set of pixels that show it. Noise and shading change colours only,
never which object a pixel belongs to. No anti-aliasing.

Frames: pixel coordinates ``(x, y)`` of the ``W x H`` image, x to the right, y down; angles in
radians, counter-clockwise on screen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

Point = tuple[float, float]
Polygon = tuple[Point, ...]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 35, 35),
    "orange": (240, 130, 25),
    "yellow": (238, 205, 40),
    "green": (50, 150, 60),
    "blue": (40, 80, 200),
    "purple": (130, 60, 170),
    "pink": (240, 140, 180),
    "white": (242, 242, 236),
    "black": (30, 30, 32),
    "brown": (125, 75, 35),
    "grey": (150, 152, 158),
}
"""Named colours (RGB uint8) of the objects' main part."""

KINDS = (
    "knife",
    "bread",
    "cup",
    "plate",
    "apple",
    "bottle",
    "scissors",
    "book",
    "spoon",
    "banana",
)
"""The object kinds."""

KIND_COLOURS: dict[str, tuple[str, ...]] = {
    "knife": ("black", "brown", "red", "blue", "white"),  # the handle
    "bread": ("brown", "white"),
    "cup": ("red", "blue", "green", "yellow", "white", "pink", "purple", "orange"),
    "plate": ("white", "blue", "yellow", "green", "red", "pink"),
    "apple": ("red", "green", "yellow"),
    "bottle": ("green", "blue", "brown", "white", "red"),
    "scissors": ("red", "blue", "black", "orange", "green"),  # the handles
    "book": ("red", "blue", "green", "yellow", "purple", "black", "orange"),
    "spoon": ("grey", "white", "red", "blue", "green"),
    "banana": ("yellow", "green", "brown"),
}
"""The colours each kind comes in (the colour of its main part)."""

KIND_LENGTH = {
    "knife": 1.0,
    "bread": 0.8,
    "cup": 0.42,
    "plate": 0.7,
    "apple": 0.32,
    "bottle": 0.8,
    "scissors": 0.7,
    "book": 0.75,
    "spoon": 0.75,
    "banana": 0.7,
}
"""Relative length of each kind's longest side (the drawn length is this x the scene scale)."""

UPRIGHT = frozenset({"cup", "bottle"})
"""Kinds drawn standing (seen from the front): rotated by at most 20 degrees."""

BLADE = (196, 200, 210)
STEEL = (170, 174, 182)

BACKGROUNDS = ("wood", "marble", "tiles", "cloth", "plain")


@dataclass(frozen=True)
class Part:
    """One filled polygon of an object, in the object's unit frame (its length is 1), with its
    RGB colour."""

    polygon: Polygon
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class SceneObject:
    """One object: kind, colour name, centre ``(cx, cy)`` in pixels, drawn ``length`` in pixels,
    ``angle`` in radians (counter-clockwise on screen)."""

    kind: str
    colour: str
    cx: float
    cy: float
    length: float
    angle: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown object kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; known: {', '.join(COLOURS)}")
        if not self.length > 0:
            raise ValueError(f"object length must be > 0 pixels, got {self.length}")

    @property
    def name(self) -> str:
        """``"<colour> <kind>"``, e.g. ``"red cup"``."""
        return f"{self.colour} {self.kind}"

    def polygons(self) -> list[tuple[Polygon, tuple[int, int, int]]]:
        """Every part as (polygon in image pixels, RGB), back to front."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        out = []
        for part in object_parts(self.kind, COLOURS[self.colour]):
            pts = tuple(
                (
                    self.cx + self.length * (x * c + y * s),
                    self.cy + self.length * (-x * s + y * c),
                )
                for x, y in part.polygon
            )
            out.append((pts, part.colour))
        return out

    def extent(self) -> tuple[float, float, float, float]:
        """``(x1, y1, x2, y2)`` of all its parts' vertices, in pixels."""
        pts = [p for poly, _ in self.polygons() for p in poly]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return min(xs), min(ys), max(xs), max(ys)


# --------------------------------------------------------------------------- object shapes


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28, a0: float = 0.0) -> Polygon:
    return tuple(
        (cx + rx * math.cos(a0 + 2 * math.pi * k / n), cy + ry * math.sin(a0 + 2 * math.pi * k / n))
        for k in range(n)
    )


def _rect(x1: float, y1: float, x2: float, y2: float) -> Polygon:
    return ((x1, y1), (x2, y1), (x2, y2), (x1, y2))


def _shade(rgb: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(v * f)))) for v in rgb)  # type: ignore[return-value]


def _arc_band(r_out: float, r_in: float, a1: float, a2: float, cy: float, n: int = 16) -> Polygon:
    """A crescent: the outer arc then the inner arc back (a banana), centred at (0, cy)."""
    outer = [
        (r_out * math.cos(a1 + (a2 - a1) * k / n), cy + r_out * math.sin(a1 + (a2 - a1) * k / n))
        for k in range(n + 1)
    ]
    inner = [
        (r_in * math.cos(a2 - (a2 - a1) * k / n), cy + r_in * math.sin(a2 - (a2 - a1) * k / n))
        for k in range(n + 1)
    ]
    return tuple(outer + inner)


def object_parts(kind: str, main: tuple[int, int, int]) -> list[Part]:
    """The parts of ``kind`` in its unit frame (x along its length, in [-0.5, 0.5]; y down),
    with ``main`` as the colour of its main part. No part encloses background (no holes)."""
    if kind == "knife":
        blade = ((-0.06, -0.055), (0.38, -0.055), (0.5, 0.0), (0.42, 0.03), (-0.06, 0.03))
        return [Part(blade, BLADE), Part(_rect(-0.5, -0.06, -0.06, 0.06), main)]
    if kind == "spoon":
        return [
            Part(_rect(-0.5, -0.03, 0.14, 0.03), main),
            Part(_ellipse(0.3, 0.0, 0.2, 0.12), main),
            Part(_ellipse(0.31, 0.0, 0.13, 0.07), _shade(main, 0.82)),
        ]
    if kind == "scissors":
        return [
            Part(((-0.12, -0.05), (0.5, -0.01), (0.5, 0.0), (-0.1, 0.06)), BLADE),
            Part(((-0.12, 0.05), (0.5, 0.01), (0.5, 0.0), (-0.1, -0.06)), STEEL),
            Part(_ellipse(-0.3, -0.12, 0.19, 0.11), main),
            Part(_ellipse(-0.3, 0.12, 0.19, 0.11), main),
        ]
    if kind == "cup":  # upright: rim at the top (negative y)
        return [
            Part(_rect(0.3, -0.22, 0.5, 0.18), _shade(main, 0.85)),  # handle
            Part(((-0.4, -0.45), (0.4, -0.45), (0.3, 0.45), (-0.3, 0.45)), main),
            Part(_ellipse(0.0, -0.45, 0.4, 0.08), _shade(main, 0.7)),
        ]
    if kind == "plate":
        return [Part(_ellipse(0, 0, 0.5, 0.5, 40), main), Part(_ellipse(0, 0, 0.33, 0.33, 40),
                                                               _shade(main, 0.9))]  # fmt: skip
    if kind == "apple":
        return [
            Part(_rect(-0.03, -0.58, 0.03, -0.36), (90, 55, 25)),
            Part(_ellipse(0.14, -0.48, 0.14, 0.06, 12), (60, 150, 50)),
            Part(_ellipse(0.0, 0.02, 0.5, 0.46, 32), main),
            Part(_ellipse(-0.18, -0.15, 0.1, 0.08, 12), _shade(main, 1.25)),
        ]
    if kind == "bottle":  # upright: along y, neck up
        return [
            Part(_rect(-0.17, 0.5 - 0.62, 0.17, 0.5), main),
            Part(((-0.17, -0.12), (0.17, -0.12), (0.07, -0.3), (-0.07, -0.3)), main),
            Part(_rect(-0.07, -0.44, 0.07, -0.3), _shade(main, 0.9)),
            Part(_rect(-0.08, -0.5, 0.08, -0.43), (60, 60, 64)),
            Part(_rect(-0.17, 0.05, 0.17, 0.25), (235, 230, 210)),  # label
        ]
    if kind == "book":
        return [
            Part(_rect(-0.5, -0.36, 0.5, 0.36), main),
            Part(_rect(0.44, -0.33, 0.5, 0.33), (245, 242, 228)),  # page edge
            Part(_rect(-0.5, -0.36, -0.42, 0.36), _shade(main, 0.7)),  # spine
        ]
    if kind == "bread":
        body = _ellipse(0, 0, 0.5, 0.26, 32)
        crust = _shade(main, 0.75)
        cuts = [
            Part(((x - 0.05, -0.16), (x + 0.02, -0.16), (x + 0.1, 0.16), (x + 0.03, 0.16)), crust)
            for x in (-0.28, -0.06, 0.16)
        ]
        return [Part(body, main), *cuts]
    if kind == "banana":
        band = _arc_band(0.62, 0.47, math.radians(-145), math.radians(-35), 0.62)
        tip = _rect(-0.56, 0.21, -0.46, 0.3)  # the stalk end, over the band's left end
        return [Part(band, main), Part(tip, (70, 50, 25))]
    raise ValueError(f"unknown object kind {kind!r}; known: {', '.join(KINDS)}")


# --------------------------------------------------------------------------- rendering


def _polygon_mask(poly: Sequence[Point], w: int, h: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("1", (w, h), 0)
    ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in poly], fill=1, outline=1)
    return np.asarray(img, dtype=bool)


def _background(rng: np.random.Generator, style: str, w: int, h: int) -> np.ndarray:
    base = np.array(rng.integers(120, 235, size=3), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if style == "wood":
        base = np.array([rng.uniform(150, 200), rng.uniform(105, 140), rng.uniform(60, 90)])
        period = rng.uniform(10, 24)
        wave = 10 * np.sin((yy + 6 * np.sin(xx / rng.uniform(40, 90))) * 2 * math.pi / period)
        img = base[None, None, :] + wave[..., None]
    elif style == "tiles":
        step = int(rng.integers(40, 90))
        grout = ((xx.astype(int) % step) < 3) | ((yy.astype(int) % step) < 3)
        img = np.where(grout[..., None], base * 0.7, base)
    elif style == "cloth":
        step = int(rng.integers(16, 40))
        check = ((xx.astype(int) // step + yy.astype(int) // step) % 2).astype(np.float32)
        other = np.array(rng.integers(120, 235, size=3), np.float32)
        img = base * (1 - check[..., None]) + other * check[..., None]
    elif style == "marble":
        vein = np.sin((xx * rng.uniform(0.01, 0.03) + yy * rng.uniform(0.01, 0.03)) * 6) * 12
        img = np.full((h, w, 3), rng.uniform(195, 235), np.float32) + vein[..., None]
    elif style == "plain":
        img = np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    else:
        raise ValueError(f"unknown background {style!r}; known: {', '.join(BACKGROUNDS)}")
    ramp = np.linspace(-14, 14, w, dtype=np.float32)[None, :, None]
    return np.asarray(img, np.float32) + ramp


@dataclass
class RenderedScene:
    """A drawn scene: ``image`` H x W x 3 uint8 RGB; ``labels`` H x W uint8 (0 background,
    ``k + 1`` the visible pixels of ``objects[k]``); ``full`` the un-occluded mask of each object
    (H x W bool, as if alone on the table)."""

    image: np.ndarray
    labels: np.ndarray
    objects: list[SceneObject]
    full: list[np.ndarray] = field(repr=False)
    background: str = "plain"

    def mask(self, k: int) -> np.ndarray:
        """H x W bool: the visible pixels of ``objects[k]``."""
        return self.labels == k + 1

    def visible_fraction(self, k: int) -> float:
        """Visible / un-occluded pixels of ``objects[k]`` (0..1)."""
        full = int(self.full[k].sum())
        return float(self.mask(k).sum()) / full if full else 0.0


def render(
    objects: Sequence[SceneObject],
    size: tuple[int, int],
    rng: np.random.Generator,
    background: str = "plain",
    noise: float = 4.0,
) -> RenderedScene:
    """Draw ``objects`` in order (later ones on top) on ``background`` into a ``size`` = (W, H)
    image; ``rng`` draws the background's colours and the pixel noise (Gaussian, ``noise``
    grey levels standard deviation, the same on the three channels). Raises ``ValueError`` for
    a size under 32 x 32 or an unknown background."""
    w, h = (int(v) for v in size)
    if w < 32 or h < 32:
        raise ValueError(f"scene size must be at least 32 x 32, got {w} x {h}")
    img = _background(rng, background, w, h)
    labels = np.zeros((h, w), np.uint8)
    full: list[np.ndarray] = []
    for k, obj in enumerate(objects):
        whole = np.zeros((h, w), bool)
        for poly, rgb in obj.polygons():
            m = _polygon_mask(poly, w, h)
            img[m] = rgb
            whole |= m
        edge = whole & ~_eroded(whole)
        img[edge] *= 0.6  # a dark outline, inside the object's own pixels
        labels[whole] = k + 1
        full.append(whole)
    if noise > 0:
        img += rng.normal(0, noise, size=(h, w, 1)).astype(np.float32)
    image = np.clip(img, 0, 255).astype(np.uint8)
    return RenderedScene(image, labels, list(objects), full, background)


def _eroded(m: np.ndarray) -> np.ndarray:
    out = m.copy()
    out[1:, :] &= m[:-1, :]
    out[:-1, :] &= m[1:, :]
    out[:, 1:] &= m[:, :-1]
    out[:, :-1] &= m[:, 1:]
    return out


# --------------------------------------------------------------------------- random scenes

MIN_VISIBLE = 0.55
"""Least visible fraction of every object (partial occlusion only)."""


def random_object(
    rng: np.random.Generator,
    kind: str,
    colour: str,
    size: tuple[int, int],
    scale: tuple[float, float] = (0.28, 0.5),
) -> SceneObject:
    """``kind`` in ``colour`` at a random place inside the image (wholly), random length
    (``scale`` x min(W, H) x the kind's relative length) and rotation."""
    w, h = size
    length = float(rng.uniform(*scale)) * min(w, h) * KIND_LENGTH[kind]
    if kind in UPRIGHT:
        angle = float(rng.uniform(-0.35, 0.35))
    else:
        angle = float(rng.uniform(-math.pi, math.pi))
    probe = SceneObject(kind, colour, 0.0, 0.0, length, angle)
    x1, y1, x2, y2 = probe.extent()
    lo_x, hi_x = -x1 + 2, w - x2 - 3
    lo_y, hi_y = -y1 + 2, h - y2 - 3
    cx = float(rng.uniform(lo_x, hi_x)) if hi_x > lo_x else w / 2
    cy = float(rng.uniform(lo_y, hi_y)) if hi_y > lo_y else h / 2
    return SceneObject(kind, colour, cx, cy, length, angle)


def random_scene(
    rng: np.random.Generator,
    size: tuple[int, int],
    *,
    n_objects: tuple[int, int] = (4, 7),
    excluded: frozenset[tuple[str, str]] = frozenset(),
    required: tuple[str, str] | None = None,
    tries: int = 60,
) -> RenderedScene:
    """A random scene of ``n_objects`` (min, max) objects: 2-4 kinds, most with 2 or 3
    instances (so that a kind alone rarely names one object), random colours from
    :data:`KIND_COLOURS` minus the ``excluded`` (colour, kind) pairs, random background. Objects
    that would be hidden beyond :data:`MIN_VISIBLE` are placed again (up to ``tries`` times,
    then left out). ``required``: a (colour, kind) pair the scene holds (its first object).
    Raises ``ValueError`` for a bad ``n_objects`` or ``required``."""
    lo, hi = n_objects
    if not 1 <= lo <= hi:
        raise ValueError(f"n_objects must be (min, max) with 1 <= min <= max, got {n_objects}")
    count = int(rng.integers(lo, hi + 1))
    n_kinds = int(rng.integers(2, min(4, count) + 1)) if count >= 2 else 1
    kinds = [KINDS[int(i)] for i in rng.permutation(len(KINDS))[:n_kinds]]
    chosen: list[tuple[str, str]] = []
    if required is not None:
        colour, kind = required
        if kind not in KIND_COLOURS or colour not in KIND_COLOURS[kind]:
            raise ValueError(f"required must be a (colour, kind) of KIND_COLOURS, got {required}")
        if kind not in kinds:
            kinds[0] = kind
        chosen.append((kind, colour))
    for k in range(len(chosen), count):
        kind = kinds[k % n_kinds] if k < n_kinds else kinds[int(rng.integers(n_kinds))]
        colours = [c for c in KIND_COLOURS[kind] if (c, kind) not in excluded]
        chosen.append((kind, colours[int(rng.integers(len(colours)))]))
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    w, h = size
    placed: list[SceneObject] = []
    full: list[np.ndarray] = []
    visible: list[np.ndarray] = []
    for kind, colour in chosen:
        for _ in range(tries):
            obj = random_object(rng, kind, colour, size)
            m = object_mask(obj, w, h)
            area = int(m.sum())
            still = [v & ~m for v in visible]
            if area and all(
                int(v.sum()) >= MIN_VISIBLE * int(f.sum()) for v, f in zip(still, full, strict=True)
            ):
                placed.append(obj)
                full.append(m)
                visible = [*still, m]
                break
    return render(placed, size, rng, background)


def object_mask(obj: SceneObject, w: int, h: int) -> np.ndarray:
    """H x W bool: every pixel of ``obj`` alone (no occlusion)."""
    m = np.zeros((h, w), bool)
    for poly, _ in obj.polygons():
        m |= _polygon_mask(poly, w, h)
    return m


__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "KINDS",
    "KIND_COLOURS",
    "MIN_VISIBLE",
    "Part",
    "RenderedScene",
    "SceneObject",
    "object_mask",
    "object_parts",
    "random_object",
    "random_scene",
    "render",
]
