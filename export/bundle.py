"""Write a bundle (segzero_edge.layout): reasoner GGUFs + SAM2 ONNX + manifest, atomically."""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import tempfile
from pathlib import Path

from segzero_edge import __version__
from segzero_edge.bundle import MANIFEST, REQUIRED_FILES, SCHEMA_VERSION, file_entry
from segzero_edge.families import FAMILIES, family_of_checkpoint, get_family
from segzero_edge.fileio import atomic_dir, output_lock
from segzero_edge.layout import MAX_N_CTX, SAM2_MEMORY_ATTENTION_FILE, SAM2_SIZE
from segzero_edge.manifest import Manifest, ReasonerManifest, SegmenterManifest
from segzero_edge.owned import BUNDLE_FORMAT, BUNDLE_FORMATS, DEMO_BUNDLE_FORMAT, check_replaceable
from segzero_edge.reasoner.defaults import DEFAULT_N_CTX

from .hf_source import read_config
from .memory import MemoryEstimate, estimate_before_export, estimate_from_files
from .quantize import quant_type
from .targets import get_target

log = logging.getLogger(__name__)


class BundleTooLarge(ValueError):
    """The bundle would not fit the target's memory budget."""

    def __init__(self, est: MemoryEstimate) -> None:
        super().__init__(f"bundle does not fit {est.target}: {est.explain()}")
        self.estimate = est


def sam2_hub_ids() -> dict[str, str]:
    """Checkpoint name (``sam2.1_hiera_tiny``) -> hub repository, from Meta's own table
    (``sam2.build_sam.HF_MODEL_ID_TO_FILENAMES``)."""
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    return {Path(ckpt).stem: repo for repo, (_cfg, ckpt) in HF_MODEL_ID_TO_FILENAMES.items()}


def resolve_sam2_checkpoint(src: str | Path) -> Path:
    """A local ``.pt`` file, or a known name (e.g. ``sam2.1_hiera_tiny``) fetched from the hub.

    Raises ``FileNotFoundError`` for an unknown name or a failed download.
    """
    path = Path(src)
    if path.is_file():
        return path
    name = str(src).removesuffix(".pt")
    hub = sam2_hub_ids()
    if name not in hub:
        raise FileNotFoundError(
            f"SAM2 checkpoint not found: {src} (a .pt file, or one of {', '.join(hub)})"
        )
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(hub[name], f"{name}.pt"))
    except Exception as e:  # offline, no such file, ...
        raise FileNotFoundError(f"cannot download SAM2 checkpoint {name}: {e}") from None


def resolve_family(reasoner: str | Path, family: str | None) -> str:
    """The model family to record for ``reasoner`` (a hub id or a local folder).

    A known hub id maps to its family (``segzero_edge.families.CHECKPOINT_FAMILIES``); a
    ``family`` that contradicts it is refused. A local folder or an unknown id needs
    ``family``: the exporter refuses to guess. Raises ``ValueError`` with the fix.
    """
    known = family_of_checkpoint(str(reasoner)) if not Path(reasoner).exists() else None
    names = ", ".join(FAMILIES)
    if family is not None:
        fam = get_family(family).name
        if known is not None and known != fam:
            raise ValueError(
                f"{reasoner} is a {known} checkpoint; --family {fam} contradicts it "
                f"(drop --family to use {known})"
            )
        return fam
    if known is not None:
        return known
    what = "a local folder" if Path(reasoner).exists() else "not a known hub id"
    raise ValueError(
        f"cannot tell the model family of {reasoner} ({what}): pass --family with one of "
        f"{names} (the prompt, answer grammar and SAM2 prompt it was trained with; "
        "Seg-Zero-7B/3B: segzero-v1, VisionReasoner-7B: multi-object)"
    )


def _revision(model_dir: Path) -> str:
    """The hub snapshot commit when the folder is one, else a hash of config.json."""
    if model_dir.parent.name == "snapshots":
        return model_dir.name
    digest = hashlib.sha256((model_dir / "config.json").read_bytes()).hexdigest()[:16]
    return f"local-config-sha256:{digest}"


def export_bundle(
    reasoner: str | Path,
    segmenter: str | Path,
    out: str | Path,
    *,
    family: str | None = None,
    target: str = "cpu",
    quant: str = "Q4_K_M",
    sam2_config: str | None = None,
    n_ctx: int = DEFAULT_N_CTX,
    overwrite: bool = False,
    progress: bool = True,
    mmproj_type: str = "f16",
    owner: str = BUNDLE_FORMAT,
) -> Path:
    """Export a Qwen2.5-VL checkpoint and a SAM2 checkpoint into the bundle folder ``out``.

    The manifest records the reasoner's model family (:func:`resolve_family`: known hub ids
    map to theirs, a local folder or an unknown id needs ``family``; ``ValueError`` before any
    work otherwise). SAM2.0 (``sam2_hiera_*``) and SAM2.1 (``sam2.1_hiera_*``) checkpoints
    both export. Refuses (``BundleTooLarge``) a bundle whose estimated memory exceeds the
    target's budget, once before the export from parameter counts and once after from the
    written files. Raises ``FileExistsError`` before any work when ``out`` exists (without
    ``overwrite``) or another export is writing it. ``overwrite`` replaces only an empty
    folder or one marked as a segzero-edge bundle (:mod:`segzero_edge.owned`; the bundle is
    marked ``owner``): any other folder is refused, never deleted. Nothing is left behind
    when the export fails or is interrupted (Ctrl+C, or SIGTERM through the CLI).
    """
    from .hf_source import resolve_model
    from .reasoner import export_reasoner
    from .sam2_memory_onnx import read_tracking_metadata
    from .sam2_onnx import export_sam2

    quant = quant_type(quant)
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or not 1 <= n_ctx <= MAX_N_CTX:
        raise ValueError(f"n_ctx must be an integer from 1 to {MAX_N_CTX}, got {n_ctx!r}")
    tgt = get_target(target)
    family_name = resolve_family(reasoner, family)
    with atomic_dir(out, overwrite=overwrite, owner=owner, replaces=BUNDLE_FORMATS) as tmp:
        log.info("export 1/5: reading the reasoner checkpoint %s", reasoner)
        model_dir = resolve_model(reasoner)
        variant = sam2_config or Path(segmenter).stem
        before = estimate_before_export(tgt, model_dir, quant, variant, n_ctx)
        if not before.fits:
            raise BundleTooLarge(before)
        log.info("export 2/5: memory check before the export: %s", before.explain())
        ckpt = resolve_sam2_checkpoint(segmenter)
        config = read_config(model_dir)
        fam = get_family(family_name)
        arch = (config.get("architectures") or ["?"])[0]
        if arch != fam.architecture:
            raise ValueError(
                f"model family {fam.name!r} is for {fam.architecture} checkpoints, "
                f"{reasoner} is {arch}: pass the --family of that backbone"
            )
        files: dict[str, Path] = {}
        log.info(
            "export 3/5: reasoner -> GGUF (%s text model, %s mmproj) for llama.cpp",
            quant, mmproj_type,
        )  # fmt: skip
        files.update(
            export_reasoner(model_dir, tmp, quant=quant, progress=progress, mmproj_type=mmproj_type)
        )
        log.info("export 4/5: SAM2 %s -> ONNX (encoder, decoder, video memory graphs)", variant)
        files.update(export_sam2(ckpt, tmp, config=sam2_config, progress=progress))
        files = {Path(p).name: Path(p) for p in files.values()}
        missing = [f for f in REQUIRED_FILES if f not in files]
        if missing:
            raise RuntimeError(f"export did not write {', '.join(missing)}")
        after = estimate_from_files(tgt, files, config, variant, n_ctx)
        if not after.fits:
            raise BundleTooLarge(after)
        log.info("export 5/5: memory check of the written files and the manifest")
        tracking = read_tracking_metadata(files[SAM2_MEMORY_ATTENTION_FILE])
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            created_by=f"segzero-edge {__version__}",
            created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            target=tgt.name,
            family=family_name,
            reasoner=ReasonerManifest(
                source=str(reasoner),
                revision=_revision(model_dir),
                architecture=arch,
                quantization=quant,
                mmproj_type=mmproj_type,
                input_size=fam.resize_size,
                image_tokens=fam.image_tokens,
                n_ctx=n_ctx,
            ),
            segmenter=SegmenterManifest(
                source=str(segmenter),
                checkpoint_sha256=file_entry(ckpt).sha256,
                variant=variant,
                image_size=SAM2_SIZE,
                tracking=tracking,
            ),
            memory_gb=after.to_json(),
            files={name: file_entry(path) for name, path in sorted(files.items())},
        )
        try:  # checked against the schema the runtime's reader checks
            text = manifest.dumps()
        except ValueError as e:
            raise RuntimeError(f"the exporter built an invalid manifest: {e}") from None
        (tmp / MANIFEST).write_text(text)
    return Path(out)


TINY_ARCHS = ("qwen25vl", "qwen3vl")
"""Backbones of the tiny demo bundle: Qwen2.5-VL (default) or Qwen3-VL."""


def build_tiny_bundle(
    out: str | Path,
    *,
    family: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    arch: str = "qwen25vl",
) -> Path:
    """The demo bundle: tiny randomly initialised Qwen2.5-VL (``arch="qwen25vl"``) or Qwen3-VL
    (``"qwen3vl"``) and SAM2.1-tiny (meaningless masks).

    Random weights have no family of their own; ``family`` says which prompt, grammar and SAM2
    prompt the bundle runs with (default: multi-object for Qwen2.5-VL, qwen3vl-grounding for
    Qwen3-VL). The bundle is marked as the demo bundle (``segzero_edge.owned.DEMO_BUNDLE_FORMAT``).
    Raises ``ValueError`` for an unknown ``arch`` and ``FileExistsError`` at once, before
    building the models, when ``out`` exists and not ``overwrite``, when it is a folder neither
    empty nor marked as a segzero-edge bundle, or another export is writing it.
    """
    from .tiny_qwen import build_tiny_qwen25vl
    from .tiny_qwen3vl import build_tiny_qwen3vl
    from .tiny_sam2 import build_sam2_checkpoint

    builders = {"qwen25vl": build_tiny_qwen25vl, "qwen3vl": build_tiny_qwen3vl}
    if arch not in builders:
        raise ValueError(f"unknown tiny backbone {arch!r}; choose one of {', '.join(TINY_ARCHS)}")
    if family is None:
        family = "qwen3vl-grounding" if arch == "qwen3vl" else "multi-object"

    with output_lock(out):  # export_bundle takes it again (same thread)
        if os.path.lexists(out) and not overwrite:
            raise FileExistsError(f"{out} already exists (pass overwrite/--force to replace it)")
        check_replaceable(out, BUNDLE_FORMATS, "bundle folder")
        with tempfile.TemporaryDirectory(prefix="segzero-tiny-") as work:
            model_dir = builders[arch](Path(work) / "qwen", seed=seed)
            ckpt = build_sam2_checkpoint(Path(work) / "sam2.1_hiera_tiny.pt", seed=seed)
            return export_bundle(
                model_dir,
                ckpt,
                out,
                family=family,
                target="cpu",
                sam2_config="sam2.1_hiera_t",
                overwrite=overwrite,
                owner=DEMO_BUNDLE_FORMAT,
            )
