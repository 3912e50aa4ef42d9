"""Scale-out on CPU with gloo: torchrun and srun launches, world-size-independent results, exact resume, preemption
(SIGTERM/SIGUSR1 → checkpoint, exit 75) and checkpoints that survive kill -9 mid-save."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli
from safetensors.torch import load_file

from videomae_cli import checkpoint as ckpt
from videomae_cli.data.loader import EpochSampler
from videomae_cli.train.distributed import DistEnv, detect, slurm_head_node

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TOY = [
    "--model", "test", "--set", "data.input_size=64", "--set", "data.num_frames=4", "--set", "data.synthetic_videos=16",
    "--set", "data.num_workers=0", "--lr", "0.1", "--set", "run.log_every=1",
    "--precision", "fp32",  # world-size independence to 1e-5 is an fp32 promise (bf16 rounds partial sums)
]  # fmt: skip
GLOBAL_BATCH = 4
# The HOG and teacher targets' runs: fp32 partial sums over 4 clips or 2 + 2 round apart, and AdamW divides each
# gradient by its own running size, so near-zero gradients carry the rounding into the update. On an AMX CPU, 3–4
# steps at lr 0.1 end 1e-5 to 3e-5 apart; a clip read twice or skipped, or another mask, moves weights by ~1e-3.
TARGETS_ATOL = 5e-5


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any launcher's variables (the test itself may run under SLURM), plus `extra`."""
    launcher = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")
    env = {k: v for k, v in os.environ.items() if k not in launcher and not k.startswith("SLURM_")}
    env.pop("VIDEOMAE_DEBUG", None)
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def torchrun(*args: str, nproc: int = 2, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`torchrun --standalone --nproc_per_node N -m videomae_cli ARGS` (torchrun's module form)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return subprocess.run(
        [*command, "-m", "videomae_cli", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def pretrain(out: Path, *args: str, world: int = 1) -> None:
    per_device = ["--batch-size", str(GLOBAL_BATCH // world), "--progress", "off"]
    done = torchrun("pretrain", *TOY, *per_device, *args, "--out", str(out), nproc=world) if world > 1 else None
    done = done or run_cli("pretrain", *TOY, *per_device, *args, "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model.safetensors")


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst <= atol, worst


def moved_from_init(run: Path) -> float:
    """The largest change of any weight from the model the run started from (seeded by the run seed)."""
    from videomae_cli.config.schema import PretrainSpec
    from videomae_cli.models.factory import build_model

    saved = yaml.safe_load((run / "spec.yaml").read_text())
    saved.pop("meta", None)
    spec = PretrainSpec.model_validate(saved)
    torch.manual_seed(spec.run.seed)
    start = build_model(spec).state_dict()
    return max(float((w - start[k]).abs().max()) for k, w in weights(run).items())


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------------------------- the environment


def test_torchrun_variables_win_over_slurm_ones() -> None:
    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}
    assert detect(env) == DistEnv(rank=3, local_rank=1, world_size=4, launcher="torchrun")


def test_srun_tasks_are_ranks() -> None:
    env = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8", "SLURM_JOB_NODELIST": "gpu[01-02]"}
    assert detect(env) == DistEnv(rank=5, local_rank=1, world_size=8, launcher="slurm")


def test_a_single_slurm_task_or_no_launcher_is_one_process() -> None:
    assert detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == DistEnv()
    assert detect({}) == DistEnv()


@pytest.mark.parametrize(
    ("nodelist", "head"),
    [("node07", "node07"), ("gpu[03-05,9]", "gpu03"), ("a100-[12,40]", "a100-12"), ("n[1-2],m3", "n1")],
)
def test_the_head_node_is_the_first_of_the_slurm_node_list(nodelist: str, head: str, monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)  # the parser, not a cluster's scontrol
    assert slurm_head_node(nodelist) == head


def test_ranks_take_turns_of_one_global_stream() -> None:
    """Rank r of W takes batches r, r+W, ... of `batch` samples: together they are the 1-process stream."""
    single = EpochSampler(10, seed=3, start=4)
    ranks = [EpochSampler(10, seed=3, start=4, rank=r, world=2, batch=2) for r in range(2)]
    streams = [iter(sampler) for sampler in ranks]
    merged = [key for _ in range(6) for stream in streams for key in (next(stream), next(stream))]
    expected = iter(single)
    assert merged == [next(expected) for _ in range(24)]


# -------------------------------------------------------------------------------------- world-size independence


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_train_the_same_weights_as_one(strategy: str, tmp_path: Path) -> None:
    pretrain(tmp_path / "one", "--steps", "6", "--set", "run.save_every=3")
    pretrain(tmp_path / "two", "--steps", "6", "--set", "run.save_every=3", "--strategy", strategy, world=2)
    assert_same_weights(tmp_path / "one", tmp_path / "two", atol=1e-5)
    assert moved_from_init(tmp_path / "one") > 1e-3  # far more than the tolerance: the comparison means something
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "two"), abs=1e-6)
    assert [step for step, _ in ckpt.list_checkpoints(tmp_path / "two")] == [3, 6]  # one set, written by rank 0
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "checkpoints",
        "curves.png",
        "metrics.jsonl",
        "model.safetensors",
        "spec.yaml",
        "tb",
    ]
    assert len(list((tmp_path / "two" / "tb").iterdir())) == 1  # one event file: rank 0 logs, rank 1 does not
    assert len(losses(tmp_path / "two")) == 6  # one line per step, not one per rank


def test_hog_targets_and_motion_masks_train_the_same_weights_on_two_processes(tmp_path: Path) -> None:
    options = ("--steps", "4", "--set", "model.target=hog", "--mask-type", "motion")
    pretrain(tmp_path / "one", *options)
    pretrain(tmp_path / "two", *options, world=2)
    assert_same_weights(tmp_path / "one", tmp_path / "two", atol=TARGETS_ATOL)
    assert moved_from_init(tmp_path / "one") > 1e-3  # far more than the tolerance: the comparison means something
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "two"), abs=1e-6)


def test_a_teacher_target_trains_the_same_weights_on_two_processes(tmp_path: Path) -> None:
    pretrain(tmp_path / "teacher", "--steps", "1")
    options = ("--steps", "3", "--set", "model.target=teacher", "--set", f"model.teacher={tmp_path / 'teacher'}")
    pretrain(tmp_path / "one", *options)
    pretrain(tmp_path / "two", *options, world=2)
    assert_same_weights(tmp_path / "one", tmp_path / "two", atol=TARGETS_ATOL)
    assert moved_from_init(tmp_path / "one") > 1e-3
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "two"), abs=1e-6)


def test_the_step_trains_with_the_global_batch_and_says_so(tmp_path: Path) -> None:
    done = torchrun(
        "pretrain", *TOY, "--batch-size", "2", "--steps", "1", "--progress", "plain", "--out", str(tmp_path / "r")
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "global batch 4" in done.stdout
    assert done.stdout.count("step 1/1") == 1  # rank 0 alone reports


# ----------------------------------------------------------------------------------------------------- resuming


def interrupted_copy(run: Path, out: Path, keep: int) -> Path:
    """A copy of a finished run as it was when it had written checkpoint `keep` and no later one."""
    shutil.copytree(run, out)
    for step, path in ckpt.list_checkpoints(out):
        if step > keep:
            shutil.rmtree(path)
    return out


@pytest.mark.parametrize("world", [1, 2])
def test_k_steps_resume_k_steps_equals_2k_steps(world: int, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    pretrain(straight, "--steps", "8", "--set", "run.save_every=4", world=world)
    resumed = interrupted_copy(straight, tmp_path / "resumed", keep=4)
    pretrain(resumed, "--steps", "8", "--set", "run.save_every=4", "--resume", "auto", world=world)
    assert_same_weights(straight, resumed, atol=1e-6)
    assert losses(straight) == losses(resumed)


# ------------------------------------------------------------------------------------ preemption and kill -9


def start_pretrain(out: Path, *args: str, new_session: bool = False, **env: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "videomae_cli", "pretrain", *TOY, "--batch-size", "4", "--progress", "off"]
    return subprocess.Popen(
        [*command, *args, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(**env),
        stdin=subprocess.DEVNULL,
        start_new_session=new_session,  # its own process group, to signal it and its DataLoader workers at once
    )


def wait_for(condition, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_signal_writes_a_checkpoint_and_exits_75_for_resume(sig: signal.Signals, tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = start_pretrain(out, "--steps", "100000", "--set", "run.save_every=0")
    wait_for(lambda: (out / "metrics.jsonl").exists() and len(losses(out)) >= 3, process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 75, stderr
    assert stderr.startswith(f"stopped: {sig.name} at step ") and "--resume auto" in stderr
    [(step, _)] = ckpt.list_checkpoints(out)
    assert step == len(losses(out)) >= 3  # the step it was in was finished, and checkpointed
    resumed = run_cli("pretrain", *TOY, "--batch-size", "4", "--steps", str(step + 2), "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())][-3:] == [
        step,
        step + 1,
        step + 2,
    ]


def test_a_stop_signal_sent_to_every_process_of_the_job_still_checkpoints(tmp_path: Path) -> None:
    # scancel, SLURM preemption and `kill -- -PGID` signal the DataLoader workers too, not just the training process.
    # (SIGTERM: torch's workers die of it by default; forked workers happen to inherit the trainer's SIGUSR1 handler.)
    sig = signal.SIGTERM
    out = tmp_path / "run"
    flags = ("--steps", "100000", "--set", "run.save_every=0", "--num-workers", "2")
    process = start_pretrain(out, *flags, new_session=True)
    wait_for(lambda: (out / "metrics.jsonl").exists() and len(losses(out)) >= 3, process)
    os.killpg(process.pid, sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 75, stderr
    assert stderr.startswith(f"stopped: {sig.name} at step ")
    [(step, _)] = ckpt.list_checkpoints(out)
    assert step == len(losses(out)) >= 3


def test_a_save_killed_mid_write_leaves_the_previous_checkpoint_to_resume_from(tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = start_pretrain(out, "--steps", "20", "--set", "run.save_every=4", VIDEOMAE_TEST_SAVE_DELAY="2")
    half_written = out / "checkpoints" / ".step-00000008.partial" / "model.safetensors"
    wait_for(half_written.exists, process)
    process.kill()  # SIGKILL: no handler, no cleanup
    process.communicate(timeout=60)
    assert [step for step, _ in ckpt.list_checkpoints(out)] == [4]
    step4 = load_file(out / "checkpoints" / "step-00000004" / "model.safetensors")
    latest = weights(out)
    assert all(torch.equal(step4[k], latest[k]) for k in step4)  # RUN/model.safetensors is still step 4's
    resumed = run_cli("pretrain", *TOY, "--batch-size", "4", "--steps", "8", "--out", str(out), "--progress", "plain")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout and "step-00000004" in resumed.stdout
    assert [step for step, _ in ckpt.list_checkpoints(out)] == [4, 8]


# ----------------------------------------------------------------------------------------------- cluster scripts

SCRIPTS = sorted([EXAMPLES / "torchrun.sh", *(EXAMPLES / "slurm").glob("*.sbatch")])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_cluster_scripts_parse(script: Path) -> None:
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


def test_the_slurm_examples_cover_single_node_multi_node_and_requeue() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"single_node.sbatch", "multi_node.sbatch", "requeue.sbatch", "torchrun.sh"} <= names
    requeue = (EXAMPLES / "slurm" / "requeue.sbatch").read_text()
    assert "#SBATCH --signal=USR1@120" in requeue and "#SBATCH --requeue" in requeue and "--resume auto" in requeue


def test_the_single_node_script_runs_two_ranks_under_faked_slurm(tmp_path: Path) -> None:
    """The script's own command line, with `srun` replaced by a shim that runs its command here (no cluster)."""
    shim = tmp_path / "bin" / "srun"
    shim.parent.mkdir()
    shim.write_text('#!/usr/bin/env bash\nwhile [[ "$1" == -* ]]; do shift; done\nexec "$@"\n')
    shim.chmod(0o755)
    slurm = {
        "SLURM_JOB_ID": "4242", "SLURM_NNODES": "1", "SLURM_NTASKS": "1", "SLURM_PROCID": "0",
        "SLURM_GPUS_ON_NODE": "2", "SLURM_JOB_NODELIST": "localhost",
    }  # fmt: skip
    path = f"{shim.parent}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    env = clean_env(**slurm, PATH=path, DATA="synthetic", OUT=str(tmp_path / "run"))
    toy = [*TOY, "--batch-size", "2", "--steps", "2", "--set", "optim.accum_steps=1"]
    done = subprocess.run(
        [
            "bash",
            str(EXAMPLES / "slurm" / "single_node.sbatch"),
            *toy,
            "--set",
            "run.epochs=null",
            "--progress",
            "plain",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=EXAMPLES.parent,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "global batch 4" in done.stdout  # 2 ranks × 2 clips
    assert [step for step, _ in ckpt.list_checkpoints(tmp_path / "run")] == [2]


# ------------------------------------------------------------------------------------------------ memory levers


def test_activation_checkpointing_saves_memory_not_results(tmp_path: Path) -> None:
    """Recomputed activations (DropPath's randomness replayed) give the same weights as stored ones."""
    drop = ["--steps", "3", "--set", "model.drop_path=0.2"]
    pretrain(tmp_path / "stored", *drop)
    pretrain(tmp_path / "recomputed", *drop, "--set", "run.activation_checkpointing=true")
    assert_same_weights(tmp_path / "stored", tmp_path / "recomputed", atol=1e-6)
