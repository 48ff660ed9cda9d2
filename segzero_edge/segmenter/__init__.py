"""Segmenter backends (TensorRT, onnxruntime) and SAM2 prompt/mask helpers."""
