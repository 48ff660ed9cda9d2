"""A tiny Qwen3-VL bundle end to end: ``segment()``, ``segment_many()`` and ``track()`` with
the ``qwen3vl-grounding`` family (832 x 832 reasoner frame, 676 image tokens, Qwen3-VL's chat
template, coordinates on the 0-1000 grid mapped to pixels per axis, ``[]`` -> no_object).

The random model answers ``[]`` under the family's grammar; to follow objects through the
mapping and SAM2 the same model also runs under a grammar that asks for at least one object
(the family's grammar without the empty list), so its own coordinates come back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segzero_edge import SegZeroEdge, Status
from segzero_edge.answer import answer_body, parse_answer
from segzero_edge.bundle import load_bundle
from segzero_edge.families import QWEN3VL_GROUNDING
from segzero_edge.reasoner.grammar import AnswerGrammar
from tests.fixtures.families import REFERENCE, RecordingSegmenter
from tests.fixtures.tracking import synthetic_clip

ROOT = Path(__file__).resolve().parents[1]
KITCHEN = ROOT / "examples" / "kitchen.png"
QUERY = "The thing I can use to cut the bread."
OPTS: dict[str, Any] = {"n_gpu_layers": 0, "n_threads": 2, "max_new_tokens": 40, "think_budget": 16}


def _at_least_one_object() -> AnswerGrammar:
    g = QWEN3VL_GROUNDING.answer_grammar(2)
    optional = 'ws ( obj ( ws "," ws obj ){0,1} )? ws'
    assert optional in g.gbnf
    return AnswerGrammar(g.gbnf.replace(optional, 'ws obj ( ws "," ws obj ){0,1} ws'), g.max_chars)


def _no_object_only() -> AnswerGrammar:
    """The family's grammar that admits only the empty list (the family's "no such object")."""
    g = QWEN3VL_GROUNDING.answer_grammar(2)
    optional = 'ws ( obj ( ws "," ws obj ){0,1} )? ws'
    assert optional in g.gbnf
    return AnswerGrammar(g.gbnf.replace(optional, "ws"), g.max_chars)


def _record_inputs(model: SegZeroEdge) -> list[tuple[tuple[int, ...], str]]:
    seen: list[tuple[tuple[int, ...], str]] = []
    generate = model.reasoner.generate

    def recording(img: np.ndarray, prompt: str, **kwargs: Any) -> Any:
        seen.append((img.shape, prompt))
        return generate(img, prompt, **kwargs)

    model.reasoner.generate = recording  # type: ignore[method-assign]
    return seen


def test_qwen3vl_bundle_manifest(tiny_qwen3vl_bundle: Path) -> None:
    manifest = load_bundle(tiny_qwen3vl_bundle).manifest
    assert manifest.family == "qwen3vl-grounding"
    assert manifest.reasoner.architecture == "Qwen3VLForConditionalGeneration"
    assert (manifest.reasoner.input_size, manifest.reasoner.image_tokens) == (832, 676)


def test_qwen3vl_segment_and_segment_many(tiny_qwen3vl_bundle: Path) -> None:
    image = np.asarray(Image.open(KITCHEN).convert("RGB"))
    with SegZeroEdge.from_bundle(tiny_qwen3vl_bundle, **OPTS) as model:
        assert model.family is QWEN3VL_GROUNDING and model.reasoner.arch == "qwen3vl"
        assert model.reasoner.image_tokens == 676 and model.reasoner.system_prompt is None
        seen = _record_inputs(model)
        one = model.segment(image, QUERY)
        many = model.segment_many(image, [QUERY, "the cup"])
        stats = model.reasoner.last_stats
    print(f"segment: {one.status.value} {one.answer_raw[-80:]!r}; n_image_tokens {stats}")
    assert seen[0] == ((832, 832, 3), QWEN3VL_GROUNDING.build_prompt(QUERY))
    assert seen[0][1] == REFERENCE["qwen3vl-grounding"].prompt(QUERY)
    assert stats.n_image_tokens == 676
    body = answer_body(one.answer_raw)
    assert body is not None and parse_answer(one.answer_raw, strict=True).status is one.status
    assert one.status is (Status.OK if json.loads(body) else Status.NO_OBJECT)
    # the frame's prefix (system-less template + image) is reused, with the same greedy answer
    assert [r.reasoner_cache_hit for r in many] == [True, True]
    assert many[0].answer_raw == one.answer_raw and many[0].status is one.status
    assert len(many) == 2 and all(r.mask.shape == image.shape[:2] for r in many)


def test_qwen3vl_objects_map_from_the_1000_grid(tiny_qwen3vl_bundle: Path) -> None:
    image = np.asarray(Image.open(KITCHEN).convert("RGB"))
    h, w = image.shape[:2]
    opts = {**OPTS, "answer_grammar": _at_least_one_object()}
    with SegZeroEdge.from_bundle(tiny_qwen3vl_bundle, **opts) as model:
        model.segmenter = seg = RecordingSegmenter(model.segmenter)
        r = model.segment(image, QUERY)
        model.segmenter = seg.inner
    body = answer_body(r.answer_raw)
    print(f"{r.status.value} on {w} x {h}: answer {body!r} -> objects {r.objects}")
    assert r.status is Status.OK and body is not None
    items = json.loads(body)
    assert items and all(set(i) == {"bbox_2d", "point_2d"} for i in items)
    assert all(0 <= v <= 1000 for i in items for v in i["bbox_2d"] + i["point_2d"])
    # x * W / 1000 and y * H / 1000, rounded half up, as Qwen3-VL's convention
    want = REFERENCE["qwen3vl-grounding"].objects(f"<answer>{body}</answer>", (h, w))
    assert [(list(o.box), [list(p) for p in o.points]) for o in r.objects] == want
    x1, y1, x2, y2 = items[0]["bbox_2d"]
    assert list(r.objects[0].box) == [
        int(v * s / 1000 + 0.5) for v, s in ((x1, w), (y1, h), (x2, w), (y2, h))
    ]
    assert len(seg.calls) == len(r.objects)
    assert all(labels.tolist() == [[2, 3, 1]] for _, labels in seg.calls)
    assert r.mask.shape == (h, w) and len(r.iou_predictions) == len(r.objects)


def test_qwen3vl_empty_answer_is_no_object(tiny_qwen3vl_bundle: Path) -> None:
    image = np.asarray(Image.open(KITCHEN).convert("RGB"))
    opts = {**OPTS, "answer_grammar": _no_object_only()}
    with SegZeroEdge.from_bundle(tiny_qwen3vl_bundle, **opts) as model:
        model.segmenter = seg = RecordingSegmenter(model.segmenter)
        r = model.segment(image, QUERY)
        many = model.segment_many(image, [QUERY, "the cup"])
        model.segmenter = seg.inner
    print(f"{r.status.value}: {r.answer_raw[-40:]!r}")
    assert json.loads(answer_body(r.answer_raw) or "null") == []
    assert r.status is Status.NO_OBJECT and r.objects == [] and not r.ok
    assert r.mask.shape == image.shape[:2] and not r.mask.any()
    assert [m.status for m in many] == [Status.NO_OBJECT, Status.NO_OBJECT]
    assert seg.calls == []  # no prompt reaches SAM2's decoder


def test_qwen3vl_track(tiny_qwen3vl_bundle: Path) -> None:
    frames = synthetic_clip(3)
    opts = {**OPTS, "answer_grammar": _at_least_one_object()}
    with SegZeroEdge.from_bundle(tiny_qwen3vl_bundle, **opts) as model:
        tracker = model.track(frames[0], "the red disc", num_frames=3)
        first = tracker.last
        later = [tracker.update(f) for f in frames[1:]]
    assert first.reasoned and tracker.num_objects >= 1
    for r in later:
        assert not r.reasoned and r.mask.shape == frames[0].shape[:2]
        assert r.object_masks is not None and len(r.object_masks) == tracker.num_objects
    print(f"tracked {tracker.num_objects} object(s): areas {[int(r.mask.sum()) for r in later]}")


@pytest.mark.parametrize("family", ["multi-object"])
def test_qwen25_family_on_a_qwen3vl_bundle_is_refused(
    family: str, tiny_qwen3vl_bundle: Path
) -> None:
    with pytest.raises(ValueError, match=r"multi-object.*'qwen3vl' GGUF.*--family"):
        SegZeroEdge.from_bundle(tiny_qwen3vl_bundle, family=family, **OPTS)
