"""Train the micro SAM2 (:mod:`segzero_export.micro_sam2`) on the scene task's object masks.

Every step draws ``batch`` fresh training scenes (:func:`segzero_train.scenes.random_scene`,
without the held-out (colour, kind) pairs; step ``s`` uses ``numpy.random.default_rng([seed,
s])``, so a resumed run sees the same data) and one visible object of each, and prompts SAM2 the
way Seg-Zero does after its reasoner: the object's box (jittered by up to ``box_jitter`` of its
size, as a reasoner's box is never exact) and one positive point (the inscribed-circle centre,
:func:`segzero_train.gt.inscribed_point`), ``multimask_output=True``. The image goes in as
:class:`sam2.sam2_image_predictor.SAM2ImagePredictor` feeds it: resized to 1024 x 1024, ImageNet
mean/std; prompt coordinates are scaled into that frame.

Loss (SAM's recipe, as Meta's ``training/loss_fns.py`` ``MultiStepMultiMasksAndIous``): per
predicted mask ``20 x focal + 1 x dice`` against the target at the 256 x 256 low-resolution
logits, only the best of the three masks back-propagated; plus the L1 distance between each
mask's ``iou_predictions`` and its real IoU.

Output (``out`` folder): ``sam2_micro.pt`` (Meta's ``{"model": state_dict}``) and ``train_state.pt``
(model, optimiser and step, saved every ``save_every`` steps; a new call resumes from it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

SAM2_MEAN = (0.485, 0.456, 0.406)
SAM2_STD = (0.229, 0.224, 0.225)
STATE_FILE = "train_state.pt"
CHECKPOINT_FILE = "sam2_micro.pt"


def draw_batch(
    seed: int, step: int, batch: int, size: tuple[int, int], box_jitter: float = 0.05
) -> list[dict[str, Any]]:
    """``batch`` training examples of step ``step``: ``image`` H x W x 3 uint8, ``mask`` H x W
    bool, ``box`` (x1, y1, x2, y2) and ``point`` (x, y) in image pixels."""
    from .gt import inscribed_point, tight_box
    from .scene_queries import HELDOUT_PAIRS
    from .scenes import random_scene

    rng = np.random.default_rng([seed, step])
    out = []
    while len(out) < batch:
        scene = random_scene(rng, size, excluded=HELDOUT_PAIRS)
        k = int(rng.integers(len(scene.objects)))
        mask = scene.mask(k)
        box, point = tight_box(mask), inscribed_point(mask)
        if box is None or point is None:
            continue
        x1, y1, x2, y2 = box
        bw, bh = x2 - x1 + 1, y2 - y1 + 1
        j = rng.uniform(-box_jitter, box_jitter, size=4) * np.array([bw, bh, bw, bh])
        w, h = size
        jittered = (
            float(np.clip(x1 + j[0], 0, w - 1)),
            float(np.clip(y1 + j[1], 0, h - 1)),
            float(np.clip(x2 + j[2], 0, w - 1)),
            float(np.clip(y2 + j[3], 0, h - 1)),
        )
        out.append({"image": scene.image, "mask": mask, "box": jittered, "point": point})
    return out


def _to_input(images: list[np.ndarray]) -> Any:
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(1024, 1024), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(SAM2_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SAM2_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def predict_low_res(model: Any, examples: list[dict[str, Any]]) -> tuple[Any, Any]:
    """SAM2's forward for a batch: ``(low_res_masks [B, 3, 256, 256] logits, iou_predictions
    [B, 3])`` with box + point prompts (labels 2, 3 for the box corners, 1 for the point, as
    ``SAM2ImagePredictor._prep_prompts`` / ``_predict`` concatenate them)."""
    import torch

    b = len(examples)
    x = _to_input([e["image"] for e in examples])
    backbone_out = model.forward_image(x)
    _, vision_feats, _, feat_sizes = model._prepare_backbone_features(backbone_out)
    if model.directly_add_no_mem_embed:
        vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
    feats = [
        f.permute(1, 2, 0).reshape(b, -1, *s)
        for f, s in zip(vision_feats[::-1], feat_sizes[::-1], strict=True)
    ][::-1]
    image_embed, high_res = feats[-1], feats[:-1]
    coords, labels = [], []
    for e in examples:
        h, w = e["mask"].shape
        sx, sy = 1024.0 / w, 1024.0 / h
        x1, y1, x2, y2 = e["box"]
        px, py = e["point"]
        coords.append([[x1 * sx, y1 * sy], [x2 * sx, y2 * sy], [px * sx, py * sy]])
        labels.append([2, 3, 1])
    point_coords = torch.tensor(coords, dtype=torch.float32)
    point_labels = torch.tensor(labels, dtype=torch.int32)
    sparse, dense = model.sam_prompt_encoder(
        points=(point_coords, point_labels), boxes=None, masks=None
    )
    low_res, iou_pred, _, _ = model.sam_mask_decoder(
        image_embeddings=image_embed,
        image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=True,
        repeat_image=False,
        high_res_features=high_res,
    )
    return low_res, iou_pred


def _targets(examples: list[dict[str, Any]]) -> Any:
    import torch
    import torch.nn.functional as F

    m = torch.from_numpy(np.stack([e["mask"] for e in examples])).float()[:, None]
    return (F.interpolate(m, size=(256, 256), mode="area") > 0.5).float()


def loss_fn(low_res: Any, iou_pred: Any, target: Any) -> tuple[Any, dict[str, float]]:
    """SAM's loss (see the module docstring); returns (loss, parts for the log)."""
    import torch

    t = target.expand_as(low_res)
    p = torch.sigmoid(low_res)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(low_res, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    alpha_t = 0.25 * t + 0.75 * (1 - t)
    focal = (alpha_t * ce * (1 - p_t) ** 2).mean(dim=(2, 3))
    inter = (p * t).sum(dim=(2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum(dim=(2, 3)) + t.sum(dim=(2, 3)) + 1)
    per_mask = 20 * focal + dice
    best = per_mask.argmin(dim=1)
    rows = torch.arange(per_mask.shape[0])
    with torch.no_grad():
        hard = (low_res > 0).float()
        hi = (hard * t).sum(dim=(2, 3))
        hu = ((hard + t) > 0).float().sum(dim=(2, 3)).clamp(min=1)
        real_iou = hi / hu
    iou_loss = (iou_pred - real_iou).abs().mean()
    loss = per_mask[rows, best].mean() + iou_loss
    return loss, {
        "loss": float(loss.detach()),
        "focal": float(focal.detach()[rows, best].mean()),
        "dice": float(dice.detach()[rows, best].mean()),
        "iou": float(real_iou[rows, best].mean()),
    }


def train_micro_sam2(
    out: str | Path,
    *,
    steps: int = 600,
    batch: int = 4,
    learning_rate: float = 1e-3,
    seed: int = 0,
    size: tuple[int, int] = (448, 336),
    save_every: int = 50,
    log: Any = print,
) -> Path:
    """Train (or resume) the micro SAM2 for ``steps`` optimiser steps; return the checkpoint.

    Raises ``ValueError`` for ``steps`` or ``batch`` under 1.
    """
    import torch

    from segzero_edge.fileio import atomic_path
    from segzero_export.micro_sam2 import build_micro_sam2

    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got {steps}, {batch}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final = out / CHECKPOINT_FILE
    if final.is_file():
        return final
    torch.manual_seed(seed)
    model = build_micro_sam2(mode="train")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=learning_rate, total_steps=steps, pct_start=0.05
    )
    start = 0
    state_path = out / STATE_FILE
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = int(state["step"])
        log(f"sam2: resumed at step {start}")
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(start, steps):
        examples = draw_batch(seed, step, batch, size)
        low_res, iou_pred = predict_low_res(model, examples)
        loss, parts = loss_fn(low_res, iou_pred, _targets(examples))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 10 == 0 or step == steps - 1:
            done = step - start + 1
            rate = (time.perf_counter() - t0) / done
            cpu = (time.process_time() - c0) / done
            shown = " ".join(f"{k} {v:.3f}" for k, v in parts.items())
            log(f"sam2 step {step + 1}/{steps} {shown} ({rate:.1f} s/step, {cpu:.1f} CPU s/step)")
        if (step + 1) % save_every == 0 and step + 1 < steps:
            with atomic_path(state_path) as tmp:
                torch.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "step": step + 1,
                    },
                    tmp,
                )
    with atomic_path(final) as tmp:
        torch.save({"model": model.state_dict()}, tmp)
    state_path.unlink(missing_ok=True)
    return final


def evaluate_micro_sam2(
    checkpoint: str | Path, *, n: int = 32, seed: int = 1, size: tuple[int, int] = (448, 336)
) -> dict[str, float]:
    """Mean IoU (full-resolution masks, best predicted IoU of the three) of a checkpoint on
    ``n`` fresh scenes' objects, prompted with their jittered box + point."""
    import torch
    import torch.nn.functional as F

    from segzero_export.micro_sam2 import build_micro_sam2

    model = build_micro_sam2(checkpoint)
    ious = []
    with torch.inference_mode():
        for i in range(n):
            (e,) = draw_batch(10_000 + seed, i, 1, size)
            low_res, iou_pred = predict_low_res(model, [e])
            k = int(iou_pred[0].argmax())
            h, w = e["mask"].shape
            up = F.interpolate(low_res[:, k : k + 1], size=(h, w), mode="bilinear")
            pred = (up[0, 0] > 0).numpy()
            inter = (pred & e["mask"]).sum()
            union = (pred | e["mask"]).sum()
            ious.append(inter / union if union else 1.0)
    return {"mean_iou": float(np.mean(ious)), "n": float(n)}


__all__ = [
    "CHECKPOINT_FILE",
    "draw_batch",
    "evaluate_micro_sam2",
    "loss_fn",
    "predict_low_res",
    "train_micro_sam2",
]
