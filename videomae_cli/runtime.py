"""Where and how a command computes: the device, the precision and its autocast, and this machine's CPU cores."""

from __future__ import annotations

import os

import torch

from videomae_cli.errors import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(choice: str, local_rank: int = 0, field: str = "run.device") -> torch.device:
    """auto → cuda when available, else cpu; cuda without a GPU is a config error. Each local rank its own GPU."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{field}: cuda requested but no CUDA device is available")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device("cuda", local_rank) if choice == "cuda" else torch.device(choice)


def autocast_for(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context of a precision name (fp32 = disabled)."""
    return torch.autocast(device.type, dtype=PRECISIONS[precision] or torch.float32, enabled=precision != "fp32")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bf16 natively: a GPU that supports it, a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private but long-standing torch.cpu helpers
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(requested: str, device: torch.device) -> tuple[str, str | None]:
    """The precision to train in, and a notice when `auto` falls back: bf16 autocast where the device has native
    bf16 (fp32 master weights either way), else fp32."""
    if requested != "auto":
        return requested, None
    if native_bf16(device):
        return "bf16", None
    what = "this CPU has no AVX512-BF16/AMX" if device.type == "cpu" else f"{device} does not support bf16"
    return "fp32", f"precision auto: {what}, so training runs in fp32"


def cores_per_process(processes: int) -> int:
    """This machine's CPU count split evenly between `processes` processes (at least one core each).

    Processes that each run one thread per core (torch's OpenMP default) slow each other down far more than their
    share: their threads spin while waiting for each other. Two 150-step pretraining runs side by side on two cores
    took 161 s each with two threads apiece and 27 s each with one; alone, one took 19 s.
    """
    return max(1, (os.cpu_count() or 1) // max(1, processes))
