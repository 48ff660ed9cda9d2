"""Pre/post-processing parity: native CPU twin and numpy fallback vs torch / PIL references.

References: Meta's ``SAM2Transforms`` (torchvision Resize, antialias=True, + Normalize),
``PIL.Image.resize(BILINEAR)``, ``F.interpolate(bilinear, align_corners=False) > 0``.
Tolerances: SAM2 input max |diff| <= 5e-6 (float32 rounding; torch sums its taps in another
order); reasoner input and masks exact; native twin == numpy bit for bit.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from segzero_edge import native, pixels
from segzero_edge.image import NV12Frame

SAM_TOL = 5e-6
# (H, W): odd, tiny, portrait, landscape, upscaling, a 12 MP phone photo.
SIZES = [(1, 1), (3, 5), (5, 3), (37, 1000), (840, 840), (1080, 1920), (2000, 999), (3024, 4032)]
MASK_SIZES = [(1, 1), (3, 5), (256, 256), (100, 700), (1080, 1920), (3024, 4032)]


@cache
def rgb(h: int, w: int) -> np.ndarray:
    """Random image: smooth gradient plus noise (so both flat and busy areas occur)."""
    rng = np.random.default_rng(h * 10007 + w)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (yy * 255 // max(h - 1, 1) + xx * 255 // max(w - 1, 1))[..., None] // 2
    noise = rng.integers(-60, 61, (h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@cache
def sam_reference(h: int, w: int) -> np.ndarray:
    from sam2.utils.transforms import SAM2Transforms

    with torch.no_grad():
        return SAM2Transforms(resolution=1024, mask_threshold=0.0)(rgb(h, w))[None].numpy()


@cache
def pil_reference(h: int, w: int) -> np.ndarray:
    img = Image.fromarray(rgb(h, w), "RGB").resize((840, 840), Image.BILINEAR)
    return np.asarray(img)


@cache
def sam_numpy(h: int, w: int) -> np.ndarray:
    return pixels.preprocess_sam_numpy(rgb(h, w))


def logits(n: int, seed: int) -> np.ndarray:
    """Mask logits with large blobs, noise and exact zeros (threshold edge cases)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    out = []
    for _ in range(n):
        cy, cx, r = rng.uniform(40, 216), rng.uniform(40, 216), rng.uniform(10, 80)
        blob = r - np.hypot(yy - cy, xx - cx)
        out.append(blob + rng.normal(0, 2, blob.shape).astype(np.float32))
    lg = np.stack(out).astype(np.float32)
    lg[:, ::17, ::13] = 0.0
    return lg


def torch_mask(lg: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    up = F.interpolate(torch.from_numpy(lg)[None], size=hw, mode="bilinear", align_corners=False)
    up = up[0].numpy()
    return (up > 0).any(axis=0), up


def box_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    return None if ys.size == 0 else (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))


# ---- SAM2 input -------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_kernels_sam_numpy_matches_sam2_transforms(hw: tuple[int, int]) -> None:
    ref, got = sam_reference(*hw), sam_numpy(*hw)
    assert got.shape == (1, 3, 1024, 1024) and got.dtype == np.float32
    err = float(np.abs(got - ref).max())
    print(f"numpy SAM2 input {hw}: max|diff| vs SAM2Transforms = {err:.2e}")
    assert err <= SAM_TOL, f"numpy SAM2 input {hw}: max|diff| {err:.2e} > {SAM_TOL}"


@pytest.mark.parametrize("hw", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_kernels_native_matches_references(native_cpu_lib: Path, hw: tuple[int, int]) -> None:
    sam, reasoner = native.preprocess(rgb(*hw))
    assert sam is not None and reasoner is not None
    err = float(np.abs(sam - sam_reference(*hw)).max())
    same_np = bool(np.array_equal(sam, sam_numpy(*hw)))
    diff = np.abs(reasoner.astype(int) - pil_reference(*hw))
    exact = float((diff == 0).mean())
    print(f"native {hw}: SAM max|diff| {err:.2e}, == numpy {same_np}; PIL exact {exact:.4%}")
    assert err <= SAM_TOL, f"native SAM2 input {hw}: max|diff| {err:.2e} > {SAM_TOL}"
    assert same_np, f"native SAM2 input {hw} differs from the numpy twin"
    assert diff.max() <= 1 and exact == 1.0, f"reasoner input {hw}: {exact:.4%} exact vs PIL"


def test_kernels_reasoner_numpy_is_pil() -> None:
    got = pixels.preprocess_reasoner_numpy(rgb(1080, 1920))
    assert got.shape == (840, 840, 3) and got.dtype == np.uint8
    assert np.array_equal(got, pil_reference(1080, 1920))


def test_kernels_float16_output(native_cpu_lib: Path) -> None:
    img = rgb(1080, 1920)
    sam16, _ = native.preprocess(img, reasoner=False, sam_dtype=np.float16)
    assert sam16 is not None and sam16.dtype == np.float16
    np16 = pixels.preprocess_sam_numpy(img, np.float16)
    assert np.array_equal(sam16.view(np.uint16), np16.view(np.uint16)), "f16 != numpy astype"
    ref = sam_reference(1080, 1920)
    ulp = np.spacing(np.abs(ref).astype(np.float16)).astype(np.float32)
    # one half-ulp of rounding on top of the float32 tolerance (matters only near zero)
    off = np.abs(sam16.astype(np.float32) - ref) / (ulp + SAM_TOL)
    same = float((sam16 == ref.astype(np.float16)).mean())
    print(f"float16 SAM2 input: max {off.max():.2f} half-ulp from torch, {same:.4%} == ref.half()")
    assert off.max() <= 1.0, f"float16 output {off.max():.2f} half-ulp from the reference"


# ---- NV12 -------------------------------------------------------------------------------------


def yuv_reference(nv12: np.ndarray, full_range: bool) -> np.ndarray:
    """Float64 conversion with ITU-R BT.601-7's exact coefficients (Kr = 0.299, Kb = 0.114;
    limited range: Y 16..235 -> 219 steps, Cb/Cr 16..240 -> 224 steps), chroma nearest."""
    h = nv12.shape[0] * 2 // 3
    y = nv12[:h].astype(np.float64)
    uv = nv12[h:].reshape(h // 2, -1, 2).astype(np.float64) - 128
    u = uv[..., 0].repeat(2, 0).repeat(2, 1)
    v = uv[..., 1].repeat(2, 0).repeat(2, 1)
    if full_range:
        c, ku = y, 1.0
    else:
        c, ku = (y - 16) * 255 / 219, 255 / 224
    r = c + 1.402 * ku * v
    g = c - 0.344136 * ku * u - 0.714136 * ku * v
    b = c + 1.772 * ku * u
    return np.clip(np.rint(np.stack([r, g, b], -1)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("full_range", [False, True], ids=["limited", "full"])
def test_kernels_nv12_conversion(full_range: bool) -> None:
    rng = np.random.default_rng(5)
    nv12 = rng.integers(0, 256, (720 * 3 // 2, 1280), dtype=np.uint8)
    got = pixels.nv12_to_rgb(nv12, full_range=full_range).astype(int)
    diff = np.abs(got - yuv_reference(nv12, full_range))
    exact = float((diff == 0).mean())
    print(f"NV12 {'full' if full_range else 'limited'} range vs float64: exact {exact:.4%}")
    assert diff.max() <= 1 and exact > 0.99
    if full_range:  # PIL's own YCbCr (JPEG, full range) conversion as a second reference
        h = 720
        ycc = np.stack(
            [nv12[:h], *(nv12[h:].reshape(h // 2, -1, 2)[..., i].repeat(2, 0).repeat(2, 1)
                         for i in (0, 1))], -1,
        )  # fmt: skip
        pil = np.asarray(Image.fromarray(ycc, "YCbCr").convert("RGB")).astype(int)
        d = np.abs(got - pil)
        print(f"NV12 full range vs PIL YCbCr: exact {(d == 0).mean():.4%}, max {d.max()}")
        assert d.max() <= 1


@pytest.mark.parametrize("hw", [(2, 2), (4, 6), (1080, 1920)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("fmt", ["nv12", "nv12_full"])
def test_kernels_nv12_fused_path(native_cpu_lib: Path, hw: tuple[int, int], fmt: str) -> None:
    nv12 = pixels.rgb_to_nv12(rgb(*hw), full_range=fmt == "nv12_full")
    assert nv12.shape == (hw[0] * 3 // 2, hw[1])
    sam, reasoner = native.preprocess(nv12, fmt)
    conv = pixels.nv12_to_rgb(nv12, full_range=fmt == "nv12_full")
    assert sam is not None and np.array_equal(sam, pixels.preprocess_sam_numpy(conv))
    assert reasoner is not None and np.array_equal(reasoner, pixels.preprocess_reasoner_numpy(conv))
    frame = NV12Frame.from_packed(nv12, full_range=fmt == "nv12_full")
    np_sam, np_reasoner = _numpy_only(
        lambda: (pixels.preprocess_sam(frame), pixels.preprocess_reasoner(frame))
    )
    assert np.array_equal(np_sam, sam) and np.array_equal(np_reasoner, reasoner)


def pitched_planes(nv12: np.ndarray, pad_y: int, pad_uv: int) -> tuple[np.ndarray, np.ndarray]:
    """The planes of a packed NV12 frame copied into two separate, row-padded buffers (as
    NvBufSurface holds them: own allocations, pitch > width), returned as width-wide views."""
    h = nv12.shape[0] * 2 // 3
    w = nv12.shape[1]
    y_buf = np.full((h, w + pad_y), 7, np.uint8)
    uv_buf = np.full((h // 2, w + pad_uv), 251, np.uint8)  # padding must never be read
    y_buf[:, :w], uv_buf[:, :w] = nv12[:h], nv12[h:]
    return y_buf[:, :w], uv_buf[:, :w]


@pytest.mark.parametrize("hw", [(2, 2), (480, 640), (1080, 1920)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("full_range", [False, True], ids=["limited", "full"])
def test_kernels_nv12_separate_pitched_planes(
    native_cpu_lib: Path, hw: tuple[int, int], full_range: bool
) -> None:
    """Luma and chroma in separate buffers with their own pitch: the same RGB as the float64
    BT.601 reference (+-1), and every path (native fused, numpy) gives identical inputs."""
    rng = np.random.default_rng(hw[0])
    nv12 = rng.integers(0, 256, (hw[0] * 3 // 2, hw[1]), dtype=np.uint8)
    y, uv = pitched_planes(nv12, pad_y=64, pad_uv=96)
    assert y.strides[0] == hw[1] + 64 and uv.strides[0] == hw[1] + 96
    frame = NV12Frame(y, uv, full_range=full_range)
    conv = pixels.nv12_to_rgb(frame).astype(int)
    diff = np.abs(conv - yuv_reference(nv12, full_range))
    print(
        f"NV12 {hw} pitched planes vs float64 BT.601: max {diff.max()}, "
        f"exact {(diff == 0).mean():.4%}"
    )
    assert diff.max() <= 1
    assert np.array_equal(conv, pixels.nv12_to_rgb(nv12, full_range=full_range))
    fmt = frame.fmt
    sam, reasoner = native.preprocess(y, fmt, uv=uv)
    packed = native.preprocess(nv12, fmt)
    assert np.array_equal(sam, packed[0]) and np.array_equal(reasoner, packed[1])
    rgb_in = conv.astype(np.uint8)
    assert np.array_equal(reasoner, native.preprocess(rgb_in, "rgb", sam=False)[1])
    assert np.array_equal(pixels.preprocess_sam(frame), sam)
    assert np.array_equal(pixels.preprocess_reasoner(frame), reasoner)
    np_sam, np_reasoner = _numpy_only(
        lambda: (pixels.preprocess_sam(frame), pixels.preprocess_reasoner(frame))
    )
    assert np.array_equal(np_sam, sam) and np.array_equal(np_reasoner, reasoner)


def test_kernels_nv12_frame_checks() -> None:
    y, uv = np.zeros((4, 6), np.uint8), np.zeros((2, 6), np.uint8)
    with pytest.raises(ValueError, match="even"):
        NV12Frame(np.zeros((3, 6), np.uint8), np.zeros((1, 6), np.uint8))
    with pytest.raises(ValueError, match="uv plane must be"):
        NV12Frame(y, np.zeros((2, 4), np.uint8))
    with pytest.raises(ValueError, match="both be numpy arrays or both device pointers"):
        NV12Frame(y, 1234)
    with pytest.raises(ValueError, match="y_pitch 8 differs"):
        NV12Frame(y, uv, y_pitch=8)
    with pytest.raises(ValueError, match="needs width, height, y_pitch, uv_pitch"):
        NV12Frame(0x7F0000, 0x7F1000)
    with pytest.raises(ValueError, match="pitches"):
        NV12Frame(0x7F0000, 0x7F1000, width=64, height=48, y_pitch=32, uv_pitch=64)
    dev = NV12Frame(0x7F0000, 0x7F1000, width=64, height=48, y_pitch=64, uv_pitch=64)
    assert dev.on_device and dev.hw == (48, 64) and dev.fmt == "nv12"
    with pytest.raises(ValueError, match="device memory needs the CUDA path"):
        pixels.preprocess_reasoner(dev)


# ---- masks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", MASK_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("n", [1, 3])
def test_kernels_masks_match_interpolate(native_cpu_lib: Path, hw: tuple[int, int], n: int) -> None:
    lg = logits(n, seed=hw[0] + n)
    ref, up = torch_mask(lg, hw)
    for name, (mask, area, box) in {
        "native": native.postprocess_masks(lg, hw),
        "numpy": _as_tuple(pixels.postprocess_masks_numpy(lg, hw)),
    }.items():
        bad = mask != ref
        near_zero = float(np.abs(up).min(axis=0)[bad].max()) if bad.any() else 0.0
        print(f"{name} mask {hw} n={n}: {int(bad.sum())} of {ref.size} px differ from torch")
        assert not bad.any(), f"{name}: {int(bad.sum())} px differ (|logit| {near_zero:.1e})"
        assert area == int(ref.sum()) and box == box_of(ref), f"{name}: area/box wrong"


def test_kernels_masks_empty(native_cpu_lib: Path) -> None:
    res = native.postprocess_masks(np.full((2, 256, 256), -1.0, np.float32), (33, 70))
    assert res[1] == 0 and res[2] is None and not res[0].any()


def test_kernels_unpack_bits_layout() -> None:
    """The CUDA kernel's bitmask layout: pixel x is bit x % 32 of word x / 32."""
    rng = np.random.default_rng(2)
    mask = rng.random((5, 77)) > 0.5
    words = np.zeros((5, 3), np.uint32)
    for yy, xx in zip(*np.nonzero(mask), strict=True):
        words[yy, xx // 32] |= np.uint32(1 << (xx % 32))
    assert np.array_equal(native.unpack_bits(words, 77), mask)


# ---- dispatch and errors ----------------------------------------------------------------------


def _as_tuple(r: pixels.MaskResult) -> tuple[np.ndarray, int, tuple[int, int, int, int] | None]:
    return r.mask, r.area, r.box


def _numpy_only(fn):  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(native.ENV_DISABLE, "0")
        mp.setattr(native, "_STATE", {})  # load again; the process's library comes back after
        assert native.available() == (False, "disabled by SEGZERO_NATIVE=0")
        return fn()


def test_kernels_public_api_dispatch(native_cpu_lib: Path) -> None:
    img = rgb(480, 640)
    lg = logits(2, seed=3)
    nat = (pixels.preprocess_sam(img), pixels.preprocess_reasoner(img))
    nat_mask = pixels.postprocess_masks(lg, (480, 640))
    fall = _numpy_only(
        lambda: (pixels.preprocess_sam(img), pixels.preprocess_reasoner(img),
                 pixels.postprocess_masks(lg, (480, 640)))
    )  # fmt: skip
    assert native.available()[0]
    assert np.array_equal(nat[0], fall[0]) and np.array_equal(nat[1], fall[1])
    assert np.array_equal(nat_mask.mask, fall[2].mask)
    assert (nat_mask.area, nat_mask.box) == (fall[2].area, fall[2].box)


def test_kernels_bad_input_errors(native_cpu_lib: Path) -> None:
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        pixels.preprocess_sam(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        pixels.preprocess_sam_numpy(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="NV12"):
        native.preprocess(np.zeros((7, 6), np.uint8), "nv12")
    with pytest.raises(ValueError, match="mask logits"):
        pixels.postprocess_masks(np.zeros((1, 2, 0, 3), np.float32), (4, 4))
    with pytest.raises(native.NativeError, match="too large"):
        native.preprocess(np.zeros((2, 40000, 3), np.uint8), reasoner=False)
    with pytest.raises(ValueError, match="an RGB frame has no UV plane"):
        native.preprocess(rgb(4, 4), "rgb", uv=np.zeros((2, 4), np.uint8))


def test_kernels_library_missing_gives_reason(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(native.ENV_LIB, str(tmp_path / "nope.so"))
        mp.setattr(native, "_STATE", {})  # load again; the process's library comes back after
        ok, why = native.available()
        assert not ok and "nope.so not found" in why
        got = pixels.preprocess_reasoner(rgb(3, 5))  # numpy fallback still works
        assert np.array_equal(got, pil_reference(3, 5))


# ---- GPU: kernels vs CPU twin -----------------------------------------------------------------


def _cuda_preprocess(frame: np.ndarray, fmt: str, uv: np.ndarray | None, dt: type) -> tuple:
    """The CUDA kernel on device copies of the frame (luma and chroma as separate tensors)."""
    src = torch.from_numpy(np.ascontiguousarray(frame)).cuda()
    uv_dev = torch.from_numpy(np.ascontiguousarray(uv)).cuda() if uv is not None else None
    h, w = frame.shape[:2]
    sam = torch.empty((1, 3, 1024, 1024), dtype=getattr(torch, np.dtype(dt).name), device="cuda")
    rsn = torch.empty((840, 840, 3), dtype=torch.uint8, device="cuda")
    native.preprocess_cuda(
        src.data_ptr(), h, w, w * (3 if fmt == "rgb" else 1), fmt, sam.data_ptr(),
        rsn.data_ptr(), uv_ptr=uv_dev.data_ptr() if uv_dev is not None else None,
        uv_stride=w if uv_dev is not None else 0, sam_dtype=dt,
        stream=torch.cuda.current_stream().cuda_stream,
    )  # fmt: skip
    torch.cuda.synchronize()
    return sam.cpu().numpy(), rsn.cpu().numpy()


@pytest.mark.gpu
@pytest.mark.parametrize("hw", [(3, 5), (1080, 1920), (3024, 4032)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_kernels_cuda_preprocess_matches_cpu(native_cuda_lib: Path, hw: tuple[int, int]) -> None:
    assert native.cuda_available(), "CUDA build loaded but no device visible"
    for fmt in ("rgb", "nv12", "nv12_full"):
        if fmt == "rgb":
            frame, uv = rgb(*hw), None
        else:
            if hw[0] % 2 or hw[1] % 2:
                continue
            nv12 = pixels.rgb_to_nv12(rgb(*hw), full_range=fmt == "nv12_full")
            frame, uv = nv12[: hw[0]], nv12[hw[0] :]
        for dt in (np.float32, np.float16):
            cpu = native.preprocess(frame, fmt, uv=uv, sam_dtype=dt)
            gpu = _cuda_preprocess(frame, fmt, uv, dt)
            assert np.array_equal(cpu[0], gpu[0]), f"SAM2 input {fmt} {dt} differs on GPU"
            assert np.array_equal(cpu[1], gpu[1]), f"reasoner input {fmt} differs on GPU"


@pytest.mark.gpu
@pytest.mark.parametrize("hw", [(1, 1), (3, 5), (1080, 1920), (3024, 4032)])
def test_kernels_cuda_masks_match_cpu(native_cuda_lib: Path, hw: tuple[int, int]) -> None:
    lg = logits(3, seed=7)
    cpu = native.postprocess_masks(lg, hw)
    d_lg = torch.from_numpy(lg).cuda()
    bits = torch.empty((hw[0], (hw[1] + 31) // 32), dtype=torch.int32, device="cuda")
    stats = torch.empty(5, dtype=torch.int32, device="cuda")
    native.postprocess_masks_cuda(
        d_lg.data_ptr(), 3, (256, 256), hw, bits.data_ptr(), stats.data_ptr(),
        stream=torch.cuda.current_stream().cuda_stream,
    )  # fmt: skip
    torch.cuda.synchronize()
    mask = native.unpack_bits(bits.cpu().numpy().view(np.uint32), hw[1])
    assert np.array_equal(cpu[0], mask)
    assert cpu[1:] == native.stats_to_box(stats.cpu().numpy().view(np.uint32))
