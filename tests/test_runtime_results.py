"""The result object: per-object masks, the box convention, plot / save / JSON (COCO RLE), the
``segment --json`` JSON Lines and the pictures the commands draw, through the real pipeline
(the tiny bundle's SAM2 ONNX; a fixed-answer reasoner where the answer must be known)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segzero_edge.plotting import PALETTE, color
from segzero_edge.tracker import TrackedSegmentation
from segzero_edge.types import ObjectPrompt, Segmentation, Status, normalize_box
from tests.fixtures.results import TWO_OBJECTS, fixed_model

pytestmark = pytest.mark.runtime

KITCHEN = Path(__file__).resolve().parents[1] / "examples" / "kitchen.png"
H, W = 480, 640  # the kitchen photo
INVERTED = TWO_OBJECTS.replace("[100, 200, 400, 600]", "[400, 600, 100, 200]")
OUTSIDE = TWO_OBJECTS.replace("[600, 50, 800, 250]", "[600, -40, 900, 250]")


def _kitchen() -> np.ndarray:
    return np.asarray(Image.open(KITCHEN).convert("RGB"))


def test_normalize_box_orders_and_clamps() -> None:
    assert normalize_box((30, 40, 10, 20), (100, 200)) == (10, 20, 30, 40)
    assert normalize_box((-5, -1, 250, 130), (100, 200)) == (0, 0, 200, 100)
    assert normalize_box((300, 10, 220, 20), (100, 200)) == (200, 10, 200, 20)  # outside: empty


def test_inverted_answer_gives_an_ordered_box_and_the_ordered_mask(bundle_segmenter: Any) -> None:
    """The model wrote x2 < x1 and y2 < y1: the result's box is ordered, and SAM2 was prompted
    with the ordered box (the mask equals the one of the answer written in order)."""
    image = _kitchen()
    inverted = fixed_model(bundle_segmenter, INVERTED).segment(image, "the knife")
    ordered = fixed_model(bundle_segmenter, TWO_OBJECTS).segment(image, "the knife")
    box = inverted.objects[0].box
    assert box is not None and box[0] <= box[2] and box[1] <= box[3]
    # 840 frame -> 640 x 480: int(v * 640 / 840 + 0.5), int(v * 480 / 840 + 0.5)
    assert box == (76, 114, 305, 343) == ordered.objects[0].box
    assert np.array_equal(inverted.object_masks, ordered.object_masks)
    assert inverted.iou_predictions == pytest.approx(ordered.iou_predictions, abs=1e-6)


def test_box_outside_the_image_is_clamped(bundle_segmenter: Any) -> None:
    result = fixed_model(bundle_segmenter, OUTSIDE).segment(_kitchen(), "the cup")
    x1, y1, x2, y2 = result.objects[1].box  # type: ignore[misc]
    assert (y1, x2) == (0, W)  # -40 -> 0 and 900 * 640 / 840 = 686 -> 640
    assert 0 <= x1 <= x2 <= W and 0 <= y1 <= y2 <= H


def test_object_masks_and_their_union(bundle_segmenter: Any) -> None:
    image = _kitchen()
    result = fixed_model(bundle_segmenter).segment(image, "the knife")
    assert result.status is Status.OK and len(result.objects) == 2
    assert result.object_masks.shape == (2, H, W) and result.object_masks.dtype == bool
    assert result.mask.dtype == bool and result.mask.shape == (H, W)
    assert np.array_equal(result.mask, result.object_masks[0] | result.object_masks[1])
    assert result.object_masks[0].any() and result.object_masks[1].any()
    assert not np.array_equal(result.object_masks[0], result.object_masks[1])
    assert len(result.iou_predictions) == 2 and result.query == "the knife"
    assert not result.overlap and not result.cuda_pixels and result.generated_tokens == 7
    assert set(result.timings) <= {
        "preprocess", "reason", "decode", "sam_preprocess", "sam_encode", "sam_wait",
        "sam_decode", "postprocess", "total",
    }  # fmt: skip
    # a query without objects: N = 0
    none = fixed_model(bundle_segmenter, "<think>x</think><answer>[]</answer>").segment(image, "x")
    assert none.object_masks.shape == (0, H, W) and not none.mask.any()


def test_json_round_trip_decodes_the_masks(bundle_segmenter: Any) -> None:
    from pycocotools import mask as mask_utils

    result = fixed_model(bundle_segmenter).segment(_kitchen(), "the knife")
    data = json.loads(json.dumps(result.to_json()))
    assert data["schema_version"] == 1 and data["query"] == "the knife"
    assert [o["box"] for o in data["objects"]] == [list(o.box) for o in result.objects]  # type: ignore[arg-type]
    rle = data["mask"]
    decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert np.array_equal(decoded.astype(bool), result.mask)
    back = Segmentation.from_json(data)
    assert np.array_equal(back.mask, result.mask)
    assert np.array_equal(back.object_masks, result.object_masks)
    assert back.objects == result.objects and back.iou_predictions == result.iou_predictions
    assert back.status is result.status and back.timings == result.timings
    light = result.to_json(masks=False)
    assert "mask" not in light and "object_masks" not in light
    with pytest.raises(ValueError, match="no masks"):
        Segmentation.from_json(light)
    with pytest.raises(ValueError, match="schema_version"):
        Segmentation.from_json({**data, "schema_version": 99})


def test_from_json_with_a_huge_size_is_an_error_not_a_crash() -> None:
    """Runs of a real mask under a size they do not cover (10^6 x 10^6): the COCO API's C
    decoder crashed the process (a failed allocation it does not check); a ValueError now."""
    from segzero_edge.result_json import decode_mask
    from tests.child import run_in_child

    _, result = _two_squares()
    rle = {"size": [10**6, 10**6], "counts": result.to_json()["mask"]["counts"]}
    with pytest.raises(ValueError, match=r"counts do not cover the 1000000 x 1000000 pixels"):
        run_in_child(decode_mask, rle, timeout_s=120)  # a crash fails the test, not the run


def test_decode_mask_matches_pycocotools() -> None:
    """The checked numpy decoder gives what pycocotools.mask.decode gives."""
    from pycocotools import mask as mask_utils

    from segzero_edge.result_json import decode_mask, encode_mask

    rng = np.random.default_rng(0)
    for shape in [(1, 1), (3, 7), (17, 1), (64, 80)]:
        for p in [0.0, 0.1, 0.5, 1.0]:
            m = rng.random(shape) < p
            rle = encode_mask(m)
            ref = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
            assert np.array_equal(decode_mask(rle), m)
            assert np.array_equal(ref.astype(bool), m)


def _two_squares() -> tuple[np.ndarray, Segmentation]:
    image = np.full((120, 160, 3), 128, np.uint8)
    masks = np.zeros((2, 120, 160), bool)
    masks[0, 40:80, 10:60] = True
    masks[1, 40:80, 90:150] = True
    result = Segmentation(
        mask=masks.any(axis=0),
        object_masks=masks,
        objects=[ObjectPrompt((10, 40, 60, 80), ((35, 60),)), ObjectPrompt((90, 40, 150, 80), ())],
        reasoning="",
        answer_raw="",
        status=Status.OK,
        iou_predictions=[0.91, 0.42],
        query="the squares",
        image=image,
    )
    return image, result


def test_object_masks_of_another_size_and_a_bad_alpha_are_refused_by_name() -> None:
    """object_masks not N x H x W of the mask's size: refused when the result is made (plot
    raised an IndexError from numpy); alpha that is not a number: a ValueError naming it."""
    _, result = _two_squares()
    with pytest.raises(ValueError, match=r"object_masks must be N x 120 x 160"):
        Segmentation(
            mask=result.mask,
            object_masks=np.zeros((2, 10, 10), bool),
            objects=result.objects,
            reasoning="",
            answer_raw="",
            status=Status.OK,
        )
    with pytest.raises(ValueError, match=r"object_masks must be"):
        Segmentation(
            mask=result.mask,
            object_masks=result.mask,
            objects=result.objects[:1],
            reasoning="",
            answer_raw="",
            status=Status.OK,
        )
    with pytest.raises(ValueError, match=r"^alpha must be a number"):
        result.plot(alpha="x")


def test_plot_draws_each_object_in_its_colour_with_a_label() -> None:
    image, result = _two_squares()
    pic = result.plot()
    assert pic.shape == (120, 160, 3) and pic.dtype == np.uint8
    a, b = pic[70, 45].astype(int), pic[70, 130].astype(int)  # inside, off box, label, point
    for got, index in ((a, 0), (b, 1)):
        expected = 0.55 * 128 + 0.45 * np.asarray(color(index))
        assert np.abs(got - expected).max() <= 1, (index, got, expected)
    assert not np.array_equal(a, b) and color(0) != color(1)
    assert np.array_equal(pic[5, 80], image[5, 80]) and np.array_equal(pic[110, 5], image[5, 5])
    assert tuple(pic[60, 10]) == color(0) and tuple(pic[79, 120]) == color(1)  # outlines
    # the label: a patch of the object's colour above its box, with white text on it
    band = pic[20:40, 10:60].reshape(-1, 3)
    assert (np.abs(band.astype(int) - color(0)).max(axis=1) == 0).sum() > 50
    assert (band.min(axis=1) > 240).sum() > 5
    assert np.array_equal(pic[70, 45], result.plot(image)[70, 45])  # image given or kept
    unlabelled = result.plot(labels=False)
    assert not np.array_equal(unlabelled[20:40, 10:60], pic[20:40, 10:60])
    with pytest.raises(ValueError, match="160 x 120"):
        result.plot(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="no image"):
        Segmentation.from_json(result.to_json()).plot()
    assert len(set(PALETTE)) == len(PALETTE)


def test_save_writes_a_png_or_jpeg_atomically(tmp_path: Path) -> None:
    _, result = _two_squares()
    png, jpg = tmp_path / "out.png", tmp_path / "out.jpeg"
    result.save(png)
    result.save(jpg)
    with Image.open(png) as got:
        assert got.format == "PNG" and np.array_equal(np.asarray(got), result.plot())
    with Image.open(jpg) as got:
        assert got.format == "JPEG" and got.size == (160, 120)
    before = png.read_bytes()
    with pytest.raises(ValueError, match="160 x 120"):
        result.save(png, np.zeros((10, 10, 3), np.uint8))  # fails while drawing
    with pytest.raises(ValueError, match=r"\.gif"):
        result.save(tmp_path / "out.gif")
    assert png.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["out.jpeg", "out.png"]


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux sysfs")
def test_save_in_a_folder_that_takes_no_files_names_the_file_asked_for() -> None:
    """A folder where no file can be created (sysfs refuses even root): the error names the
    file asked for and its folder, not the hidden temporary name beside it."""
    _, result = _two_squares()
    with pytest.raises(PermissionError) as caught:
        result.save("/sys/kernel/overlay.png")
    assert caught.value.filename == "/sys/kernel/overlay.png"
    assert "cannot write a file in /sys/kernel" in str(caught.value)
    assert ".tmp" not in str(caught.value)


def _tracked(frame_index: int, reasoned: bool, logits: list[float]) -> TrackedSegmentation:
    """Objects with a positive score have a one-pixel mask and its box (a present object has
    both), the others an empty mask and no box."""
    n = len(logits)
    masks = np.zeros((n, 8, 8), bool)
    masks[[i for i, s in enumerate(logits) if s > 0], 2, 3] = True
    return TrackedSegmentation(
        mask=masks.any(axis=0),
        object_masks=masks,
        objects=[ObjectPrompt((3, 2, 4, 3) if s > 0 else None, ()) for s in logits],
        reasoning="",
        answer_raw="",
        status=Status.NO_OBJECT,
        frame_index=frame_index,
        object_score_logits=logits,
        reasoned=reasoned,
        image=np.zeros((8, 8, 3), np.uint8),
    )


def test_gif_header_says_what_happened_in_words() -> None:
    assert _tracked(0, True, [2.0]).describe() == "frame 0 - reasoned - object 1 present"
    assert (
        _tracked(3, False, [0.5, -1.0]).describe()
        == "frame 3 - tracking - object 1 present, object 2 lost"
    )
    assert _tracked(7, True, []).describe() == "frame 7 - re-reasoned - no object"


def test_tracked_result_plots_its_header_and_round_trips(
    bundle_segmenter: Any, tiny_bundle: Path
) -> None:
    from segzero_edge.bundle_memory import open_memory
    from segzero_edge.pipeline import SegZeroEdge
    from tests.fixtures.results import FixedAnswerReasoner

    image = _kitchen()
    memory = open_memory(tiny_bundle, "onnxruntime")
    model = SegZeroEdge(
        FixedAnswerReasoner(), bundle_segmenter, family="multi-object", memory=memory
    )
    tracker = model.track(image, "the knife", num_frames=2)
    r = tracker.update(image)
    assert r.object_masks.shape == (2, H, W) and len(r.objects) == 2
    assert np.array_equal(r.mask, r.object_masks.any(axis=0))
    for obj, m, present in zip(r.objects, r.object_masks, r.present, strict=True):
        if m.any():  # the tight box of the mask: x2, y2 one past the last pixel
            ys, xs = np.nonzero(m)
            assert obj.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        else:
            assert obj.box is None and not present
    back = TrackedSegmentation.from_json(json.loads(json.dumps(r.to_json())))
    assert np.array_equal(back.object_masks, r.object_masks)
    assert back.object_score_logits == r.object_score_logits and back.frame_index == 1
    pic, plain = r.plot(), r.plot(title="")
    assert r.describe().startswith("frame 1 - tracking - object 1 ")
    assert not np.array_equal(pic[:30, :200], plain[:30, :200])  # the header band
    memory.close()


def _marked_copy(src: Path, dst: Path, fmt: str) -> Path:
    from segzero_edge.owned import write_owner

    dst.mkdir()
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith("."):
            try:
                os.link(f, dst / f.name)
            except OSError:
                shutil.copy2(f, dst / f.name)
    write_owner(dst, fmt)
    return dst


def test_cli_json_lines_and_the_random_weights_stamp(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``segment --json`` with two queries: two lines, one JSON object each, in order, masks
    as RLE equal to the mask files; the overlay carries the "random weights" stamp only for
    a bundle marked as the demo bundle."""
    from segzero_edge.cli import main
    from segzero_edge.owned import BUNDLE_FORMAT, DEMO_BUNDLE_FORMAT
    from segzero_edge.result_json import decode_mask

    pictures = {}
    for fmt in (DEMO_BUNDLE_FORMAT, BUNDLE_FORMAT):
        bundle = _marked_copy(tiny_bundle, tmp_path / fmt.split("/")[0], fmt)
        out = tmp_path / fmt.split("/")[0] / "out"
        argv = ["segment", str(KITCHEN), "the knife", "the cup", "--bundle", str(bundle)]
        argv += ["--out", str(out / "mask.png"), "--overlay", str(out / "pic.png"), "--json"]
        assert main(argv) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 2
        reports = [json.loads(line) for line in lines]
        assert [r["query"] for r in reports] == ["the knife", "the cup"]
        for i, report in enumerate(reports, start=1):
            assert report["schema_version"] == 1
            mask = np.asarray(Image.open(out / f"mask-{i}.png")) > 0
            assert np.array_equal(decode_mask(report["mask"]), mask)
            assert len(report["object_masks"]) == len(report["objects"])
        pictures[fmt] = np.asarray(Image.open(out / "pic-1.png"))
    stamped, plain = pictures[DEMO_BUNDLE_FORMAT], pictures[BUNDLE_FORMAT]
    differ = np.nonzero((stamped != plain).any(axis=2))
    assert differ[0].size > 200  # the stamp, in the bottom-right corner only
    assert differ[0].min() > H - 40 and differ[1].min() > W // 2
    stamp_red = (stamped == (200, 0, 0)).all(axis=2)
    assert stamp_red.sum() > 100 and not (plain == (200, 0, 0)).all(axis=2).any()


def test_cli_overlay_needs_a_picture_suffix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before any model work (no bundle is opened): one line naming the suffixes."""
    from segzero_edge.cli import main

    argv = ["segment", str(KITCHEN), "the knife", "--bundle", str(tmp_path / "none")]
    assert main([*argv, "--overlay", str(tmp_path / "pic.gif")]) == 2
    err = capsys.readouterr().err
    assert "--overlay" in err and ".png" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "pic.gif").exists()
