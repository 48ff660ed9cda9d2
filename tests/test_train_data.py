"""Ground truth from masks, the synthetic set and the dataset loaders (segzero_train)."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segzero_train import datasets, gt
from segzero_train.rewards import GroundTruth, multi_object_rewards, segzero_rewards
from segzero_train.synthetic import make_sample, make_synthetic_set

# ---------------------------------------------------------------- gt.py (hand-computed)


def rect_mask(h: int, w: int, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


def test_box_and_inscribed_point_rectangle() -> None:
    m = rect_mask(10, 20, 3, 2, 11, 6)  # 9 x 5 rectangle
    assert gt.tight_box(m) == (3, 2, 11, 6)
    # distance 3 on row 4 for columns 5..9 (3 from rows 1 and 7); first in row-major: (5, 4)
    assert gt.inscribed_point(m) == (5, 4)
    g = gt.ground_truth_from_mask(m)
    # x: int(v * 840 / 20 + 0.5), y: int(v * 840 / 10 + 0.5)
    assert g.boxes == [(126, 168, 462, 504)]
    assert g.points == [(210, 336)]


def test_point_is_on_a_non_convex_mask() -> None:
    m = np.zeros((30, 30), bool)
    m[2:28, 2:8] = True  # U shape: the centroid (15, ~19) is off the mask
    m[2:28, 22:28] = True
    m[22:28, 2:28] = True
    x, y = gt.inscribed_point(m)
    assert m[y, x], (x, y)
    ys, xs = np.nonzero(m)
    assert not m[int(ys.mean()), int(xs.mean())]  # the centroid would have been wrong


def test_border_counts_as_boundary_and_empty_masks() -> None:
    assert gt.inscribed_point(np.ones((5, 5), bool)) == (2, 2)
    assert gt.tight_box(np.zeros((4, 4), bool)) is None
    assert gt.ground_truth_from_mask(np.zeros((4, 4), bool)) == GroundTruth([], [])
    u8 = np.full((4, 4), 255, np.uint8)  # ignore pixels are not foreground
    u8[1, 2] = 1
    assert gt.tight_box(u8) == (2, 1, 2, 1)
    assert gt.to_frame(839.9, 840) == 839  # clamped into the frame
    with pytest.raises(ValueError, match="2-D"):
        gt.tight_box(np.zeros((2, 2, 2)))


def test_instances_keep_order_and_skip_empty() -> None:
    a = rect_mask(84, 84, 0, 0, 9, 9)
    b = rect_mask(84, 84, 50, 60, 59, 69)
    g = gt.ground_truth_from_masks([b, np.zeros((84, 84), bool), a])
    assert g.boxes == [(500, 600, 590, 690), (0, 0, 90, 90)]
    assert len(g.points) == 2


# ---------------------------------------------------------------- synthetic set


def test_synthetic_is_deterministic_and_atomic(tmp_path: Path) -> None:
    a = make_synthetic_set(tmp_path / "a", 3, seed=5, image_size=(96, 80))
    b = make_synthetic_set(tmp_path / "b", 3, seed=5, image_size=(96, 80))
    c = make_synthetic_set(tmp_path / "c", 3, seed=6, image_size=(96, 80))
    names = sorted(p.name for p in a.iterdir())
    expected = [f"{i:06d}.{s}" for i in range(3) for s in ("jpg", "json")]
    assert names == sorted([*expected, "manifest.json"])
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    assert (a / "000000.json").read_bytes() != (c / "000000.json").read_bytes()
    with pytest.raises(FileExistsError):
        make_synthetic_set(a, 1)
    make_synthetic_set(a, 1, seed=5, image_size=(96, 80), overwrite=True)
    assert len(list(a.glob("*.jpg"))) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temp folders left
    with pytest.raises(ValueError, match="n must be"):
        make_synthetic_set(tmp_path / "d", 0)


def test_synthetic_samples_are_consistent(train_f1_synth_dir: Path) -> None:
    samples = list(datasets.iter_reasonseg(train_f1_synth_dir))
    assert len(samples) == 16
    assert {s.is_sentence for s in samples} == {True, False}
    assert any((s.mask == 255).any() for s in samples), "no ignore region in 16 samples"
    for s in samples:
        meta = json.loads((train_f1_synth_dir / f"{s.name}.json").read_text())
        assert s.query == meta["text"][0] and len(meta["text"]) == 2
        assert s.query[0].isupper() == s.is_sentence  # sentences are capitalised
        assert {r.label for r in s.regions} <= {"target", "ignore"}
        img = s.load_image()
        g = s.ground_truth
        assert len(g.boxes) == 1 and s.target.sum() > 20
        # the inscribed point lies on a saturated (shape-coloured) pixel of the image
        x, y = gt.inscribed_point(s.target)
        rgb = img[y, x].astype(int)
        assert rgb.max() - rgb.min() > 60, (s.name, rgb)
        # a perfect answer from the ground truth scores 5
        text = (
            f"<think>x</think><answer>"
            f'[{{"bbox_2d": {list(g.boxes[0])}, "point_2d": {list(g.points[0])}}}]</answer>'
        )
        assert segzero_rewards(text, g)["total"] == 5.0
        inst = s.instances
        assert len(inst.boxes) == sum(r.label == "target" for r in s.regions)
        # a perfect multi-object answer from the per-instance ground truth scores 7
        items = [
            {"bbox_2d": list(b), "point_2d": list(p)}
            for b, p in zip(inst.boxes, inst.points, strict=True)
        ]
        multi = multi_object_rewards(f"<think>x</think><answer>{json.dumps(items)}</answer>", inst)
        assert multi["total"] == 7.0, (s.name, multi)
    assert any(len(s.instances.boxes) > 1 for s in samples), "no multi-target sample"


@pytest.mark.parametrize("index", range(40))
def test_synthetic_relations_hold(index: int) -> None:
    img, meta = make_sample(1, index, (200, 160))
    assert img.size == (200, 160)
    scene = {s["name"]: s for s in meta["scene"]}
    (target,) = [s for s in meta["shapes"] if s["label"] == "target"]
    cx = np.mean([p[0] for p in target["points"]])
    cy = np.mean([p[1] for p in target["points"]])
    phrase = meta["text"][1] if meta["is_sentence"] else meta["text"][0]
    m = re.fullmatch(r"the shape (left|right|above|below) of the (\w+ \w+)", phrase)
    if m:
        ref = scene[m.group(2)]
        dx, dy = cx - ref["cx"], cy - ref["cy"]
        ok = {"left": dx < 0, "right": dx > 0, "above": dy < 0, "below": dy > 0}[m.group(1)]
        assert ok, (phrase, dx, dy)
    m = re.fullmatch(r"the (\w+) (circle|square|triangle|diamond)", phrase)
    if m and m.group(1) not in ("leftmost", "rightmost", "topmost", "lowest", "largest"):
        r = scene[f"{m.group(1)} {m.group(2)}"]
        assert abs(r["cx"] - cx) < 2 and abs(r["cy"] - cy) < 2, phrase


# ---------------------------------------------------------------- ReasonSeg loader


def write_reasonseg(folder: Path, name: str, shapes: list[dict], size=(20, 10), **meta) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (0, 0, 0)).save(folder / f"{name}.jpg")
    doc = {"text": meta.pop("text", ["the box", "alt"]), "is_sentence": False, "shapes": shapes}
    doc.update(meta)
    (folder / f"{name}.json").write_text(json.dumps(doc))


RECT = [[2, 2], [11, 2], [11, 6], [2, 6]]  # filled with its outline: 10 x 5 = 50 pixels
SMALL = [[4, 3], [5, 3], [5, 4], [4, 4]]  # 2 x 2 = 4 pixels


def test_reasonseg_mask_ignore_flag_and_order(tmp_path: Path) -> None:
    shapes = [
        {"label": "ignore", "points": SMALL},  # listed first, drawn after the larger target
        {"label": "target", "points": RECT},
        {"label": "flag", "points": [[0, 0], [19, 0], [19, 9], [0, 9]]},  # skipped
    ]
    write_reasonseg(tmp_path, "a", shapes, text=["What is here?", "the box"], is_sentence=True)
    (tmp_path / "manifest.json").write_text("{}")  # no image: skipped
    (tmp_path / "lonely.json").write_text("{}")
    (s,) = list(datasets.iter_reasonseg(tmp_path))
    assert s.query == "What is here?" and s.is_sentence and s.size == (20, 10)
    values, counts = np.unique(s.mask, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == {0: 150, 1: 46, 255: 4}
    assert s.ground_truth.boxes == [(84, 168, 462, 504)]  # (2,2,11,6) * (42, 84)


def test_reasonseg_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        list(datasets.iter_reasonseg(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no ReasonSeg samples"):
        list(datasets.iter_reasonseg(tmp_path))
    write_reasonseg(tmp_path, "b", [{"label": "target", "points": [[1, 2], "x"]}])
    with pytest.raises(ValueError, match=r"b\.json: shape 0"):
        list(datasets.iter_reasonseg(tmp_path))
    write_reasonseg(tmp_path, "b", [], text=[])
    with pytest.raises(ValueError, match="'text' must be"):
        list(datasets.iter_reasonseg(tmp_path))


# ---------------------------------------------------------------- RefCOCO loader


@pytest.mark.parametrize("refs_format", ["json", "pickle"])
def test_refcoco_loader(tmp_path: Path, refs_format: str) -> None:
    images = tmp_path / "train2014"
    images.mkdir()
    Image.new("RGB", (20, 10)).save(images / "im1.jpg")
    coco = {
        "images": [{"id": 1, "file_name": "im1.jpg", "height": 10, "width": 20}],
        "annotations": [
            {"id": 7, "image_id": 1, "segmentation": [[2, 2, 11, 2, 11, 6, 2, 6]]},
            {"id": 8, "image_id": 1, "segmentation": {"counts": "x", "size": [10, 20]}},
        ],
    }
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    refs = [
        {"ref_id": 1, "ann_id": 7, "image_id": 1, "split": "val",
         "sentences": [{"sent": "the box", "sent_id": 10}, {"sent": "dark square", "sent_id": 11}]},
        {"ref_id": 2, "ann_id": 7, "image_id": 1, "split": "train",
         "sentences": [{"sent": "train only"}]},
    ]  # fmt: skip
    refs_file = tmp_path / ("refs.json" if refs_format == "json" else "refs(umd).p")
    if refs_format == "json":
        refs_file.write_text(json.dumps(refs))
    else:
        refs_file.write_bytes(pickle.dumps(refs))
    samples = list(datasets.iter_refcoco(tmp_path / "instances.json", refs_file, images, "val"))
    assert [s.query for s in samples] == ["the box", "dark square"]
    assert datasets.refcoco_layout(tmp_path) == (tmp_path / "instances.json", refs_file, images)
    assert [s.query for s in datasets.iter_folder(tmp_path, split="train")] == ["train only"]
    assert not samples[0].is_sentence
    assert int(samples[0].mask.sum()) == 50
    assert samples[0].load_image().shape == (10, 20, 3)
    assert (
        len(
            list(
                datasets.iter_refcoco(
                    tmp_path / "instances.json", refs_file, images, "val", limit=1
                )
            )
        )
        == 1
    )
    refs[0]["ann_id"] = 8
    (tmp_path / "refs2.json").write_text(json.dumps(refs))
    with pytest.raises(ValueError, match="RLE"):
        list(datasets.iter_refcoco(tmp_path / "instances.json", tmp_path / "refs2.json", images))


# ---------------------------------------------------------------- Seg-Zero's released sets


def test_parse_solution_both_published_forms() -> None:
    from segzero_train.data import parse_solution

    v1 = parse_solution("<box>(10,20),(300,400)</box><points>(50,60),(70,80)</points>")
    assert v1.boxes == [(10, 20, 300, 400)] and v1.points == [(50, 60), (70, 80)]
    multi = parse_solution(
        '[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}, '
        '{"bbox_2d": [100, 200, 300, 400], "point_2d": [150, 250]}]'
    )
    assert multi.boxes == [(1, 2, 3, 4), (100, 200, 300, 400)]
    assert multi.points == [(2, 3), (150, 250)]
    assert parse_solution("[]").boxes == []
    for bad, match in (
        ("a box", "unreadable solution"),
        ('{"bbox_2d": [1, 2, 3, 4]}', "list of objects"),
        ('[{"bbox_2d": [1, 2, 3]}]', "bbox_2d/point_2d"),
    ):
        with pytest.raises(ValueError, match=match):
            parse_solution(bad)


def test_segzero_set_rows_for_grpo_and_sft(train_f1_synth_dir: Path, tmp_path: Path) -> None:
    import datasets as hf

    from segzero_train.data import load_segzero_set, open_source, target_text, training_dataset
    from tests.fixtures.train_data import write_segzero_set

    folder = write_segzero_set(train_f1_synth_dir, tmp_path / "disk", size=168)
    samples = [s for s in datasets.iter_reasonseg(train_f1_synth_dir)]
    ds = training_dataset(folder, image_size=56, completion=True)
    # multi-target samples have one union target; every sample has one
    assert len(ds) == len(samples)
    for k in (0, 1):  # <box> form, then JSON form
        row, want = ds[k], gt.ground_truth_from_mask(samples[k].target)
        assert row["query"] == samples[k].query
        assert row["gt_boxes"] == [list(want.boxes[0])]
        assert row["gt_points"][0] == list(want.points[0])
        assert row["image"].size == (56, 56) and row["image"].mode == "RGB"
        assert row["completion"] == [{"role": "assistant", "content": target_text(want)}]
    assert len(ds[0]["gt_points"]) == 2 and len(ds[1]["gt_points"]) == 1
    # the same set as a hub snapshot (parquet files under data/) loads the same rows
    parquet = tmp_path / "snapshot"
    (parquet / "data").mkdir(parents=True)
    hf.load_from_disk(str(folder))["train"].to_parquet(str(parquet / "data" / "train-0.parquet"))
    assert training_dataset(parquet, image_size=56)["gt_boxes"] == ds["gt_boxes"]
    assert open_source(folder).hf is not None and open_source(train_f1_synth_dir).hf is None
    # the multi-object reward needs one point per box: the <box> form has two
    with pytest.raises(ValueError, match="one point per box"):
        training_dataset(folder, image_size=56, per_instance=True)
    with pytest.raises(ValueError, match="no split 'test'"):
        load_segzero_set(folder, "test")
    hf.Dataset.from_dict({"problem": ["x"]}).save_to_disk(str(tmp_path / "other"))
    with pytest.raises(ValueError, match="missing column"):
        load_segzero_set(tmp_path / "other")
    with pytest.raises(ValueError, match="not found"):
        open_source(tmp_path / "nope")


def test_region_queries_name_the_grid_cell() -> None:
    from segzero_train.synthetic import REGIONS

    for i in range(20):
        _, meta = make_sample(3, i, (224, 168), shapes=(1, 1), query_kinds=("region",))
        (shape,) = meta["scene"]
        region = REGIONS[int(shape["cy"] * 3 // 168)][int(shape["cx"] * 3 // 224)]
        assert any(f"{shape['name']} in the {region}" in t for t in meta["text"]), meta
        assert len([r for r in meta["shapes"] if r["label"] == "target"]) == 1
    with pytest.raises(ValueError, match="query_kinds"):
        make_synthetic_set("/nonexistent/x", 1, query_kinds=("colour",))
