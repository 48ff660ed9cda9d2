"""ctypes binding of ``libsegzero_kernels`` (``csrc/``): fused pixel pre/post-processing.

The library is looked up at ``$SEGZERO_NATIVE_LIB`` (a file path) or in ``_lib/`` of the
``segzero_edge`` package (every folder of its ``__path__``: an editable install spans the
source tree and site-packages). ``pip install .`` / ``pip install -e .`` build it (CMake through
scikit-build-core, see CMakeLists.txt). ``SEGZERO_NATIVE=0`` disables it (the numpy code in
:mod:`segzero_edge.pixels` is used).

CPU-twin wrappers take and return numpy arrays. The CUDA entry points take device pointers
and a stream as ints (from any CUDA binding); the pipeline calls them with the TensorRT
segmenter's buffers (:mod:`segzero_edge.cuda_pixels`).
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import NativeError as NativeError  # re-exported: its old home
from .layout import SAM2_SIZE

LIB_NAME = "libsegzero_kernels.so"
ENV_LIB = "SEGZERO_NATIVE_LIB"
ENV_DISABLE = "SEGZERO_NATIVE"

FORMATS = {"rgb": 0, "nv12": 1, "nv12_full": 2}
PIL_LEGACY_ORDER = 1  # reasoner_flags bit: Pillow < 13 pass order
SAM_DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}

_u8p = ctypes.POINTER(ctypes.c_uint8)
_f32p = ctypes.POINTER(ctypes.c_float)
_u32p = ctypes.POINTER(ctypes.c_uint32)
_i = ctypes.c_int
_vp = ctypes.c_void_p

_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "sz_version": (ctypes.c_char_p, []),
    "sz_build_info": (ctypes.c_char_p, []),
    "sz_last_error": (ctypes.c_char_p, []),
    "sz_built_with_cuda": (_i, []),
    "sz_cuda_device_count": (_i, []),
    "sz_preprocess_cpu": (_i, [_vp, _i, _i, _i, _i, _vp, _i, _vp, _i, _i, _vp, _i, _i, _i]),
    "sz_postprocess_masks_cpu": (_i, [_vp, _i, _i, _i, _i, _i, _vp, _vp, _i]),
    "sz_preprocess_cuda": (_i, [_vp, _i, _i, _i, _i, _vp, _i, _vp, _i, _i, _vp, _i, _i, _vp]),
    "sz_postprocess_masks_cuda": (_i, [_vp, _i, _i, _i, _i, _i, _vp, _vp, _vp]),
}


def library_path() -> Path:
    """``$SEGZERO_NATIVE_LIB``, else the first ``_lib/libsegzero_kernels.so`` found next to this
    module, then in the package's other folders (an editable install's site-packages part);
    the path next to this module when there is none."""
    env = os.environ.get(ENV_LIB)
    if env:
        return Path(env)
    from . import __path__ as package_dirs

    here = Path(__file__).resolve().parent
    folders = [here, *(Path(d).resolve() for d in package_dirs)]
    candidates = [d / "_lib" / LIB_NAME for d in dict.fromkeys(folders)]
    return next((c for c in candidates if c.is_file()), candidates[0])


_STATE: dict[str, object] = {}


def _load() -> tuple[ctypes.CDLL | None, str]:
    if "why" not in _STATE:
        _STATE["lib"], _STATE["why"] = _open()
    return _STATE["lib"], str(_STATE["why"])  # type: ignore[return-value]


def _open() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get(ENV_DISABLE, "1") == "0":
        return None, f"disabled by {ENV_DISABLE}=0"
    path = library_path()
    if not path.is_file():
        return None, (
            f"{path} not found: reinstall segzero-edge with pip (it builds csrc/ with CMake), "
            "or point $SEGZERO_NATIVE_LIB at a build"
        )
    try:
        lib = ctypes.CDLL(str(path))
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
    except (OSError, AttributeError) as e:
        return None, f"{path} could not be loaded: {e}"
    version = lib.sz_version().decode()
    cuda = "with CUDA" if lib.sz_built_with_cuda() else "CPU only"
    info = lib.sz_build_info().decode()
    mismatch = cpu_mismatch(info)
    if mismatch:  # running it would end in SIGILL: use numpy instead
        return None, f"{path} not used: {mismatch}"
    return lib, f"{path} ({version}, {cuda}; {info})"


def cpu_mismatch(build_info: str, flags: frozenset[str] | None = None) -> str | None:
    """Why a library with ``build_info`` (``"march=x86-64-v3 cuda=..."``) cannot run on this
    CPU (``flags`` from /proc/cpuinfo by default), or None when it can (or nobody can tell)."""
    from .cpu import missing_for_march

    march = build_info.split()[0].removeprefix("march=") if build_info else ""
    missing = missing_for_march(march, flags)
    if not missing:
        return None
    return (
        f"built for -march={march}, but this CPU lacks {', '.join(missing)}; rebuild it for "
        "this CPU (SEGZERO_CMAKE_ARGS=-DSEGZERO_CPU_ARCH=x86-64 scripts/setup.sh, or pip "
        "install with CMAKE_ARGS=-DSEGZERO_CPU_ARCH=...)"
    )


def available() -> tuple[bool, str]:
    """Whether the native library is loaded, and where from or why not."""
    lib, why = _load()
    return lib is not None, why


def build_info() -> str | None:
    """``"march=<CPU twin -march> cuda=<CUDA architectures, or off>"``; None when not loaded."""
    lib, _ = _load()
    return None if lib is None else str(lib.sz_build_info().decode())


def built_with_cuda() -> bool:
    """True when the loaded library has CUDA kernels (whether or not a GPU is visible)."""
    lib, _ = _load()
    return lib is not None and lib.sz_built_with_cuda() == 1


def cuda_available() -> bool:
    """True when the library has CUDA kernels and a CUDA device is visible."""
    lib, _ = _load()
    return lib is not None and lib.sz_built_with_cuda() == 1 and lib.sz_cuda_device_count() > 0


def _lib() -> ctypes.CDLL:
    lib, why = _load()
    if lib is None:
        raise NativeError(f"native library unavailable: {why}")
    return lib


def _check(rc: int) -> None:
    if rc != 0:
        msg = _lib().sz_last_error().decode() or "unknown error"
        raise NativeError(f"libsegzero_kernels failed (code {rc}): {msg}")


@lru_cache(maxsize=1)
def pil_legacy_order() -> bool:
    """True when the installed Pillow (< 13) always runs the horizontal resize pass first."""
    try:
        import PIL
    except ImportError:
        return False
    return int(PIL.__version__.split(".")[0]) < 13


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def frame_geometry(frame: np.ndarray, fmt: str) -> tuple[int, int, int]:
    """``(height, width, row stride in bytes)`` of an RGB (H x W x 3) or NV12 (H*3/2 x W) frame."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown frame format {fmt!r}; expected one of {sorted(FORMATS)}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {frame.dtype}")
    if fmt == "rgb":
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"RGB frame must be H x W x 3, got shape {frame.shape}")
        return frame.shape[0], frame.shape[1], frame.shape[1] * 3
    if frame.ndim != 2 or frame.shape[0] % 3 or frame.shape[1] % 2 or frame.shape[0] == 0:
        raise ValueError(f"NV12 frame must be (H * 3 / 2) x W with H, W even, got {frame.shape}")
    return frame.shape[0] * 2 // 3, frame.shape[1], frame.shape[1]


def _plane(a: np.ndarray, what: str) -> tuple[np.ndarray, int]:
    """A 2-D uint8 plane whose rows may be padded (pitch = ``strides[0]``), and its pitch."""
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 2:
        raise ValueError(f"{what} must be a 2-D uint8 array")
    if a.strides[1] != 1 or a.strides[0] < a.shape[1]:
        a = np.ascontiguousarray(a)
    return a, int(a.strides[0])


def preprocess(
    frame: np.ndarray,
    fmt: str = "rgb",
    *,
    uv: np.ndarray | None = None,
    sam: bool = True,
    reasoner: bool = True,
    sam_dtype: type = np.float32,
    sam_size: int = SAM2_SIZE,
    reasoner_size: int = 840,
    threads: int = 0,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """One fused CPU pass: ``([1, 3, S, S] SAM2 input or None, R x R x 3 uint8 or None)``.

    ``frame``: H x W x 3 RGB; for NV12 either the ``(H * 3 / 2) x W`` array of a packed frame,
    or the H x W luma plane with ``uv`` the (H / 2) x W interleaved chroma plane (separate
    buffers; each may have padded rows, their pitches are read from the arrays' strides).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown frame format {fmt!r}; expected one of {sorted(FORMATS)}")
    if fmt == "rgb":
        if uv is not None:
            raise ValueError("an RGB frame has no UV plane")
        h, w, stride = frame_geometry(frame, fmt)
        frame = np.ascontiguousarray(frame)
        uv_ptr, uv_stride = None, 0
    elif uv is None:
        h, w, stride = frame_geometry(frame, fmt)
        frame = np.ascontiguousarray(frame)
        uv_ptr, uv_stride = frame.ctypes.data + h * stride, stride
    else:
        frame, stride = _plane(frame, "NV12 luma plane")
        uv, uv_stride = _plane(uv, "NV12 UV plane")
        h, w = frame.shape
        if uv.shape != (h // 2, w) or h % 2 or w % 2:
            raise ValueError(
                f"NV12 planes must be H x W luma and H/2 x W chroma with H, W even; got "
                f"{frame.shape} and {uv.shape}"
            )
        uv_ptr = uv.ctypes.data
    dt = np.dtype(sam_dtype)
    if dt not in SAM_DTYPES:
        raise ValueError(f"sam_dtype must be float32 or float16, got {dt}")
    sam_out = np.empty((1, 3, sam_size, sam_size), dtype=dt) if sam else None
    r_out = np.empty((reasoner_size, reasoner_size, 3), dtype=np.uint8) if reasoner else None
    flags = PIL_LEGACY_ORDER if pil_legacy_order() else 0
    _check(
        _lib().sz_preprocess_cpu(
            _ptr(frame), h, w, stride, FORMATS[fmt], uv_ptr, uv_stride, _ptr(sam_out), sam_size,
            SAM_DTYPES[dt], _ptr(r_out), reasoner_size, flags, threads,
        )
    )  # fmt: skip
    return sam_out, r_out


def unpack_bits(bits: np.ndarray, width: int) -> np.ndarray:
    """``[H, ceil(W/32)]`` uint32 bitmask (bit x%32 of word x/32) -> H x W bool."""
    as_bytes = bits.astype("<u4", copy=False).view(np.uint8)
    return np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :width].astype(bool)


def postprocess_masks(
    logits: np.ndarray, out_hw: tuple[int, int], *, threads: int = 0
) -> tuple[np.ndarray, int, tuple[int, int, int, int] | None]:
    """``[N, h, w]`` logits -> (H x W bool OR of upsampled masks > 0, area, box or None)."""
    lg = np.ascontiguousarray(logits, dtype=np.float32)
    if lg.ndim == 2:
        lg = lg[None]
    if lg.ndim != 3 or 0 in lg.shape:
        raise ValueError(f"mask logits must be [N, h, w] with N, h, w > 0, got {logits.shape}")
    oh, ow = (int(v) for v in out_hw)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"output size must be positive, got {out_hw}")
    n, lh, lw = lg.shape
    stats = np.zeros(5, dtype=np.uint32)
    mask = np.empty((oh, ow), dtype=np.uint8)
    _check(
        _lib().sz_postprocess_masks_cpu(
            _ptr(lg), n, lh, lw, oh, ow, _ptr(mask), _ptr(stats), threads
        )
    )
    return mask.view(bool), *stats_to_box(stats)


def stats_to_box(stats: np.ndarray) -> tuple[int, tuple[int, int, int, int] | None]:
    """``(area, box or None)`` from the kernels' 5 uint32 stats ``{area, x1, y1, x2, y2}``."""
    area = int(stats[0])
    box = None if area == 0 else (int(stats[1]), int(stats[2]), int(stats[3]), int(stats[4]))
    return area, box


def preprocess_cuda(
    src_ptr: int,
    height: int,
    width: int,
    stride: int,
    fmt: str,
    sam_ptr: int | None,
    reasoner_ptr: int | None,
    *,
    uv_ptr: int | None = None,
    uv_stride: int = 0,
    sam_dtype: type = np.float32,
    sam_size: int = SAM2_SIZE,
    reasoner_size: int = 840,
    stream: int = 0,
) -> None:
    """Queue the fused pre-processing kernel on ``stream``; every pointer is device memory.

    NV12: ``src_ptr`` / ``stride`` are the luma plane and its pitch, ``uv_ptr`` /
    ``uv_stride`` the interleaved chroma plane and its pitch (separate allocations allowed).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown frame format {fmt!r}; expected one of {sorted(FORMATS)}")
    _check(
        _lib().sz_preprocess_cuda(
            src_ptr, height, width, stride, FORMATS[fmt], uv_ptr, uv_stride, sam_ptr, sam_size,
            SAM_DTYPES[np.dtype(sam_dtype)], reasoner_ptr, reasoner_size,
            PIL_LEGACY_ORDER if pil_legacy_order() else 0, stream or None,
        )
    )  # fmt: skip


def postprocess_masks_cuda(
    logits_ptr: int,
    n: int,
    low_hw: tuple[int, int],
    out_hw: tuple[int, int],
    bits_ptr: int,
    stats_ptr: int,
    *,
    stream: int = 0,
) -> None:
    """Queue the fused post-processing kernel; device pointers (bits, 5 uint32 stats)."""
    _check(
        _lib().sz_postprocess_masks_cuda(
            logits_ptr, n, low_hw[0], low_hw[1], out_hw[0], out_hw[1], bits_ptr, stats_ptr,
            stream or None,
        )
    )  # fmt: skip
