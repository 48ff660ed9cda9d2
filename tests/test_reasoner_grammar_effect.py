"""Grammar effect end to end on a tiny model that already answers well (slow, opt-in).

For each model family, the tiny random Qwen2.5-VL is overfitted (HF, float32, language model
only) on one image + the family's prompt -> a well-formed answer in the family's schema until
greedy decoding reproduces it with a margin; it is then exported (F16 and Q4_K_M + F16 mmproj)
and run by LlamaCppReasoner with and without the family's grammar. Expected and measured:
identical text with and without the grammar, equal to the trained answer, for both
quantizations. (The cheap check of the same property, on many answers, is
tests/test_reasoner_families.py.)

Takes minutes on a busy 2-core machine, so it runs only with ``SEGZERO_SLOW_TESTS=1``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from segzero_edge.answer import parse_answer
from segzero_edge.families import get_family
from segzero_edge.types import Status
from tests.fixtures.reasoner_vision import open_reasoner

TARGETS = {
    "multi-object": (
        '<think>the car is red.</think><answer>[{"bbox_2d": [10,100,200,210], '
        '"point_2d": [30,110]}]</answer>'
    ),
    "segzero-v1": (
        '<think>the car is red.</think><answer>{"bbox": [10,100,200,210], '
        '"points_1": [30,110], "points_2": [35,180]}</answer>'
    ),
}
MARGIN = 3.0  # logits between the target token and the runner-up at every answer position

pytestmark = pytest.mark.skipif(
    os.environ.get("SEGZERO_SLOW_TESTS") != "1", reason="slow; set SEGZERO_SLOW_TESTS=1"
)


def _overfit(src: Path, dst: Path, image: np.ndarray, prompt: str, target: str) -> int:
    """Train ``src`` until greedy reproduces ``target`` with MARGIN; save to ``dst``; return
    steps."""
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    proc = AutoProcessor.from_pretrained(src)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(src, dtype=torch.float32)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    pil = Image.fromarray(image)
    n_prompt = proc(text=[text], images=[pil], return_tensors="pt")["input_ids"].shape[1]
    inputs = proc(text=[text + target + "<|im_end|>"], images=[pil], return_tensors="pt")
    labels = inputs["input_ids"][0, n_prompt:]
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_("visual" not in name)
        if "visual" not in name:
            params.append(p)
    opt = torch.optim.Adam(params, lr=5e-3)
    steps = 0
    while steps < 200:
        steps += 1
        logits = model(**inputs).logits[0, n_prompt - 1 : -1]
        loss = torch.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        top2 = logits.detach().topk(2, dim=-1)
        target = logits.detach().gather(1, labels[:, None])[:, 0]
        runner_up = torch.where(top2.indices[:, 0] == labels, top2.values[:, 1], top2.values[:, 0])
        if float((target - runner_up).min()) > MARGIN:
            break
    model.to(torch.bfloat16).save_pretrained(dst)
    proc.save_pretrained(dst)
    proc.image_processor.save_pretrained(dst)
    return steps


@pytest.mark.parametrize("family", sorted(TARGETS))
def test_grammar_keeps_a_good_answer_unchanged(
    family: str, tiny_qwen_dir: Path, tmp_path: Path
) -> None:
    from segzero_export.reasoner import export_reasoner

    fam, target = get_family(family), TARGETS[family]
    image = np.random.default_rng(0).integers(0, 255, (112, 112, 3)).astype(np.uint8)
    prompt = fam.build_prompt("the red car")
    src = Path(shutil.copytree(tiny_qwen_dir, tmp_path / "src"))
    steps = _overfit(src, tmp_path / "trained", image, prompt, target)
    files = export_reasoner(tmp_path / "trained", tmp_path / "gguf", keep_f16=True, progress=False)
    results = {}
    for qtype, model in (("F16", files["reasoner_f16"]), ("Q4_K_M", files["reasoner"])):
        for grammar in (True, False):
            # 112 x 112 -> 16 image tokens keeps this test fast; the grammar does not see them
            opts = {"grammar": grammar, "image_tokens": 16, "answer_grammar": fam.answer_grammar()}
            with open_reasoner(model, files["mmproj"], **opts) as r:
                results[qtype, grammar] = r.generate(image, prompt).text
    print(f"\n{family}: trained {steps} steps; outputs: {results}")
    for (qtype, grammar), text in results.items():
        assert text == target, f"{family} {qtype} grammar={grammar}: {text!r}"
    parsed = parse_answer(results["Q4_K_M", True], strict=True)
    assert parsed.status is Status.OK and parsed.objects[0].box == (10, 100, 200, 210)
    assert parsed.objects[0].points[0] == (30, 110)
