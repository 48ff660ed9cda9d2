"""Locate and validate the Hugging Face Qwen2.5-VL / Qwen3-VL checkpoint to export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SUPPORTED_ARCHITECTURE = "Qwen2_5_VLForConditionalGeneration"
QWEN3VL_ARCHITECTURE = "Qwen3VLForConditionalGeneration"
SUPPORTED_ARCHITECTURES = (SUPPORTED_ARCHITECTURE, QWEN3VL_ARCHITECTURE)
"""The checkpoints the exporter converts: Qwen2.5-VL (3B/7B) and dense Qwen3-VL (2B/4B/8B)."""

_WEIGHT_PATTERNS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")


def read_config(model_dir: Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint folder, with a clear error when absent or malformed."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} is not a Hugging Face model folder: no config.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return config


def check_architecture(config: dict[str, Any], where: Path | str) -> str:
    """The config's architecture when it is one of :data:`SUPPORTED_ARCHITECTURES`, else
    ValueError naming what was found."""
    archs = config.get("architectures") or []
    if len(archs) != 1 or archs[0] not in SUPPORTED_ARCHITECTURES:
        found = ", ".join(map(str, archs)) or f"none (model_type={config.get('model_type')!r})"
        raise ValueError(
            f"unsupported architecture in {where}: {found}; only {SUPPORTED_ARCHITECTURE} "
            "(Qwen2.5-VL, e.g. Seg-Zero-7B / a Qwen2.5-VL-3B/7B-Instruct fine-tune) and "
            f"{QWEN3VL_ARCHITECTURE} (dense Qwen3-VL 2B/4B/8B) are supported"
        )
    return str(archs[0])


def safetensors_files(model_dir: Path) -> list[Path]:
    """The checkpoint's safetensors shards, in order; FileNotFoundError when there are none."""
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        files = [model_dir / name for name in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{model_dir}: shards listed in {index.name} are missing: {missing}"
            )
        if files:
            return files
    files = sorted(model_dir.glob("model-*-of-*.safetensors"))
    single = model_dir / "model.safetensors"
    if single.is_file():
        files = [single]
    if not files:
        other = sorted(p.name for p in model_dir.glob("*.bin")) + sorted(
            p.name for p in model_dir.glob("*.pt")
        )
        hint = f" (found {other}: re-save with safe_serialization=True)" if other else ""
        raise FileNotFoundError(f"{model_dir} has no safetensors weights{hint}")
    return files


def validate_model_dir(model_dir: Path) -> Path:
    """Check that a folder holds a supported checkpoint with config, weights and tokenizer."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder not found: {model_dir}")
    check_architecture(read_config(model_dir), model_dir / "config.json")
    safetensors_files(model_dir)
    if not (model_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{model_dir} has no tokenizer.json (the GGUF needs the tokenizer)")
    return model_dir


def resolve_model(src: str | Path, *, revision: str | None = None) -> Path:
    """Local checkpoint folder for ``src``: an existing folder, or a hub id (downloaded if online).

    Raises FileNotFoundError for a missing folder / config / weights / tokenizer, or (naming
    the id) when a hub download is impossible (offline, unknown id, gated repo), and ValueError
    for an architecture outside :data:`SUPPORTED_ARCHITECTURES`.
    """
    path = Path(src).expanduser()
    if path.exists():
        return validate_model_dir(path)
    text = str(src)
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise FileNotFoundError(f"model folder not found: {src}")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            repo_id=text,
            revision=revision,
            allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"],
        )
    except Exception as e:  # network, auth, unknown repo: report the id, not a deep traceback
        first = (str(e).strip().splitlines() or [""])[0]
        raise FileNotFoundError(
            f"{text!r} is not a local folder and could not be downloaded from the Hugging Face hub "
            f"({type(e).__name__}: {first}); pass a local folder instead"
        ) from e
    return validate_model_dir(Path(local))
