"""A cheap test of whether a micro reasoner can learn to ground: train it on the scene task's
name queries with a minimal prompt and score its held-out boxes (the A/B of train/README.md).

    python scripts/micro_grounding_ab.py BASE OUT --data RUN/data [--steps 300]
    python scripts/micro_grounding_ab.py BASE OUT --generate 3000 --objects 1 [--rope-theta 10]
        [--aux-weight 1]

BASE is a random micro reasoner folder (``python -m segzero_train.micro`` writes ``RUN/base``;
another RoPE base: ``build_tiny_qwen25vl(..., sizes=micro_qwen_sizes(rope_theta))``). The
prompt is the image (224 x 224) and the query, the target the first target's box
``[x1, y1, x2, y2]`` (840 range, rounded to 20) and ``</answer>``; about 90 tokens instead of
the recipe's 300, so a step costs about 1.2 CPU s. Every 50 steps ``OUT/log.txt`` gets the
held-out digit loss with each sample's own image, another sample's image and grey images; at the
end, greedy boxes on 48 held-out name queries: mean IoU and the share at IoU >= 0.5, with own
and with grey images. Truth boxes are the objects' boxes of the scene JSON.

``--generate N --objects K`` draws N fresh training scenes (and 48 held-out ones from another
seed) of K objects each with the scene generator at 224 x 224 instead of reading ``--data``: the
query names one object whose (colour, kind) is unique in its scene, so K = 1 asks only "where is
the object" and K > 1 adds picking it out. If BASE does not exist it is built as a random micro
reasoner with ``--rope-theta``.

``--aux-weight W`` (with ``--generate``) adds W times the dense pretext loss of
:class:`segzero_train.pretext.PositionPretext` to every step: linear heads on the language
model's hidden states after layer ``--aux-layer`` tell each image token its row and column of
the merged 8 x 8 grid and whether it covers an object (a quarter of its 28 x 28 pixels or
more; any object of the scene, since the image tokens come before the query). The heads are
dropped after training: the saved model is the plain architecture.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from segzero_train.data import coarse_ground_truth
from segzero_train.micro_probe import instance_score
from segzero_train.pretext import PositionPretext
from segzero_train.rewards import GroundTruth

SIZE, LR, BATCH, STEP = 224, 1e-3, 8, 20
GRID = SIZE // 28  # merged tokens per side: 14 px patches, 2 x 2 merge
GREY = (128, 128, 128)


def load(folder: Path, limit: int) -> list[Any]:
    rows = []
    for f in sorted(folder.glob("*.json")):
        d = json.loads(f.read_text())
        if d.get("family") != "name" or not d["targets"]:
            continue
        w, h = d["imageWidth"], d["imageHeight"]
        truth = [
            [round(b[0] * 840 / w), round(b[1] * 840 / h), round(b[2] * 840 / w),
             round(b[3] * 840 / h)]
            for b in (d["objects"][t]["box"] for t in d["targets"])
        ]  # fmt: skip
        coarse = coarse_ground_truth(GroundTruth(boxes=truth, points=[]), STEP, 840)
        image = Image.open(f.with_suffix(".jpg")).convert("RGB").resize((SIZE, SIZE))
        rows.append((d["text"][0], image, [list(b) for b in coarse.boxes], truth))
        if len(rows) >= limit:
            break
    return rows


def generated(n: int, objects: int, seed: int) -> list[Any]:
    """``n`` rows (query, image, coarse boxes, truth boxes) from fresh scenes of ``objects``."""
    from segzero_train.scene_set import tight_box
    from segzero_train.scenes import random_scene

    rng = np.random.default_rng(seed)
    rows: list[Any] = []
    while len(rows) < n:
        scene = random_scene(rng, (SIZE, SIZE), n_objects=(objects, objects))
        names = [(o.colour, o.kind) for o in scene.objects]
        unique = [k for k, nm in enumerate(names) if names.count(nm) == 1 and scene.mask(k).any()]
        if not unique:
            continue
        k = unique[int(rng.integers(len(unique)))]
        x1, y1, x2, y2 = tight_box(scene.mask(k))
        truth = [[round(x1 * 840 / SIZE), round(y1 * 840 / SIZE), round(x2 * 840 / SIZE),
                  round(y2 * 840 / SIZE)]]  # fmt: skip
        coarse = coarse_ground_truth(GroundTruth(boxes=truth, points=[]), STEP, 840)
        colour, kind = names[k]
        # every object: the image tokens come before the query, so they cannot know the target
        union = np.any([scene.mask(j) for j in range(len(names))], axis=0)
        cover = union.reshape(GRID, 28, GRID, 28).mean((1, 3)) >= 0.25
        rows.append((f"the {colour} {kind}", Image.fromarray(scene.image),
                     [list(b) for b in coarse.boxes], truth, cover.reshape(-1)))  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("base", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--data", type=Path, help="RUN/data of a micro run")
    p.add_argument("--generate", type=int, default=0, help="draw this many training scenes")
    p.add_argument("--objects", type=int, default=1, help="objects per generated scene")
    p.add_argument("--rope-theta", type=float, default=1e6, help="RoPE base of a new BASE")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--aux-weight", type=float, default=0.0, help="dense pretext loss weight")
    p.add_argument("--aux-layer", type=int, default=2, help="hidden state the heads read")
    a = p.parse_args()
    if a.aux_weight and not a.generate:
        p.error("--aux-weight needs --generate (the object masks of fresh scenes)")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    random.seed(0)
    a.out.mkdir(parents=True, exist_ok=True)
    log = (a.out / "log.txt").open("a")

    def say(*parts: Any) -> None:
        text = " ".join(str(x) for x in parts)
        print(text, flush=True)
        log.write(text + "\n")
        log.flush()

    if not a.base.exists():
        from segzero_export.tiny_qwen import build_tiny_qwen25vl
        from segzero_train.micro import micro_qwen_sizes, task_corpus

        build_tiny_qwen25vl(a.base, seed=0, sizes=micro_qwen_sizes(a.rope_theta),
                            extra_corpus=task_corpus(), trainable_init=True)  # fmt: skip
    proc = AutoProcessor.from_pretrained(a.base)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(a.base, dtype=torch.float32)
    tok = proc.tokenizer
    if a.generate:
        t_data = time.time()
        train, held = generated(a.generate, a.objects, 1), generated(48, a.objects, 2)
        say(f"drew {len(train) + len(held)} scenes in {time.time() - t_data:.0f}s")
    elif a.data is not None:
        train, held = load(a.data / "train", 400), load(a.data / "heldout_scenes", 48)
    else:
        p.error("give --data or --generate")
    say("base", a.base, "train", len(train), "held", len(held))

    def prompt(q: str) -> str:
        return f"<|vision_start|><|image_pad|><|vision_end|>{q}<answer>"

    def batch_of(rows: list[Any], images: list[Any]) -> tuple[Any, Any]:
        texts = [
            prompt(r[0]) + "[{}, {}, {}, {}]</answer><|im_end|>".format(*r[2][0]) for r in rows
        ]
        enc = proc(text=texts, images=images, return_tensors="pt", padding=True,
                   padding_side="right")  # fmt: skip
        labels = enc["input_ids"].clone()
        labels[enc["attention_mask"] == 0] = -100
        for i, r in enumerate(rows):
            n = len(proc(text=[prompt(r[0])], images=[images[i]])["input_ids"][0])
            labels[i, :n] = -100
        return enc, labels

    def token_loss(enc: Any, labels: Any, layer: int | None = None) -> tuple[Any, Any, Any, Any]:
        """Per-token cross-entropy, its mask, the targets, and the hidden states after
        ``layer`` (``None``: not kept)."""
        out = model(**enc, output_hidden_states=layer is not None)
        target = labels[:, 1:]
        ce = torch.nn.functional.cross_entropy(
            out.logits[:, :-1].transpose(1, 2), target.clamp(min=0), reduction="none"
        )
        return ce, target != -100, target, None if layer is None else out.hidden_states[layer]

    def dependence() -> dict[str, float]:
        model.eval()
        rows, out = held[:16], {}
        images = [r[1] for r in rows]
        grey = [Image.new("RGB", (SIZE, SIZE), GREY)] * len(rows)
        for name, ims in (("own", images), ("rolled", images[1:] + images[:1]), ("flat", grey)):
            with torch.no_grad():
                ce, mask, target, _ = token_loss(*batch_of(rows, ims))
            digit = torch.tensor(
                [[tok.decode([max(int(t), 0)]).strip().isdigit() for t in row] for row in target]
            )
            out[name] = round(float(ce[digit & mask].mean()), 4)
        model.train()
        return out

    def boxes(q: str, image: Any) -> list[list[int]]:
        enc = proc(text=[prompt(q)], images=[image], return_tensors="pt")
        with torch.no_grad():
            o = model.generate(**enc, max_new_tokens=24, do_sample=False)
        text = tok.decode(o[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        nums = [int(x) for x in re.findall(r"\d+", text)[:4]]
        return [nums] if len(nums) == 4 else []

    heads = PositionPretext(model.config.text_config.hidden_size, GRID, GRID)

    def pretext_loss(enc: Any, hidden: Any, rows: list[Any]) -> Any:
        cover = torch.from_numpy(np.concatenate([r[4] for r in rows]))
        return heads(hidden, enc["input_ids"], model.config.image_token_id,
                     enc["image_grid_thw"], cover)  # fmt: skip

    params = list(model.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / 10) * 0.5 * (1 + np.cos(np.pi * min(s, a.steps) / a.steps)),
    )
    model.train()
    t0, order = time.time(), []
    say("step 0 dependence", dependence())
    for step in range(1, a.steps + 1):
        if len(order) < BATCH:
            order += random.sample(range(len(train)), len(train))
        idx, order = order[:BATCH], order[BATCH:]
        rows = [train[i] for i in idx]
        enc, labels = batch_of(rows, [r[1] for r in rows])
        ce, mask, _, hidden = token_loss(enc, labels, a.aux_layer if a.aux_weight else None)
        loss = (ce * mask).sum() / mask.sum()
        aux = None if hidden is None else pretext_loss(enc, hidden, rows)
        total = loss if aux is None else loss + a.aux_weight * aux
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 10 == 0:
            pretext = "" if aux is None else f" pretext {aux.item():.3f}"
            say(f"step {step} loss {loss.item():.3f}{pretext} t {time.time() - t0:.0f}s "
                f"cpu {time.process_time():.0f}s")  # fmt: skip
        if step % 50 == 0 or step == a.steps:
            say(f"step {step} dependence", dependence())
    model.eval()
    grey = Image.new("RGB", (SIZE, SIZE), GREY)
    own = [instance_score(boxes(q, im), truth) for q, im, _, truth, *_ in held]
    flat = [instance_score(boxes(q, grey), truth) for q, _, _, truth, *_ in held]
    scores = {
        "mean_iou": float(np.mean(own)),
        "hit": float(np.mean(np.array(own) >= 0.5)),
        "flat_mean_iou": float(np.mean(flat)),
        "flat_hit": float(np.mean(np.array(flat) >= 0.5)),
    }
    say("final boxes", json.dumps({k: round(v, 3) for k, v in scores.items()}))
    model.save_pretrained(a.out / "model")
    proc.save_pretrained(a.out / "model")


if __name__ == "__main__":
    main()
