"""What this machine is and what it can run: one module per job.

- :mod:`.jetson`: the Jetson device tree and Jetson Linux (L4T) release.
- :mod:`.trt`: importing TensorRT, its version gate and the process's one logger.
- :mod:`.cuda`: cuda-python's runtime API: the result check, device memory
  (:class:`~.cuda.DeviceBuffer`, :class:`~.cuda.DevicePool`) and streams.
- :mod:`.gpu`: which GPU this is (device tree, cuda-python or nvidia-smi).
- :mod:`.fingerprint`: the engine folder name made of the above.
- :mod:`.report`: everything the probes found, for ``segzero-edge doctor``.

Every probe fails soft (``None`` and a reason); nothing here imports torch, onnxruntime or
TensorRT at import time.
"""
