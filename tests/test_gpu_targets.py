"""The HOG and teacher targets and the motion mask on a CUDA device (skipped without one): the HOG target computed
on the GPU is the CPU's, the teacher's bf16 features (its autocast path, which a CPU without native bf16 never takes)
are its fp32 features within bf16 rounding, and a teacher → student (motion mask) → evaluate chain and a HOG run go
through the CLI on the GPU at the default precision."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TOY_ARGS, randomize, run_cli

from videomae_cli.config.schema import PretrainSpec, grid_of
from videomae_cli.models.hog import hog_target
from videomae_cli.models.pretrain import PretrainVideoMAE
from videomae_cli.models.teacher import FrozenTeacher

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SPEC = PretrainSpec(model={"name": "test", "depth": 3}, data={"num_frames": 4, "input_size": 64})


def test_the_hog_target_on_the_gpu_is_the_cpus() -> None:
    model = PretrainVideoMAE(SPEC.model, grid_of(SPEC))
    video = torch.rand(2, 3, 4, 64, 64, generator=torch.Generator().manual_seed(0)) * 255
    tokens = torch.tensor([[0, 5, 7, 11, 20, 31], [1, 2, 9, 10, 17, 30]])
    on_cpu = hog_target(video, model.grid, tokens, 8)
    on_gpu = hog_target(video.cuda(), model.grid, tokens.cuda(), 8).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, rtol=0, atol=1e-5)


def test_the_teachers_bf16_features_are_its_fp32_features_within_bf16_rounding() -> None:
    model = PretrainVideoMAE(SPEC.model, grid_of(SPEC))
    randomize(model, seed=1)
    encoder = model.encoder.cuda()
    video = torch.randn(2, 3, 4, 64, 64, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    fp32 = FrozenTeacher(encoder, autocast=False)(video)
    bf16 = FrozenTeacher(encoder, autocast=True)(video)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert F.cosine_similarity(bf16, fp32, dim=-1).min() > 0.99
    assert (bf16 - fp32).abs().mean() < 0.05  # per-token LayerNorm-ed: unit scale


def losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def pretrain_on_gpu(run: Path, *flags: str) -> None:
    result = run_cli("pretrain", *TOY_ARGS, "--device", "cuda", "--steps", "4", "--set", "run.log_every=1", *flags,
                     "--out", str(run))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\| cuda(:0)? bf16 \|", result.stdout)  # the default precision on a GPU with bf16
    assert losses(run) and all(math.isfinite(loss) for loss in losses(run))


def test_a_teacher_and_a_motion_masked_student_pretrain_and_evaluate_on_the_gpu(tmp_path: Path) -> None:
    pretrain_on_gpu(tmp_path / "teacher")
    student = tmp_path / "student"
    pretrain_on_gpu(student, "--mask-type", "motion", "--set", "model.target=teacher",
                    "--set", f"model.teacher={tmp_path / 'teacher'}")  # fmt: skip
    result = run_cli("evaluate", str(student), "--device", "cuda", "--num-workers", "0", "--progress", "off")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((student / "eval" / "report.json").read_text())
    assert report["target"] == "teacher" and math.isfinite(report["reconstruction_loss"])


def test_a_hog_run_pretrains_on_the_gpu(tmp_path: Path) -> None:
    pretrain_on_gpu(tmp_path / "hog", "--set", "model.target=hog")
