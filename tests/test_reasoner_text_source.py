"""resolve_model: local folders, hub ids and the errors for bad checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from segzero_export.hf_source import resolve_model


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_local_folder_resolves(tiny_qwen_dir: Path) -> None:
    assert resolve_model(tiny_qwen_dir) == tiny_qwen_dir
    assert resolve_model(str(tiny_qwen_dir)) == tiny_qwen_dir


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model folder not found"):
        resolve_model(tmp_path / "nope" / "deeper" / "x")


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no config.json"):
        resolve_model(tmp_path)


def test_wrong_architecture_named(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    d = _copy(tiny_qwen_dir, tmp_path / "m")
    config = json.loads((d / "config.json").read_text())
    config["architectures"] = ["Qwen2VLForConditionalGeneration"]
    (d / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match=r"unsupported architecture.*Qwen2VLForConditionalGeneration"
    ):
        resolve_model(d)


def test_missing_weights_with_hint(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    d = _copy(tiny_qwen_dir, tmp_path / "m")
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"no safetensors weights .*pytorch_model\.bin"):
        resolve_model(d)


def test_missing_shard_named(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    d = _copy(tiny_qwen_dir, tmp_path / "m")
    (d / "model.safetensors").rename(d / "model-00001-of-00002.safetensors")
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(FileNotFoundError, match=r"model-00002-of-00002.safetensors"):
        resolve_model(d)


def test_missing_tokenizer(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    d = _copy(tiny_qwen_dir, tmp_path / "m")
    (d / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no tokenizer.json"):
        resolve_model(d)


def test_bad_config_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"not valid JSON"):
        resolve_model(tmp_path)


def test_unreachable_hub_id_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def offline(**kwargs: object) -> str:
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(FileNotFoundError, match=r"'Ricky06662/Seg-Zero-7B' is not a local folder"):
        resolve_model("Ricky06662/Seg-Zero-7B")
