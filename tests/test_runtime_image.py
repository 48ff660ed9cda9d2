"""Image inputs: paths, PIL images, arrays; everything else is a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segzero_edge.image import load_image

pytestmark = pytest.mark.runtime


def test_array_pil_and_path_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (7, 11, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(arr).save(path)
    for src in (arr, Image.fromarray(arr), path, str(path)):
        out = load_image(src)
        assert out.shape == (7, 11, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, arr)


def test_pil_modes_are_converted_to_rgb() -> None:
    gray = Image.fromarray(np.full((4, 5), 77, np.uint8), "L")
    assert load_image(gray).shape == (4, 5, 3)
    rgba = Image.fromarray(np.zeros((4, 5, 4), np.uint8), "RGBA")
    assert load_image(rgba).shape == (4, 5, 3)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros((4, 5), np.uint8), "H x W x 3"),
        (np.zeros((4, 5, 4), np.uint8), "H x W x 3"),
        (np.zeros((4, 5, 3), np.float32), "uint8"),
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (12, "got int"),
        ([[1, 2, 3]], "got list"),
    ],
)
def test_bad_images_are_clear_value_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_image(value)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        load_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"bad\.jpg"):
        load_image(bad)
