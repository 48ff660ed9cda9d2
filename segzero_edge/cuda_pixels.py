"""The pipeline's pixel work on the GPU, beside a TensorRT segmenter (no host round trips).

Pre-processing runs the native CUDA kernel (``csrc/kernels.cu``) from the frame (RGB, or NV12
with separate luma and chroma planes, in host or device memory) straight into the SAM2
encoder's input buffer, and into an 840 x 840 x 3 buffer that is copied to the host for
llama.cpp. Post-processing keeps each object's chosen low-res mask on the device, then the kernel
upsamples and thresholds each into a bitmask (:meth:`CudaPixels.object_masks`; or ORs them
all into one with area and box, :meth:`CudaPixels.masks`); only the bitmasks (H x W / 8 bytes
each) come back.

Streams and locks: the SAM2 input, the encoder and the masks are queued on the segmenter's
stream (the caller holds the segmenter's lock). The reasoner input has its own non-blocking
stream, upload buffers and lock, and never touches the segmenter: it runs while a SAM2
encode of the same frame is in progress on another thread (the pipeline's overlap), instead
of waiting for it.

NV12 in device memory must be **pitch-linear**: a luma and a chroma pointer, each with a
row pitch. Jetson camera (Argus, ``nvarguscamerasrc``) and decoder (``nvv4l2decoder``)
surfaces are **block-linear** by default (``NVBUF_LAYOUT_BLOCK_LINEAR``): their pixels are
tiled and they have no pitch pointer (mapped through EGL they come as CUDA arrays,
``CU_EGL_FRAME_TYPE_ARRAY``, not ``CU_EGL_FRAME_TYPE_PITCH``). Convert them first with
``NvBufSurfTransform`` into a surface made with ``NVBUF_LAYOUT_PITCH`` (in GStreamer:
``nvvidconv bl-output=false``), or the kernel reads tiles as rows.

Used by :class:`segzero_edge.pipeline.SegZeroEdge` when :func:`usable` says so; the CPU twin
(:mod:`segzero_edge.pixels`) runs otherwise.
"""

from __future__ import annotations

import threading

import numpy as np

from . import native
from .backends import DeviceSegmenter, ImageEmbedding, Segmenter
from .image import Frame, NV12Frame
from .layout import REASONER_SIZE, SAM2_LOW_RES
from .platform.cuda import (
    DeviceBuffer,
    copy_device_to_device,
    create_stream,
    destroy_stream,
    set_device,
)


def usable(segmenter: Segmenter) -> tuple[bool, str]:
    """Whether ``segmenter`` is a :class:`~segzero_edge.backends.DeviceSegmenter` (its input
    and output in device memory) and the CUDA kernels can run here, and why not."""
    if not isinstance(segmenter, DeviceSegmenter):
        return False, f"segmenter {segmenter.name!r} is not on CUDA"
    ok, why = native.available()
    if not ok:
        return False, why
    if not native.cuda_available():
        return False, "the native library has no CUDA kernels or sees no GPU"
    return True, "CUDA pre/post-processing"


class CudaPixels:
    """Pre/post-processing kernels bound to one TensorRT segmenter's buffers and stream, plus
    a stream of their own for the reasoner input.

    :meth:`encode`, :meth:`keep` and :meth:`masks` queue work on the segmenter's stream: call
    them under the lock that serialises the segmenter. :meth:`reasoner_input` takes only
    this object's own lock, so it may run beside them.
    """

    def __init__(self, segmenter: Segmenter, max_objects: int) -> None:
        """``segmenter``: a :class:`~segzero_edge.backends.DeviceSegmenter` (``ValueError``
        otherwise; :func:`usable` says so first); ``max_objects``: mask slots kept on the device."""
        if not isinstance(segmenter, DeviceSegmenter):
            raise ValueError(f"segmenter {segmenter.name!r} is not on CUDA (no device buffers)")
        self.segmenter: DeviceSegmenter = segmenter
        self.max_objects = int(max_objects)
        self._reasoner_lock = threading.Lock()  # the reasoner input's buffers and stream
        self._frames: dict[str, DeviceBuffer] = {}  # host-frame uploads by (path, plane)
        self._bits: DeviceBuffer | None = None
        self._stream: int | None = create_stream()  # the reasoner input's own stream
        try:  # a failed allocation frees the others when collected; the stream here
            self._reasoner = DeviceBuffer((REASONER_SIZE, REASONER_SIZE, 3), np.uint8)
            low = (self.max_objects, SAM2_LOW_RES, SAM2_LOW_RES)
            self._chosen = DeviceBuffer(low, np.float32)
            self._stats = DeviceBuffer((5,), np.uint32)
        except BaseException:
            destroy_stream(self._stream)
            raise

    @property
    def stream(self) -> int:
        """The reasoner input's CUDA stream (non-blocking; not the segmenter's)."""
        if self._stream is None:
            raise RuntimeError("this CudaPixels has been closed")
        return self._stream

    # -- frames ---------------------------------------------------------------------------

    def _upload(self, key: str, array: np.ndarray, stream: int) -> DeviceBuffer:
        buf = self._frames.get(key)
        if buf is None or buf.shape != array.shape:
            buf = DeviceBuffer(array.shape, np.uint8)
            self._frames[key] = buf
        buf.upload(array, stream)
        return buf

    def _source(
        self, frame: Frame, path: str, stream: int
    ) -> tuple[int, int, int, int, str, int | None, int]:
        """``(ptr, h, w, stride, fmt, uv_ptr, uv_stride)`` of the frame on the device; a host
        frame is uploaded on ``stream`` into the buffers of ``path`` ("sam" or "reasoner",
        so the two paths never share an upload buffer)."""
        if isinstance(frame, NV12Frame):
            h, w = frame.hw
            if frame.on_device:
                assert isinstance(frame.y, int) and isinstance(frame.uv, int)
                return (
                    frame.y,
                    h,
                    w,
                    int(frame.y_pitch or w),
                    frame.fmt,
                    frame.uv,
                    int(frame.uv_pitch or w),
                )
            assert isinstance(frame.y, np.ndarray) and isinstance(frame.uv, np.ndarray)
            y = self._upload(f"{path}:y", np.ascontiguousarray(frame.y), stream)
            uv = self._upload(f"{path}:uv", np.ascontiguousarray(frame.uv), stream)
            return y.ptr, h, w, w, frame.fmt, uv.ptr, w
        h, w = frame.shape[:2]
        rgb = self._upload(f"{path}:rgb", np.ascontiguousarray(frame), stream)
        return rgb.ptr, h, w, 3 * w, "rgb", None, 0

    def encode(self, frame: Frame) -> ImageEmbedding:
        """SAM2 input written by the kernel into the encoder's buffer, then the encoder (on
        the segmenter's stream: hold the segmenter's lock)."""
        seg = self.segmenter
        ptr, h, w, stride, fmt, uv, uv_stride = self._source(frame, "sam", seg.stream)
        target = seg.image_buffer
        native.preprocess_cuda(
            ptr, h, w, stride, fmt, target.ptr, None, uv_ptr=uv, uv_stride=uv_stride,
            sam_dtype=target.dtype.type, stream=seg.stream,
        )  # fmt: skip
        return seg.encode_loaded()

    def reasoner_input(self, frame: Frame) -> np.ndarray:
        """The 840 x 840 x 3 uint8 reasoner input (PIL bilinear), on the host for llama.cpp.

        On this object's own stream, under its own lock: it does not wait for (nor block) an
        encode in progress on the segmenter's stream."""
        with self._reasoner_lock:
            stream = self.stream
            device = self.segmenter.device
            if device:  # the current device is per host thread
                set_device(device)
            ptr, h, w, stride, fmt, uv, uv_stride = self._source(frame, "reasoner", stream)
            native.preprocess_cuda(
                ptr, h, w, stride, fmt, None, self._reasoner.ptr, uv_ptr=uv,
                uv_stride=uv_stride, stream=stream,
            )  # fmt: skip
            return self._reasoner.download(stream)

    # -- masks ----------------------------------------------------------------------------

    def keep(self, index: int, row: int, plane: int) -> None:
        """Copy mask ``plane`` of prompt ``row`` of the segmenter's decoder output
        (``[B, 4, 256, 256]`` on the device) to object slot ``index``."""
        if not 0 <= index < self.max_objects:
            raise ValueError(f"object {index} is beyond the {self.max_objects} mask slots")
        src = self.segmenter.mask_buffer
        if src.dtype != np.float32:
            raise ValueError(f"the decoder writes {src.dtype} masks; the kernel reads float32")
        plane_bytes = SAM2_LOW_RES * SAM2_LOW_RES * 4
        copy_device_to_device(
            self._chosen.ptr + index * plane_bytes,
            src.ptr + (row * src.shape[1] + plane) * plane_bytes,
            plane_bytes,
            self.segmenter.stream,
        )

    def masks(
        self, n: int, out_hw: tuple[int, int]
    ) -> tuple[np.ndarray, int, tuple[int, int, int, int] | None]:
        """OR of the first ``n`` kept masks upsampled to ``out_hw`` and > 0: (mask, area, box)."""
        seg = self.segmenter
        h, w = out_hw
        words = (h, (w + 31) // 32)
        if self._bits is None or self._bits.shape != words:
            self._bits = DeviceBuffer(words, np.uint32)
        native.postprocess_masks_cuda(
            self._chosen.ptr, n, (SAM2_LOW_RES, SAM2_LOW_RES), (h, w), self._bits.ptr,
            self._stats.ptr, stream=seg.stream,
        )  # fmt: skip
        stats = self._stats.download(seg.stream)
        bits = self._bits.download(seg.stream)
        area, box = native.stats_to_box(stats)
        return native.unpack_bits(bits, w), area, box

    def object_masks(self, n: int, out_hw: tuple[int, int]) -> np.ndarray:
        """Each of the first ``n`` kept masks upsampled to ``out_hw`` and > 0, by the same
        kernel as :meth:`masks` run on one slot at a time: ``[n, H, W]`` bool (the union is
        their OR). One bitmask per object comes to the host."""
        seg = self.segmenter
        h, w = out_hw
        if not 0 <= n <= self.max_objects:
            raise ValueError(f"{n} objects but {self.max_objects} mask slots")
        words = (h, (w + 31) // 32)
        if self._bits is None or self._bits.shape != words:
            self._bits = DeviceBuffer(words, np.uint32)
        plane_bytes = SAM2_LOW_RES * SAM2_LOW_RES * 4
        out = np.zeros((n, h, w), dtype=bool)
        for i in range(n):
            native.postprocess_masks_cuda(
                self._chosen.ptr + i * plane_bytes, 1, (SAM2_LOW_RES, SAM2_LOW_RES), (h, w),
                self._bits.ptr, self._stats.ptr, stream=seg.stream,
            )  # fmt: skip
            out[i] = native.unpack_bits(self._bits.download(seg.stream), w)
        return out

    def close(self) -> None:
        """Free the buffers and the reasoner stream (idempotent); waits for a reasoner input
        in progress."""
        with self._reasoner_lock:
            for buf in (
                self._reasoner,
                self._chosen,
                self._stats,
                self._bits,
                *self._frames.values(),
            ):
                if buf is not None:
                    buf.free()
            self._frames = {}
            if self._stream is not None:
                stream, self._stream = self._stream, None
                destroy_stream(stream)
