"""The micro model recipe (segzero_train.micro, micro_sam2; segzero_export.micro_sam2)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from segzero_train import micro, micro_sam2


def test_grpo_stage_arguments_parse_into_the_micro_family_recipe(tmp_path: Path) -> None:
    from segzero_edge.families import MICRO_SCENE
    from segzero_train.config import parse_args

    r = micro.Recipe()
    argv = micro.grpo_argv(r, tmp_path / "sft", tmp_path / "data", tmp_path / "grpo")
    script, cfg = parse_args(argv, world_size=1)
    assert script.reward == "multi-object" and script.model_family is MICRO_SCENE
    assert script.image_size == r.image_size == MICRO_SCENE.resize_size == 336
    assert cfg.max_steps == r.grpo_steps and cfg.save_steps == r.grpo_save_steps
    assert cfg.num_generations == r.num_generations
    assert cfg.gradient_accumulation_steps == 1  # one optimizer step per prompts_per_step batch
    assert cfg.seed == r.seed and cfg.use_cpu


def test_a_run_folder_refuses_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    saved = dataclasses.asdict(micro.Recipe(sft_steps=5))
    (out / "recipe.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="other settings"):
        micro.run(out, micro.Recipe(sft_steps=6))
    assert json.loads((out / "recipe.json").read_text()) == saved
    assert not (out / "data").exists()


def test_micro_sam2_keeps_sam2s_interfaces_with_a_small_trunk() -> None:
    from segzero_export.micro_sam2 import build_micro_sam2

    model = build_micro_sam2()
    assert model.image_size == 1024
    assert model.image_encoder.neck.d_model == 256
    assert model.image_encoder.trunk.blocks[0].dim == 32
    assert len(model.image_encoder.trunk.blocks) == 5
    assert model.mem_dim == 64
    n = sum(p.numel() for p in model.parameters())
    assert n < 9_000_000, n
    ex = micro_sam2.draw_batch(0, 0, 1, (112, 84))
    with torch.inference_mode():
        low_res, iou = micro_sam2.predict_low_res(model, ex)
    assert tuple(low_res.shape) == (1, 3, 256, 256) and tuple(iou.shape) == (1, 3)


def test_micro_sam2_checkpoint_is_named_by_its_file(tmp_path: Path) -> None:
    """Export and ``eval --hf`` build the micro SAM2 from its checkpoint name alone."""
    from segzero_export.micro_sam2 import MICRO_SAM2_CONFIG, build_micro_sam2
    from segzero_export.sam2_model import build_sam2_model, infer_config

    ckpt = tmp_path / micro_sam2.CHECKPOINT_FILE
    torch.manual_seed(0)
    model = build_micro_sam2()
    torch.save({"model": model.state_dict()}, ckpt)
    assert infer_config(ckpt) == MICRO_SAM2_CONFIG == "sam2.1_hiera_micro"
    loaded = build_sam2_model(infer_config(ckpt), ckpt).state_dict()
    assert loaded.keys() == model.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match=r"does not match the SAM2 config 'sam2\.1_hiera_t'"):
        build_sam2_model("sam2.1_hiera_t", ckpt)


def test_sam2_loss_prefers_the_right_mask_and_a_true_iou() -> None:
    target = torch.zeros(1, 1, 256, 256)
    target[..., 64:192, 64:192] = 1
    right = target.expand(1, 3, 256, 256) * 20 - 10
    wrong = -right
    iou_right = torch.ones(1, 3)
    loss_right, parts = micro_sam2.loss_fn(right, iou_right, target)
    loss_wrong, _ = micro_sam2.loss_fn(wrong, iou_right, target)
    assert parts["iou"] == pytest.approx(1.0)
    assert float(loss_right) < 0.05 < float(loss_wrong)
    loss_bad_iou, _ = micro_sam2.loss_fn(right, torch.zeros(1, 3), target)
    assert float(loss_bad_iou) == pytest.approx(float(loss_right) + 1.0, abs=1e-4)


def test_sam2_examples_are_deterministic_and_prompt_inside_the_object() -> None:
    a = micro_sam2.draw_batch(3, 7, 2, (112, 84))
    b = micro_sam2.draw_batch(3, 7, 2, (112, 84))
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x["mask"], y["mask"]) and x["box"] == y["box"]
        px, py = x["point"]
        assert x["mask"][py, px]


@pytest.mark.slow
def test_smoke_run_trains_every_stage_and_resumes(tmp_path: Path) -> None:
    """A few steps of every stage, end to end; a second call redoes nothing."""
    out = tmp_path / "run"
    assert micro.main(["--out", str(out), "--smoke"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["data_seed"] == micro.DATA_SEED
    assert (out / "grpo" / "reward_table.tsv").is_file()
    assert (out / "sft" / "config.json").is_file()
    ckpt = torch.load(out / "sam2" / "sam2_micro.pt", map_location="cpu", weights_only=True)
    assert "model" in ckpt
    assert 0.0 <= results["sam2_heldout"]["mean_iou"] <= 1.0
    for split in ("heldout_scenes", "heldout_compositions"):
        parts = results["heldout"][split]
        assert set(parts) == {"model", "model_on_flat_images", "query_only"}
        assert parts["model"]["segzero"]["all"]["n"] == 2
    rows = json.loads((out / "eval" / "flat_heldout_scenes.json").read_text())["rows"]
    assert len(rows) == 2 and all("answer" in row for row in rows)
    stamp = (out / "sft" / "config.json").stat().st_mtime_ns
    assert micro.main(["--out", str(out), "--smoke"]) == 0
    assert (out / "sft" / "config.json").stat().st_mtime_ns == stamp
    assert "already done" in (out / "log.txt").read_text()


@pytest.mark.slow
def test_micro_bundle_is_scored_by_eval_on_the_scene_task(tmp_path: Path) -> None:
    """The path the trained checkpoints take: the micro reasoner (here random) + a micro SAM2
    checkpoint -> ``segzero-edge export --family micro-scene`` (336 frame, 144 image tokens) ->
    the runtime -> ``segzero-edge eval`` on a scene-task folder, for the bundle and for the
    reference (``--hf`` + ``--sam2``)."""
    from PIL import Image

    from segzero_edge import SegZeroEdge
    from segzero_edge.bundle import load_bundle
    from segzero_edge.cli import main as cli
    from segzero_export.micro_sam2 import build_micro_sam2
    from segzero_train.evaluate import HFPredictor
    from segzero_train.scene_set import make_scene_set

    base = micro.stage_base(tmp_path, micro.Recipe())
    sam2 = tmp_path / micro_sam2.CHECKPOINT_FILE
    torch.manual_seed(0)
    torch.save({"model": build_micro_sam2().state_dict()}, sam2)
    bundle = tmp_path / "bundle"
    export = ["export", "--reasoner", str(base), "--segmenter", str(sam2), "-o", str(bundle)]
    assert cli([*export, "--family", micro.FAMILY, "--quant", "Q8_0"]) == 0
    manifest = load_bundle(bundle).manifest
    assert manifest.family == "micro-scene"
    assert (manifest.reasoner.input_size, manifest.reasoner.image_tokens) == (336, 144)

    data = make_scene_set(
        tmp_path / "scenes", 3, split="heldout_scenes", seed=0, size=micro.SCENE_SIZE
    )
    image = np.asarray(Image.open(sorted(data.glob("*.jpg"))[0]).convert("RGB"))
    with SegZeroEdge.from_bundle(bundle, n_threads=2, max_new_tokens=16) as model:
        assert model.family.name == "micro-scene" and model.reasoner.resize_size == 336
        model.segment(image, "the knife")
        assert model.reasoner.last_stats.n_image_tokens == 144

    report = tmp_path / "bundle.json"
    opts = ["--data", str(data), "--quiet", "--max-new-tokens", "48"]
    assert cli(["eval", "--bundle", str(bundle), *opts, "--out", str(report)]) == 0
    rep = json.loads(report.read_text())
    assert rep["source"]["family"] == "micro-scene"
    assert rep["summary"]["segzero"]["all"]["n"] == 3 and len(rep["rows"]) == 3

    assert HFPredictor(base, sam2, family=micro.FAMILY).image_size == 336  # the family's frame
    ref = tmp_path / "hf.json"
    hf = ["eval", "--hf", str(base), "--sam2", str(sam2), "--family", micro.FAMILY]
    assert cli([*hf, *opts, "--out", str(ref)]) == 0
    assert json.loads(ref.read_text())["summary"]["segzero"]["all"]["n"] == 3


def test_sft_rows_answer_every_instance_and_the_empty_list(tmp_path: Path) -> None:
    """The micro SFT targets: "all the cups" is answered with one item per cup, "the green cup"
    where there is none with ``[]`` (both left out or merged into one box before)."""
    from collections import Counter

    from segzero_edge.answer import answer_body
    from segzero_train.data import training_dataset
    from segzero_train.scene_set import make_scene_set

    data = make_scene_set(tmp_path / "scenes", 40, split="train", seed=0, size=(224, 168))
    meta = [json.loads(p.read_text()) for p in sorted(data.glob("0*.json"))]
    rows = training_dataset(
        data, image_size=112, completion=True, family=micro.FAMILY, per_instance=True,
        keep_empty=True,
    )  # fmt: skip
    merged = training_dataset(data, image_size=112, completion=True, family=micro.FAMILY)
    assert len(rows) == len(meta) > len(merged)
    got = Counter(
        (r["query"], len(json.loads(answer_body(r["completion"][0]["content"])))) for r in rows
    )
    want = Counter((m["text"][0], len(m["targets"])) for m in meta)
    assert got == want
    assert {m["family"] for m in meta} >= {"none", "multi"}
    answers = [n for _, n in got.elements()]
    assert 0 in answers and max(answers) > 1


def test_sft_resumes_from_its_checkpoints(tmp_path: Path, tiny_qwen_dir: Path) -> None:
    """A stopped SFT stage continues from its newest checkpoint (model, optimiser, scheduler and
    the trainer state, here recognised by a mark put into the saved state)."""
    from segzero_train.scene_set import make_scene_set
    from segzero_train.sft import train_sft

    data = make_scene_set(tmp_path / "scenes", 6, split="train", seed=0, size=(112, 84))
    ckpts = tmp_path / "checkpoints"
    opts: dict[str, Any] = {
        "image_size": 56, "batch_size": 2, "use_cpu": True, "checkpoint_dir": ckpts,
        "save_steps": 1, "family": micro.FAMILY,
    }  # fmt: skip
    train_sft(tiny_qwen_dir, data, tmp_path / "first", steps=2, **opts)
    assert sorted(p.name for p in ckpts.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    state_file = ckpts / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"].append({"mark": 1.0, "step": 2})
    state_file.write_text(json.dumps(state))
    train_sft(tiny_qwen_dir, data, tmp_path / "resumed", steps=3, **opts)
    history = json.loads((ckpts / "checkpoint-3" / "trainer_state.json").read_text())
    assert {"mark": 1.0, "step": 2} in history["log_history"]
    assert [h["step"] for h in history["log_history"] if "loss" in h] == [1, 2, 3]
    assert (tmp_path / "resumed" / "config.json").is_file()


def test_sft_targets_without_think_and_by_query_family(tmp_path: Path) -> None:
    """``think=False`` leaves the think empty (the loss on the answer alone) with the same answer;
    ``families`` keeps only the samples of those query families (the name-query curriculum)."""
    from segzero_train.data import training_dataset
    from segzero_train.scene_set import make_scene_set

    data = make_scene_set(tmp_path / "scenes", 30, split="train", seed=0, size=(224, 168))
    meta = [json.loads(p.read_text()) for p in sorted(data.glob("0*.json"))]
    opts: dict[str, Any] = {
        "image_size": 56, "completion": True, "family": micro.FAMILY, "per_instance": True,
        "keep_empty": True,
    }  # fmt: skip
    full = training_dataset(data, **opts)
    bare = training_dataset(data, think=False, **opts)
    for a, b in zip(full["completion"], bare["completion"], strict=True):
        with_think, without = a[0]["content"], b[0]["content"]
        assert without.startswith("<think></think><answer>")
        assert not with_think.startswith("<think></think>")
        assert with_think.split("</think>")[1] == without.split("</think>")[1]
    names = training_dataset(data, families=["name"], **opts)
    want = [m["text"][0] for m in meta if m["family"] == "name"]
    assert 0 < len(names) < len(full)
    assert list(names["query"]) == want
    with pytest.raises(ValueError, match="no training prompts"):
        training_dataset(data, families=["no such family"], **opts)


def test_box_scores_and_token_kinds() -> None:
    """The probe's measures: box IoU, best match per true instance, coordinate-digit tokens."""
    from segzero_train.micro_probe import box_iou, instance_score, token_kinds

    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    truth = [[0, 0, 10, 10], [100, 100, 110, 110]]
    assert instance_score([[0, 0, 10, 10]], truth) == pytest.approx(0.5)
    assert instance_score([[100, 100, 110, 110], [0, 0, 10, 10]], truth) == pytest.approx(1.0)
    assert instance_score([], truth) == 0.0
    with pytest.raises(ValueError, match="true box"):
        instance_score([[0, 0, 1, 1]], [])
    toks = ["<think", ">", "a", "2", "</", "think", "><", "answer", ">[{\"", "bbox", "_", "2",
            "d", "\":", " [", "2", "7", ",", " ", "5", "]}]</", "answer", ">"]  # fmt: skip
    kinds = token_kinds(toks)
    assert [t for t, k in zip(toks, kinds, strict=True) if k == "digit"] == ["2", "7", "5"]
    assert kinds[:4] == ["think"] * 4 and kinds[-1] == "answer"


def test_sft_batches_carry_the_image(tmp_path: Path, tiny_qwen_dir: Path) -> None:
    """The SFT collator's batch holds each sample's pixels and grid, so the model's logits on the
    answer tokens change when the image does (a collator or processor that dropped or mixed up
    the images would leave them equal)."""
    from segzero_train.micro_probe import image_dependence
    from segzero_train.scene_set import make_scene_set

    data = make_scene_set(tmp_path / "scenes", 6, split="train", seed=0, size=(112, 84))
    got = image_dependence(tiny_qwen_dir, data, n=4, image_size=56)
    assert set(got) == {"own", "rolled", "flat", "share"}
    assert set(got["own"]) == {"think", "answer", "digit"}
    assert sum(got["share"].values()) == pytest.approx(1.0)
    for other in ("rolled", "flat"):
        assert any(abs(got[other][k] - got["own"][k]) > 1e-4 for k in got["own"]), other


def test_coarse_targets_round_to_the_step_inside_the_range() -> None:
    """``coord_step`` rounds the SFT target's coordinates to multiples of the step, keeps every box
    at least one step wide inside ``[0, coord_range]`` and leaves step 1 exact."""
    from segzero_train.data import coarse_ground_truth
    from segzero_train.rewards import GroundTruth

    gt = GroundTruth(boxes=[(272, 58, 414, 308), (831, 5, 839, 9)], points=[(341, 178), (835, 7)])
    got = coarse_ground_truth(gt, 20, 840)
    assert [tuple(b) for b in got.boxes] == [(280, 60, 420, 300), (820, 0, 840, 20)]
    assert [tuple(p) for p in got.points] == [(340, 180), (840, 0)]
    assert coarse_ground_truth(gt, 1, 840) is gt
    with pytest.raises(ValueError, match="coord_step"):
        coarse_ground_truth(gt, 0, 840)


def test_micro_reasoner_rope_base_reaches_the_config_and_the_gguf_writer(tmp_path: Path) -> None:
    """``Recipe.rope_theta`` is the built reasoner's RoPE base, and the GGUF writer reads it from
    there (so an exported bundle runs the model with the base it was trained with)."""
    from segzero_export.reasoner_gguf import text_hparams
    from segzero_export.tiny_qwen import build_tiny_qwen25vl

    sizes = micro.micro_qwen_sizes(10.0)
    out = build_tiny_qwen25vl(tmp_path / "m", sizes=sizes, trainable_init=True)
    config = json.loads((out / "config.json").read_text())
    assert config["text_config"]["rope_parameters"]["rope_theta"] == 10.0
    assert text_hparams(config).rope_theta == 10.0
    assert micro.micro_qwen_sizes().rope_theta == 1000000.0


def test_a_run_folder_from_before_the_added_settings_still_resumes(tmp_path: Path) -> None:
    """A ``recipe.json`` written before ``name_steps`` / ``coord_step`` / ``rope_theta`` existed
    is the default recipe (those settings were then off), so its run continues; another value of
    an added setting is still refused."""
    out = tmp_path / "run"
    out.mkdir()
    old = dataclasses.asdict(micro.Recipe())
    for key in micro.ADDED_SETTINGS:
        old.pop(key)
    (out / "recipe.json").write_text(json.dumps(old))
    micro.check_recipe(out, micro.Recipe())
    with pytest.raises(ValueError, match="other settings"):
        micro.check_recipe(out, micro.Recipe(rope_theta=10.0))
    assert micro.main(["--out", str(out), "--rope-theta", "10"]) == 2
    assert json.loads((out / "recipe.json").read_text()) == old


def test_grpo_stage_runs_under_accelerate_with_two_cpu_processes(tmp_path: Path) -> None:
    """The micro recipe's GRPO stage, 2 steps, under ``accelerate launch`` with 2 CPU processes
    (gloo; accelerate's ``--multi_gpu`` launcher on a machine without a GPU): each process takes
    half of a step's completions, the run saves its checkpoint once and changes the weights."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    out = tmp_path / "run"
    r = micro.Recipe(**{**micro.SMOKE, "grpo_steps": 2, "grpo_save_steps": 2})
    out.mkdir()
    micro.check_recipe(out, r)
    sets = micro.stage_data(out, r)
    base = micro.stage_base(out, r)
    sft = micro.stage_sft(out, r, base, sets["train"])
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "segzero_train.micro", "--out", str(out), "--smoke", "--stage", "grpo",
        "--grpo-steps", "2", "--grpo-save-steps", "2",
    ]  # fmt: skip
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(launch, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    log = (out / "log.txt").read_text()
    assert "stage grpo on 2 process(es)" in log and "2 processes, gloo" in log
    assert (out / "grpo" / "DONE").is_file()
    assert not (out / "sam2").exists()  # the GRPO stage alone
    state = json.loads((out / "grpo" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    per_device = r.prompts_per_step * r.num_generations // 2
    assert state["train_batch_size"] == per_device
    before = load_file(str(sft / "model.safetensors"))
    after = load_file(str(out / "grpo" / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_grpo_stage_alone_refuses_a_run_without_its_earlier_stages(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="holds no micro run"):
        micro.run_grpo_stage(out, micro.Recipe(**micro.SMOKE))
    out.mkdir()
    micro.check_recipe(out, micro.Recipe(**micro.SMOKE))
    with pytest.raises(ValueError, match=r"stage data .* is not done"):
        micro.run_grpo_stage(out, micro.Recipe(**micro.SMOKE))
    assert sorted(p.name for p in out.iterdir()) == ["recipe.json"]
    with pytest.raises(ValueError, match="cannot share the 4 completions"):
        micro.grpo_argv(micro.Recipe(**micro.SMOKE), out, out, out, world_size=3)
