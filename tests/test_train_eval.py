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
from segzero_train.evaluate import Prediction, evaluate, write_report
from segzero_train.metrics import (
    SampleScore,
    format_summary,
    intersection_union,
    score_sample,
    summarise,
    summarise_splits,
)

# ---------------------------------------------------------------- metrics (hand-computed)

GT3 = np.array([[1, 1, 0], [1, 255, 0], [0, 0, 0]], np.uint8)
PRED3 = np.array([[1, 0, 0], [1, 1, 1], [0, 0, 0]], bool)


def test_intersection_union_ignore_and_failures() -> None:
    # target {(0,0),(0,1),(1,0)}; pred minus the ignore pixel {(0,0),(1,0),(1,2)}
    assert intersection_union(PRED3, GT3) == (2, 4)
    assert intersection_union(None, GT3) == (0, 3)
    assert intersection_union(GT3 == 1, GT3) == (3, 3)
    assert intersection_union(GT3 != 0, GT3) == (3, 3)  # predicting the ignore pixel is free
    s = score_sample(GT3 == 1, GT3, is_sentence=True, parse_failed=True)
    assert (s.intersection, s.union, s.parse_failed) == (0, 3, True)
    with pytest.raises(ValueError, match="shape"):
        intersection_union(np.zeros((2, 2), bool), GT3)


def test_summaries_both_conventions() -> None:
    scores = [
        SampleScore(2, 4, is_sentence=True),
        SampleScore(0, 3, is_sentence=False, parse_failed=True),
        SampleScore(0, 0, is_sentence=False),  # empty target, empty prediction
        SampleScore(5, 5, is_sentence=True),
    ]
    s = summarise(scores)
    assert s["giou_lisa"] == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert s["giou_exclude"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert s["ciou"] == pytest.approx(7 / 12)
    assert (s["n"], s["empty_union"], s["parse_failures"]) == (4, 1, 1)
    splits = summarise_splits(scores)
    assert splits["sentence"]["giou_lisa"] == pytest.approx(0.75)
    assert splits["sentence"]["ciou"] == pytest.approx(7 / 9)
    assert splits["phrase"]["giou_lisa"] == pytest.approx(0.5)
    assert splits["phrase"]["giou_exclude"] == pytest.approx(0.0)
    assert splits["phrase"]["ciou"] == 0.0
    assert math.isnan(summarise([])["giou_lisa"])
    table = format_summary(splits)
    assert "62.50" in table and "58.33" in table, table


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_metric_bounds(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    gts = [rng.choice(np.array([0, 1, 255], np.uint8), size=(5, 7)) for _ in range(n)]
    preds = [rng.random((5, 7)) < 0.5 for _ in range(n)]
    scores = [
        score_sample(p, g, is_sentence=bool(k % 2))
        for k, (p, g) in enumerate(zip(preds, gts, strict=True))
    ]
    for sc, g in zip(scores, gts, strict=True):
        assert 0 <= sc.intersection <= min(sc.union, int((g == 1).sum()))
    s = summarise(scores)
    assert 0.0 <= s["giou_lisa"] <= 1.0
    union = sum(sc.union for sc in scores)
    if union:
        assert s["ciou"] == pytest.approx(sum(sc.intersection for sc in scores) / union)


# ---------------------------------------------------------------- the loop (oracle predictors)


def predict_with(fn: Any, status: str = "ok") -> Any:
    def predict(sample: SegSample) -> Prediction:
        return Prediction(mask=fn(sample), status=status)

    return predict


def test_evaluate_loop_oracles(train_f1_synth_dir: Path, tmp_path: Path) -> None:
    samples = list(iter_reasonseg(train_f1_synth_dir))
    perfect = evaluate(samples, predict_with(lambda s: s.target), progress=False)
    assert perfect["summary"]["all"]["giou_lisa"] == 1.0
    assert perfect["summary"]["all"]["ciou"] == 1.0
    # the ignore pixels are excluded: predicting them as well changes nothing
    with_ignore = evaluate(samples, predict_with(lambda s: s.mask != 0), progress=False)
    assert with_ignore["summary"]["all"]["ciou"] == 1.0
    # a perfect mask under a parse failure still counts I = 0
    failed = evaluate(samples, predict_with(lambda s: s.target, "unparseable"), progress=False)
    assert failed["summary"]["all"]["giou_lisa"] == 0.0
    assert failed["summary"]["all"]["parse_failures"] == len(samples)
    # half the target (top rows): hand-checkable per-sample I/U
    half = evaluate(samples, predict_with(lambda s: _top_half(s.target)), progress=False, limit=5)
    assert len(half["rows"]) == 5
    for row, s in zip(half["rows"], samples, strict=False):
        assert row["intersection"] == int(_top_half(s.target).sum())
        assert row["union"] == row["gt_area"] == int(s.target.sum())
        assert row["iou"] == pytest.approx(row["intersection"] / row["union"])
    split = perfect["summary"]
    assert split["sentence"]["n"] + split["phrase"]["n"] == split["all"]["n"] == len(samples)
    assert split["sentence"]["n"] > 0 and split["phrase"]["n"] > 0
    out = write_report(half, tmp_path / "r" / "report.json")
    assert json.loads(out.read_text())["summary"]["all"]["n"] == 5
    with pytest.raises(ValueError, match="no samples"):
        evaluate([], predict_with(lambda s: s.target))


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

    return HFPredictor(tiny_qwen_dir, sam2_checkpoint, max_new_tokens=4)


def test_hf_reference_end_to_end(
    tiny_qwen_dir: Path, sam2_checkpoint: Path, train_f1_synth_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "hf.json"
    argv = ["eval", "--hf", str(tiny_qwen_dir), "--sam2", str(sam2_checkpoint)]
    argv += ["--data", str(train_f1_synth_dir), "--limit", "1", "--max-new-tokens", "4"]
    assert main([*argv, "--quiet", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    print("hf tiny row:", {k: row[k] for k in ("status", "answer", "seconds")})
    assert report["source"]["kind"] == "hf"
    # 4 greedy tokens of a random model: never a complete answer -> a parse failure
    assert row["status"] in ("truncated", "unparseable"), row
    assert report["summary"]["all"]["parse_failures"] == 1
    assert row["intersection"] == 0 and row["union"] == row["gt_area"] > 0


def test_hf_reference_segments_a_parsed_answer(hf_predictor: Any, train_f1_synth_dir: Path) -> None:
    sample = next(iter(iter_reasonseg(train_f1_synth_dir)))
    image = sample.load_image()  # 160 x 120
    answer = '[{"bbox_2d": [84, 168, 420, 504], "point_2d": [210, 336]}]'
    text = f"<think>x</think><answer>{answer}</answer>"
    pred = hf_predictor.predict_text(image, text)
    assert pred.status == "ok"
    # 840 frame -> 160 x 120: x * 160/840, y * 120/840, int(v + 0.5)
    assert pred.objects == [{"bbox_2d": [16, 24, 80, 72], "point_2d": [[40, 48]]}]
    assert pred.mask.shape == (120, 160) and pred.mask.dtype == bool
    empty = hf_predictor.predict_text(image, "<think>x</think><answer>[]</answer>")
    assert empty.status == "no_object" and not empty.mask.any()


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
    assert 0 <= row["intersection"] <= min(row["gt_area"], row["union"])
    assert row["union"] >= max(row["gt_area"], row["pred_area"] - int((sample.mask == 255).sum()))
    assert report["summary"]["all"]["n"] == 1
