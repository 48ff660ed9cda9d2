"""Where a bundle's TensorRT engines live for this device, and whether they are current.

The runtime side of the engine cache (the builder, ``segzero_export.engines``, imports it):

```
bundle/engines/<device-fingerprint>/
  sam2_encoder.plan  sam2_decoder.plan   serialized engines
  sam2_memory_attention.plan  sam2_memory_encoder.plan   (bundles with tracking graphs)
  engines.json                           TensorRT version, fingerprint, ONNX sha256, flags
  timing.cache                           TensorRT timing cache, reused by later builds
```

An engine is stale when the TensorRT version, the device, its ONNX file (sha256) or the build
flags (:class:`BuildFlags`) differ from what ``engines.json`` (schema ``META_SCHEMA``) records.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BundleError
from .fileio import sha256_file
from .layout import (
    ENGINE_META_FILE,
    ENGINES_DIR,
    MANIFEST,
    SAM2_GRAPHS,
    SAM2_MEMORY_ATTENTION,
    SAM2_MEMORY_DYNAMIC,
    SAM2_MEMORY_GRAPHS,
    TIMING_CACHE_FILE,
)
from .manifest import read_manifest
from .platform.fingerprint import device_fingerprint
from .platform.trt import tensorrt_version

log = logging.getLogger(__name__)

META_SCHEMA = 1
POINTS_PROFILE = (1, 3, 16)  # min, opt (box corners + one point), max prompt points
PROMPTS_PROFILE = (1, 1, 16)  # min, opt, max prompts (objects) per decoder call
MEMORY_FRAMES_PROFILE = (1, 7, 7)
"""Memory frames (min, opt, max): SAM2's ``num_maskmem`` = 7, one conditioning frame + 6."""
OBJ_PTRS_PROFILE = (1, 16, 16)
"""Object pointers (min, opt, max): SAM2's ``max_obj_ptrs_in_encoder`` = 16."""
MEMORY_PROFILE_OF = {"num_memory": "memory_frames_profile", "num_obj_ptrs": "obj_ptrs_profile"}


@dataclass(frozen=True)
class BuildFlags:
    """The options an engine was built with; a change means a rebuild."""

    fp16: bool = True
    fp32_layers: tuple[str, ...] = ()
    points_profile: tuple[int, int, int] = POINTS_PROFILE
    prompts_profile: tuple[int, int, int] = PROMPTS_PROFILE
    memory_frames_profile: tuple[int, int, int] = MEMORY_FRAMES_PROFILE
    obj_ptrs_profile: tuple[int, int, int] = OBJ_PTRS_PROFILE

    def to_json(self, name: str | None = None) -> dict[str, Any]:
        """The flags recorded for engine ``name`` (the memory profiles only for the memory
        attention engine, so adding them changed nothing for the other engines)."""
        out: dict[str, Any] = {
            "fp16": self.fp16,
            "fp32_layers": list(self.fp32_layers),
            "points_profile": list(self.points_profile),
            "prompts_profile": list(self.prompts_profile),
        }
        if name == SAM2_MEMORY_ATTENTION:
            out["memory_frames_profile"] = list(self.memory_frames_profile)
            out["obj_ptrs_profile"] = list(self.obj_ptrs_profile)
        return out

    def profile(self, input_name: str) -> tuple[int, int, int] | None:
        """(min, opt, max) of a memory-attention input's dynamic dimension 0, else None."""
        group = SAM2_MEMORY_DYNAMIC.get(input_name)
        return None if group is None else getattr(self, MEMORY_PROFILE_OF[group])


def engine_dir(bundle_dir: str | os.PathLike[str], fingerprint: str | None = None) -> Path:
    """``bundle/engines/<fingerprint>`` (this device's fingerprint by default)."""
    return Path(bundle_dir) / ENGINES_DIR / (fingerprint or device_fingerprint())


def plan_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.plan"


def read_meta(directory: Path) -> dict[str, Any]:
    """``engines.json`` of an engine folder; ``{}`` when missing or unreadable."""
    path = directory / ENGINE_META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("ignoring unreadable %s: %s", path, e)
        return {}
    return meta if isinstance(meta, dict) else {}


def stale_reason(
    name: str,
    meta: dict[str, Any],
    *,
    plan: Path,
    onnx_sha256: str,
    tensorrt_version: str | None,
    fingerprint: str,
    flags: BuildFlags | None,
) -> str | None:
    """Why engine ``name`` must be (re)built, or ``None`` when it is current.

    ``tensorrt_version`` / ``flags`` of ``None`` are not compared (finding engines without
    TensorRT importable, or accepting whatever flags they were built with).
    """
    if not plan.is_file():
        return f"{plan.name} does not exist"
    if meta.get("schema_version") != META_SCHEMA:
        return f"{ENGINE_META_FILE} is missing or has another schema"
    engines = meta.get("engines")
    if not isinstance(engines, dict):
        return f"{ENGINE_META_FILE} has no 'engines' table"
    entry = engines.get(name)
    if not isinstance(entry, dict):
        return f"{ENGINE_META_FILE} has no entry for {name}"
    if meta.get("fingerprint") != fingerprint:
        return f"built for device {meta.get('fingerprint')!r}, this is {fingerprint!r}"
    if tensorrt_version is not None and meta.get("tensorrt_version") != tensorrt_version:
        return f"built with TensorRT {meta.get('tensorrt_version')}, this is {tensorrt_version}"
    if entry.get("onnx_sha256") != onnx_sha256:
        return f"{entry.get('onnx', name + '.onnx')} changed (sha256 differs)"
    size = plan.stat().st_size
    if entry.get("plan_size") != size:
        return f"{plan.name} has {size} bytes, {ENGINE_META_FILE} says {entry.get('plan_size')}"
    if flags is not None and entry.get("flags") != flags.to_json(name):
        return f"build flags changed: {entry.get('flags')} -> {flags.to_json(name)}"
    return None


def onnx_sha256(bundle_dir: Path, onnx_name: str) -> str:
    """sha256 of a bundle ONNX file: from the manifest
    (:func:`~segzero_edge.manifest.read_manifest`) when it lists the file with its present
    size, else hashed (no manifest, an invalid one, or a file it does not list)."""
    path = bundle_dir / onnx_name
    size = path.stat().st_size
    try:
        entry = read_manifest(bundle_dir / MANIFEST).files.get(onnx_name)
    except BundleError:
        entry = None
    if entry is not None and entry.size == size:
        return entry.sha256
    return sha256_file(path)


BUILD_HINT = "segzero-edge build-engines {bundle}"


def _folders(root: Path) -> list[Path]:
    base = root / ENGINES_DIR
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def check_engines(
    bundle_dir: str | os.PathLike[str], names: tuple[str, ...] = SAM2_GRAPHS
) -> tuple[list[Path] | None, str]:
    """The plans of ``names`` built for this device and the bundle's ONNX, or ``None`` and
    why not, in words for the user: no folder for this device (naming the folders that do
    exist, built for other devices or TensorRT versions), or the first stale engine and why
    (:func:`stale_reason`, e.g. "built with TensorRT 10.3.0.26, this is 10.3.0.30"), with the
    command that rebuilds them. Build flags are not compared."""
    root = Path(bundle_dir)
    out = engine_dir(root)
    hint = BUILD_HINT.format(bundle=root)
    if not out.is_dir():
        others = [p.name for p in _folders(root)]
        where = f"; engines exist for {', '.join(others)}" if others else ""
        return None, (
            f"no TensorRT engines for this device ({out.name}) under {root / ENGINES_DIR}"
            f"{where}; build them here: {hint}"
        )
    meta = read_meta(out)
    trt_version, _ = tensorrt_version()
    for name in names:
        onnx = root / f"{name}.onnx"
        if not onnx.is_file():
            return None, f"{onnx} is missing from the bundle"
        why = stale_reason(
            name, meta, plan=plan_path(out, name), onnx_sha256=onnx_sha256(root, onnx.name),
            tensorrt_version=trt_version, fingerprint=out.name, flags=None,
        )  # fmt: skip
        if why:
            return None, f"TensorRT engine {name} in {out} is stale: {why}; rebuild: {hint}"
    return [plan_path(out, name) for name in names], ""


def find_engines(bundle_dir: str | os.PathLike[str]) -> tuple[Path, Path] | None:
    """``(encoder_plan, decoder_plan)`` built for this device and the bundle's ONNX, else None
    (:func:`check_engines` says why).

    Compares the fingerprint, the TensorRT version (when importable), the ONNX sha256 (from
    the manifest when it lists them) and the plan sizes; build flags are not compared.
    """
    plans, why = check_engines(bundle_dir, SAM2_GRAPHS)
    if plans is None:
        log.info("%s", why)
        return None
    return plans[0], plans[1]


def find_memory_engines(bundle_dir: str | os.PathLike[str]) -> tuple[Path, Path] | None:
    """``(memory_attention_plan, memory_encoder_plan)`` like :func:`find_engines`, else None
    (also when the bundle has no memory graphs)."""
    plans, why = check_engines(bundle_dir, SAM2_MEMORY_GRAPHS)
    if plans is None:
        log.info("%s", why)
        return None
    return plans[0], plans[1]


def engine_status(
    bundle_dir: str | os.PathLike[str],
    fingerprint: str | None = None,
    tensorrt_version: str | None = None,
) -> dict[str, str]:
    """Per engine of the folder ``fingerprint`` (this device's by default): ``"ok"`` or why it
    would be rebuilt, ignoring flags; the TensorRT version is compared when given. For
    ``doctor``. The memory engines are listed only for bundles that have the memory graphs.
    """
    root = Path(bundle_dir)
    out = engine_dir(root, fingerprint)
    meta = read_meta(out)
    status = {}
    memory = [n for n in SAM2_MEMORY_GRAPHS if (root / f"{n}.onnx").is_file()]
    for name in (*SAM2_GRAPHS, *memory):
        onnx = root / f"{name}.onnx"
        if not onnx.is_file():
            status[name] = f"{onnx} missing"
            continue
        why = stale_reason(
            name, meta, plan=plan_path(out, name), onnx_sha256=onnx_sha256(root, onnx.name),
            tensorrt_version=tensorrt_version, fingerprint=out.name, flags=None,
        )  # fmt: skip
        status[name] = why or "ok"
    return status


def engine_folders(bundle_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every folder under ``bundle/engines/`` and its state, this device's first: ``folder``,
    ``this_device``, ``tensorrt_version`` (from its ``engines.json``), ``state`` ("current",
    "stale", "not built" or "other device or TensorRT") and ``engines`` (name -> "ok" or why
    it is stale, the TensorRT version in use compared; for this device's folder only). This
    device's folder is listed even when absent."""
    root = Path(bundle_dir)
    mine = engine_dir(root).name
    trt_version, _ = tensorrt_version()
    names = [mine] + [p.name for p in _folders(root) if p.name != mine]
    out = []
    for name in names:
        meta = read_meta(root / ENGINES_DIR / name)
        entry: dict[str, Any] = {
            "folder": name,
            "this_device": name == mine,
            "tensorrt_version": meta.get("tensorrt_version"),
        }
        if name != mine:
            entry.update(state="other device or TensorRT", engines={})
            out.append(entry)
            continue
        status = engine_status(root, name, trt_version)
        entry["engines"] = status
        if not (root / ENGINES_DIR / name).is_dir():
            entry["state"] = "not built"
        else:
            entry["state"] = "current" if set(status.values()) == {"ok"} else "stale"
        out.append(entry)
    return out


__all__ = [
    "MEMORY_FRAMES_PROFILE",
    "META_SCHEMA",
    "OBJ_PTRS_PROFILE",
    "POINTS_PROFILE",
    "PROMPTS_PROFILE",
    "TIMING_CACHE_FILE",
    "BuildFlags",
    "check_engines",
    "engine_dir",
    "engine_folders",
    "engine_status",
    "find_engines",
    "find_memory_engines",
    "onnx_sha256",
    "plan_path",
    "read_meta",
    "stale_reason",
]
