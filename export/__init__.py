"""segzero-edge export: Qwen2.5-VL -> GGUF (+ INT4), SAM2 -> ONNX, and the bundle writer."""
