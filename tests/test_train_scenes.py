"""The scene task (segzero_train.scenes / scene_queries / scene_set / scene_controls): drawing,
exact masks, queries, splits, the ReasonSeg JSON and the query-only control."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from segzero_train import scene_controls, scene_queries, scene_set, scenes
from segzero_train.datasets import SegSample, _regions_from_shapes, load_reasonseg_sample

SMALL = (224, 168)


def in_memory_sample(split: str, index: int, seed: int = 0) -> tuple[SegSample, dict]:
    """A sample as the loader reads it, without writing the image (its path is never opened)."""
    scene, query = scene_set.make_sample(seed, split, index, SMALL)
    meta = scene_set.sample_json(scene, query, f"{index:06d}.jpg", split, None)
    sample = SegSample(
        image_path=Path(f"/nonexistent/{split}/{index:06d}.jpg"),
        query=meta["text"][0],
        is_sentence=meta["is_sentence"],
        regions=_regions_from_shapes(meta["shapes"], Path("mem")),
        size=SMALL,
        name=f"{index:06d}",
    )
    return sample, meta


# ---------------------------------------------------------------- drawing


def test_same_seed_same_sample_and_another_index_differs() -> None:
    a_scene, a_query = scene_set.make_sample(3, "train", 5, SMALL)
    b_scene, b_query = scene_set.make_sample(3, "train", 5, SMALL)
    c_scene, _ = scene_set.make_sample(3, "train", 6, SMALL)
    assert np.array_equal(a_scene.image, b_scene.image)
    assert np.array_equal(a_scene.labels, b_scene.labels)
    assert a_query == b_query
    assert not np.array_equal(a_scene.image, c_scene.image)


def test_labels_are_exactly_the_pixels_each_object_shows() -> None:
    """Without noise on a plain background, every pixel labelled k + 1 has one of object k's
    part colours (or its outline shade) and every unlabelled pixel is background."""
    rng = np.random.default_rng(0)
    objs = [
        scenes.SceneObject("plate", "blue", 80, 80, 90, 0.0),
        scenes.SceneObject("knife", "red", 110, 90, 150, 0.5),  # over the plate
        scenes.SceneObject("apple", "green", 200, 140, 40, 0.0),
    ]
    rs = scenes.render(objs, SMALL, rng, background="plain", noise=0.0)
    bg = scenes.render([], SMALL, np.random.default_rng(0), background="plain", noise=0.0)
    img = rs.image.astype(int)
    assert np.array_equal(img[rs.labels == 0], bg.image.astype(int)[rs.labels == 0])
    for k, obj in enumerate(objs):
        colours = {rgb for _, rgb in obj.polygons()}
        allowed = {tuple(c) for c in colours} | {tuple(int(v * 0.6) for v in c) for c in colours}
        seen = {tuple(p) for p in img[rs.mask(k)]}
        assert seen and seen <= allowed, (obj.kind, seen - allowed)
    # the knife hides part of the plate; the plate keeps the rest
    assert 0 < rs.visible_fraction(0) < 1
    assert rs.visible_fraction(1) == 1.0
    assert np.array_equal(rs.full[1], scenes.object_mask(objs[1], *SMALL))
    assert not (rs.mask(0) & rs.full[1]).any()


def test_random_scenes_keep_objects_mostly_visible_and_inside() -> None:
    for i in range(6):
        rs = scenes.random_scene(np.random.default_rng([9, i]), SMALL)
        assert len(rs.objects) >= 3
        assert len({o.kind for o in rs.objects}) >= 2
        for k, o in enumerate(rs.objects):
            assert rs.visible_fraction(k) >= scenes.MIN_VISIBLE
            assert o.colour in scenes.KIND_COLOURS[o.kind]


def test_bad_objects_and_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown object kind"):
        scenes.SceneObject("teapot", "red", 1, 1, 10, 0)
    with pytest.raises(ValueError, match="unknown colour"):
        scenes.SceneObject("cup", "teal", 1, 1, 10, 0)
    with pytest.raises(ValueError, match="at least 32"):
        scenes.render([], (16, 16), np.random.default_rng(0))
    with pytest.raises(ValueError, match="required"):
        scenes.random_scene(np.random.default_rng(0), SMALL, required=("blue", "banana"))


# ---------------------------------------------------------------- queries


def hand_scene() -> scenes.RenderedScene:
    objs = [
        scenes.SceneObject("cup", "blue", 30, 84, 40, 0.0),  # 0: far left
        scenes.SceneObject("plate", "white", 112, 84, 50, 0.0),  # 1: middle
        scenes.SceneObject("cup", "yellow", 190, 84, 40, 0.0),  # 2: right
        scenes.SceneObject("book", "green", 112, 25, 50, 0.0),  # 3: top middle
    ]
    return scenes.render(objs, SMALL, np.random.default_rng(0))


def test_spatial_relations_pick_the_right_object() -> None:
    qs = {q.text: q for q in scene_queries.candidates(hand_scene(), "relation")}
    assert qs["the cup left of the plate"].targets == (0,)
    assert qs["the cup right of the plate"].targets == (2,)
    assert qs["the leftmost cup"].targets == (0,)
    assert qs["the rightmost cup"].targets == (2,)
    assert qs["the cup on the left side of the plate"].held_out_phrasing
    # the cups and the plate share one row: no cup is above or below the plate
    assert "the cup above the plate" not in qs and "the cup below the plate" not in qs
    assert qs["the cup left of the plate"].ref == 1


def test_names_uses_multi_and_none_families() -> None:
    rs = hand_scene()
    names = {q.text: q for q in scene_queries.candidates(rs, "name")}
    assert names["the yellow cup"].targets == (2,)
    assert names["the yellow cup"].pairs == {("yellow", "cup")}
    assert "the white plate" not in names  # the only plate: its kind alone names it
    uses = {q.text: q for q in scene_queries.candidates(rs, "use")}
    assert uses["something to drink from"].targets == (0, 2)
    assert uses["something to read"].targets == (3,)
    assert "the thing I can use to cut the bread" not in uses  # no knife
    multi = {q.text: q for q in scene_queries.candidates(rs, "multi")}
    assert multi["all the cups"].targets == (0, 2)
    none = {q.text: q for q in scene_queries.candidates(rs, "none")}
    assert none["the green cup"].targets == ()
    assert "the blue cup" not in none


def test_relation_targets_satisfy_the_relation_on_random_scenes() -> None:
    """Every relation query of random scenes: its one target is on the named side of the
    reference's visible centroid, and every other object of its kind is on the other side."""
    checked = 0
    for i in range(12):
        rs = scenes.random_scene(np.random.default_rng([4, i]), SMALL)
        objs = scene_queries.placements(rs)
        for q in scene_queries.candidates(rs, "relation"):
            rel = scene_queries.RELATION_OF[q.template]
            if rel not in ("left", "right", "above", "below"):
                continue
            kind, ref = rs.objects[q.targets[0]].kind, q.ref
            assert ref is not None and rs.objects[ref].kind in q.text
            axis, sign = {"left": (0, -1), "right": (0, 1), "above": (1, -1), "below": (1, 1)}[rel]

            def offset(k: int, axis=axis, sign=sign, ref=ref, objs=objs) -> float:
                a, b = objs[k], objs[ref]
                return sign * ((a.cx - b.cx) if axis == 0 else (a.cy - b.cy))

            same = [k for k, o in enumerate(rs.objects) if o.kind == kind and k != ref]
            assert offset(q.targets[0]) > 0
            assert all(offset(k) < 0 for k in same if k != q.targets[0])
            checked += 1
    assert checked >= 3


def test_splits_keep_compositions_and_phrasings_apart() -> None:
    train = [scene_set.make_sample(0, "train", i, SMALL) for i in range(30)]
    held = [scene_set.make_sample(0, "heldout_compositions", i, SMALL) for i in range(30)]
    train_texts = {q.text.lower() for _, q in train}
    for rs, q in train:
        assert not q.novel
        assert not {(o.colour, o.kind) for o in rs.objects} & scene_queries.HELDOUT_PAIRS
    for rs, q in held:
        assert q.novel
        assert q.text.lower() not in train_texts
        assert {(o.colour, o.kind) for o in rs.objects} & scene_queries.HELDOUT_PAIRS
    # every family occurs in training
    assert {q.family for _, q in train} == set(scene_queries.FAMILIES)
    # held-out scenes are new scenes, not copies of training ones
    rs0, _ = scene_set.make_sample(0, "heldout_scenes", 0, SMALL)
    assert not any(np.array_equal(rs0.image, rs.image) for rs, _ in train)


def test_target_positions_do_not_follow_the_query() -> None:
    """The same query text lands on targets spread over the image (centre spread > 15 % of the
    width), so the text cannot give the box."""
    centres: dict[str, list[float]] = {}
    for i in range(60):
        sample, meta = in_memory_sample("train", i)
        box = scene_controls.target_box(sample)
        if box is not None and meta["family"] in ("name", "use"):
            centres.setdefault(meta["family"], []).append((box[0] + box[2]) / 2)
    for family, xs in centres.items():
        assert len(xs) >= 5, family
        assert np.std(xs) > 0.15, (family, np.std(xs))


# ---------------------------------------------------------------- JSON + control


def test_json_polygons_rasterise_back_to_the_mask(tmp_path: Path) -> None:
    out = scene_set.make_scene_set(tmp_path / "set", 6, split="heldout_scenes", size=SMALL)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["split"] == "heldout_scenes" and manifest["n"] == 6
    for i in range(6):
        sample = load_reasonseg_sample(out / f"{i:06d}.json")
        scene, query = scene_set.make_sample(0, "heldout_scenes", i, SMALL)
        exact = np.zeros(scene.labels.shape, bool)
        for k in query.targets:
            exact |= scene.mask(k)
        got = sample.target
        union = (exact | got).sum()
        iou = (exact & got).sum() / union if union else 1.0
        assert iou > 0.99, (i, iou)
        assert sample.query == query.text
    with pytest.raises(FileExistsError):
        scene_set.make_scene_set(out, 1, size=SMALL)


QUERY_ONLY_FLOOR = 0.30


def test_query_only_control_stays_under_its_floor() -> None:
    """The guard that the task needs the image: the per-query mean training box scores at most
    0.30 gIoU on held-out scenes; a query-only rule on the old shapes task scored > 0.5."""
    train = [in_memory_sample("train", i)[0] for i in range(120)]
    held = [in_memory_sample("heldout_scenes", i)[0] for i in range(50)]
    control = scene_controls.QueryOnlyControl().fit(train)
    scores = scene_controls.score_masks(held, [control.predict_mask(s) for s in held])
    giou = scores["segzero"]["all"]["giou"]
    assert math.isfinite(giou) and 0.0 <= giou <= QUERY_ONLY_FLOOR, giou
    perfect = scene_controls.score_masks(held, [s.target for s in held])
    assert perfect["segzero"]["all"]["giou"] > 0.99


def test_flat_image_samples_keep_the_truth(tmp_path: Path) -> None:
    out = scene_set.make_scene_set(tmp_path / "set", 2, size=SMALL)
    from segzero_train.datasets import iter_reasonseg

    real = list(iter_reasonseg(out))
    flat = scene_controls.flat_image_samples(real, tmp_path / "flat")
    from PIL import Image

    for r, f in zip(real, flat, strict=True):
        img = np.asarray(Image.open(f.image_path))
        assert img.shape == (SMALL[1], SMALL[0], 3) and (img == scene_controls.FLAT_GREY).all()
        assert np.array_equal(r.mask, f.mask)
        assert scene_controls.sample_meta(f)["family"] == scene_controls.sample_meta(r)["family"]


# ---------------------------------------------------------------- the README's example


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_kitchen_example_is_the_generators_picture_and_truth() -> None:
    """examples/kitchen.png is the generator's kitchen exactly, and kitchen.json's knife polygon
    (labelled "knife") is the knife's mask as the project's ReasonSeg reader rasterises it."""
    from PIL import Image

    from segzero_train import kitchen

    scene = kitchen.kitchen_scene()
    png = np.asarray(Image.open(EXAMPLES / "kitchen.png").convert("RGB"))
    assert png.shape == (480, 640, 3)
    assert np.array_equal(png, scene.image)
    meta = json.loads((EXAMPLES / "kitchen.json").read_text())
    assert meta["text"] == [kitchen.KITCHEN_QUERY]
    assert {s["label"] for s in meta["shapes"]} == {"knife"}
    assert (meta["imageWidth"], meta["imageHeight"]) == (640, 480)
    sample = load_reasonseg_sample(EXAMPLES / "kitchen.json")
    assert sample.query == "the thing I can use to cut the bread"
    knife = scene.mask(kitchen.KNIFE)
    got = sample.target
    assert (got & knife).sum() / (got | knife).sum() > 0.995
    assert scene.objects[kitchen.KNIFE].kind == "knife"
    assert sum(o.kind == "knife" for o in scene.objects) == 1


def test_sft_targets_think_with_the_samples_reasoning(tmp_path: Path) -> None:
    """The SFT completion of a scene sample holds its own thinking text (the fact the query
    needs), not the generic placeholder."""
    from segzero_train.data import DEFAULT_REASONING, training_dataset

    out = scene_set.make_scene_set(tmp_path / "set", 4, size=SMALL)
    ds = training_dataset(out, image_size=56, completion=True, per_instance=True)
    metas = [json.loads((out / f"{i:06d}.json").read_text()) for i in range(4)]
    wanted = [m["reasoning"] for m in metas if m["targets"]]
    got = [row[0]["content"] for row in ds["completion"]]
    assert len(got) == len(wanted) >= 1
    for text, why in zip(got, wanted, strict=True):
        assert text.startswith(f"<think>{why}</think>") or why in text
        assert DEFAULT_REASONING not in text
