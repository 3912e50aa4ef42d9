"""Distributed runs from the launcher's environment: torchrun (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT) or a
plain `srun` with one task per process (SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS, head node of SLURM_JOB_NODELIST).

One process per device; nccl on GPUs, gloo on CPUs. Rank 0 alone logs and writes; every rank computes. The helpers
here are no-ops in a single process, so the training loop reads the same either way.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from videomae_cli.errors import ConfigError
from videomae_cli.runtime import pick_device

DEFAULT_PORT = 29500


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    launcher: str = "none"  # "torchrun", "slurm" or "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def detect(environ: dict[str, str] | None = None) -> DistEnv:
    """The job layout from the environment. torchrun's variables win (torchrun inside an sbatch job sets both);
    SLURM's count only when srun started several tasks."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(int(env["RANK"]), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"]), "torchrun")
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return DistEnv(int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), int(env["SLURM_NTASKS"]), "slurm")
    return DistEnv()


def slurm_head_node(nodelist: str) -> str:
    """The first host of a SLURM node list (`node[03-05,9],gpu7` → `node03`), via scontrol when present."""
    if shutil.which("scontrol"):
        result = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30)
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.split()[0]
    first = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist)
    if first is None:
        raise ConfigError(f"SLURM_JOB_NODELIST: cannot read {nodelist!r}")
    prefix, ranges = first.groups()
    return prefix if ranges is None else prefix + ranges.split(",")[0].split("-")[0]


def start(env: DistEnv, device_choice: str) -> torch.device:
    """Join the process group (when distributed) and pick this process's device."""
    device = pick_device(device_choice, env.local_rank)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    if not env.is_distributed or dist.is_initialized():
        return device
    if env.launcher == "slurm":
        os.environ.setdefault("MASTER_ADDR", slurm_head_node(os.environ.get("SLURM_JOB_NODELIST", "localhost")))
        os.environ.setdefault("MASTER_PORT", str(DEFAULT_PORT + int(os.environ.get("SLURM_JOB_ID", "0")) % 1000))
    dist.init_process_group(
        backend="nccl" if cuda else "gloo",
        rank=env.rank,
        world_size=env.world_size,
        timeout=timedelta(minutes=30),
        device_id=device if cuda else None,
    )
    return device


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """Leave the process group (when one was joined inside) on the way out, however the block ends."""
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's `value` on every rank."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    if not dist.is_initialized():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over ranks (in place)."""
    if dist.is_initialized():
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor


def any_rank(flag: torch.Tensor) -> torch.Tensor:
    """True on every rank when `flag` (a bool or int tensor) is set on any rank."""
    if dist.is_initialized():
        flag = flag.to(torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return flag.bool()
