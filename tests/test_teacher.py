"""model.target: teacher (MVD, UMT): the student's decoder predicts a frozen teacher's normalised token features at
the tokens it reconstructs. The target equals the teacher encoder's block output, LayerNorm-ed per token, at those
positions; the teacher is no part of the student's weights; a teacher whose tokens differ is refused; and the whole
path runs through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TOY_ARGS, TOY_SETS, randomize, run_cli
from safetensors.torch import load_file

import videomae_cli
from videomae_cli.checkpoint import model_metadata, save_weights
from videomae_cli.config.resolve import resolve_spec
from videomae_cli.config.schema import PretrainSpec, grid_of
from videomae_cli.errors import ConfigError
from videomae_cli.masking import MaskGenerator, collate_masks
from videomae_cli.models.pretrain import PretrainVideoMAE, token_errors
from videomae_cli.models.teacher import FrozenTeacher, load_teacher
from videomae_cli.models.vit import patchify
from videomae_cli.train.loop import train
from videomae_cli.train.pretrain import setup
from videomae_cli.ui.progress import SilentReporter

GEOMETRY = {"num_frames": 4, "input_size": 64}


def save_teacher(path: Path, **model: object) -> tuple[PretrainVideoMAE, PretrainSpec]:
    spec = PretrainSpec(model={"name": "test", "depth": 3, **model}, data=GEOMETRY)
    teacher = PretrainVideoMAE(spec.model, grid_of(spec))
    randomize(teacher, seed=1)
    save_weights(path, teacher.state_dict(), model_metadata("pretrain", spec.model_dump_json()))
    return teacher, spec


def student_spec(teacher: Path, **model: object) -> PretrainSpec:
    fields = {"name": "test", "target": "teacher", "teacher": str(teacher), **model}
    return PretrainSpec(model=fields, data=GEOMETRY, mask={"ratio": 0.75})


def block_output(teacher: PretrainVideoMAE, video: torch.Tensor, layer: int) -> torch.Tensor:
    """The teacher's block `layer` on every token, written out from the encoder's parts: tubelet embedding plus the
    sinusoid table, then the blocks."""
    encoder = teacher.encoder
    x = encoder.patch_embed(patchify(video, encoder.grid)) + encoder.pos_embed.table  # [B, N, C]
    for block in encoder.blocks[:layer]:
        x = block(x)
    return x


@pytest.mark.parametrize("layer", [None, 2])
def test_the_target_is_the_teachers_normalised_features_at_the_reconstructed_tokens(layer, tmp_path: Path) -> None:
    teacher, _ = save_teacher(tmp_path / "teacher.safetensors")
    spec = student_spec(tmp_path / "teacher.safetensors", teacher_layer=layer, teacher_dim=64)
    student = PretrainVideoMAE(spec.model, grid_of(spec)).eval()
    student.teacher = load_teacher(spec, "cpu")
    video = torch.randn(2, 3, 4, 64, 64)
    tokens = collate_masks([MaskGenerator(spec.mask, student.grid, 0)(0, i) for i in range(2)])
    out = student(video, tokens)
    # The teacher runs under bf16 autocast where the CPU computes bf16 natively (AMX): so does the expectation.
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=student.teacher.autocast):
        features = block_output(teacher.eval(), video, layer or 3).float()  # [B, N, C]
    expected = F.layer_norm(features, (64,)).gather(1, tokens.decoded[:, :, None].expand(-1, -1, 64))
    torch.testing.assert_close(out.target, expected)
    assert out.pred.shape == out.target.shape == (2, tokens.decoded.shape[1], 64)
    assert float(out.loss.detach()) == pytest.approx(float(F.mse_loss(out.pred.detach(), expected)), rel=1e-6)


def test_smooth_l1_and_cosine_losses_compare_each_token() -> None:
    pred, target = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    torch.testing.assert_close(
        token_errors(pred, target, "smooth_l1"), F.smooth_l1_loss(pred, target, reduction="none").mean(-1)
    )
    torch.testing.assert_close(token_errors(pred, target, "cosine"), 1 - F.cosine_similarity(pred, target, dim=-1))


def test_the_teacher_is_no_part_of_the_students_weights(tmp_path: Path) -> None:
    save_teacher(tmp_path / "teacher.safetensors")
    spec = student_spec(tmp_path / "teacher.safetensors", teacher_dim=64)
    student = PretrainVideoMAE(spec.model, grid_of(spec))
    student.teacher = load_teacher(spec, "cpu")
    assert not any(name.startswith("teacher") for name in student.state_dict())
    assert all(not p.requires_grad for p in student.teacher.encoder.parameters())
    assert student.decoder.head.out_features == 64


def test_a_teacher_with_other_tokens_is_refused(tmp_path: Path) -> None:
    save_teacher(tmp_path / "teacher.safetensors", patch_size=8)
    with pytest.raises(
        ConfigError, match=r"model\.teacher: its tokens are 2 frames × 8² pixels, the student's 2 × 16²"
    ):
        load_teacher(student_spec(tmp_path / "teacher.safetensors", teacher_dim=64), "cpu")


def test_a_teacher_layer_past_its_depth_is_refused(tmp_path: Path) -> None:
    save_teacher(tmp_path / "teacher.safetensors")
    with pytest.raises(ConfigError, match=r"model\.teacher_layer: the teacher has 3 blocks, got 4"):
        load_teacher(student_spec(tmp_path / "teacher.safetensors", teacher_layer=4, teacher_dim=64), "cpu")


def test_a_sinusoid_teacher_is_rebuilt_for_the_students_clip_size(tmp_path: Path) -> None:
    teacher, _ = save_teacher(tmp_path / "teacher.safetensors")
    spec = PretrainSpec(
        model={"name": "test", "target": "teacher", "teacher": str(tmp_path / "teacher.safetensors")},
        data={"num_frames": 8, "input_size": 32},
        mask={"ratio": 0.5},
    )
    frozen = load_teacher(spec, "cpu")
    assert frozen.encoder.grid == grid_of(spec)
    assert torch.equal(frozen.encoder.blocks[0].attn.qkv.weight, teacher.encoder.blocks[0].attn.qkv.weight)
    assert isinstance(frozen, FrozenTeacher) and frozen(torch.randn(1, 3, 8, 32, 32)).shape == (
        1,
        16,
        64,
    )  # 4 × 2 × 2 tokens


def test_a_teacher_run_pretrains_evaluates_and_fine_tunes_through_the_cli(tmp_path: Path) -> None:
    small = ("--set", "data.synthetic_val_videos=8", "--progress", "off", "--steps", "2")
    done = run_cli("pretrain", *TOY_ARGS, *small, "--out", str(tmp_path / "teacher"))
    assert done.returncode == 0, done.stderr
    student = ("--set", "model.target=teacher", "--set", f"model.teacher={tmp_path / 'teacher'}")
    done = run_cli(
        "pretrain", *TOY_ARGS, *small, *student, "--set", "model.teacher_loss=cosine", "--out", str(tmp_path / "s")
    )
    assert done.returncode == 0, done.stderr
    loaded = videomae_cli.load_checkpoint(tmp_path / "s")
    assert (loaded.spec.model.teacher_dim, loaded.spec.model.teacher_loss) == (64, "cosine")
    assert not any(k.startswith("teacher") for k in load_file(str(tmp_path / "s" / "model.safetensors")))
    done = run_cli("evaluate", str(tmp_path / "s"), "--num-workers", "0", "--progress", "off")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "s" / "eval" / "report.json").read_text())["target"] == "teacher"
    done = run_cli("finetune", "--init", str(tmp_path / "s"), *TOY_ARGS, *small, "--out", str(tmp_path / "f"))
    assert done.returncode == 0, done.stderr


def test_a_teacher_run_resumes_exactly(tmp_path: Path) -> None:
    save_teacher(tmp_path / "teacher.safetensors", depth=2)
    sets = [*TOY_SETS, "model.name=test", "run.log_every=2", "run.save_every=2", "run.steps=4", "model.target=teacher"]
    sets += [f"model.teacher={tmp_path / 'teacher.safetensors'}", "model.teacher_loss=smooth_l1"]

    def spec(out: Path) -> PretrainSpec:
        return resolve_spec(PretrainSpec, sets=[*sets, f"run.out={out}"])

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(setup(spec(straight)), SilentReporter())
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-00000004")  # as if the run had stopped after step 2
    run = setup(spec(resumed))
    assert run.start_step == 2
    train(run, SilentReporter())
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
