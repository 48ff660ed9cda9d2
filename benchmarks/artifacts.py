"""Model files the benchmark runs on, built once from seeds and cached.

``tiny``: the test models (tiny Qwen2.5-VL, SAM2.1-tiny with random weights).
``real``: a published reasoner's shapes with random weights (Q4_K_M GGUF; ``reasoner_shapes``,
one of ``segzero_export.model_shapes.SHAPE_NAMES``, default Qwen2.5-VL-3B) and SAM2.1 tiny +
base+. The Qwen3-VL shapes keep the tiny Qwen3-VL's tokenizer and processor.
Both sides of the benchmark load the same weights: the reference side the Hugging Face
folder and the Meta checkpoint, the runtime side the GGUF / ONNX files exported from them.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segzero_edge.fileio import atomic_path
from segzero_edge.layout import (
    MMPROJ_FILE,
    REASONER_FILE,
    SAM2_DECODER_FILE,
    SAM2_ENCODER_FILE,
)
from segzero_export.model_shapes import (
    DEFAULT_REASONER_SHAPES,
    SHAPE_NAMES,
    is_qwen3vl,
    published_config,
)

SHAPES = ("tiny", "real")
QWEN3VL_FAMILY = "qwen3vl-grounding"
"""The family the Qwen3-VL shapes are benchmarked with (prompt, answer grid, 832 resize)."""
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


def check_reasoner_shapes(name: str) -> str:
    """``name`` if it is a known published size, else ``ValueError`` naming them."""
    if name not in SHAPE_NAMES:
        known = ", ".join(SHAPE_NAMES)
        raise ValueError(f"unknown reasoner shapes {name!r}; choose one of {known}")
    return name


def reasoner_family(reasoner_shapes: str) -> str | None:
    """The model family a shape set is benchmarked with: ``qwen3vl-grounding`` for the Qwen3-VL
    shapes, ``None`` (the benchmark's default family) for Qwen2.5-VL."""
    return QWEN3VL_FAMILY if is_qwen3vl(published_config(reasoner_shapes)) else None


def real_qwen_config(tiny: dict, reasoner_shapes: str = DEFAULT_REASONER_SHAPES) -> dict:
    """The tiny model's ``config.json`` with a published model's sizes (token ids kept).

    ``tiny`` must be of the same architecture as ``reasoner_shapes`` (``ValueError``)."""
    real = published_config(check_reasoner_shapes(reasoner_shapes))
    if is_qwen3vl(real) != is_qwen3vl(tiny):
        raise ValueError(f"{reasoner_shapes} needs the tiny model of its own architecture")
    text, vision = real["text_config"], real["vision_config"]
    keep = ("model_type", "bos_token_id", "eos_token_id", "pad_token_id")
    cfg = json.loads(json.dumps(tiny))
    cfg["text_config"].update({k: v for k, v in text.items() if k not in keep})
    cfg["text_config"].pop("layer_types", None)  # derived again from num_hidden_layers
    if not is_qwen3vl(real):
        cfg["text_config"]["max_window_layers"] = text["num_hidden_layers"]
    cfg["vision_config"].update({k: v for k, v in vision.items() if k != "model_type"})
    cfg["tie_word_embeddings"] = real["tie_word_embeddings"]
    cfg["text_config"]["tie_word_embeddings"] = real["tie_word_embeddings"]
    return cfg


def _real_qwen(out_dir: Path, seed: int, reasoner_shapes: str = DEFAULT_REASONER_SHAPES) -> Path:
    """A folder with a published model's shapes and random bf16 weights (tokenizer and
    processor of the tiny model of that architecture), written shard by shard
    (:func:`write_random_weights`: a few GB of memory even for the 7B/8B sizes)."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
    )

    from segzero_export.tiny_qwen import build_tiny_qwen25vl
    from segzero_export.tiny_qwen3vl import build_tiny_qwen3vl

    qwen3 = reasoner_family(reasoner_shapes) is not None
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (build_tiny_qwen3vl if qwen3 else build_tiny_qwen25vl)(tmp, seed=seed)
    cfg = real_qwen_config(json.loads((tmp / "config.json").read_text()), reasoner_shapes)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in tmp.glob("*.safetensors*"):
        f.unlink()
    if qwen3:
        config: Any = Qwen3VLConfig.from_dict(cfg)
        cls: Any = Qwen3VLForConditionalGeneration
    else:
        config, cls = Qwen2_5_VLConfig.from_dict(cfg), Qwen2_5_VLForConditionalGeneration
    write_random_weights(config, cls, tmp, seed=seed)
    tmp.rename(out_dir)
    return out_dir


SHARD_BYTES = 1 << 30
"""Bytes of bf16 weights per safetensors shard :func:`write_random_weights` writes."""


def write_random_weights(
    config: Any, model_class: Any, out_dir: Path, *, seed: int = 0, shard_bytes: int = SHARD_BYTES
) -> list[Path]:
    """Random bf16 weights for ``model_class(config)`` as safetensors shards in ``out_dir``,
    one shard in memory at a time (the model is built on the meta device only for its names
    and shapes), with the ``model.safetensors.index.json`` that ``from_pretrained`` and the
    exporter read. Matrices N(0, 0.02) from a seeded generator, 1-D norm weights 1, other 1-D
    tensors (biases) 0; tied weights are written once, as ``save_pretrained`` writes them.
    Returns the shard paths."""
    import torch
    from safetensors.torch import save_file

    with torch.device("meta"):
        model = model_class(config)
    shapes = [(n, tuple(p.shape)) for n, p in model.named_parameters(remove_duplicate=True)]
    del model
    gen = torch.Generator().manual_seed(seed)
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in shapes:
        n = 2 * int(torch.Size(shape).numel())
        if groups[-1] and size + n > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append((name, shape))
        size += n
    out_dir.mkdir(parents=True, exist_ok=True)
    files, weight_map, total = [], {}, 0
    for k, group in enumerate(groups):
        fname = f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for name, shape in group:
            if len(shape) >= 2:
                t = torch.randn(shape, generator=gen, dtype=torch.bfloat16).mul_(0.02)
            else:
                t = torch.ones(shape) if "norm" in name else torch.zeros(shape)
            tensors[name] = t.to(torch.bfloat16).contiguous()
            weight_map[name] = fname
            total += 2 * t.numel()
        save_file(tensors, str(out_dir / fname), metadata={"format": "pt"})
        files.append(out_dir / fname)
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return files


def artifacts_root(
    shapes: str, reasoner_shapes: str = DEFAULT_REASONER_SHAPES, cache: Path | None = None,
    seed: int = 0,
) -> Path:  # fmt: skip
    """The cache folder of one shape set (``real-seed0`` for Qwen2.5-VL-3B, as before;
    ``real-qwen3vl-2b-seed0`` ... for the others)."""
    base = cache or default_cache()
    if shapes == "real" and reasoner_shapes != DEFAULT_REASONER_SHAPES:
        return base / f"{shapes}-{reasoner_shapes}-seed{seed}"
    return base / f"{shapes}-seed{seed}"


def ensure_artifacts(
    shapes: str = "tiny",
    *,
    cache: Path | None = None,
    seed: int = 0,
    log=print,
    reasoner_shapes: str = DEFAULT_REASONER_SHAPES,
) -> Artifacts:
    """Build (first time) or reuse the models of ``shapes`` under ``cache``; ``real`` with the
    published sizes ``reasoner_shapes`` (ignored for ``tiny``)."""
    if shapes not in SHAPES:
        raise ValueError(f"unknown shapes {shapes!r}; choose one of {', '.join(SHAPES)}")
    check_reasoner_shapes(reasoner_shapes)
    root = artifacts_root(shapes, reasoner_shapes, cache, seed)
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
        what = "Qwen2.5-VL" if shapes == "tiny" else reasoner_shapes
        log(f"building the {shapes} {what} (random weights) in {hf_dir}")
        if shapes == "tiny":
            build_tiny_qwen25vl(hf_dir, seed=seed)
        else:
            _real_qwen(hf_dir, seed, reasoner_shapes)
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
