"""Fine-tuning: layer-wise lr decay and weight decay, Mixup/CutMix on clips, `--init` from pretrain and classifier
checkpoints, the spec inherited from --init, and the finetune engine end to end with exact resume."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import PARITY_GRID, TOY_SETS, randomize
from safetensors.torch import load_file

import videomae_cli
from videomae_cli.checkpoint import model_metadata, read_metadata, save_weights
from videomae_cli.config.resolve import resolve_spec
from videomae_cli.config.schema import AugmentSpec, FinetuneOptimSpec, FinetuneSpec, ModelSpec, PretrainSpec, grid_of
from videomae_cli.data.synthetic import MOTION_CLASSES
from videomae_cli.errors import ConfigError
from videomae_cli.models.classifier import VideoClassifier
from videomae_cli.models.pretrain import PretrainVideoMAE
from videomae_cli.models.vit import TokenGrid, sinusoid_table
from videomae_cli.train.finetune import VideoMixup, resolve_finetune_spec, setup
from videomae_cli.train.init import init_from_state, load_init
from videomae_cli.train.loop import train
from videomae_cli.train.optim import make_optimizer
from videomae_cli.ui.progress import SilentReporter

CPU = torch.device("cpu")
# TOY_SETS' 4 frames × 64² clips, with a batch of 4 so that 16 synthetic videos make 4 steps per epoch.
FINETUNE_SETS = [*TOY_SETS, "model.name=test", "optim.batch_size=4", "data.synthetic_val_videos=8"]
SEPARABLE_CLS = ["model.pos_embed=separable", "model.cls_token=true"]


class Notices(SilentReporter):
    """A reporter that keeps the notices it is given."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def notice(self, text: str) -> None:
        self.lines.append(text)


def finetune_spec(*sets: str) -> FinetuneSpec:
    return resolve_spec(FinetuneSpec, sets=[*FINETUNE_SETS, *sets])


def run_finetune(out: Path, *sets: str) -> None:
    train(setup(finetune_spec("init=none", f"run.out={out}", *sets), SilentReporter()), SilentReporter())


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def classifier_for(spec: FinetuneSpec, num_classes: int = len(MOTION_CLASSES)) -> VideoClassifier:
    return VideoClassifier(spec.model, grid_of(spec), num_classes, pool=spec.model.pool)


def save_pretrain(path: Path, *sets: str) -> dict[str, torch.Tensor]:
    """A randomised `test` pretrain model on 4×64² clips, saved as our pretrain checkpoint; its state dict."""
    spec = resolve_spec(PretrainSpec, sets=[*TOY_SETS, "model.name=test", *sets])
    model = PretrainVideoMAE(spec.model, grid_of(spec))
    randomize(model, seed=1)
    save_weights(path, model.state_dict(), model_metadata("pretrain", spec.model_dump_json()))
    return model.state_dict()


def save_classifier(path: Path, num_classes: int, *sets: str) -> dict[str, torch.Tensor]:
    """A randomised `test` classifier with `num_classes` classes, saved as our classifier checkpoint."""
    spec = finetune_spec("init=none", *sets)
    model = classifier_for(spec, num_classes)
    randomize(model, seed=2)
    classes = json.dumps([f"class{i}" for i in range(num_classes)])
    save_weights(path, model.state_dict(), model_metadata("classifier", spec.model_dump_json(), classes=classes))
    return model.state_dict()


def groups_by_name(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    """{parameter name: its optimizer group}, matched by identity; every parameter in exactly one group."""
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(group_of) == len(list(model.parameters()))
    return {name: group_of[id(p)] for name, p in model.named_parameters()}


def official_lr_scale(name: str, depth: int, decay: float) -> float:
    """The official VideoMAE fine-tune formula: decay^(depth + 1 − layer id), with layer id 0 for the embeddings,
    i + 1 for blocks.i and depth + 1 for everything after the blocks (fc_norm, head)."""
    if name.startswith(("patch_embed.", "cls_token", "pos_embed.")):
        layer_id = 0
    elif name.startswith("blocks."):
        layer_id = int(name.split(".")[1]) + 1
    else:
        layer_id = depth + 1
    return decay ** (depth + 1 - layer_id)


def mae_st_classifier(depth: int = 3) -> VideoClassifier:
    spec = ModelSpec(name="test", depth=depth, pos_embed="separable", cls_token=True)
    return VideoClassifier(spec, PARITY_GRID, 5)


# ---------------------------------------------------------------------------------------------------------------------
# Optimizer: layer-wise lr decay and weight decay


def test_layer_decay_scales_each_layers_lr_by_the_official_formula() -> None:
    model = mae_st_classifier(depth=3)
    groups = groups_by_name(model, make_optimizer(model, FinetuneOptimSpec(layer_decay=0.75), CPU))
    expected = {name: official_lr_scale(name, 3, 0.75) for name in groups}
    assert {name: group["lr_scale"] for name, group in groups.items()} == pytest.approx(expected)
    assert expected["cls_token"] == 0.75**4 and expected["blocks.2.mlp.fc1.weight"] == 0.75
    assert expected["fc_norm.weight"] == expected["head.bias"] == 1.0


def test_layer_decay_1_leaves_every_lr_unscaled() -> None:
    model = mae_st_classifier()
    groups = groups_by_name(model, make_optimizer(model, FinetuneOptimSpec(layer_decay=1.0), CPU))
    assert all(group.get("lr_scale", 1.0) == 1.0 for group in groups.values())


@pytest.mark.parametrize("layer_decay", [0.75, 1.0])
def test_weight_decay_spares_1d_params_position_tables_and_the_cls_token(layer_decay: float) -> None:
    model = mae_st_classifier()
    groups = groups_by_name(model, make_optimizer(model, FinetuneOptimSpec(layer_decay=layer_decay), CPU))
    params = dict(model.named_parameters())
    exempt = {n for n, p in params.items() if p.ndim == 1 or n.startswith(("pos_embed.", "cls_token"))}
    assert {"pos_embed.spatial", "pos_embed.temporal", "pos_embed.cls", "cls_token", "head.bias"} <= exempt
    assert {name: group["weight_decay"] for name, group in groups.items()} == {
        name: 0.0 if name in exempt else 0.05 for name in params
    }


def test_the_training_loop_applies_each_groups_lr_scale(tmp_path: Path) -> None:
    run = setup(finetune_spec("init=none", f"run.out={tmp_path}", "run.steps=2"), SilentReporter())
    train(run, SilentReporter())
    base = run.schedule.lr(run.total_steps - 1)  # the lr of the last step taken
    assert base > 0 and [r["lr"] for r in records(tmp_path) if "lr" in r][-1] == base
    scales = [group["lr_scale"] for group in run.optimizer.param_groups]
    assert len(set(scales)) == run.spec.model.depth + 2  # embeddings, each block, fc_norm + head
    assert [group["lr"] for group in run.optimizer.param_groups] == pytest.approx([base * s for s in scales])


# ---------------------------------------------------------------------------------------------------------------------
# Mixup / CutMix


def toy_clips() -> tuple[torch.Tensor, torch.Tensor]:
    video = torch.randn(4, 3, 4, 16, 16, generator=torch.Generator().manual_seed(0))  # [B, 3, T, H, W]
    return video, torch.tensor([0, 1, 2, 3])


def mix(augment: AugmentSpec, step: int = 0, micro: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    video, labels = toy_clips()
    return VideoMixup(augment, num_classes=5, seed=seed)(video, labels, step, micro)


def test_mixing_keeps_the_clip_shape_and_gives_smoothed_soft_targets() -> None:
    mixed, targets = mix(AugmentSpec())
    assert mixed.shape == (4, 3, 4, 16, 16) and targets.shape == (4, 5)
    torch.testing.assert_close(targets.sum(1), torch.ones(4))
    assert targets.min() >= 0.1 / 5 - 1e-6  # label smoothing 0.1 spreads 0.02 onto every class


def test_mixing_depends_only_on_the_step_and_micro_batch() -> None:
    first, targets = mix(AugmentSpec(), step=3, micro=1)
    again, targets_again = mix(AugmentSpec(), step=3, micro=1)
    assert torch.equal(first, again) and torch.equal(targets, targets_again)
    other, _ = mix(AugmentSpec(), step=4, micro=1)
    assert not torch.equal(first, other)


def test_cutmix_cuts_the_same_box_from_every_frame_and_channel() -> None:
    augment = AugmentSpec(mixup=0.0, cutmix=1.0, mix_prob=1.0)
    video, labels = toy_clips()
    mixed, targets = VideoMixup(augment, num_classes=5, seed=0)(video.clone(), labels, 0, 0)
    changed = mixed != video  # [B, 3, T, H, W]
    box = changed.flatten(0, 2).any(0)  # [H, W]
    assert box.any() and not box.all()
    assert (changed == box).all()  # the same pixels changed in every clip, channel and frame
    assert torch.equal(box, box.any(1, keepdim=True) & box.any(0, keepdim=True))  # a rectangle
    lam = 1 - box.sum().item() / box.numel()  # the share of each clip that is its own, over (H, W)
    smooth = F.one_hot(labels, 5).float() * 0.9 + 0.02
    torch.testing.assert_close(targets, lam * smooth + (1 - lam) * smooth.flip(0))


def test_mixing_leaves_numpys_global_rng_as_it_was() -> None:
    np.random.seed(1234)
    before = np.random.get_state()
    mix(AugmentSpec())
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


# ---------------------------------------------------------------------------------------------------------------------
# --init


def test_init_from_a_pretrain_checkpoint_takes_the_encoder_and_reports_the_rest(tmp_path: Path) -> None:
    ckpt = tmp_path / "pretrain.safetensors"
    pretrain = save_pretrain(ckpt)
    spec = finetune_spec(f"init={ckpt}")
    model = classifier_for(spec)
    notices = Notices()
    report = load_init(model, spec, notices)
    unused = sorted(k for k in pretrain if not k.startswith("encoder.") or k.startswith("encoder.norm."))
    assert {"mask_token", "encoder_to_decoder.weight", "encoder.norm.weight", "decoder.head.bias"} <= set(unused)
    assert report["ignored"] == unused
    assert report["new"] == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    state = model.state_dict()
    assert sorted(report["loaded"]) == sorted(set(state) - set(report["new"]))
    assert all(torch.equal(state[name], pretrain[f"encoder.{name}"]) for name in report["loaded"])
    assert notices.lines[0].startswith(f"init: loaded {len(report['loaded'])} tensors from {ckpt}")


def test_init_from_a_classifier_with_other_classes_starts_a_new_head(tmp_path: Path) -> None:
    ckpt = tmp_path / "classifier.safetensors"
    saved = save_classifier(ckpt, num_classes=5)
    spec = finetune_spec(f"init={ckpt}")
    model = classifier_for(spec, num_classes=8)
    report = load_init(model, spec, SilentReporter())
    assert report["new"] == ["head.bias", "head.weight"]
    assert report["ignored"] == ["head.bias", "head.weight"]
    assert sorted(report["loaded"]) == sorted(k for k in saved if not k.startswith("head."))
    state = model.state_dict()
    assert all(torch.equal(state[name], saved[name]) for name in report["loaded"])
    assert any("5 classes" in note and "8" in note for note in report["notes"])


def test_learned_position_tables_are_interpolated_to_a_new_clip_geometry(tmp_path: Path) -> None:
    ckpt = tmp_path / "mae_st.safetensors"
    pretrain = save_pretrain(ckpt, *SEPARABLE_CLS)  # 4×64²: 2 × 4×4 tokens
    spec = finetune_spec(f"init={ckpt}", *SEPARABLE_CLS, "data.num_frames=8", "data.input_size=96")  # 4 × 6×6
    model = classifier_for(spec)
    report = load_init(model, spec, SilentReporter())
    c = spec.model.dim
    assert model.pos_embed.spatial.shape == (1, 36, c) and model.pos_embed.temporal.shape == (1, 4, c)
    assert {"pos_embed.spatial", "pos_embed.temporal", "pos_embed.cls", "cls_token"} <= set(report["loaded"])
    assert report["new"] == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    assert "spatial positions interpolated 4×4 → 6×6" in report["notes"]
    assert "temporal positions interpolated 2 → 4" in report["notes"]
    # As MAE-ST's interpolate_pos_embed: bicubic over the spatial grid; linear over time.
    spatial = pretrain["encoder.pos_embed.spatial"].reshape(1, 4, 4, c).permute(0, 3, 1, 2)
    spatial = F.interpolate(spatial, size=(6, 6), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(model.pos_embed.spatial.detach(), spatial.reshape(1, 36, c))
    t0, t1 = pretrain["encoder.pos_embed.temporal"][0]
    expected_temporal = torch.stack([t0, 0.75 * t0 + 0.25 * t1, 0.25 * t0 + 0.75 * t1, t1])[None]
    torch.testing.assert_close(model.pos_embed.temporal.detach(), expected_temporal)
    assert torch.equal(model.pos_embed.cls.detach(), pretrain["encoder.pos_embed.cls"])


def test_a_checkpoint_of_another_width_is_refused_naming_the_tensor(tmp_path: Path) -> None:
    ckpt = tmp_path / "pretrain.safetensors"
    save_pretrain(ckpt)  # dim 64
    spec = finetune_spec(f"init={ckpt}", "model.dim=128")
    model = classifier_for(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match=r"in the checkpoint but the model needs") as error:
        load_init(model, spec, SilentReporter())
    named = re.match(r"init: (\S+) is \(", str(error.value))
    assert named is not None and named.group(1) in before
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing half-loaded


def test_the_fixed_sinusoid_positions_are_rebuilt_for_a_new_clip_geometry() -> None:
    pretrain = PretrainVideoMAE(ModelSpec(name="test"), PARITY_GRID)  # 2 × 4×4 tokens
    randomize(pretrain, seed=3)
    same = VideoClassifier(ModelSpec(name="test"), PARITY_GRID, 5)
    assert init_from_state(same, pretrain.state_dict(), "pretrain", PARITY_GRID, "memory").notes == []
    bigger = VideoClassifier(ModelSpec(name="test"), TokenGrid(frames=8, height=96, width=96, patch=16, tubelet=2), 5)
    report = init_from_state(bigger, pretrain.state_dict(), "pretrain", PARITY_GRID, "memory")
    assert report.notes == ["the fixed sinusoid positions are rebuilt for 4×6×6 tokens"]
    assert torch.equal(bigger.pos_embed.table, sinusoid_table(4 * 6 * 6, 64))
    assert torch.equal(bigger.blocks[1].attn.qkv.weight, pretrain.encoder.blocks[1].attn.qkv.weight)


# ---------------------------------------------------------------------------------------------------------------------
# The spec inherited from --init


def test_the_spec_inherits_the_init_checkpoints_model_and_clip_geometry(tmp_path: Path) -> None:
    ckpt = tmp_path / "pretrain.safetensors"
    save_pretrain(ckpt, "model.depth=3", "model.drop_path=0.05")
    spec = resolve_finetune_spec(None, [f"init={ckpt}"], {})
    assert (spec.model.name, spec.model.depth) == ("test", 3)
    assert (spec.data.num_frames, spec.data.input_size) == (4, 64)
    assert spec.model.drop_path == 0.1  # fine-tuning's own default, not the pretrain run's


def test_the_spec_inherits_the_init_checkpoints_synthetic_scene(tmp_path: Path) -> None:
    ckpt = tmp_path / "pretrain.safetensors"
    save_pretrain(ckpt, "data.synthetic_scene=plain")
    assert resolve_finetune_spec(None, [f"init={ckpt}"], {}).data.synthetic_scene == "plain"
    fresh = resolve_finetune_spec(None, [f"init={ckpt}", "data.synthetic_scene=busy"], {})
    assert fresh.data.synthetic_scene == "busy"


def test_explicit_settings_win_over_the_init_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "pretrain.safetensors"
    save_pretrain(ckpt, "model.depth=3")
    spec = resolve_finetune_spec(None, [f"init={ckpt}", "model.drop_path=0.2", "data.num_frames=8"], {})
    assert (spec.model.depth, spec.model.drop_path, spec.data.num_frames) == (3, 0.2, 8)


def test_settings_that_depend_on_the_init_checkpoints_model_are_accepted(tmp_path: Path) -> None:
    ckpt = tmp_path / "mae_st.safetensors"
    save_pretrain(ckpt, *SEPARABLE_CLS)
    spec = resolve_finetune_spec(None, [f"init={ckpt}", "model.pool=cls"], {})
    assert spec.model.cls_token and spec.model.pool == "cls"


def test_fine_tuning_without_init_asks_for_it() -> None:
    spec = finetune_spec()
    assert spec.init is None
    with pytest.raises(ConfigError, match="init=CKPT"):
        load_init(classifier_for(spec), spec, SilentReporter())


# ---------------------------------------------------------------------------------------------------------------------
# The engine end to end


def test_a_toy_fine_tune_keeps_the_best_weights_and_loads_as_a_classifier(tmp_path: Path) -> None:
    run_finetune(tmp_path, "run.epochs=2")
    meta = read_metadata(tmp_path / "best.safetensors")
    assert meta["videomae.kind"] == "classifier"
    assert json.loads(meta["videomae.classes"]) == list(MOTION_CLASSES) and len(MOTION_CLASSES) == 8
    validations = [r for r in records(tmp_path) if "val_top1" in r]
    assert [r["step"] for r in validations] == [4, 8]  # once per epoch of 16 videos / 4
    assert all(0 <= r["val_top1"] <= 1 and r["val_videos"] == 8 for r in validations)
    model = videomae_cli.load(tmp_path)
    assert model.classes == list(MOTION_CLASSES)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 4, 64, 64)).shape == (2, 8)


def test_validation_can_run_every_few_epochs_and_always_after_the_last_step(tmp_path: Path) -> None:
    run_finetune(tmp_path, "run.steps=22", "data.val_every_epochs=2")
    validations = [r["step"] for r in records(tmp_path) if "val_top1" in r]
    assert validations == [8, 16, 22]  # epochs 2 and 4 of 4 steps each, then the last step


def resume_after_step_4(tmp_path: Path, *sets: str) -> tuple[Path, Path]:
    """The same 8-step fine-tune run straight, and again stopped after its step-4 checkpoint and resumed."""
    sets = ("run.steps=8", "run.save_every=4", "run.keep_last=5", "run.log_every=2", *sets)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_finetune(straight, *sets)
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-00000008")
    for name in ("model.safetensors", "ema.safetensors"):  # the resumed run must write these itself
        (resumed / name).unlink(missing_ok=True)
    run = setup(finetune_spec("init=none", f"run.out={resumed}", *sets), SilentReporter())
    assert run.start_step == 4
    train(run, SilentReporter())
    return straight, resumed


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_resuming_a_fine_tune_continues_the_same_run_exactly(tmp_path: Path) -> None:
    straight, resumed = resume_after_step_4(tmp_path, "optim.ema_decay=0.9", "model.drop_path=0")
    assert same_weights(straight / "model.safetensors", resumed / "model.safetensors")
    assert same_weights(straight / "ema.safetensors", resumed / "ema.safetensors")
    a, b = records(straight), records(resumed)
    assert [(r["step"], r.get("loss"), r.get("val_top1"), r.get("val_ema_top1")) for r in a] == [
        (r["step"], r.get("loss"), r.get("val_top1"), r.get("val_ema_top1")) for r in b
    ]


def test_resuming_a_fine_tune_with_stochastic_depth_continues_exactly(tmp_path: Path) -> None:
    straight, resumed = resume_after_step_4(tmp_path)  # the fine-tune default drop_path 0.1
    assert same_weights(straight / "model.safetensors", resumed / "model.safetensors")


def test_fine_tuning_on_decoded_videos_validates_on_the_val_csv_beside_them(tmp_path: Path) -> None:
    from conftest import run_cli

    data, run = tmp_path / "data", tmp_path / "run"
    prepared = run_cli("prepare-data", "--synthetic", "24", "--out", str(data), "--size", "64", "--num-frames", "8")
    assert prepared.returncode == 0, prepared.stderr
    tuned = run_cli(
        "finetune", "--init", "none", "--model", "test", "--data", str(data), "--epochs", "1", "--out", str(run),
        "--progress", "off", "--set", "data.num_frames=4", "--set", "data.input_size=64",
        "--set", "data.sampling_rate=2", "--set", "data.num_workers=0", "--set", "optim.batch_size=4",
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr
    val_records = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "val_top1" in r]
    val_lines = (data / "val.csv").read_text().splitlines()
    assert len(val_records) == 1 and val_records[0]["val_videos"] == len(val_lines)
    evaluated = run_cli("evaluate", str(run), "--views", "2x1", "--num-workers", "0", "--progress", "off")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((run / "eval" / "report.json").read_text())
    assert report["data"] == str(data / "val.csv") and report["num_videos"] == len(val_lines)
