"""The dense position pretext (segzero_train.pretext) on a tiny Qwen2.5-VL of the real
architecture: its labels follow the processor's token order, and its heads teach the language
model where each image token is, from M-RoPE alone (a flat image gives no other clue)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from segzero_export.tiny_qwen import TINY, build_tiny_qwen25vl  # noqa: E402
from segzero_train.pretext import PositionPretext, grid_labels  # noqa: E402

PROMPT = "<|vision_start|><|image_pad|><|vision_end|>where"


@pytest.fixture(scope="module")
def theta10(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sizes = dataclasses.replace(TINY, rope_theta=10.0)
    out = tmp_path_factory.mktemp("pretext") / "qwen"
    return build_tiny_qwen25vl(out, seed=0, sizes=sizes, trainable_init=True)


def _load(folder: Path) -> tuple[object, object]:
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    proc = AutoProcessor.from_pretrained(folder)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    return proc, model


def test_grid_labels_are_raster_order_per_image() -> None:
    rows, cols = grid_labels(torch.tensor([[1, 6, 8], [1, 4, 4]]))
    assert rows.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [0, 0, 1, 1]
    assert cols.tolist() == [0, 1, 2, 3] * 3 + [0, 1, 0, 1]


def test_image_tokens_follow_the_merged_grid_in_raster_order(theta10: Path) -> None:
    """A bright 28 x 28 block at merged cell (1, 2) of a 3 x 4 grid changes token 1 * 4 + 2
    of the vision tower's output the most: the order grid_labels assumes."""
    proc, model = _load(theta10)
    flat = np.full((84, 112, 3), 90, np.uint8)
    marked = flat.copy()
    marked[28:56, 56:84] = 250
    outs = []
    for im in (flat, marked):
        enc = proc(text=[PROMPT], images=[Image.fromarray(im)], return_tensors="pt")  # type: ignore[operator]
        assert enc["image_grid_thw"].tolist() == [[1, 6, 8]]
        with torch.no_grad():
            v = model.model.visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"])  # type: ignore[attr-defined]
        outs.append(v.pooler_output if hasattr(v, "pooler_output") else v)
    changed = int((outs[1] - outs[0]).norm(dim=-1).argmax())
    rows, cols = grid_labels(torch.tensor([[1, 6, 8]]))
    assert (int(rows[changed]), int(cols[changed])) == (1, 2)


def test_pretext_teaches_position_on_flat_images(theta10: Path) -> None:
    """On flat grey images every image token enters the language model alike; the heads reach
    far below chance (ln 3 + ln 4 = 2.48) only if the layers learn row and column from M-RoPE,
    and the model keeps its plain architecture (no head in its state dict)."""
    proc, model = _load(theta10)
    keys = set(model.state_dict())  # type: ignore[attr-defined]
    torch.manual_seed(0)
    heads = PositionPretext(model.config.text_config.hidden_size, 3, 4)  # type: ignore[attr-defined]
    params = list(model.parameters()) + list(heads.parameters())  # type: ignore[attr-defined]
    opt = torch.optim.AdamW(params, lr=1e-3)
    grey = [Image.new("RGB", (112, 84), (128, 128, 128))] * 4
    enc = proc(text=[PROMPT] * 4, images=grey, return_tensors="pt")  # type: ignore[operator]
    losses = []
    for _ in range(100):
        out = model(**enc, output_hidden_states=True)  # type: ignore[operator]
        loss = heads(out.hidden_states[2], enc["input_ids"], model.config.image_token_id,  # type: ignore[attr-defined]
                     enc["image_grid_thw"])  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[0] > 2.0, losses[:3]
    assert min(losses[-10:]) < 0.8, losses[-10:]
    assert set(model.state_dict()) == keys  # type: ignore[attr-defined]


def test_mismatched_tokens_and_grids_are_refused() -> None:
    heads = PositionPretext(8, 2, 2)
    hidden = torch.zeros(1, 5, 8)
    ids = torch.tensor([[7, 7, 7, 1, 1]])
    with pytest.raises(ValueError, match="3 image tokens"):
        heads(hidden, ids, 7, torch.tensor([[1, 4, 4]]))
    with pytest.raises(ValueError, match="larger than the heads"):
        heads(torch.zeros(1, 6, 8), torch.tensor([[7] * 6]), 7, torch.tensor([[1, 4, 6]]))
    with pytest.raises(ValueError, match="needs image tokens"):
        heads(hidden, torch.ones(1, 5, dtype=torch.long), 7, torch.zeros(0, 3, dtype=torch.long))
    four = torch.tensor([[7, 7, 7, 7, 1]])
    with pytest.raises(ValueError, match="cover has 3 labels for 4"):
        heads(hidden, four, 7, torch.tensor([[1, 4, 4]]), torch.tensor([1, 0, 1]))


def test_cover_head_adds_its_cross_entropy() -> None:
    torch.manual_seed(0)
    heads = PositionPretext(8, 2, 2)
    hidden, ids = torch.randn(1, 5, 8), torch.tensor([[7, 7, 7, 7, 1]])
    grid = torch.tensor([[1, 4, 4]])
    cover = torch.tensor([1, 0, 0, 1])
    without, with_cover = heads(hidden, ids, 7, grid), heads(hidden, ids, 7, grid, cover)
    h = hidden[0, :4]
    expected = torch.nn.functional.cross_entropy(heads.cover(h), cover)
    assert torch.allclose(with_cover - without, expected)
