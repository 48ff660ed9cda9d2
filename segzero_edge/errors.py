"""The runtime's exception types (a leaf module, so every layer can raise them).

- :class:`BundleError` (a ``ValueError``): a bundle is missing, incomplete, corrupt or from an
  unsupported schema; the message names the file.
- :class:`OnnxFormatError` (a ``ValueError``): bytes that are not a well-formed ONNX model.
- :class:`BackendError`: a backend failed during a call; the message names the backend and
  the stage.
- :class:`ReasonerLoadError` (a ``BackendError``): llama.cpp / libmtmd could not load the
  reasoner's GGUF files, or this CPU lacks instructions the llama.cpp build needs.
- :class:`TensorRTUnavailable`: the ``tensorrt`` package cannot be imported here.
- :class:`EngineLoadError`: a TensorRT engine that passed the bookkeeping cannot be used here.
- :class:`CudaError`: a CUDA runtime call failed.
- :class:`NativeError`: a call into the project's native kernels library failed.
- :class:`CommandError`: a command-line problem the user can fix (one line, exit code 2);
  :class:`MissingExtra` when it is an optional dependency.
- :class:`Terminated` (a ``BaseException``): SIGTERM arrived during a command.

- :class:`CpuVariantError`: no llama.cpp CPU variant runs on this CPU, or the one asked for
  (``SEGZERO_LLAMA_CPU_VARIANT``) cannot be loaded.

The modules that raised these before re-export them under their old names
(``segzero_edge.native.NativeError`` is this ``NativeError``).
"""

from __future__ import annotations


class BundleError(ValueError):
    """The bundle is missing, incomplete, corrupt or from an unsupported schema."""


class BackendError(RuntimeError):
    """A backend failed during a call; the message names the backend and the stage."""


class ReasonerLoadError(BackendError):
    """The GGUF files could not be loaded by llama.cpp."""


class CpuVariantError(RuntimeError):
    """No llama.cpp CPU variant can run here, or the one asked for cannot be loaded."""


class TensorRTUnavailable(RuntimeError):
    """The ``tensorrt`` Python package cannot be imported here."""


class EngineLoadError(RuntimeError):
    """An engine file that passed the bookkeeping cannot be used here: TensorRT cannot
    deserialize it, it is not this project's SAM2 engine, or no execution context fits in
    memory. ``open_segmenter(backend="auto")`` falls back to onnxruntime on it."""


class CudaError(RuntimeError):
    """A CUDA runtime call failed; the message names the call and the CUDA error."""


class NativeError(RuntimeError):
    """A native call failed; the message is the library's own (``sz_last_error``)."""


class OnnxFormatError(ValueError):
    """The bytes are not a well-formed ONNX ``ModelProto``."""


class Terminated(BaseException):
    """SIGTERM arrived; raised in the main thread so ``finally`` blocks clean up."""


class CommandError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class MissingExtra(CommandError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, what: str) -> object:
    """Import ``module`` or raise :class:`MissingExtra` saying ``what`` needs
    ``pip install 'segzero-edge[extra]'``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(
            f"{what} needs the [{extra}] extra ({e.name or module} is not installed): "
            f"pip install 'segzero-edge[{extra}]'"
        ) from None


MODULE_EXTRAS: dict[str, str] = {
    "llama_cpp": "runtime",
    "onnxruntime": "runtime",
    "cuda": "tensorrt",
    "mcap": "ros",
    "mcap_ros2": "ros",
    "cv2": "camera",
    "torch": "export",
    "torchvision": "export",
    "transformers": "export",
    "tokenizers": "export",
    "safetensors": "export",
    "sam2": "export",
    "gguf": "export",
    "onnx": "export",
    "onnxslim": "export",
    "huggingface_hub": "export",
    "trl": "train",
    "accelerate": "train",
    "datasets": "train",
    "yaml": "train",
    "scipy": "train",
    "matplotlib": "bench",
    "psutil": "bench",
}
"""Top-level module -> the extra of ``pyproject.toml`` that installs it (the smallest one)."""

COMMAND_EXTRAS: dict[str, dict[str, str]] = {
    # --bundle needs OpenCV only; --hf runs the transformers reference ([train])
    "eval": {"cv2": "eval", **{m: "train" for m in ("torch", "transformers", "sam2", "scipy")}},
}
"""Per command, modules a smaller extra brings for that command (``eval --bundle`` needs
OpenCV, not the [train] extra's torch; ``eval --hf`` needs [train])."""


def missing_extra(error: ImportError, command: str | None = None) -> MissingExtra | None:
    """A :class:`MissingExtra` naming the extra that installs the module ``error`` misses
    (``None`` for a module no extra brings)."""
    name = (error.name or "").split(".")[0]
    extra = COMMAND_EXTRAS.get(command or "", {}).get(name) or MODULE_EXTRAS.get(name)
    if extra is None:
        return None
    what = f"segzero-edge {command}" if command else "this"
    return MissingExtra(
        f"{what} needs the [{extra}] extra ({name} is not installed): "
        f"pip install 'segzero-edge[{extra}]'"
    )
