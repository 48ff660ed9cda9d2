"""A ``multi-object`` and a ``segzero-v1`` tiny bundle, each end to end with its family's
prompt, answer grammar, mapping and SAM2 prompt; SAM2.0 exported and checked against Meta's
predictor; the manifest's family, its override, and old manifests without one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segzero_edge import SegZeroEdge, Status
from segzero_edge.answer import answer_body, parse_answer
from segzero_edge.bundle import BundleError, load_bundle
from segzero_edge.families import get_family
from tests.fixtures.families import REFERENCE, RecordingSegmenter
from tests.fixtures.segmenter import synthetic_image

ROOT = Path(__file__).resolve().parents[1]
KITCHEN = ROOT / "examples" / "kitchen.png"
SCHEMA_KEYS = {
    "segzero-v1": {"bbox", "points_1", "points_2"},
    "multi-object": {"bbox_2d", "point_2d"},
}
SAM2_LABELS = {"segzero-v1": [2, 3, 1, 1], "multi-object": [2, 3, 1]}


@pytest.fixture(scope="module")
def bundles(tiny_bundle: Path, tiny_bundle_v1: Path) -> dict[str, Path]:
    return {"multi-object": tiny_bundle, "segzero-v1": tiny_bundle_v1}


@pytest.mark.parametrize("family", ["segzero-v1", "multi-object"])
def test_tiny_bundle_segments_with_its_family(family: str, bundles: dict[str, Path]) -> None:
    fam = get_family(family)
    manifest = load_bundle(bundles[family]).manifest
    assert manifest.family == family and manifest.schema_version == 2
    image = np.asarray(Image.open(KITCHEN).convert("RGB"))
    query = "The thing I can use to cut the bread."
    with SegZeroEdge.from_bundle(bundles[family], max_new_tokens=48, think_budget=24) as model:
        assert model.family is fam
        assert model.reasoner.grammar_text == fam.answer_grammar().gbnf
        prompts: list[str] = []
        generate = model.reasoner.generate

        def recording_generate(img: np.ndarray, prompt: str, **kwargs: Any) -> Any:
            prompts.append(prompt)
            return generate(img, prompt, **kwargs)

        model.reasoner.generate = recording_generate  # type: ignore[method-assign]
        model.segmenter = seg = RecordingSegmenter(model.segmenter)
        r = model.segment(image, query)
        model.segmenter = seg.inner  # closed with the model
    print(f"{family}: status={r.status.value} objects={r.objects} answer={r.answer_raw[-160:]!r}")
    assert prompts == [fam.build_prompt(query)] == [REFERENCE[family].prompt(query)]
    # the grammar's answer is the family's schema and parses under Seg-Zero's strict rule
    body = answer_body(r.answer_raw)
    assert body is not None and parse_answer(r.answer_raw, strict=True).status is r.status
    value = json.loads(body)
    items = [value] if family == "segzero-v1" else value
    assert all(set(item) == SCHEMA_KEYS[family] for item in items)
    assert r.status is (Status.OK if items else Status.NO_OBJECT)
    # mapping and SAM2 prompt as the reference script on the same answer
    want = REFERENCE[family].objects(f"<answer>{body}</answer>", image.shape[:2])
    assert [(list(o.box), [list(p) for p in o.points]) for o in r.objects] == want
    assert len(seg.calls) == len(r.objects)
    assert all(labels.tolist() == [SAM2_LABELS[family]] for _, labels in seg.calls)
    assert r.mask.shape == image.shape[:2] and len(r.iou_predictions) == len(r.objects)


def test_sam20_bundle_matches_metas_predictor(tiny_bundle_v1: Path, sam20_checkpoint: Path) -> None:
    """The SAM2.0 (hiera-tiny) graphs against SAM2ImagePredictor on the same checkpoint."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from segzero_edge.pixels import postprocess_masks, preprocess_sam
    from segzero_edge.segmenter.onnxruntime import OrtSegmenter
    from segzero_edge.segmenter.prompts import prompt_arrays
    from segzero_edge.segmenter.select import select_masks
    from segzero_export.sam2_model import build_sam2_model

    manifest = load_bundle(tiny_bundle_v1).manifest
    assert manifest.segmenter.variant == "sam2_hiera_tiny"
    predictor = SAM2ImagePredictor(build_sam2_model("sam2_hiera_t", sam20_checkpoint))
    seg = OrtSegmenter(
        tiny_bundle_v1 / "sam2_encoder.onnx",
        tiny_bundle_v1 / "sam2_decoder.onnx",
        providers=["CPUExecutionProvider"],
    )
    image = synthetic_image(333, 500, seed=2)
    hw = image.shape[:2]
    predictor.set_image(image)
    emb = seg.encode(preprocess_sam(image))
    d_feat = float(np.abs(emb.image_embed - predictor._features["image_embed"].numpy()).max())
    box, points = (100.0, 80.0, 300.0, 250.0), [(200.0, 150.0), (230.0, 190.0)]
    ref_masks, ref_iou, ref_low = predictor.predict(
        point_coords=points, point_labels=[1, 1], box=box, return_logits=True
    )
    coords, labels = prompt_arrays(box, points, hw, labels=[1, 1])
    low, iou = seg.decode(emb, coords, labels)
    masks, ious = select_masks(low, iou, multimask_output=True)
    d_logit = float(np.abs(np.clip(masks[0], -32, 32) - ref_low).max())
    d_iou = float(np.abs(ious[0] - ref_iou).max())
    best = int(np.argmax(ref_iou))
    got = postprocess_masks(masks[0, best], hw).mask
    want = ref_masks[best] > 0
    m_iou = float((got & want).sum() / max((got | want).sum(), 1))
    print(
        f"SAM2.0 tiny: embed diff {d_feat:.2e}, logits {d_logit:.2e}, IoU score {d_iou:.2e}, "
        f"mask IoU {m_iou:.5f}"
    )
    seg.close()
    assert d_feat < 1e-3 and d_logit < 1e-3 and d_iou < 1e-4 and m_iou >= 0.99


def test_manifest_without_family_is_refused_with_the_fix(bundle_without_family: Path) -> None:
    load_bundle(bundle_without_family)  # the files are fine
    with pytest.raises(BundleError, match="does not name the model family") as err:
        SegZeroEdge.from_bundle(bundle_without_family)
    assert "--family" in str(err.value) and "family=NAME" in str(err.value)
    with SegZeroEdge.from_bundle(bundle_without_family, family="segzero-v1") as model:
        assert model.family.name == "segzero-v1"
        assert model.reasoner.grammar_text == get_family("segzero-v1").answer_grammar().gbnf
    with pytest.raises(ValueError, match="unknown model family"):
        SegZeroEdge.from_bundle(bundle_without_family, family="segzero-v9")


def test_cli_segment_family_override(
    bundle_without_family: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segzero_edge.cli import main

    argv = ["segment", str(KITCHEN), "the knife", "--bundle", str(bundle_without_family)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "does not name the model family" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert main([*argv, "--family", "multi-object", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] in {s.value for s in Status}


def test_prompt_variant_is_selectable(tiny_bundle: Path) -> None:
    """``multi-object-infer`` (infer_multi_object.py's prompt) through from_bundle and the CLI:
    the reasoner gets that script's prompt byte for byte, not the evaluation script's."""
    from segzero_edge.cli import build_parser

    query = "What can I use to cut the bread?"
    image = np.asarray(Image.open(KITCHEN).convert("RGB"))
    with SegZeroEdge.from_bundle(
        tiny_bundle, family="multi-object-infer", max_new_tokens=24, think_budget=8
    ) as model:
        assert model.family is get_family("multi-object-infer")
        prompts: list[str] = []
        generate = model.reasoner.generate

        def recording_generate(img: np.ndarray, prompt: str, **kwargs: Any) -> Any:
            prompts.append(prompt)
            return generate(img, prompt, **kwargs)

        model.reasoner.generate = recording_generate  # type: ignore[method-assign]
        model.segment(image, query)
    assert prompts == [REFERENCE["multi-object-infer"].prompt(query)]
    assert prompts[0] != REFERENCE["multi-object"].prompt(query)  # the "?" stays
    parser = build_parser()  # segment, track and eval take it as --family
    for argv in (
        ["segment", str(KITCHEN), query],
        ["track", "frames", query, "--out", "o"],
        ["eval", "--data", ".", "--bundle", "."],
    ):
        ns = parser.parse_args([*argv, "--family", "multi-object-infer"])
        assert ns.family == "multi-object-infer", argv
