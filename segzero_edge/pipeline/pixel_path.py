"""Where a frame's pixel work runs for :class:`~segzero_edge.pipeline.SegZeroEdge`: as CUDA
kernels on the buffers of a GPU segmenter (:mod:`segzero_edge.cuda_pixels`), else as the
native CPU twin (:mod:`segzero_edge.pixels`). The same three jobs either way: SAM2's image
encoding of a frame, the reasoner's input picture, and the masks of an answer's objects through
the one decode loop (:func:`segzero_edge.segmenter.decode.decode_objects`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from .. import cuda_pixels, pixels
from ..backends import ImageEmbedding, Segmenter
from ..errors import BackendError
from ..families import ModelFamily
from ..image import Frame, NV12Frame
from ..layout import REASONER_SIZE
from ..segmenter.decode import backend_decoder, decode_objects, device_decoder
from ..types import ObjectPrompt
from .embedding_cache import Encoded

T = TypeVar("T")


class PixelPath:
    """The pixel work beside ``segmenter``, its calls on the segmenter under ``lock``.

    ``cuda``: the kernels bound to the segmenter's buffers when :func:`cuda_pixels.usable
    <segzero_edge.cuda_pixels.usable>` says they run here (``why`` says why or why not), else
    ``None`` (the CPU twin). ``max_objects``: the mask slots kept on the device.
    """

    def __init__(self, segmenter: Segmenter, max_objects: int, lock: threading.Lock) -> None:
        usable, self.why = cuda_pixels.usable(segmenter)
        self.cuda = cuda_pixels.CudaPixels(segmenter, max_objects) if usable else None
        self.segmenter = segmenter
        self.lock = lock

    def encode(self, frame: Frame) -> Encoded:
        """SAM2's image encoder on ``frame`` (an H x W x 3 uint8 RGB array or an NV12 frame):
        the kernel writes the encoder's input into its device buffer, or the CPU twin
        pre-processes it (:func:`segzero_edge.pixels.preprocess_sam`); the encoder runs under
        the lock. -> the embedding and the seconds of ``sam_preprocess`` and ``sam_encode``.

        Raises:
            BackendError: The segmenter failed to encode.
        """
        t0 = time.perf_counter()
        if self.cuda is not None:
            emb = self._locked_encode(self.cuda.encode, frame)
            return emb, {"sam_preprocess": 0.0, "sam_encode": time.perf_counter() - t0}
        sam_in = pixels.preprocess_sam(frame)
        t1 = time.perf_counter()
        emb = self._locked_encode(self.segmenter.encode, sam_in)
        return emb, {"sam_preprocess": t1 - t0, "sam_encode": time.perf_counter() - t1}

    def _locked_encode(self, encode: Callable[[T], ImageEmbedding], x: T) -> ImageEmbedding:
        with self.lock:
            try:
                return encode(x)
            except Exception as e:
                raise BackendError(
                    f"segmenter {self.segmenter.name!r} failed to encode: {e}"
                ) from e

    def reasoner_input(self, frame: Frame, family: ModelFamily) -> np.ndarray:
        """The reasoner's input picture of ``frame`` for ``family`` (resized to its
        ``resize_size`` square, PIL bilinear), H x W x 3 uint8 on the host. The kernel runs on
        its own stream and lock, beside an encode in progress.

        Raises:
            ValueError: An NV12 frame in device memory for a family whose ``resize_size`` is
                not 840.
        """
        size = family.resize_size
        if size != REASONER_SIZE:  # the CUDA and native kernels serve the 840 resize only
            if isinstance(frame, NV12Frame) and frame.on_device:
                raise ValueError(
                    f"an NV12 frame in device memory needs the reasoner's 840 x 840 resize; "
                    f"family {family.name!r} uses {size}: pass a host frame"
                )
            return pixels.preprocess_reasoner(frame, size)
        if self.cuda is not None:
            return self.cuda.reasoner_input(frame)
        return pixels.preprocess_reasoner(frame)

    def decode(
        self,
        emb: ImageEmbedding,
        objects: Sequence[ObjectPrompt],
        family: ModelFamily,
        hw: tuple[int, int],
        timings: dict[str, float],
    ) -> tuple[np.ndarray, list[float]]:
        """The family's SAM2 prompt per object (image pixels) through the one decode loop, all
        objects in one decoder call per distinct point count -> ``[N, H, W]`` bool masks for
        ``hw = (H, W)`` and each object's score; ``timings`` gets ``sam_decode`` and
        ``postprocess`` (seconds). With the kernels the logits stay on the device (each
        object's kept mask copied to its slot; only IoUs and one bitmask per object reach the
        host).

        Raises:
            BackendError: The segmenter failed.
        """
        t0 = time.perf_counter()
        if self.cuda is None:
            decode = backend_decoder(self.segmenter, emb, hw, self.lock)
            decoded = decode_objects(objects, family.sam2, decode)
            timings["sam_decode"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            masks = np.stack([pixels.postprocess_masks(lg[None], hw).mask for lg in decoded.masks])
        else:
            cuda = self.cuda
            with self.lock:
                try:
                    decode = device_decoder(cuda.segmenter, cuda.keep, emb, hw)
                    decoded = decode_objects(objects, family.sam2, decode)
                    timings["sam_decode"] = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    masks = cuda.object_masks(len(objects), hw)
                except Exception as e:
                    raise BackendError(
                        f"segmenter {self.segmenter.name!r} failed to decode: {e}"
                    ) from e
        timings["postprocess"] = time.perf_counter() - t0
        return masks, decoded.scores

    def close(self) -> None:
        """Free the kernels' device buffers and stream (idempotent)."""
        if self.cuda is not None:
            self.cuda.close()


__all__ = ["PixelPath"]
