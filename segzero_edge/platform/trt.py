"""Importing TensorRT: whether it is there, whether its version can run this project's
engines (:data:`MIN_TENSORRT`), and the process's one ``tensorrt.Logger``.

TensorRT comes with JetPack (apt ``python3-libnvinfer``), not from pip; nothing here imports
it at module import time.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from ..errors import TensorRTUnavailable


def load_tensorrt() -> tuple[Any, str]:
    """The ``tensorrt`` module, or ``None`` and why not.

    A bare ``tensorrt/`` folder (e.g. from ``tensorrt-stubs``) imports as an empty namespace
    package; that counts as not installed.
    """
    try:
        import tensorrt as trt
    except ImportError as e:
        return None, f"tensorrt not importable ({e}); it comes with JetPack, not pip"
    except Exception as e:  # a broken install can raise anything at import
        return None, f"tensorrt import failed: {type(e).__name__}: {e}"
    if not hasattr(trt, "Builder") or not getattr(trt, "__version__", None):  # stubs only
        where = ", ".join(getattr(trt, "__path__", [])) or "?"
        return None, (
            f"tensorrt at {where} has no bindings (type stubs only?); "
            "TensorRT comes with JetPack, not pip"
        )
    return trt, ""


def tensorrt_version() -> tuple[str | None, str]:
    """The importable TensorRT's version, or ``None`` and why not."""
    trt, why = load_tensorrt()
    return (None, why) if trt is None else (str(trt.__version__), "")


MIN_TENSORRT = (10, 0)
"""The oldest TensorRT the engine builder and runtime support: they use the TensorRT 10 API
(``create_network()`` is explicit-batch only there, ``set_tensor_address`` /
``execute_async_v3``) and parse opset-18 ONNX graphs. JetPack 6.0 (L4T 36.2 / 36.3) ships
TensorRT 8.6, whose ``create_network(0)`` is an implicit-batch network the ONNX parser
rejects; JetPack 6.1 and 6.2 (L4T 36.4.x) ship TensorRT 10.3."""


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` -> ``(10, 3, 0, 30)``; leading numeric parts only (``"8.6.2a"`` ->
    ``(8, 6, 2)``); ``()`` when it does not start with a number."""
    parts = []
    for piece in text.strip().split("."):
        m = re.match(r"\d+", piece)
        if m is None:
            break
        parts.append(int(m.group()))
        if m.end() != len(piece):
            break
    return tuple(parts)


def tensorrt_supported(version: str | None) -> tuple[bool, str]:
    """Whether TensorRT ``version`` can build and run this project's engines, and why not."""
    if version is None:
        return False, "TensorRT is not installed"
    parsed = parse_version(version)
    if not parsed:
        return False, f"TensorRT reports an unreadable version {version!r}"
    if parsed < MIN_TENSORRT:
        need = ".".join(map(str, MIN_TENSORRT))
        return False, (
            f"TensorRT {version} is older than {need}, which segzero-edge needs (TensorRT 10 "
            "API, explicit-batch networks, opset-18 graphs); JetPack 6.0 ships TensorRT 8.6: "
            "upgrade to JetPack 6.1 or later (TensorRT 10.3), or run SAM2 on onnxruntime "
            "(--segmenter-backend onnxruntime)"
        )
    return True, ""


def import_tensorrt() -> Any:
    """``import tensorrt``, or :class:`TensorRTUnavailable` saying where it comes from or why
    its version cannot be used (older than :data:`MIN_TENSORRT`)."""
    trt, why = load_tensorrt()
    if trt is None:
        raise TensorRTUnavailable(
            f"TensorRT is not usable here: {why}. It comes with JetPack on a Jetson "
            "(apt package python3-libnvinfer; in a venv use --system-site-packages), "
            "not from pip; engines must be built on the device that runs them."
        )
    ok, why = tensorrt_supported(str(trt.__version__))
    if not ok:
        raise TensorRTUnavailable(why)
    return trt


_TRT_LOGGER: list[Any] = []
_TRT_LOGGER_LOCK = threading.Lock()


def tensorrt_logger() -> Any:
    """The process's one ``tensorrt.Logger`` (WARNING and above), shared by every builder and
    runtime: TensorRT treats the logger as a process-wide singleton (its ``ILogger``
    documentation: instances of ``IBuilder`` / ``IRuntime`` must all use the same logger),
    and it must outlive every object made through it. Raises like :func:`import_tensorrt`."""
    trt = import_tensorrt()
    with _TRT_LOGGER_LOCK:
        if not _TRT_LOGGER:
            _TRT_LOGGER.append(trt.Logger(trt.Logger.WARNING))
        return _TRT_LOGGER[0]


__all__ = [
    "MIN_TENSORRT",
    "import_tensorrt",
    "load_tensorrt",
    "parse_version",
    "tensorrt_logger",
    "tensorrt_supported",
    "tensorrt_version",
]
