"""Shared fixtures: a toy-sized pretraining configuration that runs in seconds on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from videomae_cli.config.schema import ModelSpec
from videomae_cli.models.pretrain import PretrainVideoMAE
from videomae_cli.models.vit import TokenGrid

# The smallest setting that still has a real token grid: 4 frames × 64² → 2 × 4 × 4 tokens.
TOY_SETS = [
    "data.input_size=64",
    "data.num_frames=4",
    "data.synthetic_videos=16",
    "data.num_workers=0",
    "optim.batch_size=2",
]
TOY_ARGS = ["--model", "test", *(arg for item in TOY_SETS for arg in ("--set", item))]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real `videomae` command (as `python -m videomae_cli`), capturing output, never raising."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("VIDEOMAE_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "videomae_cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def randomize(model: nn.Module, seed: int) -> None:
    """Distinct random values in every parameter (LayerNorm weights around 1, the rest small), so that a weight
    mapping or formula mistake cannot hide behind zeros and ones."""
    gen = torch.Generator().manual_seed(seed)
    norm_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.LayerNorm)}
    with torch.no_grad():
        for param in model.parameters():
            noise = torch.randn(param.shape, generator=gen)
            param.copy_(1 + 0.1 * noise if id(param) in norm_weights else 0.05 * noise)


# The parity and reference-math tests share one tiny model: 4 frames × 64² → 2 × 4 × 4 = 32 tokens.
PARITY_GRID = TokenGrid(frames=4, height=64, width=64, patch=16, tubelet=2)


def parity_spec(target: str = "norm_pixel") -> ModelSpec:
    """The `test` size with two encoder and decoder blocks, so block indices above 0 are exercised."""
    return ModelSpec(name="test", depth=2, decoder_depth=2, target=target)


def parity_model(target: str = "norm_pixel", seed: int = 0) -> PretrainVideoMAE:
    """A parity_spec model on PARITY_GRID, in eval mode, with every parameter randomised."""
    model = PretrainVideoMAE(parity_spec(target), PARITY_GRID).eval()
    randomize(model, seed)
    return model
