"""``segzero-edge track`` on a small generated clip with the tiny bundle: per-frame masks,
overlay GIF, JSON; frame sources (folder, animated GIF) and their errors."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segzero_edge.cli import main
from segzero_edge.commands.track import frame_source
from segzero_edge.errors import CommandError
from segzero_edge.owned import OWNER_FILE
from tests.fixtures.tracking import synthetic_clip


def _write_frames(folder: Path, n: int) -> list[np.ndarray]:
    folder.mkdir()
    frames = synthetic_clip(n)
    for i, f in enumerate(frames):  # 1, 2, ..., 10: sorted as numbers, not as text
        Image.fromarray(f).save(folder / f"frame{i + 1}.png")
    return frames


def test_track_command(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    frames = _write_frames(tmp_path / "clip", 3)
    out = tmp_path / "out"
    argv = ["track", str(tmp_path / "clip"), "the red ball", "--out", str(out)]
    argv += ["--bundle", str(tiny_bundle), "--rereason-after", "2", "--score-threshold", "1e9"]
    argv += ["--max-new-tokens", "48"]
    assert main(argv) == 0
    report = json.loads((out / "track.json").read_text())
    per_frame = report["per_frame"]
    assert [r["frame_index"] for r in per_frame] == [0, 1, 2]
    # every frame counts as lost (threshold above any score): the reasoner runs again on
    # the frame after two lost frames
    assert [r["reasoned"] for r in per_frame] == [True, False, True]
    assert report["reasoned_frames"] == [0, 2]
    for r, frame in zip(per_frame, frames, strict=True):
        mask = np.asarray(Image.open(out / "masks" / r["file"]))
        assert mask.shape == frame.shape[:2] and set(np.unique(mask)) <= {0, 255}
        assert int((mask > 0).sum()) == r["mask_area"]
        assert r["timings"]["total"] > 0 and len(r["object_score_logits"]) == len(r["present"])
    if not per_frame[1]["reasoned"] and per_frame[1]["object_score_logits"]:
        assert per_frame[1]["timings"]["memory_attention"] > 0
        assert "mask" not in r and "object_masks" not in r  # the masks are the PNGs
    with Image.open(out / "overlay.gif") as gif:
        assert gif.n_frames == 3 and max(gif.size) <= 480
        # each frame is TrackedSegmentation.plot(): its header (describe()) on a black band
        band = np.asarray(gif.convert("RGB"))[4:12, 4:100].astype(int)
        assert (band.max(axis=2) < 30).mean() > 0.3 and (band.min(axis=2) > 200).any()
    assert "3 frames" in capsys.readouterr().err
    leftovers = [p.name for p in out.rglob(".*") if p.name != OWNER_FILE]
    assert not leftovers, f"temporary files left: {leftovers}"


def test_frame_sources(tmp_path: Path) -> None:
    frames = _write_frames(tmp_path / "clip", 11)
    n, it = frame_source(tmp_path / "clip", max_frames=None)
    got = list(it)
    assert n == 11 and all(np.array_equal(a, b) for a, b in zip(got, frames, strict=True))
    gif = tmp_path / "clip.gif"
    pics = [Image.fromarray(f) for f in frames[:4]]
    pics[0].save(gif, save_all=True, append_images=pics[1:], duration=100)
    n, it = frame_source(gif, max_frames=3)
    got = list(it)
    assert n == 3 and len(got) == 3 and got[0].shape == frames[0].shape
    with pytest.raises(CommandError, match="ffmpeg"):
        frame_source(tmp_path / "clip.mp4")  # checked by suffix: no decoder ships
    (tmp_path / "clip.mp4").write_bytes(b"\x00")
    with pytest.raises(CommandError, match="video file"):
        frame_source(tmp_path / "clip.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CommandError, match="no image files"):
        frame_source(tmp_path / "empty")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(CommandError, match="cannot read"):
        frame_source(tmp_path / "junk.png")


def test_track_errors(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["track", str(tmp_path / "nope"), "q", "--out", str(tmp_path / "o")])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    _write_frames(tmp_path / "clip", 1)
    argv = ["track", str(tmp_path / "clip"), "q", "--out", str(tmp_path / "o"), "--fps", "0"]
    assert main([*argv, "--bundle", str(tiny_bundle)]) == 2
    assert "--fps" in capsys.readouterr().err
    (tmp_path / "taken").write_text("a file")
    argv = ["track", str(tmp_path / "clip"), "q", "--out", str(tmp_path / "taken")]
    assert main([*argv, "--bundle", str(tiny_bundle)]) == 2
    assert "is a file" in capsys.readouterr().err
    argv = ["track", str(tmp_path / "clip"), "q", "--bundle", str(tiny_bundle)]
    assert main([*argv, "--out", str(tmp_path / "o"), "--rereason-after", "0"]) == 2
    assert "--rereason-after" in capsys.readouterr().err and not (tmp_path / "o").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main([*argv, "--out", str(tmp_path / "other")]) == 2
    assert "did not write" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["notes.txt"]


def test_track_checks_every_frame_before_any_work(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """An unreadable frame or one of another size is named before the model loads, and the
    output folder is not created: nothing half-written."""
    frames = _write_frames(tmp_path / "bad", 4)
    (tmp_path / "bad" / "00002.png").write_text("not a png")
    argv = ["track", str(tmp_path / "bad"), "q", "--bundle", str(tiny_bundle)]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cannot read image" in err and "00002.png" in err and not (tmp_path / "o").exists()
    Image.fromarray(frames[2][: frames[2].shape[0] // 2]).save(tmp_path / "bad" / "00002.png")
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "must have the same size" in err and not (tmp_path / "o").exists()


def test_bundle_manifest_and_old_bundle(
    bundle_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """New bundles list the memory graphs and SAM2's tracking settings; a bundle without
    them (exported before tracking) still loads, and ``track`` says to re-export it."""
    from segzero_edge.bundle import load_bundle
    from segzero_edge.bundle_memory import manifest_tracking
    from segzero_edge.layout import SAM2_MEMORY_FILES
    from segzero_edge.segmenter.memory import TrackingConfig

    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    assert set(SAM2_MEMORY_FILES) <= set(manifest["files"])
    assert manifest_tracking(bundle_copy) == TrackingConfig()  # SAM2.1-tiny's settings
    for name in SAM2_MEMORY_FILES:
        (bundle_copy / name).unlink()
        del manifest["files"][name]
    del manifest["segmenter"]["tracking"]
    (bundle_copy / "manifest.json").unlink()  # a hard link: replace, never edit in place
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    load_bundle(bundle_copy, verify_hashes=True)
    _write_frames(tmp_path / "clip", 1)
    argv = ["track", str(tmp_path / "clip"), "q", "--out", str(tmp_path / "o")]
    assert main([*argv, "--bundle", str(bundle_copy)]) == 2
    assert "re-export" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--fps", "nan"),
        ("--fps", "inf"),
        ("--score-threshold", "nan"),
        ("--score-threshold", "-inf"),
    ],
)
def test_non_finite_options_are_argparse_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, value: str
) -> None:
    """``--fps nan`` would fail only after every frame was tracked (writing the GIF), and
    ``--score-threshold nan`` would count no frame as lost: refused on the command line."""
    _write_frames(tmp_path / "clip", 1)
    argv = ["track", str(tmp_path / "clip"), "q", "--out", str(tmp_path / "o"), f"{flag}={value}"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {flag}: must be a finite number" in err
    assert not (tmp_path / "o").exists()


def test_track_gif_is_written_frame_by_frame(
    tiny_bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """overlay.gif is streamed: when a frame is tracked, the overlays of the frames before it
    are already in the file being written (every overlay was kept in memory until the end
    before, ~13 GiB for 10 minutes of 1080p at 30 fps). The GIF holds every frame at the
    --fps delay, and loops."""
    from segzero_edge.tracker import Tracker

    _write_frames(tmp_path / "clip", 4)
    out = tmp_path / "out"
    sizes: list[int] = []
    update = Tracker.update

    def observed_update(self: Tracker, frame: Any, **kwargs: Any) -> Any:
        # the folder being written (atomic_dir's temporary beside --out) holds the GIF so far
        gifs = list(tmp_path.glob(f".{out.name}.*.tmp/overlay.gif"))
        sizes.append(gifs[0].stat().st_size if len(gifs) == 1 else -1)  # -1: no GIF yet
        return update(self, frame, **kwargs)

    monkeypatch.setattr(Tracker, "update", observed_update)
    argv = ["track", str(tmp_path / "clip"), "the red ball", "--out", str(out)]
    assert main([*argv, "--bundle", str(tiny_bundle), "--fps", "4", "--max-new-tokens", "16"]) == 0
    assert len(sizes) == 3 and sizes[0] > 0, sizes
    assert all(b > a for a, b in itertools.pairwise(sizes)), sizes
    with Image.open(out / "overlay.gif") as gif:
        assert gif.n_frames == 4 and gif.info["loop"] == 0
        for i in range(4):
            gif.seek(i)
            assert gif.info["duration"] == 250
    assert (out / "overlay.gif").stat().st_size > sizes[-1]
    capsys.readouterr()
