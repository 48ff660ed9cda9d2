"""Loaders for ReasonSeg-style folders and RefCOCO(g)-style annotations.

Both yield :class:`SegSample`: image path, query, ``is_sentence``, and on demand the image
(H x W x 3 uint8), the mask (H x W uint8: 1 target, 0 background, 255 ignore) and the ground
truth in the 840 frame (:mod:`segzero_train.gt`).

ReasonSeg folder (``iter_reasonseg``): ``NAME.jpg`` + ``NAME.json`` pairs (JSON files without a
same-named image, e.g. ``manifest.json``, are skipped). JSON: ``text`` (list; ``text[0]`` is
the query), ``is_sentence``, ``shapes`` (``label``, polygon ``points`` ``[[x, y], ...]``).
Rasterisation follows LISA's and Seg-Zero's own code (:func:`rasterise`: int32 polygons drawn
with OpenCV, largest area first); labels containing ``"ignore"`` -> 255, ``"flag"`` skipped, any
other label -> 1 (target).

RefCOCO(g) (``iter_refcoco``): the files of the refer toolkit layout:

- ``instances.json``: COCO instances (``images`` with ``id``, ``file_name``, ``height``,
  ``width``; ``annotations`` with ``id``, ``image_id`` and polygon ``segmentation``
  ``[[x1, y1, x2, y2, ...], ...]``; RLE segmentations are refused with a clear error);
- ``refs(umd).p`` (pickle) or a ``.json`` file: a list of refs with ``ref_id``, ``ann_id``,
  ``image_id``, ``split`` and ``sentences`` (each with ``sent``);
- the COCO ``train2014`` image folder.

One sample per (ref, sentence), ``is_sentence = False``, as in the referring benchmarks.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .rewards import GroundTruth

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IGNORE_VALUE = 255

Polygon = list[tuple[float, float]]


@dataclass(frozen=True)
class Region:
    """One labelled polygon; ``group`` ties the polygons of one instance together."""

    label: str
    polygon: tuple[tuple[float, float], ...]
    group: Any = None


def _label_value(label: str) -> int | None:
    """LISA's rule: ``"flag"`` skipped, any label containing ``"ignore"`` -> 255, others -> 1."""
    low = label.lower()
    if low == "flag":
        return None
    return IGNORE_VALUE if "ignore" in low else 1


def _draw(canvas: np.ndarray, polygon: tuple[tuple[float, float], ...], value: int) -> None:
    import cv2

    pts = np.array([polygon], dtype=np.int32)  # truncates, as LISA and Seg-Zero do
    cv2.polylines(canvas, pts, True, value, 1)
    cv2.fillPoly(canvas, pts, value)


def rasterise(regions: list[Region], size: tuple[int, int]) -> np.ndarray:
    """H x W uint8 mask: targets 1, ignore 255, flag skipped.

    LISA's ``utils/data_processing.py`` ``get_mask_from_json`` (also Seg-Zero's
    ``evaluation_scripts/create_reasonseg_hf.py``): every polygon is cast to int32, drawn with
    ``cv2.polylines`` (thickness 1) and ``cv2.fillPoly``; polygons are painted in decreasing
    order of their drawn area (``np.argsort(areas)[::-1]``), so smaller ones paint over larger.
    """
    w, h = size
    drawn = [(r, v) for r in regions if (v := _label_value(r.label)) is not None and r.polygon]
    areas = []
    for r, _ in drawn:
        tmp = np.zeros((h, w), np.uint8)
        _draw(tmp, r.polygon, 1)
        areas.append(int(tmp.sum()))
    mask = np.zeros((h, w), np.uint8)
    for k in np.argsort(areas)[::-1]:
        region, value = drawn[int(k)]
        _draw(mask, region.polygon, value)
    return mask


@dataclass
class SegSample:
    """One evaluation / training sample."""

    image_path: Path
    query: str
    is_sentence: bool
    regions: list[Region]
    size: tuple[int, int]  # (W, H)
    texts: list[str] = field(default_factory=list)
    name: str = ""
    reasoning: str = ""
    """Thinking text of the annotation (its ``reasoning`` field; ``""`` for ReasonSeg's own)."""

    @cached_property
    def mask(self) -> np.ndarray:
        """H x W uint8: 1 target, 0 background, 255 ignore."""
        return rasterise(self.regions, self.size)

    @property
    def target(self) -> np.ndarray:
        """H x W bool target mask (ignore pixels excluded)."""
        return self.mask == 1

    def load_image(self) -> np.ndarray:
        """The image as H x W x 3 uint8 RGB."""
        from segzero_edge.image import load_image

        img = load_image(self.image_path)
        if (img.shape[1], img.shape[0]) != self.size:
            raise ValueError(
                f"{self.image_path}: image is {img.shape[1]} x {img.shape[0]} but the annotation "
                f"says {self.size[0]} x {self.size[1]}"
            )
        return img

    @cached_property
    def ground_truth(self) -> GroundTruth:
        """The whole target as one object (tight box, inscribed point) in the 840 frame."""
        from .gt import ground_truth_from_mask

        return ground_truth_from_mask(self.target)

    def instance_masks(self) -> list[np.ndarray]:
        """One bool mask per target instance (polygons sharing a group; ungrouped ones alone)."""
        groups: dict[Any, list[Region]] = {}
        for k, r in enumerate(self.regions):
            if _label_value(r.label) != 1:
                continue
            groups.setdefault(r.group if r.group is not None else ("solo", k), []).append(r)
        ignore = [r for r in self.regions if _label_value(r.label) == IGNORE_VALUE]
        return [rasterise(g + ignore, self.size) == 1 for g in groups.values()]

    @property
    def instances(self) -> GroundTruth:
        """One object per target instance in the 840 frame (for the multi-object reward)."""
        from .gt import ground_truth_from_masks

        return ground_truth_from_masks(self.instance_masks())


# --------------------------------------------------------------------------- ReasonSeg


def _image_size(path: Path) -> tuple[int, int]:
    """(W, H) as the runtime loads the image: EXIF orientation applied (LabelMe, which made the
    ReasonSeg polygons, applies it too), read from the header."""
    from segzero_edge.image import image_size

    return image_size(path)


def _regions_from_shapes(shapes: Any, where: Path) -> list[Region]:
    if not isinstance(shapes, list):
        raise ValueError(f"{where}: 'shapes' must be a list")
    out = []
    for k, s in enumerate(shapes):
        try:
            label = str(s.get("label", "target"))
            poly = tuple((float(x), float(y)) for x, y in s["points"])
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: shape {k} has no valid polygon 'points' ({e})") from None
        out.append(Region(label=label, polygon=poly, group=s.get("group_id")))
    return out


def load_reasonseg_sample(json_path: str | Path, image_path: str | Path | None = None) -> SegSample:
    """One ReasonSeg sample from its JSON (the image is the same-named JPG/PNG)."""
    json_path = Path(json_path)
    if image_path is None:
        found = [
            json_path.with_suffix(s) for s in IMAGE_SUFFIXES if json_path.with_suffix(s).is_file()
        ]
        if not found:
            raise FileNotFoundError(f"no image next to {json_path}")
        image_path = found[0]
    image_path = Path(image_path)
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read ReasonSeg JSON {json_path}: {e}") from None
    texts = meta.get("text") if isinstance(meta, dict) else None
    if isinstance(texts, str):
        texts = [texts]
    if not texts or not isinstance(texts, list) or not isinstance(texts[0], str):
        raise ValueError(f"{json_path}: 'text' must be a non-empty list of strings")
    return SegSample(
        image_path=image_path,
        query=texts[0],
        is_sentence=bool(meta.get("is_sentence", False)),
        regions=_regions_from_shapes(meta.get("shapes", []), json_path),
        size=_image_size(image_path),
        texts=list(texts),
        name=json_path.stem,
        reasoning=str(meta.get("reasoning") or ""),
    )


def reasonseg_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """Sorted (image, json) pairs of a ReasonSeg folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"ReasonSeg folder not found: {folder}")
    pairs = []
    for j in sorted(folder.glob("*.json")):
        for s in IMAGE_SUFFIXES:
            if j.with_suffix(s).is_file():
                pairs.append((j.with_suffix(s), j))
                break
    return pairs


def iter_reasonseg(folder: str | Path, limit: int | None = None) -> Iterator[SegSample]:
    """Samples of a ReasonSeg folder in file-name order (at most ``limit``)."""
    pairs = reasonseg_pairs(folder)
    if not pairs:
        raise ValueError(f"no ReasonSeg samples (image + JSON pairs) in {folder}")
    for image, js in pairs[:limit] if limit is not None else pairs:
        yield load_reasonseg_sample(js, image)


# --------------------------------------------------------------------------- RefCOCO(g)


def _load_refs(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".json":
        refs = json.loads(path.read_text())
    else:
        with path.open("rb") as f:
            refs = pickle.load(f)  # the refer toolkit's refs(umd).p; only load trusted files
    if not isinstance(refs, list):
        raise ValueError(f"{path}: expected a list of refs")
    return refs


def _coco_regions(ann: dict[str, Any], where: str) -> list[Region]:
    seg = ann.get("segmentation")
    if not isinstance(seg, list):
        raise ValueError(
            f"{where}: annotation {ann.get('id')} has an RLE segmentation (unsupported)"
        )
    regions = []
    for flat in seg:
        if len(flat) < 6 or len(flat) % 2:
            continue
        poly = tuple((float(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2))
        regions.append(Region(label="target", polygon=poly, group=ann.get("id")))
    return regions


def iter_refcoco(
    instances_file: str | Path,
    refs_file: str | Path,
    image_dir: str | Path,
    split: str = "val",
    limit: int | None = None,
) -> Iterator[SegSample]:
    """One sample per (ref, sentence) of ``split``; see the module docstring for the files."""
    instances_file, refs_file, image_dir = Path(instances_file), Path(refs_file), Path(image_dir)
    for p in (instances_file, refs_file):
        if not p.is_file():
            raise FileNotFoundError(f"RefCOCO annotation file not found: {p}")
    coco = json.loads(instances_file.read_text())
    images = {im["id"]: im for im in coco.get("images", [])}
    anns = {a["id"]: a for a in coco.get("annotations", [])}
    count = 0
    for ref in _load_refs(refs_file):
        if ref.get("split") != split:
            continue
        ann = anns.get(ref["ann_id"])
        im = images.get(ref["image_id"])
        if ann is None or im is None:
            raise ValueError(
                f"{refs_file}: ref {ref.get('ref_id')} names a missing annotation/image"
            )
        regions = _coco_regions(ann, str(instances_file))
        for sent in ref.get("sentences", []):
            if limit is not None and count >= limit:
                return
            text = sent.get("sent") or sent.get("raw") or ""
            yield SegSample(
                image_path=image_dir / im["file_name"],
                query=text,
                is_sentence=False,
                regions=regions,
                size=(int(im["width"]), int(im["height"])),
                texts=[text],
                name=f"ref{ref.get('ref_id')}_{sent.get('sent_id', count)}",
            )
            count += 1


REFCOCO_REFS = ("refs(umd).p", "refs(unc).p", "refs(google).p", "refs.p", "refs.json")
REFCOCO_IMAGE_DIRS = ("train2014", "images")


def refcoco_layout(folder: str | Path) -> tuple[Path, Path, Path] | None:
    """``(instances.json, refs file, image folder)`` when ``folder`` holds a RefCOCO layout."""
    folder = Path(folder)
    inst = folder / "instances.json"
    refs = next((folder / r for r in REFCOCO_REFS if (folder / r).is_file()), None)
    images = next((folder / d for d in REFCOCO_IMAGE_DIRS if (folder / d).is_dir()), None)
    if inst.is_file() and refs is not None and images is not None:
        return inst, refs, images
    return None


def iter_folder(
    folder: str | Path, split: str = "val", limit: int | None = None
) -> Iterator[SegSample]:
    """A RefCOCO layout (``instances.json`` + ``refs(umd).p``/``refs.json`` + ``train2014/``
    or ``images/``) when ``folder`` has one, else a ReasonSeg folder."""
    layout = refcoco_layout(folder)
    if layout is not None:
        return iter_refcoco(*layout, split=split, limit=limit)
    return iter_reasonseg(folder, limit=limit)


__all__ = [
    "Region",
    "SegSample",
    "iter_folder",
    "iter_reasonseg",
    "iter_refcoco",
    "load_reasonseg_sample",
    "rasterise",
    "reasonseg_pairs",
    "refcoco_layout",
]
