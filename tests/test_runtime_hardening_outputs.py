"""Never delete what the project did not write: the demo bundle, ``SEGZERO_BUNDLE``,
``export --force``, ``track --out``, ``segment``'s set of outputs and the output lock.

Every case puts a user's files where the command writes and asserts they survive, byte for
byte, and that the refusal is one line naming the problem.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segzero_edge.cli import main
from segzero_edge.fileio import atomic_dir, atomic_paths, output_lock
from segzero_edge.owned import (
    BUNDLE_FORMAT,
    BUNDLE_FORMATS,
    OWNER_FILE,
    TRACK_OUTPUT_FORMAT,
    check_replaceable,
    owner_format,
    write_owner,
)
from tests.fixtures.tracking import synthetic_clip

ROOT = Path(__file__).resolve().parents[1]
KITCHEN = ROOT / "examples" / "kitchen.png"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def one_line_error(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def user_files(folder: Path) -> dict[str, bytes]:
    """Put a user's files (one nested) in ``folder``; return their contents."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub").mkdir(exist_ok=True)
    files = {"notes.txt": b"my notes\n", "sub/photo.jpg": b"\xff\xd8 not really a jpeg"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def assert_survive(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, name


def write_frames(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(synthetic_clip(n)):
        Image.fromarray(f).save(folder / f"{i:05d}.png")


# --- the default bundle: $SEGZERO_BUNDLE and the demo bundle's folder ----------------------


@pytest.mark.runtime
@pytest.mark.parametrize("command", ["segment", "track"])
def test_segzero_bundle_naming_a_user_folder_is_refused_and_kept(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: str,
) -> None:
    """``$SEGZERO_BUNDLE`` naming a folder without manifest.json was exported into with
    ``--force`` (the folder's files deleted); now it is an error and nothing is written."""
    mine = tmp_path / "my-folder"
    files = user_files(mine)
    monkeypatch.setenv("SEGZERO_BUNDLE", str(mine))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if command == "segment":
        argv = ["segment", str(KITCHEN), "knife"]
    else:
        write_frames(tmp_path / "clip", 1)
        argv = ["track", str(tmp_path / "clip"), "knife", "--out", str(tmp_path / "out")]
    code, err = run_cli(capsys, *argv)
    one_line_error(code, err, "SEGZERO_BUNDLE", "is not a bundle folder")
    assert_survive(mine, files)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "sub"]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


@pytest.mark.runtime
def test_demo_bundle_folder_holding_user_files_is_left_alone(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The demo bundle is built only in its cache folder when that is absent, empty or an
    earlier demo bundle; other content there (no manifest.json) is refused, not replaced."""
    monkeypatch.delenv("SEGZERO_BUNDLE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "segzero-edge" / "tiny-bundle"
    files = user_files(folder)
    code, err = run_cli(capsys, "segment", str(KITCHEN), "knife")
    one_line_error(code, err, str(folder), "not a demo bundle")
    assert_survive(folder, files)
    # a marker of another kind (a track output) does not make it a demo bundle either
    write_owner(folder, TRACK_OUTPUT_FORMAT)
    code, err = run_cli(capsys, "segment", str(KITCHEN), "knife")
    one_line_error(code, err, "not a demo bundle")
    assert_survive(folder, files)


def test_export_force_onto_a_user_folder_is_refused_at_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``export --force`` replaces only a folder a segzero-edge export marked (or an empty
    one): a user's folder, even one holding a manifest.json, is refused before any model is
    built, its files untouched."""
    import tempfile

    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setenv("TMPDIR", str(work))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    mine = tmp_path / "mine"
    files = user_files(mine)
    (mine / "manifest.json").write_text('{"my": "own json"}')
    files["manifest.json"] = b'{"my": "own json"}'
    for argv in (
        ["export", "--tiny", "--force", "-o", str(mine)],
        [
            "export",
            "--reasoner",
            str(tmp_path),
            "--segmenter",
            "x.pt",
            "--family",
            "multi-object",
            "--force",
            "-o",
            str(mine),
        ],
    ):
        code, err = run_cli(capsys, *argv)
        one_line_error(code, err, str(mine), "did not write", OWNER_FILE)
        assert_survive(mine, files)
        assert list(work.iterdir()) == []  # refused before any tiny model was built
    # a marker that is only the file name, without the format id, is not the project's
    (mine / OWNER_FILE).write_text("{}")
    code, err = run_cli(capsys, "export", "--tiny", "--force", "-o", str(mine))
    one_line_error(code, err, "did not write")
    assert_survive(mine, files)


def test_exported_bundles_carry_their_marker(tiny_bundle: Path) -> None:
    assert owner_format(tiny_bundle) == BUNDLE_FORMAT
    check_replaceable(tiny_bundle, BUNDLE_FORMATS)  # what export --force may replace


@pytest.mark.runtime
def test_atomic_dir_replaces_only_its_own_folders(tmp_path: Path) -> None:
    """The one rule under export and track: an owned write replaces an absent, empty or
    same-format folder, and refuses any other before the block runs."""
    out = tmp_path / "out"
    with atomic_dir(out, overwrite=True, owner=TRACK_OUTPUT_FORMAT) as tmp:
        (tmp / "a.txt").write_text("1")
    assert owner_format(out) == TRACK_OUTPUT_FORMAT
    with atomic_dir(out, overwrite=True, owner=TRACK_OUTPUT_FORMAT) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [OWNER_FILE, "b.txt"]
    mine = tmp_path / "mine"
    files = user_files(mine)
    ran = []
    with (
        pytest.raises(FileExistsError, match="did not write"),
        atomic_dir(mine, overwrite=True, owner=TRACK_OUTPUT_FORMAT),
    ):
        ran.append(True)
    assert not ran
    assert_survive(mine, files)
    # another format's folder is not replaced either (a bundle is not a track output)
    with (
        pytest.raises(FileExistsError, match="did not write"),
        atomic_dir(out, overwrite=True, owner=BUNDLE_FORMAT),
    ):
        pass
    # a symbolic link to a marked folder is refused, not followed
    (tmp_path / "link").symlink_to(out)
    with (
        pytest.raises(FileExistsError, match="symbolic link"),
        atomic_dir(tmp_path / "link", overwrite=True, owner=TRACK_OUTPUT_FORMAT),
    ):
        pass
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_dir(empty, overwrite=True, owner=TRACK_OUTPUT_FORMAT) as tmp:
        (tmp / "c.txt").write_text("3")
    assert (empty / "c.txt").read_text() == "3"


# --- track --out ---------------------------------------------------------------------------


def test_track_out_with_a_track_json_of_the_user_is_refused(
    capsys: pytest.CaptureFixture[str], tiny_bundle: Path, tmp_path: Path
) -> None:
    """A folder holding a file named track.json was replaced as a whole (the user's other
    files deleted); only a folder marked as an earlier track output is replaced now."""
    write_frames(tmp_path / "clip", 2)
    out = tmp_path / "results"
    files = user_files(out)
    (out / "track.json").write_text('{"mine": true}')
    files["track.json"] = b'{"mine": true}'
    argv = ["track", str(tmp_path / "clip"), "knife", "--bundle", str(tiny_bundle)]
    code, err = run_cli(capsys, *argv, "--out", str(out), "--max-new-tokens", "8")
    one_line_error(code, err, "--out", "did not write")
    assert_survive(out, files)


def test_track_out_naming_the_input_is_refused(
    capsys: pytest.CaptureFixture[str], tiny_bundle: Path, tmp_path: Path
) -> None:
    """``--out`` equal to the frames folder (or a folder holding the input) deleted the
    input frames; now it is refused, also when the input folder carries a track marker."""
    clip = tmp_path / "clip"
    write_frames(clip, 2)
    frames = {p.name: p.read_bytes() for p in clip.iterdir()}
    (clip / "track.json").write_text("{}")
    frames["track.json"] = b"{}"
    argv = ["track", str(clip), "knife", "--bundle", str(tiny_bundle), "--max-new-tokens", "8"]
    code, err = run_cli(capsys, *argv, "--out", str(clip))
    one_line_error(code, err, "--out", "is or holds the input")
    assert_survive(clip, frames)
    write_owner(clip, TRACK_OUTPUT_FORMAT)  # even an earlier output used as input
    frames[OWNER_FILE] = (clip / OWNER_FILE).read_bytes()
    code, err = run_cli(capsys, *argv, "--out", str(clip))
    one_line_error(code, err, "is or holds the input")
    code, err = run_cli(capsys, *argv, "--out", str(tmp_path))  # the input's parent
    one_line_error(code, err, "is or holds the input")
    assert_survive(clip, frames)


def test_track_out_replaces_an_earlier_track_output(
    capsys: pytest.CaptureFixture[str], tiny_bundle: Path, tmp_path: Path
) -> None:
    """The output of an earlier run (its marker) is replaced as a whole."""
    write_frames(tmp_path / "clip", 1)
    out = tmp_path / "out"
    argv = ["track", str(tmp_path / "clip"), "knife", "--bundle", str(tiny_bundle)]
    argv += ["--out", str(out), "--max-new-tokens", "8", "--no-gif", "--quiet"]
    assert main(argv) == 0
    assert owner_format(out) == TRACK_OUTPUT_FORMAT
    (out / "stale.txt").write_text("written into the first run's output")
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [OWNER_FILE, "masks", "track.json"]
    assert all(p.name.startswith("00000") for p in (out / "masks").iterdir())
    capsys.readouterr()


# --- segment: the set of outputs -----------------------------------------------------------


@pytest.mark.runtime
def test_numbered_output_that_is_a_folder_leaves_no_half_set(
    capsys: pytest.CaptureFixture[str], tiny_bundle: Path, tmp_path: Path
) -> None:
    """Two queries write mask-1.png and mask-2.png; mask-2.png being a folder was found only
    after mask-1.png was written. Every numbered name is checked before any model work."""
    (tmp_path / "mask-2.png").mkdir()
    argv = ["segment", str(KITCHEN), "knife", "bread", "--bundle", str(tiny_bundle)]
    code, err = run_cli(capsys, *argv, "--out", str(tmp_path / "mask.png"))
    one_line_error(code, err, "--out", "mask-2.png", "is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask-2.png"]
    code, err = run_cli(
        capsys, *argv, "--out", str(tmp_path / "m.png"), "--overlay", str(tmp_path / "mask.png")
    )
    one_line_error(code, err, "--overlay", "mask-2.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask-2.png"]


@pytest.mark.runtime
def test_out_and_overlay_naming_one_file_are_refused(
    capsys: pytest.CaptureFixture[str], tiny_bundle: Path, tmp_path: Path
) -> None:
    """``--out x.png --overlay x.png`` wrote the overlay over the mask; refused now, also
    through a symbolic link, before the model runs; the existing file is kept."""
    x = tmp_path / "x.png"
    x.write_bytes(b"the user's picture")
    argv = ["segment", str(KITCHEN), "knife", "--bundle", str(tiny_bundle)]
    code, err = run_cli(capsys, *argv, "--out", str(x), "--overlay", str(x))
    one_line_error(code, err, "--out", "--overlay", "name the same file")
    (tmp_path / "y.png").symlink_to(x)
    code, err = run_cli(capsys, *argv, "--out", str(x), "--overlay", str(tmp_path / "y.png"))
    one_line_error(code, err, "name the same file")
    assert x.read_bytes() == b"the user's picture"


@pytest.mark.runtime
def test_segment_writes_every_numbered_output(
    capsys: pytest.CaptureFixture[str], tiny_bundle_runs: Path, tmp_path: Path
) -> None:
    argv = ["segment", str(KITCHEN), "knife", "bread", "--bundle", str(tiny_bundle_runs)]
    argv += ["--out", str(tmp_path / "m.png"), "--overlay", str(tmp_path / "o.png")]
    code, err = run_cli(capsys, *argv)
    assert code == 0, err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["m-1.png", "m-2.png", "o-1.png", "o-2.png"]
    kitchen = np.asarray(Image.open(KITCHEN).convert("RGB"))
    for name in names:
        with Image.open(tmp_path / name) as pic:
            assert pic.size == (kitchen.shape[1], kitchen.shape[0])
            assert pic.mode == ("L" if name.startswith("m") else "RGB")


@pytest.mark.runtime
def test_atomic_paths_write_all_or_none(tmp_path: Path) -> None:
    """A name taken by a folder while the set is written: none of the set is renamed into
    place, no temporary file is left."""
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"old a")
    with pytest.raises(IsADirectoryError), atomic_paths([a, b]) as (ta, tb):
        ta.write_bytes(b"new a")
        tb.write_bytes(b"new b")
        b.mkdir()
    assert a.read_bytes() == b"old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]
    with (
        pytest.raises(ValueError, match="name the same file"),
        atomic_paths([a, a.parent / "a.png"]),
    ):
        pass


# --- the output lock -----------------------------------------------------------------------


@pytest.mark.runtime
def test_output_lock_does_not_follow_a_symbolic_link(tmp_path: Path) -> None:
    """A link planted as the lock file made the lock create (and lock) its target; now it is
    refused, the target not created, the link left as it was."""
    target = tmp_path / "elsewhere" / "created-by-the-lock"
    target.parent.mkdir()
    lock = tmp_path / ".bundle.lock"
    lock.symlink_to(target)
    with pytest.raises(FileExistsError, match="symbolic link"), output_lock(tmp_path / "bundle"):
        pass
    assert not os.path.lexists(target) and lock.is_symlink()
    existing = tmp_path / "elsewhere" / "file"
    existing.write_text("keep")
    lock.unlink()
    lock.symlink_to(existing)
    with pytest.raises(FileExistsError, match="symbolic link"), atomic_dir(tmp_path / "bundle"):
        pass
    assert existing.read_text() == "keep" and not (tmp_path / "bundle").exists()
