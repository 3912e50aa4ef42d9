"""What a run keeps in its directory to be continued exactly: checkpoints (weights, optimizer, scaler, every rank's RNG
streams, the task's state), found and restored per run.resume, and RUN/metrics.jsonl, which a resumed run rewrites
past its step. Under FSDP the whole state dicts are gathered from the shards to write them, and sharded to load them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from videomae_cli.checkpoint import (
    MODEL_FILE,
    list_checkpoints,
    load_train_state,
    model_metadata,
    prune_checkpoints,
    read_spec_json,
    save_checkpoint,
)
from videomae_cli.errors import ConfigError
from videomae_cli.train import distributed
from videomae_cli.train.distributed import DistEnv
from videomae_cli.train.run import Run, TrainSpec


def find_resume_checkpoint(spec: TrainSpec, out: Path) -> Path | None:
    """The checkpoint directory to resume from, per run.resume (auto | none | PATH)."""
    choice = spec.run.resume
    if choice == "none":
        if list_checkpoints(out):
            raise ConfigError(
                f"run.resume: {out} already holds checkpoints; "
                "pass `run.resume=auto` to continue it, or another `run.out`"
            )
        return None
    if choice == "auto":
        found = list_checkpoints(out)
        return found[-1][1] if found else None
    path = Path(choice)
    if (path / "train_state.pt").is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise ConfigError(f"run.resume: no checkpoint found at {path}")
    return found[-1][1]


def restore(run: Run, checkpoint_dir: Path) -> None:
    """Load weights and optimizer/scaler/RNG/task state from a checkpoint, after checking it is the same model."""
    _, saved = read_spec_json(checkpoint_dir / MODEL_FILE)
    check_same_model(saved, run.spec)
    state = load_train_state(checkpoint_dir)
    load_states(run, load_file(str(checkpoint_dir / MODEL_FILE), device=str(run.device)), state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], run.dist)
    run.task.load_state_dict(state.get("task", {}))
    run.start_step, run.resumed_from = int(state["step"]), checkpoint_dir


def check_same_model(saved: dict[str, Any], spec: TrainSpec) -> None:
    """Refuse to resume a checkpoint whose architecture or clip geometry differs from the spec."""
    current = spec.model_dump(mode="json")
    for section, keys in (("model", None), ("data", ("num_frames", "input_size"))):
        for key in keys or current[section]:
            old, new = saved.get(section, {}).get(key), current[section][key]
            if old != new:
                raise ConfigError(
                    f"{section}.{key}: the checkpoint was trained with {old!r}, the spec asks for {new!r}; "
                    "resume with the same model or start a new `run.out`"
                )


def save_run_checkpoint(run: Run, step: int) -> None:
    """Write a checkpoint of the current state (rank 0, after every rank finished the step), refresh
    RUN/model.safetensors, and keep only the newest ones. Every rank's RNG state is saved, for an exact resume."""
    rng = distributed.gather(rng_state())  # collectives: every rank takes part
    weights, optimizer = full_states(run)
    distributed.barrier()
    if run.dist.is_main:
        state = {
            "step": step,
            "epoch": run.epoch_at(step),
            "optimizer": optimizer,
            "scaler": run.scaler.state_dict(),
            "rng": rng,  # one entry per rank
            "world_size": run.dist.world_size,
            "task": run.task.state_dict(),
        }
        meta = model_metadata(run.task.kind, run.spec.model_dump_json(), step=step, **run.task.metadata())
        save_checkpoint(run.out, step, weights, meta, state)
        prune_checkpoints(run.out, run.spec.run.keep_last)
    distributed.barrier()  # nobody runs ahead (or exits on preemption) before the checkpoint is complete


def _is_sharded(run: Run) -> bool:
    return run.dist.is_distributed and run.spec.run.strategy == "fsdp"


def full_states(run: Run) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The whole model's and optimizer's state dicts (gathered from the shards under FSDP: a collective; they land
    on rank 0, in CPU memory)."""
    if not _is_sharded(run):
        return run.model.state_dict(), run.optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(run.model, options=options)
    return model_state, get_optimizer_state_dict(run.model, run.optimizer, options=options)


def load_states(run: Run, weights: dict[str, torch.Tensor], optimizer: dict[str, Any]) -> None:
    """Load whole (unsharded) model and optimizer state dicts, sharding them under FSDP."""
    if not _is_sharded(run):
        run.model.load_state_dict(weights)
        run.optimizer.load_state_dict(optimizer)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(run.model, weights, options=options)
    set_optimizer_state_dict(run.model, run.optimizer, optimizer, options=options)


def rng_state() -> dict[str, Any]:
    """This process's RNG streams: torch (CPU, CUDA), numpy's and python's global generators."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],  # tensors: weights_only
        "python": random.getstate(),
    }


def set_rng_state(saved: list[dict[str, Any]] | dict[str, Any], dist_env: DistEnv) -> None:
    """Restore this rank's RNG streams (from a checkpoint of the same world size; otherwise rank r takes entry r mod
    the saved count, and the resume is exact only for the data, which depends on no global RNG)."""
    state = saved[dist_env.rank % len(saved)] if isinstance(saved, list) else saved
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "python" in state:
        random.setstate(_as_tuples(state["python"]))


def _as_tuples(value: Any) -> Any:
    """random.setstate needs the nested tuples it produced (a checkpoint may hand back lists)."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


class MetricsLog:
    """Appends one JSON object per log step to metrics.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (a resumed run rewrites them)."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in keep))
