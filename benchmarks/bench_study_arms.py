"""What each compared arm of the data-efficiency study's field plan costs to pretrain, side by side in one run: tube
0.9 with the pixel target, the HOG target, motion masking and the teacher target (its teacher's forward included),
each through the real `videomae pretrain` with the plan's model, clip and recipe, one run at a time, the arms
alternating over rounds.

The study's own wall times come from two runs sharing the cores; these are the same arms alone, from each run's
steady clips/s (metrics.jsonl, the first log window left out). A teacher arm also needs its teacher pretrained: its
whole cost is its own pretraining plus one tube-0.9 pretraining.

    python benchmarks/bench_study_arms.py [--steps 400] [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "study"))
from study_plan import FIELD, Arm  # the study's own plan: one definition of the arms

COMPARED = [arm for arm in FIELD.arms if arm.seeded]
HEADLINE = COMPARED[0]
LOG_EVERY = 50


def pretrain(arm: Arm, out: Path, steps: int, teacher: Path | None, threads: int) -> float:
    """Steady clips/s of `steps` pretraining steps of `arm` (the first log window left out)."""
    argv = [sys.executable, "-m", "videomae_cli", "pretrain", *FIELD.common, *FIELD.pretrain]
    argv += [*arm.pretrain_flags(teacher), "--steps", str(steps), "--set", f"run.log_every={LOG_EVERY}"]
    argv += ["--set", f"data.synthetic_videos={FIELD.pool_videos}", "--seed", "0", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(argv, check=True, capture_output=True, env=env)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [row["clips_per_s"] for row in rows if "clips_per_s" in row][1:]
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (the study's: 1)")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {arm.name: [] for arm in COMPARED}
    with tempfile.TemporaryDirectory() as tmp:
        teacher = Path(tmp) / "teacher"
        for round_ in range(args.rounds):
            order = COMPARED if round_ % 2 == 0 else [HEADLINE, *reversed(COMPARED[1:])]  # the teacher needs tube first
            for arm in order:
                out = Path(tmp) / f"{round_}-{arm.name.replace(' ', '_')}"
                rate = pretrain(arm, out, args.steps, teacher if arm.teacher else None, args.threads)
                if arm is HEADLINE and round_ == 0:
                    out.rename(teacher)
                rates[arm.name].append(rate)
    base = statistics.median(rates[HEADLINE.name])
    print(f"field plan, {args.steps} steps per run, {args.rounds} rounds, OMP_NUM_THREADS={args.threads}")
    print("| arm | clips/s (median of rounds) | step cost vs tube 0.9 | whole pretraining vs tube 0.9 |")
    print("|---|---:|---:|---:|")
    for arm in COMPARED:
        rate = statistics.median(rates[arm.name])
        whole = base / rate + (1.0 if arm.teacher else 0.0)  # a teacher arm pretrains its teacher first
        print(f"| {arm.name} | {rate:.0f} | {base / rate:.2f}× | {whole:.2f}× |")


if __name__ == "__main__":
    main()
