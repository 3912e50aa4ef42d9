"""`benchmarks/bench_gpu.py --device cpu --tiny`, the accelerator report's smoke run: every case on both sides,
eager and compiled, with clips/s, memory and model FLOPs, and the two sides' first losses in agreement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_the_gpu_report_runs_on_the_cpu_in_tiny_mode(tmp_path: Path) -> None:
    report = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--device", "cpu", "--tiny", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(report.read_text())["rows"]
    cases = {(r["case"], r["side"], r["variant"]) for r in rows}
    assert cases == {
        (case, side, variant)
        for case in ("pretrain-test", "finetune-test")
        for side in ("ours", "hf")
        for variant in ("eager", "compiled")
    }
    assert all(r["clips_per_s"] > 0 and r["tflops_per_s"] > 0 and r["mfu"] is None for r in rows)
    for case in ("pretrain-test", "finetune-test"):  # identical weights and inputs: the same loss, up to bf16
        losses = [r["first_loss"] for r in rows if r["case"] == case]
        assert max(losses) - min(losses) < 1e-3 * max(losses)
    assert "clips/s" in done.stdout and "MFU" in done.stdout
