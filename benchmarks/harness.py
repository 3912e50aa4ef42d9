"""What the model benchmarks share: timing one case in its own process, rounds that alternate the order of the
sides, min/median/max summaries, and the table of ratios against the issue's targets.

A case is one (side, config, precision, mode, ...) combination, described by a JSON-able dict. The driver spawns
`python SCRIPT --worker CASE_JSON` for it, so neither side inherits the other's allocator state, caches or threads,
and rotates the order of the cases from round to round, because other processes share the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import machine  # benchmarks/machine.py: scripts run from this folder


def max_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(step: Callable[[], float], warmup: int, steps: int) -> dict[str, Any]:
    """Run `warmup` untimed then `steps` timed calls of step() (which returns the loss) → times, losses, noise."""
    times, cpu_times, losses = [], [], []
    busy_start = own_start = wall_start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            busy_start, own_start, wall_start = machine.busy_cpu_seconds(), time.process_time(), time.perf_counter()
        start, cpu_start = time.perf_counter(), time.process_time()
        losses.append(step())
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)  # all this process's threads: steadier than wall time
    busy_end, own_cpu = machine.busy_cpu_seconds(), time.process_time() - own_start
    wall = time.perf_counter() - wall_start
    others = None if busy_end is None else (busy_end - busy_start - own_cpu) / (wall * os.cpu_count())
    return {
        "step_s": times[warmup:],
        "warmup_s": times[:warmup],
        "cpu_s": cpu_times[warmup:],
        "first_loss": losses[0],  # before any update: comparable across sides
        "last_loss": losses[-1],
        "others_cpu": others,  # the share of all CPUs other processes used meanwhile: the noise floor
    }


def finish_worker(case: dict[str, Any], step: Callable[[], float], args: argparse.Namespace, baseline: float) -> None:
    """Time `step` (args.warmup + args.steps calls) and print the worker's one JSON line, with its peak memory over
    `baseline` (the RSS after imports)."""
    import torch

    result = time_steps(step, args.warmup, args.steps)
    result.update(case=case, peak_mib=max_rss_mib() - baseline, threads=torch.get_num_threads())
    if torch.cuda.is_initialized():  # on a GPU the allocator's peak is what the model used (RSS is the host's)
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    sys.stdout.write(json.dumps(result) + "\n")


def save_seeded(build: Callable[[], Any], path: Path, seed: int = 0) -> None:
    """The model `build()` makes after seeding torch with `seed`, saved as safetensors: both sides start from it."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    save_file({k: v.contiguous() for k, v in build().state_dict().items()}, path)


def spawn(script: str, case: dict[str, Any], extra: list[str]) -> dict[str, Any]:
    """Run one worker subprocess for `case` and parse its last stdout line (JSON)."""
    cmd = [sys.executable, script, "--worker", json.dumps(case), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker {case} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_rounds(
    cases: list[dict[str, Any]], rounds: int, run_case: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Every case once per round, the order rotated each round; results by case key."""
    results: dict[str, list[dict[str, Any]]] = {}
    for r in range(rounds):
        shift = r % len(cases)
        for case in cases[shift:] + cases[:shift]:
            result = run_case(case)
            results.setdefault(key(case), []).append(result)
            sys.stderr.write(f"round {r + 1}/{rounds} {key(case)}: median {statistics.median(result['step_s']):.3f}s\n")
    return results


def key(case: dict[str, Any]) -> str:
    """A case's name: its values joined by '/' in the order given."""
    return "/".join(str(v) for v in case.values())


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """All timed steps of one case over all rounds → min/median/max seconds and the median peak memory."""
    steps = [t for run in runs for t in run["step_s"]]
    return {
        "min_s": min(steps),
        "median_s": statistics.median(steps),
        "max_s": max(steps),
        "cpu_median_s": statistics.median(t for run in runs for t in run["cpu_s"]),
        "peak_mib": statistics.median(run["peak_mib"] for run in runs),
        "max_others_cpu": max((run["others_cpu"] or 0.0) for run in runs),
        "first_loss": runs[0]["first_loss"],
        "last_loss": runs[0]["last_loss"],
        "steps_timed": len(steps),
    }


@dataclass(frozen=True)
class Target:
    """One row of the issue's target table: `ratio` must be >= `goal` (or <= for memory)."""

    what: str
    config: str
    ratio: float
    goal: float
    at_most: bool = False  # memory: lower is better

    @property
    def met(self) -> bool:
        return self.ratio <= self.goal if self.at_most else self.ratio >= self.goal

    def as_json(self) -> dict[str, Any]:
        return {"what": self.what, "config": self.config, "ratio": self.ratio, "goal": self.goal, "met": self.met}


def format_targets(targets: list[Target]) -> str:
    """`what | config | ratio | target | met` as a fixed-width table."""
    width = max(len(t.what) for t in targets)
    lines = [f"{'target':<{width}}  {'config':<16} {'ratio':>6}  {'goal':>7}  met", "-" * (width + 42)]
    for t in targets:
        goal = f"{'<=' if t.at_most else '>='} {t.goal:g}"
        lines.append(f"{t.what:<{width}}  {t.config:<16} {t.ratio:>6.2f}  {goal:>7}  {'yes' if t.met else 'NO'}")
    return "\n".join(lines)


def format_cases(summaries: dict[str, dict[str, Any]]) -> str:
    """One line per case: min/median/max seconds, peak MiB, others' CPU, first loss."""
    width = max(len(k) for k in summaries)
    header = (
        f"{'case':<{width}}  {'min s':>7} {'median s':>9} {'max s':>7} {'peak MiB':>9} {'others':>7} {'first loss':>11}"
    )
    lines = [header, "-" * len(header)]
    for name, s in summaries.items():
        lines.append(
            f"{name:<{width}}  {s['min_s']:>7.3f} {s['median_s']:>9.3f} {s['max_s']:>7.3f} {s['peak_mib']:>9.0f} "
            f"{s['max_others_cpu']:>7.0%} {s['first_loss']:>11.6f}"
        )
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: Path | None) -> None:
    """Print the JSON report, and write it to `path` when given."""
    blob = json.dumps(report, indent=2, default=str)
    print(blob)
    if path is not None:
        path.write_text(blob + "\n")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The options every model benchmark takes (the worker ones are internal)."""
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every case")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per worker")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per worker (compilation happens here)")
    parser.add_argument("--quick", action="store_true", help="a tiny config only (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one case, as JSON
    parser.add_argument("--weights", help=argparse.SUPPRESS)


def main(
    args: argparse.Namespace,
    run_worker: Callable[[dict[str, Any], argparse.Namespace], None],
    run_benchmark: Callable[[argparse.Namespace], dict[str, Any]],
) -> None:
    """A worker process runs its one case; the driver runs them all and prints the cases, the targets and JSON."""
    if args.worker is not None:
        run_worker(json.loads(args.worker), args)
        return
    report = run_benchmark(args)
    targets = report.pop("_targets")
    print(format_cases(report["cases"]))
    print()
    print(format_targets(targets))
    print()
    report["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in report["args"].items()}
    write_report(report, args.json)
