"""Model families against Seg-Zero's reference scripts: parser + mapping, SAM2 prompt inputs,
query normalisation; the family registry and export's family resolution.

The reference side is ``tests/fixtures/families.py`` (the scripts restated independently).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segzero_edge.answer import map_half_up, map_round_int, parse_answer
from segzero_edge.families import (
    CHECKPOINT_FAMILIES,
    FAMILIES,
    MULTI_OBJECT,
    SEGZERO_V1,
    family_of_checkpoint,
    get_family,
)
from segzero_edge.segmenter.decode import backend_decoder, best_mask_index, decode_objects
from segzero_edge.types import Status
from tests.fixtures.families import REFERENCE, RecordingSegmenter, reference_sam2_inputs

# image sizes whose factors W / 840 make values end in .5 (420: 0.5, 1260: 1.5, 2100: 2.5) and
# odd ones; (H, W)
SIZES = [(480, 640), (420, 1260), (2100, 420), (333, 500), (1, 1), (840, 840), (7, 3000)]
CORNERS = [0, 1, 3, 5, 419, 420, 421, 839, 840]


def v1_text(box: list[int], p1: list[int], p2: list[int], think: str = "t") -> str:
    item = {"bbox": box, "points_1": p1, "points_2": p2}
    return f"<think>{think}</think><answer>{json.dumps(item)}</answer>"


def multi_text(objs: list[tuple[list[int], list[int]]], think: str = "t") -> str:
    items = [{"bbox_2d": b, "point_2d": p} for b, p in objs]
    return f"<think>{think}</think><answer>{json.dumps(items)}</answer>"


def runtime_objects(family: str, text: str, hw: tuple[int, int]) -> list[Any]:
    fam = get_family(family)
    parsed = parse_answer(text)
    assert parsed.status is Status.OK, parsed
    return [
        (list(o.box), [list(p) for p in o.points]) for o in fam.to_image_pixels(parsed.objects, hw)
    ]


# ---------------------------------------------------------------- mapping + parsing parity


@pytest.mark.parametrize("hw", SIZES)
def test_mapping_equals_the_reference_on_all_corners(hw: tuple[int, int]) -> None:
    """Every corner of the 840 frame and values landing on .5 after scaling."""
    half_values = 0
    for x1 in CORNERS:
        for y2 in CORNERS:
            box, p1, p2 = [x1, 0, 840, y2], [x1, y2], [840 - x1, 840 - y2]
            text = v1_text(box, p1, p2)
            assert runtime_objects("segzero-v1", text, hw) == REFERENCE["segzero-v1"].objects(
                text, hw
            )
            text = multi_text([(box, p1), ([y2, x1, 840, 840], p2)])
            assert runtime_objects("multi-object", text, hw) == REFERENCE["multi-object"].objects(
                text, hw
            )
            half_values += (x1 * hw[1] / 840) % 1 == 0.5
    print(f"{hw}: {half_values} corner values end in .5 after scaling")
    if hw in ((420, 1260), (2100, 420)):
        assert half_values > 0


def test_v1_mapping_rounds_half_to_even_and_multi_half_up() -> None:
    # W = 420: factor 0.5 -> 5 * 0.5 = 2.5, 7 * 0.5 = 3.5
    assert [map_round_int(v, 0.5) for v in (5, 7, 5.9)] == [2, 4, 2]  # round(int(v) * f)
    assert [map_half_up(v, 0.5) for v in (5, 7, 5.9)] == [3, 4, 3]  # int(v * f + 0.5)
    assert map_half_up(-3, 0.5) == -1 and map_round_int(-3, 0.5) == -2  # no clamping
    assert map_half_up(1e308, 10.0) == 2**31 - 1  # beyond int32: clipped, never an error


@settings(max_examples=200, deadline=None)
@given(
    st.tuples(st.integers(1, 4000), st.integers(1, 4000)),
    st.lists(st.integers(0, 840), min_size=8, max_size=8),
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 840), min_size=4, max_size=4),
            st.lists(st.integers(0, 840), min_size=2, max_size=2),
        ),
        max_size=4,
    ),
)
def test_parser_and_mapping_equal_the_reference(
    hw: tuple[int, int], v: list[int], objs: list[tuple[list[int], list[int]]]
) -> None:
    text = v1_text(v[:4], v[4:6], v[6:])
    assert runtime_objects("segzero-v1", text, hw) == REFERENCE["segzero-v1"].objects(text, hw)
    text = multi_text(objs)
    ref = REFERENCE["multi-object"].objects(text, hw)
    if objs:
        assert runtime_objects("multi-object", text, hw) == ref
    else:
        assert parse_answer(text).status is Status.NO_OBJECT and ref == []


def test_float_coordinates_map_as_the_reference() -> None:
    """Without the grammar a model may write floats: no rounding in the 840 frame."""
    hw = (480, 640)
    text = multi_text([([10.4, 20.6, 300.5, 400.49], [150.5, 30.5])])  # type: ignore[list-item]
    assert runtime_objects("multi-object", text, hw) == REFERENCE["multi-object"].objects(text, hw)
    text = v1_text([10.9, 20.6, 300.5, 400.49], [150.5, 30.5], [1.99, 2.5])  # type: ignore[list-item]
    assert runtime_objects("segzero-v1", text, hw) == REFERENCE["segzero-v1"].objects(text, hw)


def test_points_keep_the_order_of_their_keys() -> None:
    """The v1 reference takes the points keys in the dict's order."""
    text = '<answer>{"points_2": [5, 6], "bbox": [1, 2, 30, 40], "points_1": [7, 8]}</answer>'
    hw = (840, 840)
    assert runtime_objects("segzero-v1", text, hw) == REFERENCE["segzero-v1"].objects(text, hw)


def test_first_answer_block_for_every_caller() -> None:
    """Several <answer> blocks: the first counts (Seg-Zero's re.search), everywhere."""
    from segzero_train.rewards import (
        GroundTruth,
        multi_object_rewards,
        predicted_objects,
        segzero_rewards,
    )

    first = '[{"bbox_2d": [0, 0, 99, 99], "point_2d": [50, 50]}]'
    second = '[{"bbox_2d": [500, 500, 600, 600], "point_2d": [550, 550]}]'
    text = f"<think>t</think><answer>{first}</answer><answer>{second}</answer>"
    for strict in (False, True):
        (obj,) = parse_answer(text, strict=strict).objects
        assert obj.box == (0, 0, 99, 99)
    (pred,) = predicted_objects(text) or []
    assert pred.box == (0, 0, 99, 99)
    gt = GroundTruth(boxes=[[0, 0, 99, 99]], points=[[50, 50]])
    assert segzero_rewards(text, gt)["box_iou"] == 1.0
    assert multi_object_rewards(text, gt)["accuracy"] == 3.0
    hw = (840, 840)
    assert runtime_objects("multi-object", text, hw) == REFERENCE["multi-object"].objects(text, hw)


@pytest.mark.parametrize(
    "query",
    [
        "The thing I can use to cut the BREAD.",
        'the "red" car?!',
        "  spaces around. ",
        "...dots on both sides...",
        "what is that?",
        "Ünïcödé 東京 😀.",
    ],
)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_prompt_text_equals_the_reference(family: str, query: str) -> None:
    assert get_family(family).build_prompt(query) == REFERENCE[family].prompt(query)


# ---------------------------------------------------------------- SAM2 prompt parity

V1_ANSWER = v1_text([84, 168, 420, 504], [210, 336], [300, 400])
MULTI_ANSWER = multi_text([([84, 168, 420, 504], [210, 336]), ([500, 100, 800, 300], [650, 200])])


@pytest.mark.parametrize(
    ("family", "text"), [("segzero-v1", V1_ANSWER), ("multi-object", MULTI_ANSWER)]
)
def test_sam2_gets_the_reference_points_and_labels(
    family: str,
    text: str,
    sam2_predictor: Any,
    sam2_cases: list[Any],
    ort_segmenter: Any,
    ort_embeddings: list[Any],
) -> None:
    """The runtime's decoder inputs (parser -> family mapping -> the one decode loop, as
    ``SegZeroEdge._decode`` runs it) equal what Meta's prompt encoder gets from the reference."""
    fam = get_family(family)
    case, emb = sam2_cases[1], ort_embeddings[1]  # 500 x 333
    hw = case.image.shape[:2]
    want = reference_sam2_inputs(sam2_predictor, family, text, case.image)
    seg = RecordingSegmenter(ort_segmenter)
    objects = fam.to_image_pixels(parse_answer(text).objects, hw)
    decoded = decode_objects(objects, fam.sam2, backend_decoder(seg, emb, hw))
    assert len(seg.calls) == len(want) == len(decoded.masks)
    assert seg.n_batches == 1  # every object of the answer in one decoder call
    for (coords, labels), (ref_coords, ref_labels) in zip(seg.calls, want, strict=True):
        print(f"{family}: labels {labels.tolist()} coords {coords.tolist()}")
        np.testing.assert_array_equal(coords, ref_coords)
        np.testing.assert_array_equal(labels, ref_labels.astype(np.float32))
    expected_labels = {"segzero-v1": [2, 3, 1, 1], "multi-object": [2, 3, 1]}[family]
    assert all(lab.tolist() == [expected_labels] for _, lab in seg.calls)


def test_best_mask_is_the_references_choice() -> None:
    scores = np.array([0.2, 0.9, 0.9], np.float32)  # a tie: argsort()[::-1] takes the last
    assert best_mask_index(scores) == int(np.argsort(scores)[::-1][0]) == 2
    assert best_mask_index(np.array([0.5, 0.1, 0.3])) == 0


def test_decode_loop_takes_all_objects_at_once(ort_segmenter: Any, ort_embeddings: Any) -> None:
    from segzero_edge.types import ObjectPrompt

    batches: list[int] = []
    decode = backend_decoder(ort_segmenter, ort_embeddings[0], (480, 640))

    def counting(prompts: Any) -> Any:
        batches.append(len(prompts))
        return decode(prompts)

    objs = [ObjectPrompt((10, 20, 200, 300), ((50, 60), (70, 80))), ObjectPrompt((1, 1, 9, 9), ())]
    out = decode_objects(objs, SEGZERO_V1.sam2, counting)
    assert batches == [2] and len(out.masks) == 2 and out.masks[0].shape == (256, 256)
    assert [p.labels for p in out.prompts] == [(1, 1), ()]
    assert decode_objects([], MULTI_OBJECT.sam2, counting).masks == [] and batches == [2]


# ---------------------------------------------------------------- registry and export


def test_families_are_cited_and_complete() -> None:
    for fam in FAMILIES.values():
        assert "Seg-Zero@42a33455283ba041a3099cf154a708116f300cec" in fam.reference
        # which script the prompt and the eval rule follow, each one of the family's references
        for script in (fam.prompt_reference, fam.evaluation_reference):
            assert script.startswith("dvlab-research/Seg-Zero@42a33455283ba041a3099cf1")
            assert script.split()[1].rsplit("/", 1)[-1] in fam.reference, script
        assert "{Question}" in fam.question_template and "{Answer}" in fam.question_template
        sam2 = "sam2.1_hiera_micro" if fam.name == "micro-scene" else "sam2_hiera_large"
        assert fam.max_new_tokens == 1024 and fam.sam2_checkpoint == sam2
        grammar = fam.answer_grammar()
        assert grammar.gbnf.startswith("root ::=") and grammar.max_chars > 0
    assert CHECKPOINT_FAMILIES == {
        "ricky06662/seg-zero-7b": "segzero-v1",
        "ricky06662/seg-zero-7b-best-on-reasonsegtest": "segzero-v1",
        "ricky06662/seg-zero-3b": "segzero-v1",
        "ricky06662/visionreasoner-7b": "multi-object",
    }
    assert family_of_checkpoint("Ricky06662/Seg-Zero-7B") == "segzero-v1"
    assert family_of_checkpoint("Qwen/Qwen2.5-VL-7B-Instruct") is None
    with pytest.raises(ValueError, match=r"unknown model family 'v3'.*segzero-v1, multi-object"):
        get_family("v3")


def test_export_records_known_ids_and_refuses_to_guess(tmp_path: Path) -> None:
    from segzero_export.bundle import resolve_family

    assert resolve_family("Ricky06662/Seg-Zero-7B", None) == "segzero-v1"
    assert resolve_family("ricky06662/visionreasoner-7b", None) == "multi-object"
    assert resolve_family("Ricky06662/Seg-Zero-3B", "segzero-v1") == "segzero-v1"
    assert resolve_family(tmp_path, "multi-object") == "multi-object"
    with pytest.raises(ValueError, match=r"local folder\): pass --family"):
        resolve_family(tmp_path, None)
    with pytest.raises(ValueError, match=r"not a known hub id\): pass --family"):
        resolve_family("Qwen/Qwen2.5-VL-3B-Instruct", None)
    with pytest.raises(ValueError, match="segzero-v1 checkpoint; --family multi-object contra"):
        resolve_family("Ricky06662/Seg-Zero-7B", "multi-object")


def test_export_cli_refuses_a_local_folder_without_family(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segzero_edge.cli import main

    argv = ["export", "--reasoner", str(tmp_path), "--segmenter", "sam2_hiera_large"]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "pass --family with one of segzero-v1, multi-object" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_micro_family_declares_a_336_frame_with_840_coordinates() -> None:
    """The micro reasoner's family: the reasoner sees 336 x 336 (144 image tokens), its answer
    spans 0-840 per axis and maps to the image as the multi-object reference does."""
    from segzero_edge.families import MICRO_SCENE
    from segzero_edge.pixels import preprocess_reasoner

    fam = get_family("micro-scene")
    assert fam is MICRO_SCENE and FAMILIES["micro-scene"] is fam
    assert (fam.resize_size, fam.patch_merge, fam.image_tokens, fam.coord_span) == (
        336,
        28,
        144,
        840,
    )
    assert fam.architecture == MULTI_OBJECT.architecture and fam.schema == "list"
    assert len(fam.build_prompt("the red cup")) < len(MULTI_OBJECT.build_prompt("the red cup")) / 2
    text = multi_text([([0, 0, 840, 840], [420, 420]), ([84, 168, 420, 504], [210, 336])])
    for hw in [(336, 448), (333, 500)]:
        got = runtime_objects(fam.name, text, hw)
        assert got == REFERENCE["micro-scene"].objects(text, hw)
        assert got[0][0] == [0, 0, hw[1], hw[0]]  # 840 is the image's far edge, not 336
    image = np.zeros((336, 448, 3), np.uint8)
    assert preprocess_reasoner(image, fam.resize_size).shape == (336, 336, 3)
