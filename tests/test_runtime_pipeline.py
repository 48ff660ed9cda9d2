"""SegZeroEdge end to end on the tiny bundle: statuses, faults, threads, cache, CLI."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segzero_edge import SegZeroEdge, Status
from segzero_edge.backends import ImageEmbedding, ReasonerOutput, Segmenter
from segzero_edge.image import frame_key
from segzero_edge.pipeline import BackendError
from tests.fixtures.wrapped import StandInReasoner, WrappedSegmenter

pytestmark = pytest.mark.runtime

ROOT = Path(__file__).resolve().parents[1]
KITCHEN = ROOT / "examples" / "kitchen.png"


@pytest.fixture(scope="module")
def model(tiny_bundle_runs: Path) -> Iterator[SegZeroEdge]:
    with SegZeroEdge.from_bundle(tiny_bundle_runs, max_new_tokens=96) as m:
        yield m


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.asarray(Image.open(KITCHEN).convert("RGB"))


class ScriptedReasoner(StandInReasoner):
    """Replays fixed generations: drives the pipeline's handling of odd model answers."""

    name = "scripted"

    def __init__(self, text: str, truncated: bool = False) -> None:
        self.text, self.truncated = text, truncated

    def generate(
        self, image: np.ndarray, prompt: str, *, frame_key: str | None = None
    ) -> ReasonerOutput:
        assert image.shape == (840, 840, 3) and "Please find" in prompt
        return ReasonerOutput(self.text, self.truncated, 10, 5, {"decode": 0.0})

    def close(self) -> None:
        pass


class CountingSegmenter(WrappedSegmenter):
    """Wraps the real segmenter and records the batch shape of every decode call."""

    name = "counting"

    def __init__(self, inner: Segmenter) -> None:
        super().__init__(inner)
        self.shapes: list[tuple[int, ...]] = []

    def decode(self, emb: ImageEmbedding, coords: np.ndarray, labels: np.ndarray):  # type: ignore[no-untyped-def]
        self.shapes.append(coords.shape)
        return self.inner.decode(emb, coords, labels)

    def close(self) -> None:
        pass


class FailingSegmenter(WrappedSegmenter):
    """Wraps the real segmenter and raises on the n-th decode (a backend dying mid-call)."""

    name = "failing"

    def __init__(self, inner: Segmenter, fail_at: int) -> None:
        super().__init__(inner)
        self.fail_at, self.calls = fail_at, 0

    def decode(self, emb: ImageEmbedding, coords: np.ndarray, labels: np.ndarray):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.inner.decode(emb, coords, labels)

    def close(self) -> None:
        pass


CANNED_ANSWER = (
    '<think>the knife and the board</think><answer>[{"bbox_2d": [-20, 100, 900, 500], '
    '"point_2d": [400, 300]}, {"bbox_2d": [500, 600, 100, 200], "point_2d": [300, 400]}]</answer>'
)
"""Two objects: a box past the image's left and right edges, and one with its corners swapped."""


def test_segment_end_to_end(model: SegZeroEdge, image: np.ndarray) -> None:
    r = model.segment(image, "the thing I can use to cut the bread")
    assert r.mask.shape == (480, 640) and r.mask.dtype == bool
    # with the answer grammar even a random model's answer parses
    assert r.status in (Status.OK, Status.NO_OBJECT, Status.TRUNCATED), r.answer_raw
    for key in ("preprocess", "reason", "total"):
        assert r.timings[key] >= 0
    print(f"status={r.status.value} objects={r.objects} timings={r.timings}")
    # SAM2's half always runs: the same pipeline on a canned answer (the real segmenter)
    seg = CountingSegmenter(model.segmenter)
    canned = SegZeroEdge(ScriptedReasoner(CANNED_ANSWER), seg, family=model.family)
    c = canned.segment(image, "the thing I can use to cut the bread")
    assert c.status is Status.OK and len(c.objects) == 2 and len(c.iou_predictions) == 2
    assert seg.shapes == [(2, 3, 2)]  # one SAM2 call: two prompts of box corners + one point
    for o in c.objects:  # boxes ordered and clamped to the image, whatever the answer
        assert o.box is not None and 0 <= o.box[0] <= o.box[2] <= 640, o
        assert 0 <= o.box[1] <= o.box[3] <= 480, o
    assert c.objects[0].box == (0, 57, 640, 286)
    assert c.object_masks.shape == (2, 480, 640) and c.object_masks.dtype == bool
    np.testing.assert_array_equal(c.mask, c.object_masks.any(axis=0))
    for key in ("preprocess", "reason", "total"):
        assert c.timings[key] >= 0


def test_same_result_from_path_pil_and_array(model: SegZeroEdge, image: np.ndarray) -> None:
    results = [model.segment(x, "the knife") for x in (KITCHEN, Image.open(KITCHEN), image)]
    assert len({r.answer_raw for r in results}) == 1
    for r in results[1:]:
        np.testing.assert_array_equal(r.mask, results[0].mask)


def test_frame_cache_encodes_once(model: SegZeroEdge, image: np.ndarray) -> None:
    frame = image.copy()
    frame[0, 0] ^= 1  # a frame the cache has not seen
    a = model.segment(frame, "the cup")
    b = model.segment(frame, "the bread")
    assert not a.sam_cache_hit and b.sam_cache_hit


def test_caller_mistakes_raise(model: SegZeroEdge, image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="query is empty"):
        model.segment(image, "  ")
    with pytest.raises(ValueError, match="query is too long"):
        model.segment(image, "x" * 5000)
    with pytest.raises(ValueError, match="H x W x 3"):
        model.segment(image[..., 0], "the knife")
    with pytest.raises(ValueError, match="empty"):
        model.segment(image[:0], "the knife")


@pytest.mark.parametrize(
    ("text", "truncated", "status"),
    [
        ("<think>lorem ipsum</think><answer>]]{{ garbage</answer>", False, Status.UNPARSEABLE),
        ("#$%^ no tags at all", False, Status.UNPARSEABLE),
        ('<think>the knife</think><answer>[{"bbox_2d": [10, 20', True, Status.TRUNCATED),
        ("<think>nothing here</think><answer>[]</answer>", False, Status.NO_OBJECT),
    ],
)
def test_model_side_failures_are_statuses(
    model: SegZeroEdge, image: np.ndarray, text: str, truncated: bool, status: Status
) -> None:
    m = SegZeroEdge(ScriptedReasoner(text, truncated), model.segmenter, family=model.family)
    r = m.segment(image, "the knife")
    assert r.status is status and not r.mask.any() and r.objects == []
    assert r.answer_raw == text


def test_points_outside_the_image_map_as_the_reference(
    model: SegZeroEdge, image: np.ndarray
) -> None:
    """Points map as the reference maps them, not clamped (infer_multi_object.py passes
    int(v * factor + 0.5) to SAM2 as it is); the box is clamped to the image (the result's
    box convention), also before SAM2."""
    answer = '[{"bbox_2d": [-50, 700, 5000, 9000], "point_2d": [900, -3]}]'
    text = f"<think>x</think><answer>{answer}</answer>"
    m = SegZeroEdge(ScriptedReasoner(text), model.segmenter, family="multi-object")
    r = m.segment(image, "the board")
    assert r.status is Status.OK
    (o,) = r.objects
    fx, fy = 640 / 840, 480 / 840
    assert int(-50 * fx + 0.5) == -37 and int(700 * fy + 0.5) == 400
    assert o.box == (0, 400, 640, 480) and o.points == ((686, -1),)
    assert r.mask.shape == (480, 640)


def test_multi_object_masks_are_ored(model: SegZeroEdge, image: np.ndarray) -> None:
    """An answer's objects are decoded in one SAM2 call; masks and scores equal one call each."""
    one = '{"bbox_2d": [100, 200, 400, 600], "point_2d": [250, 400]}'
    two = '{"bbox_2d": [600, 50, 800, 250], "point_2d": [700, 150]}'
    three = '{"bbox_2d": [300, 500, 700, 800], "point_2d": [500, 650]}'
    results, seg = [], CountingSegmenter(model.segmenter)
    for body in (f"[{one}]", f"[{two}]", f"[{three}]", f"[{one}, {two}, {three}]"):
        text = f"<think>t</think><answer>{body}</answer>"
        m = SegZeroEdge(ScriptedReasoner(text), seg, family="multi-object")
        results.append(m.segment(image, "q"))
    assert seg.shapes == [(1, 3, 2), (1, 3, 2), (1, 3, 2), (3, 3, 2)]
    np.testing.assert_array_equal(
        results[3].mask, results[0].mask | results[1].mask | results[2].mask
    )
    alone = [r.iou_predictions[0] for r in results[:3]]
    np.testing.assert_allclose(results[3].iou_predictions, alone, rtol=0, atol=1e-6)


def test_objects_with_other_point_counts_get_their_own_call(
    model: SegZeroEdge, image: np.ndarray
) -> None:
    """Prompts are never padded (SAM2's padding points change masks): one call per P."""
    body = (
        '[{"bbox_2d": [100, 200, 400, 600], "point_2d": [250, 400]}, '
        '{"bbox_2d": [600, 50, 800, 250]}, '
        '{"bbox_2d": [300, 500, 700, 800], "point_2d": [500, 650]}]'
    )
    seg = CountingSegmenter(model.segmenter)
    text = f"<think>t</think><answer>{body}</answer>"
    r = SegZeroEdge(ScriptedReasoner(text), seg, family="multi-object").segment(image, "q")
    assert r.status is Status.OK and [len(o.points) for o in r.objects] == [1, 0, 1]
    assert sorted(seg.shapes) == [(1, 2, 2), (2, 3, 2)] and len(r.iou_predictions) == 3


def test_segment_many_equals_cold_segment_calls(
    model: SegZeroEdge, image: np.ndarray, tiny_bundle: Path
) -> None:
    """One frame, several queries: the results of one cold segment() each (no reasoner prefix
    cache, no SAM2 cache), with the image prefix and the SAM2 embedding reused for the
    2nd..Nth query."""
    frame = image.copy()
    frame[1, 1] ^= 3  # a frame no cache has seen
    queries = ["the knife", "the cup", "where to grasp the cup"]
    many = model.segment_many(frame, queries)
    assert len(many) == 3
    assert frame_key(frame) in model.reasoner.prefix_cache  # type: ignore[attr-defined]
    assert not many[0].reasoner_cache_hit and not many[0].sam_cache_hit
    for r in many[1:]:
        assert r.reasoner_cache_hit and r.sam_cache_hit
        assert r.timings["vision_encode"] == 0.0
    opts = {"max_new_tokens": 96, "prefix_cache_mb": 0, "cache_frames": 0}
    with SegZeroEdge.from_bundle(tiny_bundle, **opts) as cold:
        single = [cold.segment(frame, q) for q in queries]
    for a, b in zip(many, single, strict=True):
        assert not b.reasoner_cache_hit
        assert a.answer_raw == b.answer_raw and a.status is b.status
        np.testing.assert_array_equal(a.mask, b.mask)
    again = model.segment(frame, queries[0])  # later segment() calls on the frame hit too
    assert again.reasoner_cache_hit and again.answer_raw == many[0].answer_raw


def test_segment_many_bad_queries(model: SegZeroEdge, image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="list of str"):
        model.segment_many(image, "the knife")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queries is empty"):
        model.segment_many(image, [])
    with pytest.raises(ValueError, match="query is empty"):
        model.segment_many(image, ["the knife", " "])


def test_backend_failure_mid_call_is_named_and_recoverable(
    model: SegZeroEdge, image: np.ndarray
) -> None:
    text = '<think>t</think><answer>[{"bbox_2d": [1, 2, 300, 400], "point_2d": [5, 6]}]</answer>'
    seg = FailingSegmenter(model.segmenter, fail_at=1)
    m = SegZeroEdge(ScriptedReasoner(text), seg, family="multi-object")
    with pytest.raises(BackendError, match="segmenter 'failing' failed to decode: CUDA error"):
        m.segment(image, "the knife")
    r = m.segment(image, "the knife")  # the next call works
    assert r.status is Status.OK and r.mask.shape == (480, 640)


def test_threads_get_the_same_results_as_sequential_calls(
    model: SegZeroEdge, image: np.ndarray
) -> None:
    queries = ["the knife", "the bread", "the cup"]
    frames = [image, np.ascontiguousarray(image[:, ::-1])]
    jobs = [(f, q) for f in range(len(frames)) for q in queries]
    expected = {(f, q): model.segment(frames[f], q) for f, q in jobs}
    got: dict[tuple[int, str, int], object] = {}
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            if t % 2:  # segment_many: every query of a frame in one call
                for f in (t // 2, 1 - t // 2):
                    for q, r in zip(queries, model.segment_many(frames[f], queries), strict=True):
                        got[(f, q, t)] = r
                return
            for f, q in jobs[t % 3 :] + jobs[: t % 3]:
                got[(f, q, t)] = model.segment(frames[f], q)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "deadlock: a worker never finished"
    assert not errors, errors
    assert len(got) == 4 * len(jobs)
    for (f, q, _), r in got.items():
        assert r.answer_raw == expected[(f, q)].answer_raw  # type: ignore[attr-defined]
        np.testing.assert_array_equal(r.mask, expected[(f, q)].mask)  # type: ignore[attr-defined]


def test_cli_segment_writes_mask_overlay_and_json(
    tiny_bundle_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segzero_edge.cli import main

    out, overlay = tmp_path / "mask.png", tmp_path / "overlay.png"
    argv = ["segment", str(KITCHEN), "the knife", "--bundle", str(tiny_bundle_runs)]
    assert main([*argv, "--out", str(out), "--overlay", str(overlay), "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()  # JSON Lines: one query, one line
    report = json.loads(line)
    assert report["status"] in {s.value for s in Status}
    mask = np.asarray(Image.open(out))
    assert mask.shape == (480, 640) and set(np.unique(mask)) <= {0, 255}
    assert int((mask > 0).sum()) == report["mask_area"]
    assert Image.open(overlay).size == (640, 480)


def test_cli_segment_several_queries(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segzero_edge.cli import main

    out, overlay = tmp_path / "mask.png", tmp_path / "overlay.png"
    argv = ["segment", str(KITCHEN), "the knife", "the cup", "--bundle", str(tiny_bundle)]
    assert main([*argv, "--out", str(out), "--overlay", str(overlay), "--json"]) == 0
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["query"] for r in reports] == ["the knife", "the cup"]
    assert [r["reasoner_cache_hit"] for r in reports] == [False, True]
    for i, report in enumerate(reports, start=1):
        mask = np.asarray(Image.open(tmp_path / f"mask-{i}.png"))
        assert int((mask > 0).sum()) == report["mask_area"]
        assert Image.open(tmp_path / f"overlay-{i}.png").size == (640, 480)
    assert not out.exists() and not overlay.exists()
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    # argparse wraps lines, also after a hyphen
    help_text = re.sub(r"-\s+", "-", " ".join(capsys.readouterr().out.split()))
    assert "mask-1.png, mask-2.png" in help_text and "QUERY [QUERY ...]" in help_text


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from segzero_edge.cli import main

    code = main(["segment", str(KITCHEN), "the knife", "--bundle", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "manifest.json is missing" in err and "Traceback" not in err
