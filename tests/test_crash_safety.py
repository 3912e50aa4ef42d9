"""What survives kill -9: a training run killed at any moment — mid-step, mid-save, with metrics logged past its last
checkpoint, before its first one — and run again with `--resume auto` ends with exactly the weights and the metrics of
a run that was never interrupted. And one writer per run directory: a second run on a directory in use is refused
with one line (exit 2) before it writes anything, and a killed run's lock never blocks the next.

Every run here is a process of its own, killed with SIGKILL (no handler, no cleanup), but forked from a server that
has already imported torch and the CLI (multiprocessing's forkserver), so a run costs its second of training and not
the ~5 s of imports a fresh interpreter pays: the trials fit the suite's budget.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import TOY_ARGS
from safetensors.torch import load_file

from videomae_cli import checkpoint as ckpt

# 8 steps, a checkpoint every 2 (keep_last 2: old ones are pruned), a metrics line every step. The save delay stops
# mid-save (weights written, train_state not yet), so that a good share of the run is spent inside saves.
STEPS = ["--steps", "8", "--set", "run.save_every=2", "--set", "run.log_every=1", "--precision", "fp32"]
SAVE_DELAY = "0.05"
TRIALS = 24
SEED = 20240611
LAUNCHER = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "VIDEOMAE_DEBUG")


def _videomae(argv: list[str], env: dict[str, str], log: str) -> None:
    """A process's body: `videomae ARGV` with stdout and stderr in `log`, one thread (two runs share two cores)."""
    for name in [*LAUNCHER, *(k for k in os.environ if k.startswith("SLURM_"))]:
        os.environ.pop(name, None)
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    torch.set_num_threads(1)
    from videomae_cli.cli import app

    app(args=argv, prog_name="videomae")


@dataclass
class Started:
    """A `videomae` process and the file its output goes to."""

    process: multiprocessing.process.BaseProcess
    log: Path

    def output(self) -> str:
        return self.log.read_text()


@dataclass
class Videomae:
    """Starts `videomae` processes forked from one server that has the package imported."""

    context: multiprocessing.context.BaseContext
    logs: Path

    def start(self, *argv: str, **env: str) -> Started:
        log = self.logs / f"{time.monotonic_ns()}.log"
        process = self.context.Process(target=_videomae, args=(list(argv), env, str(log)), daemon=True)
        process.start()
        return Started(process, log)

    def run(self, *argv: str, **env: str) -> tuple[int, str]:
        """Run to the end: (exit code, output)."""
        started = self.start(*argv, **env)
        started.process.join(timeout=120)
        assert started.process.exitcode is not None, "timed out"
        return started.process.exitcode, started.output()


def wait_for(condition: Callable[[], object], run: Started, poll: float = 0.05) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert run.process.is_alive(), run.output()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(poll)


@pytest.fixture(scope="module")
def videomae(tmp_path_factory: pytest.TempPathFactory) -> Videomae:
    context = multiprocessing.get_context("forkserver")
    # This module too: the server must import it to find the process body, once rather than in every process.
    context.set_forkserver_preload(
        ["videomae_cli.cli", "videomae_cli.train.pretrain", "videomae_cli.train.loop", __name__]
    )
    return Videomae(context, tmp_path_factory.mktemp("logs"))


def pretrain(out: Path, *extra: str) -> list[str]:
    return ["pretrain", *TOY_ARGS, *STEPS, "--progress", "plain", "--out", str(out), *extra]


@dataclass(frozen=True)
class Reference:
    """The uninterrupted run every trial must end up equal to, and how long it trained: from the moment its run
    directory was written (spec.yaml) to its exit."""

    weights: dict[str, torch.Tensor]
    metrics: list[tuple[int, float, float]]
    seconds: float


def metrics(out: Path) -> list[tuple[int, float, float]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["lr"]) for r in records]


def start_training(videomae: Videomae, out: Path, *extra: str) -> Started:
    """Start a run and return once it has set up (model, data, resume) and written its spec.yaml: the moment its
    training begins, give or take a few milliseconds."""
    run = videomae.start(*pretrain(out, *extra), VIDEOMAE_TEST_SAVE_DELAY=SAVE_DELAY)
    wait_for(lambda: (out / "spec.yaml").exists(), run, poll=0.002)
    return run


@pytest.fixture(scope="module")
def reference(videomae: Videomae, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    videomae.run("--help")  # the server's start (its imports) is no part of the run's duration
    out = tmp_path_factory.mktemp("reference") / "run"
    run = start_training(videomae, out)
    began = time.perf_counter()
    run.process.join(timeout=120)
    assert run.process.exitcode == 0, run.output()
    return Reference(load_file(out / ckpt.MODEL_FILE), metrics(out), time.perf_counter() - began)


def moment(out: Path) -> str:
    """What a killed run was doing, read from what it left: for the failure message."""
    if list((out / ckpt.CHECKPOINTS).glob(".step-*.partial")):
        return "saving a checkpoint"
    return f"training, after checkpoints {[step for step, _ in ckpt.list_checkpoints(out)]}"


@pytest.mark.parametrize("trial", range(TRIALS))
def test_a_run_killed_at_any_moment_resumes_to_the_same_weights(
    trial: int, videomae: Videomae, reference: Reference, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    kill_at = random.Random(SEED + trial).uniform(0, reference.seconds)
    run = start_training(videomae, out)
    time.sleep(kill_at)
    run.process.kill()  # SIGKILL
    run.process.join(timeout=60)
    killed = moment(out)
    code, log = videomae.run(*pretrain(out, "--resume", "auto"))
    assert code == 0, f"killed {kill_at:.2f}s into training, while {killed}; the resumed run said: {log}"
    weights = load_file(out / ckpt.MODEL_FILE)
    assert weights.keys() == reference.weights.keys()
    assert all(torch.equal(weights[k], reference.weights[k]) for k in weights), f"killed while {killed}"
    assert metrics(out) == reference.metrics, f"killed while {killed}"
    assert [step for step, _ in ckpt.list_checkpoints(out)] == [6, 8]


def test_a_second_run_on_a_directory_in_use_is_refused_and_a_killed_runs_lock_never_blocks(
    videomae: Videomae, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    slow = pretrain(out, "--steps", "40")  # the later --steps wins
    first = videomae.start(*slow, VIDEOMAE_TEST_SAVE_DELAY="0.5")
    try:
        wait_for(lambda: ckpt.list_checkpoints(out), first)
        spec_written = (out / "spec.yaml").stat().st_mtime_ns
        code, log = videomae.run(*slow)
        holder = f"pid {first.process.pid} on {socket.gethostname()}"
        assert code == 2
        assert log == f"error: run.out: {out} is in use by another run ({holder}) (set by --out)\n"
        assert (out / "spec.yaml").stat().st_mtime_ns == spec_written  # the refused run wrote nothing
        assert first.process.is_alive()
    finally:
        first.process.kill()  # kill -9: its lock goes with it, the file stays
        first.process.join(timeout=60)
    assert (out / ".lock").exists()
    code, log = videomae.run(*slow, "--resume", "auto")
    assert code == 0, log
    assert "resumed from" in log
    assert not (out / ".lock").exists()  # a run that ends removes it
