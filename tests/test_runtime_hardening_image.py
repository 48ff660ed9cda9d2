"""Images with more than 8 bits, huge headers and EXIF orientation (issue 14).

16-bit samples are scaled (65535 -> 255, 8224 -> 32), the size is checked from the header
before decoding (also above Pillow's own bomb limit), and EXIF orientation is applied the
same way for a path, a PIL image and the ReasonSeg loader.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segzero_edge.image import MAX_PIXELS, image_size, load_image, to_8bit


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 256 * 4).astype(np.uint16).reshape(4, 256)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"
    out = load_image(path)
    assert out.shape == (4, 256, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    want = np.rint(ramp / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], want)
    assert (out == 255).mean() < 0.01  # clipped, 99.5 % of it was white


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_wide_pil_modes(mode: str) -> None:
    values = np.array([[0, 257, 8224, 32896, 65535, 70000]], dtype=np.float64)
    if mode == "I;16":
        img = Image.fromarray(values[:, :5].astype(np.uint16))
        values = values[:, :5]
    elif mode == "I":
        img = Image.fromarray(values.astype(np.int32), "I")
    else:
        img = Image.fromarray(values.astype(np.float32), "F")
    assert img.mode == mode
    got = load_image(img)[0, :, 0].tolist()
    assert got == [0, 1, 32, 128, 255, 255][: values.shape[1]]


def test_to_8bit_edges() -> None:
    v = np.array([-5, 0, 128, 129, 8224, 65535, 1e9, np.nan])
    assert to_8bit(v).tolist() == [0, 0, 0, 1, 32, 255, 255, 0]


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose IHDR claims ``width`` x ``height`` but holds one empty IDAT: decoding it
    would fail, so an error about its size proves nothing was decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("w", "h"),
    [(12000, 9000), (20000, 10000), (100_000, 100_000)],
    ids=["above our limit", "above Pillow's bomb error", "10 G pixels"],
)
def test_size_is_checked_from_the_header(tmp_path: Path, w: int, h: int) -> None:
    path = tmp_path / "huge.png"
    _png_header_only(path, w, h)
    with pytest.raises(ValueError, match=r"huge\.png is too large"):
        load_image(path)
    with pytest.raises(ValueError, match="too large"):
        image_size(path)
    assert w * h > MAX_PIXELS


def test_pil_image_above_the_limit_is_refused_before_conversion() -> None:
    img = Image.new("L", (8001, 8000))
    with pytest.raises(ValueError, match=r"PIL image is too large: 8001 x 8000"):
        load_image(img)


def _rotated_jpeg(path: Path, orientation: int) -> np.ndarray:
    """A 320 x 120 (W x H) JPEG stored sideways with an EXIF Orientation tag; returns the
    pixels as stored."""
    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 256, (120, 320, 3), dtype=np.uint8)
    stored[:20, :40] = 255  # a corner marker that shows the turn
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, quality=100, exif=exif.tobytes())
    return stored


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_one_exif_rule_for_paths_and_pil_images(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / "turned.jpg"
    _rotated_jpeg(path, orientation)
    from_path = load_image(path)
    from_pil = load_image(Image.open(path))
    np.testing.assert_array_equal(from_path, from_pil)
    h, w = from_path.shape[:2]
    assert (w, h) == ((320, 120) if orientation == 3 else (120, 320))
    assert image_size(path) == (w, h)
    # an image already turned upright is not turned a second time
    from PIL import ImageOps

    np.testing.assert_array_equal(load_image(ImageOps.exif_transpose(Image.open(path))), from_path)


def test_reasonseg_loader_reads_a_rotated_jpeg(tmp_path: Path) -> None:
    from segzero_train.datasets import load_reasonseg_sample

    path = tmp_path / "sample.jpg"
    _rotated_jpeg(path, 6)  # stored 320 x 120, shown 120 x 320
    shapes = [{"label": "target", "points": [[10, 10], [100, 10], [100, 300], [10, 300]]}]
    (tmp_path / "sample.json").write_text(json.dumps({"text": ["the thing"], "shapes": shapes}))
    sample = load_reasonseg_sample(tmp_path / "sample.json")
    assert sample.size == (120, 320)
    img = sample.load_image()  # before: "image is 120 x 320 but the annotation says 320 x 120"
    assert img.shape == (320, 120, 3) and sample.mask.shape == (320, 120)
