"""Logs and feedback: ``-v`` / ``-q`` on every subcommand, ``SEGZERO_LOG_LEVEL``, the line
``from_bundle`` logs after loading, ``doctor``'s verdict, and one-line errors naming the extra
a missing module comes with (the commands that need an extra: tests/test_runtime_installs.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from segzero_edge import SegZeroEdge
from segzero_edge.cli import build_parser, main
from segzero_edge.commands.doctor import verdict
from segzero_edge.errors import missing_extra
from segzero_edge.logs import LOG_LEVEL_ENV

ROOT = Path(__file__).resolve().parents[1]
KITCHEN = ROOT / "examples" / "kitchen.png"


@pytest.mark.runtime
def test_every_subcommand_takes_v_and_q() -> None:
    parser = build_parser()
    sub = next(
        a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0]))
    )  # type: ignore[union-attr]
    assert {"segment", "track", "bag", "doctor"} <= set(sub.choices)
    for name, p in sub.choices.items():
        flags = set(p._option_string_actions)
        assert {"-v", "--verbose", "-q", "--quiet"} <= flags, name


def _track_one_frame(
    capsys: pytest.CaptureFixture[str], bundle: Path, tmp_path: Path, *flags: str
) -> str:
    """``track`` on a one-frame folder with a short answer (a command that loads the bundle,
    fast); its stderr."""
    frames = tmp_path / "frames"
    frames.mkdir(exist_ok=True)
    (frames / "0.png").write_bytes(KITCHEN.read_bytes())
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    argv = ["track", str(frames), "the knife", "--out", str(out), "--bundle", str(bundle),
            "--max-new-tokens", "4", "--no-gif", *flags]  # fmt: skip
    assert main(argv) == 0
    return capsys.readouterr().err


def _level_after(*argv: str) -> int:
    assert main(list(argv)) == 0
    return logging.getLogger("segzero_edge").level


@pytest.mark.runtime
def test_v_shows_the_load_line(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv(LOG_LEVEL_ENV, raising=False)
    assert "loaded" not in _track_one_frame(capsys, tiny_bundle, tmp_path)  # warnings only
    err = _track_one_frame(capsys, tiny_bundle, tmp_path, "-v")
    line = next(x for x in err.splitlines() if x.startswith("loaded "))
    assert str(tiny_bundle) in line and "family multi-object" in line
    assert "reasoner llama.cpp on cpu" in line and "threads" in line
    assert "segmenter onnxruntime-cpu on cpu" in line and "overlap off" in line


@pytest.mark.runtime
def test_v_q_and_the_log_level_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The level a command runs at: its default (WARNING for doctor), moved by -v / -q, and
    SEGZERO_LOG_LEVEL as the starting point."""
    monkeypatch.delenv(LOG_LEVEL_ENV, raising=False)
    doctor = ("doctor", "--no-smoke")
    assert _level_after(*doctor) == logging.WARNING
    assert _level_after(*doctor, "-v") == logging.INFO
    assert _level_after(*doctor, "-vv") == logging.DEBUG
    assert _level_after(*doctor, "-q") == logging.ERROR
    monkeypatch.setenv(LOG_LEVEL_ENV, "info")
    assert _level_after(*doctor) == logging.INFO
    assert _level_after(*doctor, "-q") == logging.WARNING
    monkeypatch.setenv(LOG_LEVEL_ENV, "chatty")
    capsys.readouterr()
    code = main(list(doctor))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{LOG_LEVEL_ENV}='chatty' is not a log level" in err


@pytest.mark.runtime
def test_from_bundle_logs_one_line_after_loading(
    tiny_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="segzero_edge"),
        SegZeroEdge.from_bundle(tiny_bundle, n_gpu_layers=0, n_threads=2) as model,
    ):
        pass
    lines = [r.getMessage() for r in caplog.records if r.name == "segzero_edge.pipeline"]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"loaded {tiny_bundle}: family multi-object; ")
    assert "reasoner llama.cpp on cpu (2 threads)" in lines[0]
    assert f"segmenter {model.segmenter.name} on cpu" in lines[0] and "overlap off" in lines[0]


@pytest.mark.runtime
def test_doctor_ends_with_a_verdict_and_the_next_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--no-smoke"]) == 0
    *_, said, step = capsys.readouterr().out.strip().splitlines()
    assert said.startswith("verdict: READY: segment can run here (reasoner on llama.cpp")
    assert step.startswith("next: segzero-edge doctor --bundle BUNDLE")


def test_doctor_verdict_names_what_is_missing() -> None:
    ok = {"available": True, "reason": "ok"}
    rep = {
        "smoke": {},
        "backends": {
            "llama.cpp": ok,
            "onnxruntime": {"available": False, "reason": "onnxruntime is not installed"},
            "tensorrt": {"available": False, "reason": "no tensorrt"},
        },
    }
    ready, said, step = verdict(rep)
    assert not ready and said == "NOT READY: no SAM2 backend (onnxruntime is not installed)"
    assert "segzero-edge[runtime]" in step
    rep["backends"]["onnxruntime"] = ok
    rep["backends"]["tensorrt"] = ok
    rep["engines"] = {"folders": [{"this_device": True, "state": "stale"}]}
    ready, said, step = verdict(rep, Path("b"))
    assert (
        ready
        and "no current TensorRT engines" in said
        and step.startswith("segzero-edge build-engines b ")
    )


def test_missing_module_names_its_extra() -> None:
    cv2 = ModuleNotFoundError("No module named 'cv2'", name="cv2")
    assert str(missing_extra(cv2, "eval")) == (
        "segzero-edge eval needs the [eval] extra (cv2 is not installed): "
        "pip install 'segzero-edge[eval]'"
    )
    assert "[camera]" in str(missing_extra(cv2, "track"))
    torch = ModuleNotFoundError("No module named 'torch'", name="torch")
    assert "[export]" in str(missing_extra(torch, "export"))
    assert missing_extra(ModuleNotFoundError("x", name="not_ours")) is None
