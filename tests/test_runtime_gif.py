"""``GifWriter``: an animated GIF written frame by frame, holding no frame in memory."""

from __future__ import annotations

import gc
import itertools
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segzero_edge.gif import GifWriter

pytestmark = pytest.mark.runtime


def frames(n: int, hw: tuple[int, int] = (90, 120)) -> Iterator[Image.Image]:
    """``n`` RGB frames with more than 256 colours each (the adaptive palette must choose)."""
    rng = np.random.default_rng(5)
    for _ in range(n):
        yield Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8), "RGB")


def test_frames_read_back_as_written(tmp_path: Path) -> None:
    """Pillow reads the file back: every frame, its delay, the loop; each frame's pixels are
    the frame in its own adaptive palette (as Pillow's writer converts RGB) exactly."""
    path = tmp_path / "a.gif"
    pics = list(frames(4))
    with GifWriter(path, duration_ms=120) as gif:
        for pic in pics:
            gif.add(pic)
    assert gif.frames == 4
    with Image.open(path) as back:
        assert back.n_frames == 4 and back.size == (120, 90) and back.info["loop"] == 0
        for i, pic in enumerate(pics):
            back.seek(i)
            assert back.info["duration"] == 120
            want = pic.convert("P", palette=Image.Palette.ADAPTIVE).convert("RGB")
            assert np.array_equal(np.asarray(back.convert("RGB")), np.asarray(want)), i


def test_each_frame_is_on_disk_when_added_and_not_kept(tmp_path: Path) -> None:
    """Bounded memory: after ``add`` the frame is in the file and the writer holds no
    reference to it (Pillow's ``append_images`` keeps every frame until the end)."""
    path = tmp_path / "a.gif"
    sizes, alive = [], []
    with GifWriter(path, duration_ms=100) as gif:
        for pic in frames(6):
            gif.add(pic)
            sizes.append(path.stat().st_size)
            alive.append(weakref.ref(pic))
            del pic
            gc.collect()
            assert sum(r() is not None for r in alive) == 0
    assert all(b > a for a, b in itertools.pairwise(sizes)), sizes
    assert path.stat().st_size == sizes[-1] + 1  # the trailer


def test_bad_arguments(tmp_path: Path) -> None:
    for bad in (float("nan"), float("inf"), -1, "100", None):
        with pytest.raises(ValueError, match="duration_ms"):
            GifWriter(tmp_path / "x.gif", duration_ms=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "x.gif").exists()
    with GifWriter(tmp_path / "y.gif", duration_ms=100) as gif:
        first, other = frames(1), frames(1, (60, 120))
        gif.add(next(first))
        with pytest.raises(ValueError, match="frame 1 is 120 x 60 but the GIF is 120 x 90"):
            gif.add(next(other))
    with pytest.raises(RuntimeError, match="closed"):
        gif.add(next(frames(1)))
    with Image.open(tmp_path / "y.gif") as back:
        assert back.n_frames == 1
