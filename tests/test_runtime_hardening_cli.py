"""The CLI and the exporter under faults (issue 14): one line and exit 2 for every error,
exports that lock, check first and clean up on SIGTERM, files that respect the umask."""

from __future__ import annotations

import _thread
import json
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segzero_edge.cli import main
from segzero_edge.fileio import atomic_dir, atomic_path, output_lock, sha256_file

ROOT = Path(__file__).resolve().parents[1]
KITCHEN = ROOT / "examples" / "kitchen.png"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("segzero-edge ") and ": error: " in lines[0], err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def cli_subprocess(*argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "segzero_edge.cli", *argv]
    return subprocess.run(cmd, text=True, capture_output=True, timeout=300, **kw)  # type: ignore[call-overload]


def _replace_file(bundle: Path, name: str, data: bytes) -> None:
    """Put ``data`` in the bundle as ``name`` with a manifest that matches it (so only the
    loader can tell)."""
    (bundle / name).unlink()
    (bundle / name).write_bytes(data)
    mpath = bundle / "manifest.json"
    m = json.loads(mpath.read_text())
    m["files"][name] = {"size": len(data), "sha256": sha256_file(bundle / name)}
    mpath.unlink()
    mpath.write_text(json.dumps(m))


# --- segment: every error one line, exit 2 -------------------------------------------------


def test_out_naming_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "segment", str(KITCHEN), "knife", "--out", str(tmp_path))
    assert_one_line_error(code, err, "--out", "is a directory")


def test_out_naming_a_device_or_fifo_is_left_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Renaming a temporary file over ``/dev/full`` (as root) would replace the device: an
    existing path that is not a regular file is refused, by the CLI before any model work
    and by the atomic writer itself."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, "segment", str(KITCHEN), "knife", "--out", str(fifo))
    assert_one_line_error(code, err, "--out", "not a regular file")
    with pytest.raises(FileExistsError, match="not a regular file"), atomic_path(fifo):
        pass
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_out_in_a_folder_that_takes_no_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "segment", str(KITCHEN), "knife", "--overlay", "/proc/o.png")
    assert_one_line_error(code, err, "--overlay", "cannot write files in /proc")


def test_query_with_a_non_utf8_byte(capsys: pytest.CaptureFixture[str], tiny_bundle: Path) -> None:
    # what Python makes of the byte 0xff in argv (surrogateescape)
    code, _, err = run_cli(
        capsys, "segment", str(KITCHEN), "knife\udcff", "--bundle", str(tiny_bundle)
    )
    assert_one_line_error(code, err, "not valid UTF-8", "\\udcff")


def test_non_utf8_argv_bytes_in_a_process(tiny_bundle: Path) -> None:
    cmd = [sys.executable.encode(), b"-m", b"segzero_edge.cli", b"segment"]
    cmd += [str(KITCHEN).encode(), b"knife\xff", b"--bundle", str(tiny_bundle).encode()]
    done = subprocess.run(cmd, capture_output=True, timeout=300)
    assert_one_line_error(done.returncode, done.stderr.decode(errors="replace"), "not valid UTF-8")


def test_tensorrt_unavailable(capsys: pytest.CaptureFixture[str], tiny_bundle: Path) -> None:
    argv = ["segment", str(KITCHEN), "knife", "--bundle", str(tiny_bundle)]
    code, _, err = run_cli(capsys, *argv, "--segmenter-backend", "tensorrt")
    assert_one_line_error(code, err, "backend 'tensorrt' is unavailable")


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        # the bundle check reads every ONNX file's structure (external data) before onnxruntime
        ("sam2_decoder.onnx", "is not a readable ONNX model"),
        ("reasoner.gguf", "llama.cpp could not load"),
        ("mmproj.gguf", "libmtmd could not load"),
    ],
)
def test_unloadable_model_files(
    capsys: pytest.CaptureFixture[str], bundle_copy: Path, name: str, needle: str
) -> None:
    """Files of the right size and hash that cannot be loaded: one clear line naming the file."""
    _replace_file(bundle_copy, name, b"GGUF" + random.Random(0).randbytes(4000))
    argv = ["segment", str(KITCHEN), "knife", "--bundle", str(bundle_copy)]
    code, _, err = run_cli(capsys, *argv, "--segmenter-backend", "onnxruntime")
    assert_one_line_error(code, err, needle, name)


def test_hostile_bundle(capsys: pytest.CaptureFixture[str], bundle_copy: Path) -> None:
    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["reasoner"] = None
    (bundle_copy / "manifest.json").unlink()
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    code, _, err = run_cli(capsys, "segment", str(KITCHEN), "knife", "--bundle", str(bundle_copy))
    assert_one_line_error(code, err, "manifest.json: reasoner: expected an object")


@pytest.fixture(scope="module")
def small_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-image") / "small.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 80, 3), np.uint8)).save(path)
    return path


def test_read_only_output(
    capsys: pytest.CaptureFixture[str], tiny_bundle: Path, small_image: Path
) -> None:
    """/sys refuses new files to everyone (root included): found before the model runs."""
    argv = ["segment", str(small_image), "knife", "--bundle", str(tiny_bundle)]
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, *argv, "--out", "/sys/segzero-mask.png")
    assert_one_line_error(code, err, "/sys")
    print(f"\nrefused after {time.perf_counter() - t0:.2f} s")


@pytest.mark.usefixtures("python_sigint")
def test_ctrl_c_during_segment_exits_130(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tiny_bundle: Path,
    small_image: Path,
) -> None:
    from segzero_edge.reasoner.llama_cpp import LlamaCppReasoner

    started = threading.Event()
    generate = LlamaCppReasoner.generate

    def generate_and_tell(
        self: LlamaCppReasoner, image: np.ndarray, prompt: str, **kwargs: object
    ) -> object:
        started.set()
        return generate(self, image, prompt, **kwargs)  # type: ignore[arg-type]

    def ctrl_c() -> None:
        started.wait(120)
        _thread.interrupt_main()

    monkeypatch.setattr(LlamaCppReasoner, "generate", generate_and_tell)
    threading.Thread(target=ctrl_c).start()
    out = small_image.parent / "interrupted.png"
    code, stdout, err = run_cli(
        capsys,
        "segment",
        str(small_image),
        "knife",
        "--bundle",
        str(tiny_bundle),
        "--out",
        str(out),
    )
    assert started.is_set() and code == 130, err
    assert stdout == "" and "Traceback" not in err and "Exception ignored" not in err
    assert not out.exists()


def test_disk_full_on_stdout() -> None:
    """stdout on /dev/full: every write fails with ENOSPC, as on a full disk."""
    with open("/dev/full", "w") as full:
        cmd = [sys.executable, "-m", "segzero_edge.cli", "doctor", "--json"]
        done = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert_one_line_error(done.returncode, done.stderr, "No space left on device")


def test_disk_full_writing_the_mask(tiny_bundle: Path, small_image: Path, tmp_path: Path) -> None:
    """A file size limit makes the PNG write fail part way (EFBIG), as a full disk does."""
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))\n"
        "from segzero_edge.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "mask.png"
    argv = ["segment", str(small_image), "knife", "--bundle", str(tiny_bundle), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=300
    )
    assert_one_line_error(done.returncode, done.stderr, "File too large")
    assert not out.exists() and not list(tmp_path.glob(".mask.png.*"))  # nothing half-written


def test_doctor_with_an_empty_engines_list(
    capsys: pytest.CaptureFixture[str], bundle_copy: Path
) -> None:
    from segzero_edge.engine_cache import engine_dir

    d = engine_dir(bundle_copy)
    d.mkdir(parents=True)
    (d / "engines.json").write_text(json.dumps({"schema_version": 1, "engines": []}))
    for name in ("sam2_encoder", "sam2_decoder"):
        (d / f"{name}.plan").write_bytes(b"x")
    code, out, err = run_cli(capsys, "doctor", "--bundle", str(bundle_copy))
    assert code == 0 and "Traceback" not in err, err
    assert out.count("engines.json has no 'engines' table") == 2, out


def test_unexpected_errors_are_one_line_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import segzero_edge.commands.doctor as doctor

    def broken(*args: object, **kwargs: object) -> dict[str, object]:
        raise KeyError("device")

    monkeypatch.setattr(doctor, "report", broken)
    code, _, err = run_cli(capsys, "doctor")
    assert_one_line_error(code, err, "unexpected KeyError", "SEGZERO_EDGE_DEBUG=1")
    monkeypatch.setenv("SEGZERO_EDGE_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["doctor"])


# --- export ----------------------------------------------------------------------------------


def test_offline_hub_id(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 does
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    out = tmp_path / "bundle"
    argv = ["export", "--reasoner", "Ricky06662/Seg-Zero-7B", "--segmenter", "sam2.1_hiera_tiny"]
    code, _, err = run_cli(capsys, *argv, "-q", "-o", str(out))  # -q: no step lines
    assert_one_line_error(code, err, "'Ricky06662/Seg-Zero-7B' is not a local folder")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hf") == []


def test_tiny_export_onto_an_existing_folder_fails_at_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setenv("TMPDIR", str(work))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    out = tmp_path / "existing"
    out.mkdir()
    code, _, err = run_cli(capsys, "export", "--tiny", "-o", str(out))
    assert_one_line_error(code, err, "already exists", "--force")
    assert list(work.iterdir()) == []  # no tiny model was built first


def test_export_while_another_writes_the_same_output(
    capsys: pytest.CaptureFixture[str], tiny_qwen_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from segzero_edge.fileio import output_lock\n"
            "with output_lock(sys.argv[1]):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(60)\n",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        argv = ["export", "--reasoner", str(tiny_qwen_dir), "--segmenter", "x.pt"]
        argv += ["--family", "multi-object"]
        t0 = time.perf_counter()
        code, _, err = run_cli(capsys, *argv, "-o", str(out))
        assert_one_line_error(code, err, "another process is writing it")
        print(f"\nrefused after {time.perf_counter() - t0:.2f} s")
        with pytest.raises(FileExistsError, match="another process is writing"), atomic_dir(out):
            pass
    finally:
        holder.kill()
        holder.wait()
    with atomic_dir(out) as tmp:  # the lock died with its holder
        (tmp / "f").write_text("x")
    assert (out / "f").read_text() == "x"
    assert not (tmp_path / ".bundle.lock").exists()


def test_output_lock_excludes_other_threads_but_not_its_holder(tmp_path: Path) -> None:
    import threading

    got: list[BaseException] = []

    def other_writer() -> None:
        try:
            with output_lock(tmp_path / "x"):
                pass
        except BaseException as e:
            got.append(e)

    with output_lock(tmp_path / "x"):
        with output_lock(tmp_path / "x"):  # the holder again (build_tiny_bundle -> export)
            pass
        worker = threading.Thread(target=other_writer)
        worker.start()
        worker.join()
    assert len(got) == 1 and isinstance(got[0], FileExistsError)
    other_writer()  # released
    assert len(got) == 1 and not (tmp_path / ".x.lock").exists()


def test_sigterm_mid_export_cleans_up(tmp_path: Path) -> None:
    def ours(folder: Path) -> list[str]:
        return [p.name for p in folder.iterdir() if p.name.startswith("segzero-")]

    work, parent = tmp_path / "tmp", tmp_path / "out"
    work.mkdir()
    parent.mkdir()
    out = parent / "bundle"
    env = {**os.environ, "TMPDIR": str(work)}
    cmd = [sys.executable, "-m", "segzero_edge.cli", "export", "--tiny", "-o", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        # wait until the export has both temporary folders and is writing into the bundle's
        while not any(p.name.endswith(".tmp") and any(p.iterdir()) for p in parent.iterdir()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the export never started writing"
            time.sleep(0.05)
        assert ours(work)  # the tiny models' work folder
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err.decode(errors="replace")[-2000:]
    # what torch and other libraries cache in TMPDIR (torchinductor_<user>) is theirs to keep
    assert ours(work) == [], ours(work)
    assert list(parent.iterdir()) == [], list(parent.iterdir())


@pytest.mark.parametrize("signalled", [True, False])
def test_sigterm_that_a_library_turned_into_an_error_still_exits_143(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], signalled: bool
) -> None:
    """torch catches what a signal handler raises while it reads a sequence and raises a
    ValueError of its own; the kill must still end as SIGTERM, not as a user error."""
    from segzero_edge import cli
    from segzero_edge.errors import Terminated

    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("the test runner has its own SIGTERM handler; the CLI leaves it alone")

    def swallowing(args: object) -> int:
        try:
            if signalled:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises here
            raise ValueError("no signal")
        except Terminated:
            raise ValueError("could not determine the shape of object type") from None

    def register(sub: cli.argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        sub.add_parser("swallow").set_defaults(func=swallowing)

    monkeypatch.setattr(cli, "registered", lambda: {"swallow": register})
    code, _, err = run_cli(capsys, "swallow")
    if signalled:
        assert code == 143 and "error" not in err, err
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone again
    else:
        assert_one_line_error(code, err, "no signal")


# --- permissions -----------------------------------------------------------------------------


def _modes(root: Path) -> dict[str, int]:
    out = {".": root.stat().st_mode & 0o777}
    for p in root.rglob("*"):
        out[str(p.relative_to(root))] = p.stat().st_mode & 0o777
    return out


def test_exported_bundle_follows_the_umask(tiny_bundle: Path) -> None:
    from segzero_edge.fileio import current_umask

    mask = current_umask()
    for name, mode in _modes(tiny_bundle).items():
        want = (0o777 if (tiny_bundle / name).is_dir() else 0o666) & ~mask
        assert mode == want, (name, oct(mode), oct(want))


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_writes_follow_the_umask(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "sub").mkdir()
            (tmp / "sub" / "f.json").write_text("{}")
        with atomic_path(tmp_path / "mask.png") as tmp:
            Image.new("L", (2, 2)).save(tmp, format="PNG")
    finally:
        os.umask(old)
    assert _modes(tmp_path / "d") == {
        ".": 0o777 & ~mask,
        "sub": 0o777 & ~mask,
        "sub/f.json": 0o666 & ~mask,
    }
    assert (tmp_path / "mask.png").stat().st_mode & 0o777 == 0o666 & ~mask
