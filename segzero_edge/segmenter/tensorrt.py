"""SAM2 segmenter on TensorRT engines built on this device (``segzero-edge build-engines``).

The engines run through :class:`~.trt_engine.TrtEngines` with device memory from
:mod:`segzero_edge.platform.cuda`. ``encode`` leaves the image features on the GPU: the
returned :class:`~segzero_edge.backends.ImageEmbedding` holds :class:`DeviceBuffer` s that
``decode`` reads in place, so several prompts (or queries) on one frame encode it once. The
features come from a :class:`DevicePool`: once a frame's embedding is dropped its memory
serves the next frame (steady-state ``encode`` / ``decode`` make no ``cudaMalloc`` /
``cudaFree``). All work is queued on one non-blocking CUDA stream. ``decode`` also accepts an
embedding of numpy arrays (e.g. from the onnxruntime backend).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..backends import ImageEmbedding, SegmenterBackend
from ..layout import (
    SAM2_DECODER_INPUTS,
    SAM2_DECODER_OUTPUTS,
    SAM2_DECODER_TRACK_OUTPUTS,
    SAM2_ENCODER_INPUTS,
    SAM2_ENCODER_OUTPUTS,
    SAM2_FEATURES,
    SAM2_IMAGE_SHAPE,
    SAM2_POINT_INPUTS,
)
from ..platform.cuda import CUDA_PYTHON_HINT, CudaError, DeviceBuffer, check, cudart, synchronize
from ..platform.trt import load_tensorrt, tensorrt_supported
from .prompts import check_prompt_batch, decode_in_calls, mask_prompt
from .trt_engine import EngineLoadError, TrtEngines


def available() -> tuple[bool, str]:
    """Whether this backend can run here: TensorRT, cuda-python and a CUDA device."""
    trt, why = load_tensorrt()
    if trt is None:
        return False, why
    ok, why = tensorrt_supported(str(trt.__version__))
    if not ok:
        return False, why
    try:
        rt = cudart()
    except ImportError as e:
        return False, f"cuda-python not installed ({e}); {CUDA_PYTHON_HINT}"
    try:
        count = check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
    except Exception as e:  # driver libraries missing raise from inside cuda-python
        hint = f" (cuda-python newer than the driver? {CUDA_PYTHON_HINT})"
        return False, f"no usable CUDA device: {e}" + (hint if "Driver" in str(e) else "")
    if not count:
        return False, "no CUDA device"
    return True, f"TensorRT {trt.__version__}, {count} CUDA device(s)"


class TensorRTSegmenter(TrtEngines):
    """SAM2 encoder + decoder TensorRT engines (a
    :class:`~segzero_edge.backends.DeviceSegmenter`).

    ``close()`` waits for a call in progress on another thread; later calls raise
    ``RuntimeError``. Raises :class:`EngineLoadError` when an engine file cannot be loaded
    here, :class:`~segzero_edge.platform.cuda.CudaError` when device memory runs out; nothing
    stays allocated then.
    """

    name = "tensorrt"
    backend: SegmenterBackend = "tensorrt"
    device_kind = "gpu"

    def __init__(
        self,
        encoder_plan: str | os.PathLike[str],
        decoder_plan: str | os.PathLike[str],
        *,
        device: int = 0,
    ) -> None:
        self.providers: list[str] = []
        """No onnxruntime execution providers: the engines run on TensorRT itself."""
        self.threads: int | None = None
        """No CPU threads of its own: the engines run on the GPU."""
        self.max_prompts: int = 1
        """Prompts per decoder call (the engine profile's maximum; 1 for engines of a decoder
        exported before the batch axis). ``decode`` splits larger batches."""
        self.max_points = 1
        """Points per prompt (the engine profile's maximum)."""
        self._mask_is_zero = False  # device mask_input / has_mask_input hold zeros
        plans = {"encoder": Path(encoder_plan), "decoder": Path(decoder_plan)}
        super().__init__(plans, device)

    def _open(self, plans: Mapping[str, Path]) -> None:
        self._encoder = self._load(
            plans["encoder"], "encoder", SAM2_ENCODER_INPUTS, SAM2_ENCODER_OUTPUTS
        )
        self._decoder = self._load(
            plans["decoder"], "decoder", SAM2_DECODER_INPUTS, SAM2_DECODER_OUTPUTS,
            SAM2_DECODER_TRACK_OUTPUTS,
        )  # fmt: skip
        self._outputs = SAM2_DECODER_OUTPUTS + tuple(
            n for n in SAM2_DECODER_TRACK_OUTPUTS if n in self._decoder.tensor_names
        )  # every output must be bound, those for tracking included
        for name in SAM2_FEATURES:
            out_dt = self._encoder.dtype(name)
            in_dt = self._decoder.dtype(name)
            if out_dt != in_dt:
                raise EngineLoadError(
                    f"engine mismatch: encoder writes {name} as {out_dt}, decoder reads {in_dt}"
                )
        max_shape = self._decoder.profile_max(SAM2_POINT_INPUTS[0])
        self.max_points = int(max_shape[1])
        self.max_prompts = int(max_shape[0])
        self._buffer("image", self._encoder.shape("image"), self._encoder.dtype("image"))
        for name in (*SAM2_DECODER_INPUTS, *self._outputs):
            if name not in SAM2_FEATURES:  # features live in each ImageEmbedding
                self._buffer(name, self._decoder_shape(name), self._decoder.dtype(name))

    def _decoder_shape(self, name: str) -> tuple[int, ...]:
        """The decoder's shape of ``name``, with the prompt and point dimensions at their
        profile maxima (the largest buffer a decoder call needs)."""
        fixed: dict[int, int] = {}
        if name in SAM2_POINT_INPUTS:
            fixed[1] = self.max_points
        batched = (*SAM2_POINT_INPUTS, *SAM2_DECODER_OUTPUTS, *SAM2_DECODER_TRACK_OUTPUTS)
        if name in batched and self._decoder.dims(name)[0] < 0:
            fixed[0] = self.max_prompts
        return self._decoder.shape(name, fixed)

    def encode(self, image: np.ndarray) -> ImageEmbedding:
        """``[1, 3, 1024, 1024]`` float32 normalised image -> features kept on the device."""
        if tuple(image.shape) != SAM2_IMAGE_SHAPE:
            raise ValueError(
                f"SAM2 encoder input must be {SAM2_IMAGE_SHAPE}, got {tuple(image.shape)}"
            )
        with self._lock:
            stream = self._require_open()
            self._buffers["image"].upload(image, stream)
            return self._encode_loaded()

    @property
    def image_buffer(self) -> DeviceBuffer:
        """The encoder's input on the device: a CUDA pre-processing kernel may write it directly
        (queued on :attr:`stream`), then :meth:`encode_loaded` runs without a host copy."""
        self._require_open()
        return self._buffers["image"]

    def encode_loaded(self) -> ImageEmbedding:
        """Run the encoder on what :attr:`image_buffer` holds; features stay on the device."""
        with self._lock:
            self._require_open()
            return self._encode_loaded()

    def _encode_loaded(self) -> ImageEmbedding:
        enc = self._encoder
        enc.bind("image", self._buffers["image"].ptr)
        feats = {}
        for name in SAM2_ENCODER_OUTPUTS:
            buf = self._pool.buffer(enc.shape(name), enc.dtype(name))
            enc.bind(name, buf.ptr)
            feats[name] = buf
        stream = self._open_stream()
        enc.enqueue(stream)
        synchronize(stream)
        return ImageEmbedding(
            image_embed=feats["image_embed"],
            high_res_feats_0=feats["high_res_feats_0"],
            high_res_feats_1=feats["high_res_feats_1"],
        )

    def decode(
        self,
        embedding: ImageEmbedding,
        point_coords: np.ndarray,
        point_labels: np.ndarray,
        *,
        mask_input: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """B prompts -> low-res logits ``[B, 4, 256, 256]``, IoU ``[B, 4]``.

        ``point_coords [B, P, 2]`` (scaled to SAM2's 1024 x 1024 input), ``point_labels
        [B, P]``: one engine call per
        :attr:`max_prompts` prompts. ``mask_input`` ``[1, 1, 256, 256]`` applies to every
        prompt. Raises ``ValueError`` for bad shapes or more points than the engine profile.
        """
        coords, labels = check_prompt_batch(point_coords, point_labels)
        self._check_points(coords.shape[1])
        with self._lock:
            self._require_open()

            def call(c: np.ndarray, lb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                self._enqueue_decode(embedding, c, lb, mask_input)
                masks, iou = (self._download(name, len(c)) for name in SAM2_DECODER_OUTPUTS)
                return masks, iou

            return decode_in_calls(call, coords, labels, self.max_prompts)

    def _check_points(self, n: int) -> None:
        if n > self.max_points:
            raise ValueError(
                f"{n} prompt points exceed the engine's profile maximum of {self.max_points} "
                "(rebuild with a larger points profile)"
            )

    def _download(self, name: str, b: int) -> np.ndarray:
        """The first ``b`` prompts' rows of decoder output ``name``, float32 on the host."""
        buf = self._buffers[name]
        shape = (b, *buf.shape[1:])
        return buf.download(self._open_stream(), shape).astype(np.float32, copy=False)

    def decode_on_device(
        self, embedding: ImageEmbedding, point_coords: np.ndarray, point_labels: np.ndarray
    ) -> np.ndarray:
        """Like :meth:`decode` for at most :attr:`max_prompts` prompts, but the logits stay in
        :attr:`mask_buffer` (``[B, 4, 256, 256]`` on the device, valid until the next decode
        on this segmenter's stream); returns the IoU ``[B, 4]`` (float32)."""
        with self._lock:
            self._require_open()
            coords, labels = check_prompt_batch(point_coords, point_labels)
            b, n = coords.shape[:2]
            if n > self.max_points or b > self.max_prompts:
                raise ValueError(
                    f"{b} prompts of {n} points exceed the engine's profile ({self.max_prompts} "
                    f"prompts, {self.max_points} points)"
                )
            self._enqueue_decode(embedding, coords, labels, None)
            return self._download(SAM2_DECODER_OUTPUTS[1], b)

    @property
    def mask_buffer(self) -> DeviceBuffer:
        """The decoder's low-res mask logits output ``[max_prompts, 4, 256, 256]`` on the device."""
        self._require_open()
        return self._buffers[SAM2_DECODER_OUTPUTS[0]]

    def _enqueue_decode(
        self,
        embedding: ImageEmbedding,
        coords: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None,
    ) -> None:
        """Queue one decoder call of ``B <= max_prompts`` checked prompts on the stream."""
        b, n = coords.shape[:2]
        dec, stream = self._decoder, self._open_stream()
        inputs: list[tuple[str, np.ndarray]] = [("point_coords", coords), ("point_labels", labels)]
        if mask_input is not None or not self._mask_is_zero:
            mask, has_mask = mask_prompt(mask_input)
            inputs += [("mask_input", mask), ("has_mask_input", has_mask)]
        features = {
            "image_embed": embedding.image_embed,
            "high_res_feats_0": embedding.high_res_feats_0,
            "high_res_feats_1": embedding.high_res_feats_1,
        }
        for name, value in features.items():
            dec.bind(name, self._device_ptr(dec, name, value, dec.shape(name)))
        for name, host in inputs:
            self._buffers[name].upload(host, stream)
        if len(inputs) > 2:
            self._mask_is_zero = mask_input is None  # the zero mask stays until replaced
        for name in ("point_coords", "point_labels", "mask_input", "has_mask_input"):
            dec.bind(name, self._buffers[name].ptr)
        dec.set_input_shape("point_coords", (b, n, 2))
        dec.set_input_shape("point_labels", (b, n))
        for name in self._outputs:
            dec.bind(name, self._buffers[name].ptr)
        dec.enqueue(stream)

    @property
    def can_track(self) -> bool:
        """Whether the decoder engine has the tracking outputs (object score, pointers)."""
        return set(SAM2_DECODER_TRACK_OUTPUTS) <= set(self._outputs)

    def decode_track(
        self, embedding: ImageEmbedding, point_coords: np.ndarray, point_labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`decode` plus ``object_score_logits [B, 1]`` and ``obj_ptr [B, 4, 256]``, for at
        most :attr:`max_prompts` prompts (one engine call).

        Raises ``RuntimeError`` when the decoder predates tracking (re-export the bundle).
        """
        if not self.can_track:
            raise RuntimeError(
                "the SAM2 decoder engine has no object score / pointer outputs (exported "
                "before tracking existed); re-export the bundle and rebuild its engines"
            )
        b = int(np.shape(point_coords)[0])
        if b > self.max_prompts:
            raise ValueError(f"decode_track takes at most {self.max_prompts} prompts, got {b}")
        with self._lock:  # re-entrant: the outputs are read before another call runs
            masks, iou = self.decode(embedding, point_coords, point_labels)
            score, ptr = (self._download(name, b) for name in SAM2_DECODER_TRACK_OUTPUTS)
        return masks, iou, score, ptr

    def __enter__(self) -> TensorRTSegmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TensorRTSegmenter(tensorrt={self.tensorrt_version}, device={self.device})"


__all__ = [
    "CudaError",
    "EngineLoadError",
    "TensorRTSegmenter",
    "available",
]
