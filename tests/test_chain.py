"""Acceptance: pretrain → fine-tune → evaluate end to end through the real CLI on the synthetic motion videos, as the
example script a new user runs first (about a minute and a half): it is the one that shows the fine-tuned classifier
learns the motion classes, well above chance."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "examples" / "pretrain_finetune_evaluate.sh"
CHANCE = 1 / 8


def test_the_example_chain_fine_tunes_well_above_chance(tmp_path: Path) -> None:
    assert shutil.which("videomae"), "the videomae command is not on PATH (pip install -e .)"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    pretrain = json.loads((tmp_path / "pretrain-eval.json").read_text())
    assert pretrain["kind"] == "pretrain" and pretrain["reconstruction_loss"] > 0
    assert 0 <= pretrain["knn"]["top1"] <= 1 and 0 <= pretrain["linear_probe"]["top1"] <= 1
    report = json.loads((tmp_path / "finetune-eval.json").read_text())
    assert report["kind"] == "classifier" and report["views"] == "2x3"
    assert {"top1", "top5", "per_class", "confusion_matrix"} <= report.keys()
    assert len(report["per_class"]) == 8 and sum(map(sum, report["confusion_matrix"])) == report["num_videos"]
    assert report["top1"] >= 4 * CHANCE, f"fine-tuned top-1 {report['top1']:.3f} is not well above chance"
