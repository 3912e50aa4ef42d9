"""What a run keeps in its directory to be continued exactly: checkpoints (weights, optimizer, scaler, every rank's RNG
streams, the task's state), found and restored per run.resume, and RUN/metrics.jsonl, which a resumed run rewrites
past its step. Under FSDP the whole state dicts are gathered from the shards to write them, and sharded to load them.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videomae_cli.checkpoint import (
    MANIFEST_FILE,
    MODEL_FILE,
    STATE_FILE,
    DamagedCheckpoint,
    atomic_write,
    check_recorded,
    inspect_weights,
    list_checkpoints,
    load_state,
    load_train_state,
    model_metadata,
    prune_checkpoints,
    read_manifest,
    read_spec_json,
    save_checkpoint,
)
from videomae_cli.errors import ConfigError, StorageError, naming
from videomae_cli.train import distributed
from videomae_cli.train.distributed import DistEnv
from videomae_cli.train.run import Run, TrainSpec


def find_resume_checkpoint(spec: TrainSpec, out: Path, notices: list[str] | None = None) -> Path | None:
    """The checkpoint directory to resume from, per run.resume (auto | none | PATH). `auto` (or PATH naming a run)
    takes the newest intact checkpoint, adding to `notices` one line about any newer damaged one it passes over; a
    named checkpoint that is damaged, or a run whose checkpoints all are, is refused (ConfigError)."""
    choice = spec.run.resume
    if choice == "none":
        if list_checkpoints(out):
            raise ConfigError(
                f"run.resume: {out} already holds checkpoints; "
                "pass `run.resume=auto` to continue it, or another `run.out`"
            )
        return None
    if choice == "auto":
        return newest_intact(out, notices)
    path = Path(choice)
    if (path / STATE_FILE).is_file():
        problem = checkpoint_problem(path)
        if problem is not None:
            raise ConfigError(
                f"run.resume: damaged or not a checkpoint: {path} ({problem}); "
                "name an intact one, or pass `run.resume=auto` for the newest intact one"
            )
        return path
    if not list_checkpoints(path):
        raise ConfigError(f"run.resume: no checkpoint found at {path}")
    return newest_intact(path, notices)


def newest_intact(run_dir: Path, notices: list[str] | None = None) -> Path | None:
    """The newest checkpoint of a run that checks out (None when it has none). Starting afresh when every one is
    damaged would write over them and lose the run, so that is refused instead."""
    found = list_checkpoints(run_dir)
    damaged: list[str] = []
    for _, path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            if damaged and notices is not None:
                notices.append(f"warning: {'; '.join(damaged)}; resuming from {path}")
            return path
        shared = (run_dir / MODEL_FILE).is_file() and os.path.samefile(run_dir / MODEL_FILE, path / MODEL_FILE)
        also = f", and so is {run_dir / MODEL_FILE} (the same file) until the next checkpoint" if shared else ""
        damaged.append(f"checkpoint {path} is damaged ({problem}){also}")
    if not found:
        return None
    raise ConfigError(
        f"run.resume: every checkpoint of {run_dir} is damaged ({'; '.join(damaged)}); nothing was changed: restore "
        "them from a copy, or start over in another `run.out`"
    )


def checkpoint_problem(directory: Path) -> str | None:
    """Why a checkpoint directory cannot be resumed from, or None. With a manifest: each file's recorded size and
    checksum, then the weights' own description. Written before manifests: what can be checked without one, the
    weights (inspect_weights) and that train_state.pt loads with weights_only=True."""
    try:
        manifest = read_manifest(directory)
        for name in (MODEL_FILE, STATE_FILE) if manifest is not None else ():
            if name not in manifest:
                raise DamagedCheckpoint(f"{MANIFEST_FILE} does not record {name}")
            check_recorded(directory / name, manifest[name])
        inspect_weights(directory / MODEL_FILE)
    except DamagedCheckpoint as e:
        return str(e)
    if manifest is None:
        try:
            load_train_state(directory)
        except OSError:
            raise
        except Exception as e:  # torch.load's failures have no common type (zip, unpickling, EOF errors)
            return f"{STATE_FILE} does not load ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    return None


def restore(run: Run, checkpoint_dir: Path) -> None:
    """Load weights and optimizer/scaler/RNG/task state from a checkpoint, after checking it is the same model. The
    checkpoint's integrity was checked by find_resume_checkpoint (on rank 0 alone: every rank hashing the same files
    would multiply the reading by the world size)."""
    _, saved = read_spec_json(checkpoint_dir / MODEL_FILE)
    check_same_model(saved, run.spec)
    state = load_train_state(checkpoint_dir)
    try:
        weights = load_state(checkpoint_dir / MODEL_FILE, str(run.device))
    except DamagedCheckpoint as e:
        raise ConfigError(f"run.resume: damaged or not a checkpoint: {checkpoint_dir} ({e})") from None
    load_states(run, weights, state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], run.dist)
    run.task.load_state_dict(state.get("task", {}))
    run.start_step, run.resumed_from = int(state["step"]), checkpoint_dir
    restore_cursors(run, state)


def restore_cursors(run: Run, state: dict[str, Any]) -> None:
    """This rank's streams resume at their cursors when the run has the ranks and workers it had; otherwise each
    stream restarts at the start of the current epoch (said once)."""
    cursors, layout = state.get("data_cursors") or {}, state.get("data_layout")
    if not cursors:
        return
    if layout == [run.dist.world_size, run.spec.data.num_workers]:
        run.data_cursors = {int(stream): (int(e), int(p)) for stream, (e, p) in cursors.items()}
        return
    ranks, workers = layout or ("?", "?")
    run.notices.append(
        f"data: the checkpoint read its shards with {ranks} ranks × {workers} loader workers, this run has "
        f"{run.dist.world_size} × {run.spec.data.num_workers}: the shards are dealt anew from the start of the "
        "current epoch (some of its samples are read twice)"
    )


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
    cursors = {stream: where for ranks in distributed.gather(run.data_cursors) for stream, where in ranks.items()}
    weights, optimizer = full_states(run)
    distributed.barrier()
    failure = None
    if run.dist.is_main:
        state = {
            "step": step,
            "epoch": run.epoch_at(step),
            "optimizer": optimizer,
            "scaler": run.scaler.state_dict(),
            "rng": rng,  # one entry per rank
            "world_size": run.dist.world_size,
            "task": run.task.state_dict(),
            "data_cursors": cursors,  # streamed data: every rank's streams
            "data_layout": [run.dist.world_size, run.spec.data.num_workers],
        }
        meta = model_metadata(run.task.kind, run.spec.model_dump_json(), step=step, **run.task.metadata())
        try:
            save_checkpoint(run.out, step, weights, meta, state)
        except StorageError as e:
            failure = str(e)
        else:
            prune_checkpoints(run.out, run.spec.run.keep_last)
    # Also the barrier: nobody runs ahead (or exits on preemption) before the checkpoint is complete, and when the
    # save failed every rank stops with the same line.
    failure = distributed.broadcast(failure)
    if failure is not None:
        raise StorageError(failure)


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
        with naming(self.path), open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (a resumed run rewrites them)."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        text = "".join(line + "\n" for line in keep)
        atomic_write(self.path, lambda tmp: tmp.write_text(text))  # a kill mid-rewrite must not empty the log
