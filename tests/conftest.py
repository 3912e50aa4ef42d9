"""Shared fixtures: a toy-sized pretraining configuration that runs in seconds on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
