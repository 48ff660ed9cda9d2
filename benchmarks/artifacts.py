"""Model files the benchmark runs on, built once from seeds and cached.

``tiny``: the test models (tiny Qwen2.5-VL, SAM2.1-tiny with random weights).
``real``: Qwen2.5-VL-3B shapes with random weights (Q4_K_M GGUF) and SAM2.1 tiny + base+.
Both sides of the benchmark load the same weights: the reference side the Hugging Face
folder and the Meta checkpoint, the runtime side the GGUF / ONNX files exported from them.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from segzero_edge.fileio import atomic_path
from segzero_edge.layout import (
    MMPROJ_FILE,
    REASONER_FILE,
    SAM2_DECODER_FILE,
    SAM2_ENCODER_FILE,
)

from .roofline import QWEN25VL_3B_CONFIG

SHAPES = ("tiny", "real")
SAM2_CONFIGS = {"tiny": ("sam2.1_hiera_t",), "real": ("sam2.1_hiera_t", "sam2.1_hiera_b+")}


@dataclass
class Artifacts:
    """Paths of one shape set."""

    shapes: str
    hf_dir: Path
    reasoner_gguf: Path
    mmproj_gguf: Path
    sam2: dict[str, dict[str, Path]]
    """SAM2 config -> {"checkpoint", "encoder", "decoder"}."""

    def to_json(self, root: Path | None = None) -> dict[str, object]:
        """Paths as strings, relative to ``root`` where inside it (the cache can move)."""

        def rel(p: Path) -> str:
            if root is not None and p.is_relative_to(root):
                return str(p.relative_to(root))
            return str(p)

        return {
            "shapes": self.shapes,
            "hf_dir": rel(self.hf_dir),
            "reasoner_gguf": rel(self.reasoner_gguf),
            "mmproj_gguf": rel(self.mmproj_gguf),
            "sam2": {k: {n: rel(p) for n, p in v.items()} for k, v in self.sam2.items()},
        }

    @classmethod
    def from_json(cls, d: dict, root: Path) -> Artifacts:
        """Relative paths are resolved against ``root`` (absolute ones are kept)."""
        return cls(
            shapes=d["shapes"],
            hf_dir=root / d["hf_dir"],
            reasoner_gguf=root / d["reasoner_gguf"],
            mmproj_gguf=root / d["mmproj_gguf"],
            sam2={k: {n: root / p for n, p in v.items()} for k, v in d["sam2"].items()},
        )


def default_cache() -> Path:
    """``$SEGZERO_BENCH_CACHE``, else ``~/.cache/segzero-edge/bench``."""
    if os.environ.get("SEGZERO_BENCH_CACHE"):
        return Path(os.environ["SEGZERO_BENCH_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "segzero-edge" / "bench"


def real_qwen_config(tiny: dict) -> dict:
    """The tiny model's ``config.json`` with Qwen2.5-VL-3B's sizes (token ids kept)."""
    text, vision = QWEN25VL_3B_CONFIG["text_config"], QWEN25VL_3B_CONFIG["vision_config"]
    cfg = json.loads(json.dumps(tiny))
    cfg["text_config"].update(text)
    cfg["text_config"].pop("layer_types", None)  # derived again from num_hidden_layers
    cfg["text_config"]["max_window_layers"] = text["num_hidden_layers"]
    cfg["vision_config"].update(vision)
    cfg["tie_word_embeddings"] = True
    return cfg


def _real_qwen(out_dir: Path, seed: int) -> Path:
    """Qwen2.5-VL-3B-shaped folder with random bf16 weights (tokenizer of the tiny model)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from segzero_export.tiny_qwen import build_tiny_qwen25vl

    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    build_tiny_qwen25vl(tmp, seed=seed)
    cfg = real_qwen_config(json.loads((tmp / "config.json").read_text()))
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in tmp.glob("*.safetensors*"):
        f.unlink()
    config = Qwen2_5_VLConfig.from_dict(cfg)
    torch.manual_seed(seed)
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    model.save_pretrained(tmp, max_shard_size="2GB")
    del model
    tmp.rename(out_dir)
    return out_dir


def ensure_artifacts(
    shapes: str = "tiny", *, cache: Path | None = None, seed: int = 0, log=print
) -> Artifacts:
    """Build (first time) or reuse the models of ``shapes`` under ``cache``."""
    if shapes not in SHAPES:
        raise ValueError(f"unknown shapes {shapes!r}; choose one of {', '.join(SHAPES)}")
    root = (cache or default_cache()) / f"{shapes}-seed{seed}"
    index = root / "artifacts.json"
    if index.is_file():
        art = Artifacts.from_json(json.loads(index.read_text()), root)
        paths = [art.hf_dir, art.reasoner_gguf, art.mmproj_gguf]
        paths += [p for v in art.sam2.values() for p in v.values()]
        if all(p.exists() for p in paths):
            return art
    root.mkdir(parents=True, exist_ok=True)
    from segzero_export.reasoner import export_reasoner
    from segzero_export.sam2_onnx import export_sam2
    from segzero_export.tiny_qwen import build_tiny_qwen25vl
    from segzero_export.tiny_sam2 import build_sam2_checkpoint

    hf_dir = root / "qwen"
    if not (hf_dir / "config.json").is_file():
        shutil.rmtree(hf_dir, ignore_errors=True)
        log(f"building the {shapes} Qwen2.5-VL (random weights) in {hf_dir}")
        if shapes == "tiny":
            build_tiny_qwen25vl(hf_dir, seed=seed)
        else:
            _real_qwen(hf_dir, seed)
    gguf_dir = root / "gguf"
    files = {"reasoner": gguf_dir / REASONER_FILE, "mmproj": gguf_dir / MMPROJ_FILE}
    if not all(p.is_file() for p in files.values()):
        log(f"exporting the reasoner to GGUF (Q4_K_M) in {gguf_dir}")
        files = export_reasoner(hf_dir, gguf_dir, quant="Q4_K_M", progress=False)
    sam2: dict[str, dict[str, Path]] = {}
    for config in SAM2_CONFIGS[shapes]:
        d = root / config
        ckpt = d / f"{config}.pt"
        if not ckpt.is_file():
            log(f"building the {config} checkpoint (random weights)")
            d.mkdir(parents=True, exist_ok=True)
            build_sam2_checkpoint(ckpt, config=config, seed=seed)
        onnx = {"encoder": d / SAM2_ENCODER_FILE, "decoder": d / SAM2_DECODER_FILE}
        if not all(p.is_file() for p in onnx.values()):
            log(f"exporting {config} to ONNX")
            onnx = export_sam2(ckpt, d, config=config, progress=False)
        sam2[config] = {"checkpoint": ckpt, **onnx}
    art = Artifacts(shapes, hf_dir, files["reasoner"], files["mmproj"], sam2)
    with atomic_path(index) as tmp:
        tmp.write_text(json.dumps(art.to_json(root), indent=2))
    return art
