"""gIoU / cIoU metrics, the evaluation loop and ``segzero-edge eval`` (segzero_train)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segzero_edge.cli import main
from segzero_train.datasets import SegSample, iter_reasonseg
from segzero_train.evaluate import Prediction, evaluate, segzero_answer_objects, write_report
from segzero_train.metrics import (
    SampleScore,
    format_summary,
    intersection_union,
    score_lisa,
    score_segzero,
    summarise,
    summarise_splits,
)

MO = "multi-object"

# ---------------------------------------------------------------- protocols (hand-computed)

GT3 = np.array([[1, 1, 0], [1, 255, 0], [0, 0, 0]], np.uint8)
PRED3 = np.array([[1, 0, 0], [1, 1, 1], [0, 0, 0]], bool)
EMPTY = np.zeros((3, 3), np.uint8)
IGNORE_ONLY = np.array([[255, 255, 0], [0, 0, 0], [0, 0, 0]], np.uint8)
TOP_ROW = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0]], bool)

# (ground truth, prediction or None for a parse failure, is_sentence)
CASES = [
    (GT3, PRED3, True),  # ignore pixel (1, 1) predicted
    (GT3, None, False),  # parse failure
    (EMPTY, np.zeros((3, 3), bool), False),  # empty target, empty prediction
    (EMPTY, None, True),  # empty target, parse failure
    (IGNORE_ONLY, TOP_ROW, False),  # only ignore pixels in the ground truth
]


def test_per_sample_intersection_and_union() -> None:
    # LISA: the ignore pixel leaves both I and U; target {(0,0),(0,1),(1,0)}
    assert intersection_union(PRED3, GT3) == (2, 4)
    assert intersection_union(None, GT3) == (0, 3)
    assert intersection_union(GT3 != 0, GT3) == (3, 3)  # predicting the ignore pixel is free
    lisa = [score_lisa(p, g) for g, p, _ in CASES]
    assert [(s.intersection, s.union) for s in lisa] == [(2, 4), (0, 3), (0, 0), (0, 0), (0, 1)]
    # Seg-Zero: mask.astype(bool) makes the ignore pixel target: target 4, prediction 4
    sz = [score_segzero(p, g) for g, p, _ in CASES]
    assert [(s.intersection, s.union) for s in sz] == [(3, 5), (0, 4), (0, 0), (0, 0), (2, 3)]
    assert [s.skipped for s in sz] == [False, False, True, False, False]
    assert [s.parse_failed for s in sz] == [False, True, False, True, False]
    with pytest.raises(ValueError, match="shape"):
        score_segzero(np.zeros((2, 2), bool), GT3)
    with pytest.raises(ValueError, match="2-D"):
        score_lisa(None, np.zeros((2, 2, 2), np.uint8))


def test_protocol_summaries_match_the_references() -> None:
    lisa = [score_lisa(p, g, is_sentence=s) for g, p, s in CASES]
    got = summarise(lisa, "lisa")
    # LISA: mean of I/(U+1e-5), U = 0 counts 1.0; cIoU = sum I / (sum U + 1e-10)
    assert got["giou"] == pytest.approx((2 / (4 + 1e-5) + 0 + 1 + 1 + 0) / 5, abs=1e-12)
    assert got["ciou"] == pytest.approx(2 / (8 + 1e-10), abs=1e-15)
    assert (got["n"], got["counted"], got["parse_failures"], got["empty_union"]) == (5, 5, 2, 2)
    sz = [score_segzero(p, g, is_sentence=s) for g, p, s in CASES]
    got = summarise(sz, "segzero")
    # Seg-Zero: the parsed empty-union sample is skipped; the failed one counts IoU 0
    assert got["giou"] == pytest.approx((3 / 5 + 0 + 0 + 2 / 3) / 4, abs=1e-12)
    assert got["ciou"] == pytest.approx(5 / 12, abs=1e-12)
    assert (got["n"], got["counted"], got["skipped"], got["parse_failures"]) == (5, 4, 1, 2)
    splits = summarise_splits(sz, "segzero")
    assert splits["sentence"]["giou"] == pytest.approx((3 / 5 + 0) / 2)
    assert splits["phrase"]["ciou"] == pytest.approx(2 / 7)
    assert math.isnan(summarise([], "lisa")["giou"])
    assert summarise([SampleScore(0, 0, parse_failed=True)], "segzero")["giou"] == 0.0
    with pytest.raises(ValueError, match="protocol"):
        summarise(lisa, "coco")
    table = format_summary({"lisa": summarise_splits(lisa, "lisa")})
    assert "lisa" in table and "25.00" in table, table


def _rule(text: str, hw: tuple[int, int]) -> Any:
    objs = segzero_answer_objects(text, hw, "multi-object")
    return None if objs is None else [(list(o.box), [list(p) for p in o.points]) for o in objs]


def test_segzero_answer_rule() -> None:
    good = '<think>a</think><answer>[{"bbox_2d": [84, 168, 420, 504], "point_2d": [210, 336]}]'
    # image 160 x 120: x * 160/840, y * 120/840, int(v + 0.5)
    assert _rule(good + "</answer>", (120, 160)) == [([16, 24, 80, 72], [[40, 48]])]
    fenced = '<answer>```json\n[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}]\n```</answer>'
    fails = [
        good,  # no closing tag
        fenced,  # the ```json fence: json.loads fails (the runtime parser accepts it)
        '<answer>{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}</answer>',  # a dict, not a list
        '<answer>[{"bbox_2d": [1, 2, 3, 4]}]</answer>',  # no point
        '<answer>[{"bbox_2d": [1, 2, 3], "point_2d": [2, 3]}]</answer>',  # 3 numbers
        '<answer>[{"bbox_2d": ["1", 2, 3, 4], "point_2d": [2, 3]}]</answer>',  # a string
        "no answer at all",
    ]
    for text in fails:
        assert _rule(text, (840, 840)) is None, text
    assert _rule("<answer> [] </answer>", (840, 840)) == []
    # the first answer counts (the runtime parser takes the last); 5 numbers: the first 4
    two = (
        '<answer>[{"bbox_2d": [1, 2, 3, 4, 9], "point_2d": [2, 3]}]</answer>'
        '<answer>[{"bbox_2d": [5, 6, 7, 8], "point_2d": [6, 7]}]</answer>'
    )
    assert _rule(two, (840, 840)) == [([1, 2, 3, 4], [[2, 3]])]
    # not clamped (the runtime clamps into the image)
    assert _rule(
        '<answer>[{"bbox_2d": [-10, 0, 900, 840], "point_2d": [0, 0]}]</answer>', (840, 840)
    ) == [([-9, 0, 900, 840], [[0, 0]])]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_metric_bounds(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    gts = [rng.choice(np.array([0, 1, 255], np.uint8), size=(5, 7)) for _ in range(n)]
    preds = [rng.random((5, 7)) < 0.5 for _ in range(n)]
    for scorer, protocol in ((score_lisa, "lisa"), (score_segzero, "segzero")):
        scores = [
            scorer(p, g, is_sentence=bool(k % 2))
            for k, (p, g) in enumerate(zip(preds, gts, strict=True))
        ]
        for sc in scores:
            assert 0 <= sc.intersection <= sc.union
        s = summarise(scores, protocol)
        if s["counted"]:
            assert 0.0 <= s["giou"] <= 1.0 + 1e-9 and 0.0 <= s["ciou"] <= 1.0


# ---------------------------------------------------------------- the loop (oracle predictors)


def predict_with(fn: Any, status: str = "ok", answer: str = "") -> Any:
    def predict(sample: SegSample) -> Prediction:
        return Prediction(mask=fn(sample), status=status, answer=answer)

    return predict


def test_evaluate_loop_oracles(train_f1_synth_dir: Path, tmp_path: Path) -> None:
    samples = list(iter_reasonseg(train_f1_synth_dir))
    assert any((s.mask == 255).any() for s in samples), "the set should hold ignore pixels"
    answer = '<think>x</think><answer>[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}]</answer>'
    perfect = evaluate(
        samples, predict_with(lambda s: s.target, answer=answer), family=MO, progress=False
    )
    assert perfect["summary"]["lisa"]["all"]["giou"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["summary"]["lisa"]["all"]["ciou"] == pytest.approx(1.0)
    # Seg-Zero counts the ignore pixels as target: the same mask misses them
    sz = perfect["summary"]["segzero"]["all"]
    ignore = sum(int((s.mask == 255).sum()) for s in samples)
    target = sum(int((s.mask == 1).sum()) for s in samples)
    assert sz["ciou"] == pytest.approx(target / (target + ignore))
    assert perfect["rows"][0]["objects_differ"] is True  # the oracle has no objects
    # predicting the ignore pixels as well: free under LISA, right under Seg-Zero
    both = evaluate(
        samples, predict_with(lambda s: s.mask != 0, answer=answer), family=MO, progress=False
    )
    assert both["summary"]["lisa"]["all"]["ciou"] == pytest.approx(1.0)
    assert both["summary"]["segzero"]["all"]["ciou"] == pytest.approx(1.0)
    # a fenced answer: the runtime parsed it (status ok), Seg-Zero's rule does not
    fenced = "<answer>```json\n[]\n```</answer>"
    report = evaluate(
        samples, predict_with(lambda s: s.target, answer=fenced), family=MO, progress=False
    )
    assert report["summary"]["lisa"]["all"]["parse_failures"] == 0
    assert report["summary"]["segzero"]["all"]["parse_failures"] == len(samples)
    assert report["summary"]["segzero"]["all"]["giou"] == 0.0
    # a runtime parse failure: I = 0 under both
    failed = evaluate(
        samples, predict_with(lambda s: s.target, "unparseable", "x"), family=MO,
        progress=False, protocols=["lisa"],
    )  # fmt: skip
    assert failed["summary"]["lisa"]["all"]["giou"] == 0.0
    assert list(failed["summary"]) == ["lisa"]
    # half the target (top rows): hand-checkable per-sample I/U
    half = evaluate(
        samples, predict_with(lambda s: _top_half(s.target), answer=answer), family=MO,
        progress=False, limit=5,
    )  # fmt: skip
    assert len(half["rows"]) == 5
    for row, s in zip(half["rows"], samples, strict=False):
        assert row["lisa"]["intersection"] == int(_top_half(s.target).sum())
        assert row["lisa"]["union"] == row["gt_area"] == int(s.target.sum())
    split = perfect["summary"]["lisa"]
    assert split["sentence"]["n"] + split["phrase"]["n"] == split["all"]["n"] == len(samples)
    out = write_report(half, tmp_path / "r" / "report.json")
    assert json.loads(out.read_text())["summary"]["lisa"]["all"]["n"] == 5
    with pytest.raises(ValueError, match="no samples"):
        evaluate([], predict_with(lambda s: s.target), family=MO)
    with pytest.raises(ValueError, match="protocols"):
        evaluate(samples, predict_with(lambda s: s.target), family=MO, protocols=["coco"])


def _top_half(mask: np.ndarray) -> np.ndarray:
    ys = np.flatnonzero(mask.any(axis=1))
    out = mask.copy()
    out[(ys[0] + ys[-1]) // 2 + 1 :] = False
    return out


# ---------------------------------------------------------------- the command


def test_eval_command_is_lean_and_checks_input(tmp_path: Path, capsys: Any) -> None:
    code = (
        "import sys, segzero_edge.cli as c; c.build_parser(); "
        # the eval command registers from segzero_train.cli_eval (an entry point); the
        # evaluation code itself and its dependencies must stay unloaded
        "heavy = ('torch', 'transformers', 'segzero_train.evaluate', 'segzero_train.metrics', "
        "'segzero_train.datasets', 'scipy'); "
        "bad = [m for m in heavy if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert main(["eval", "--data", str(tmp_path / "nope"), "--bundle", str(tmp_path)]) == 2
    assert "data folder not found" in capsys.readouterr().err
    assert main(["eval", "--data", str(tmp_path), "--hf", str(tmp_path)]) == 2
    assert "--sam2" in capsys.readouterr().err
    assert main(["eval", "--data", str(tmp_path), "--bundle", str(tmp_path), "--limit", "0"]) == 2


# ---------------------------------------------------------------- HF reference on tiny models


@pytest.fixture(scope="module")
def hf_predictor(tiny_qwen_dir: Path, sam2_checkpoint: Path) -> Any:
    from segzero_train.evaluate import HFPredictor

    return HFPredictor(tiny_qwen_dir, sam2_checkpoint, family="multi-object", max_new_tokens=4)


@pytest.mark.parametrize(
    ("family", "script"),
    [("multi-object", "evaluation_visionreasoner.py"), ("segzero-v1", "evaluation.py")],
)
def test_hf_reference_end_to_end(
    tiny_qwen_dir: Path,
    sam2_checkpoint: Path,
    train_f1_synth_dir: Path,
    tmp_path: Path,
    family: str,
    script: str,
) -> None:
    out = tmp_path / "hf.json"
    argv = ["eval", "--hf", str(tiny_qwen_dir), "--sam2", str(sam2_checkpoint)]
    argv += ["--family", family]
    argv += ["--data", str(train_f1_synth_dir), "--limit", "1", "--max-new-tokens", "4"]
    assert main([*argv, "--quiet", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    print("hf tiny row:", {k: row[k] for k in ("status", "answer", "seconds")})
    assert report["source"]["kind"] == "hf"
    # the segzero protocol read the answer with the family's own reference script
    assert report["source"]["family"] == family
    assert report["source"]["evaluation_reference"].endswith(f"evaluation_scripts/{script}")
    # 4 greedy tokens of a random model: never a complete answer -> a parse failure
    assert row["status"] in ("truncated", "unparseable"), row
    for protocol in ("segzero", "lisa"):  # both by default
        assert report["summary"][protocol]["all"]["parse_failures"] == 1
    assert row["lisa"]["intersection"] == 0 and row["lisa"]["union"] == row["gt_area"] > 0
    assert row["segzero"]["union"] == row["gt_area"] + row["ignore_area"]


def test_hf_reference_segments_a_parsed_answer(hf_predictor: Any, train_f1_synth_dir: Path) -> None:
    sample = next(iter(iter_reasonseg(train_f1_synth_dir)))
    image = sample.load_image()  # 160 x 120
    answer = '[{"bbox_2d": [84, 168, 420, 504], "point_2d": [210, 336]}]'
    text = f"<think>x</think><answer>{answer}</answer>"
    pred = hf_predictor.predict_text(image, text)
    assert pred.status == "ok"
    # 840 frame -> 160 x 120: x * 160/840, y * 120/840, int(v + 0.5)
    assert pred.objects == [{"box": [16, 24, 80, 72], "points": [[40, 48]]}]
    assert pred.mask.shape == (120, 160) and pred.mask.dtype == bool
    empty = hf_predictor.predict_text(image, "<think>x</think><answer>[]</answer>")
    assert empty.status == "no_object" and not empty.mask.any()


@pytest.mark.parametrize("family", ["segzero-v1", "multi-object"])
def test_hf_reference_is_the_reference_script(
    hf_predictor: Any, train_f1_synth_dir: Path, family: str
) -> None:
    """predict_text == the family's reference evaluation script on the same generation
    (objects, and the OR of SAM2's best masks from Meta's predictor, bit for bit)."""
    import numpy as np

    from segzero_edge.families import get_family
    from tests.fixtures.families import REFERENCE

    sample = next(iter(iter_reasonseg(train_f1_synth_dir)))
    image = sample.load_image()  # 160 x 120
    text = {
        "segzero-v1": '<think>x</think><answer>{"bbox": [84, 168, 420, 504], '
        '"points_1": [210, 336], "points_2": [105, 231]}</answer>',
        "multi-object": '<think>x</think><answer>[{"bbox_2d": [84, 168, 420, 504], '
        '"point_2d": [210, 336]}, {"bbox_2d": [500, 100, 800, 300], "point_2d": [650, 200]}]'
        "</answer>",
    }[family]
    ref = REFERENCE[family]
    old, hf_predictor.family = hf_predictor.family, get_family(family)
    try:
        pred = hf_predictor.predict_text(image, text)
    finally:
        hf_predictor.family = old
    objects = ref.objects(text, image.shape[:2])
    assert [(o["box"], o["points"]) for o in pred.objects] == objects
    sam = hf_predictor.sam  # still holds the image predict_text set
    want = np.zeros(image.shape[:2], bool)
    for box, points in objects:
        masks, scores, _ = sam.predict(point_coords=points, point_labels=ref.labels, box=box)
        want |= masks[np.argsort(scores)[::-1]][0].astype(bool)
    assert pred.status == "ok" and np.array_equal(pred.mask, want)


# ---------------------------------------------------------------- the bundle (on-device path)


@pytest.mark.slow
def test_eval_command_on_tiny_bundle(
    tiny_bundle_runs: Path, train_f1_synth_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    argv = ["eval", "--bundle", str(tiny_bundle_runs), "--data", str(train_f1_synth_dir)]
    assert (
        main([*argv, "--limit", "1", "--max-new-tokens", "24", "--quiet", "--out", str(out)]) == 0
    )
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    print("bundle tiny row:", {k: row[k] for k in ("status", "objects", "seconds")})
    assert report["source"]["kind"] == "bundle"
    assert row["status"] in ("ok", "no_object", "unparseable", "truncated")
    sample = next(iter(iter_reasonseg(train_f1_synth_dir)))
    assert row["gt_area"] == int(sample.target.sum())
    lisa = row["lisa"]
    assert 0 <= lisa["intersection"] <= min(row["gt_area"], lisa["union"])
    assert lisa["union"] >= max(row["gt_area"], row["pred_area"] - row["ignore_area"])
    assert report["summary"]["lisa"]["all"]["n"] == 1
