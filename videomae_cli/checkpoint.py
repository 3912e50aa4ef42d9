"""Checkpoints (design.md: run directory): self-describing safetensors + a resume-only train_state.pt, and loading
them back as models.

Every file is written to a temporary name and renamed into place, and a checkpoint directory becomes visible only
once complete, so an interrupted save (even kill -9) leaves the previous checkpoint intact and loadable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from videomae_cli.config.schema import FinetuneSpec, PretrainSpec
from videomae_cli.errors import ConfigError
from videomae_cli.models.factory import build_model
from videomae_cli.version import __version__

CHECKPOINTS = "checkpoints"
MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.pt"
_STEP_DIR = re.compile(r"^step-(\d{8})$")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def model_metadata(kind: str, spec_json: str, **extra: Any) -> dict[str, str]:
    """The safetensors metadata that makes a weights file self-describing."""
    meta = {"format": "pt", "videomae.kind": kind, "videomae.spec": spec_json, "videomae.version": __version__}
    meta.update({f"videomae.{k}": str(v) for k, v in extra.items()})
    return meta


def save_weights(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Atomically write `state_dict` (made contiguous, detached, on CPU) as safetensors with `metadata`."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def weights_file(path: str | Path) -> Path:
    """The weights file behind a path: the file itself, or MODEL_FILE in a run or checkpoint directory."""
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() else path


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file."""
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def read_spec_json(path: Path) -> tuple[str, dict[str, Any]]:
    """(kind, spec dict) stored in one of our weights files."""
    meta = read_metadata(path)
    if "videomae.spec" not in meta:
        raise ValueError(f"{path} is not a videomae-cli checkpoint (no videomae.spec metadata)")
    return meta.get("videomae.kind", "pretrain"), json.loads(meta["videomae.spec"])


def save_checkpoint(
    run_dir: Path, step: int, state_dict: dict[str, torch.Tensor], metadata: dict[str, str], train_state: dict[str, Any]
) -> Path:
    """Write checkpoints/step-NNNNNNNN/{model.safetensors, train_state.pt} and refresh RUN/model.safetensors."""
    final = run_dir / CHECKPOINTS / f"step-{step:08d}"
    staging = run_dir / CHECKPOINTS / f".step-{step:08d}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    save_weights(staging / MODEL_FILE, state_dict, metadata)
    _test_delay()
    atomic_write(staging / STATE_FILE, lambda tmp: torch.save(train_state, tmp))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    _publish_latest(final / MODEL_FILE, run_dir / MODEL_FILE)
    return final


def _test_delay() -> None:
    """A test hook: VIDEOMAE_TEST_SAVE_DELAY seconds of pause mid-save, so tests can kill -9 a writer in the act."""
    delay = float(os.environ.get("VIDEOMAE_TEST_SAVE_DELAY", "0") or 0)
    if delay > 0:
        time.sleep(delay)


def _publish_latest(source: Path, target: Path) -> None:
    # A hard link costs nothing; fall back to a copy where links are not allowed. Either way the rename is atomic.
    def link_or_copy(tmp: Path) -> None:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)

    atomic_write(target, link_or_copy)


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first, as (step, dir)."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _STEP_DIR.match(entry.name)
        if match and (entry / MODEL_FILE).is_file() and (entry / STATE_FILE).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def prune_checkpoints(run_dir: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints."""
    for _, path in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(path, ignore_errors=True)


def load_train_state(checkpoint_dir: Path) -> dict[str, Any]:
    """The resume state of a checkpoint, read without unpickling arbitrary objects."""
    return torch.load(checkpoint_dir / STATE_FILE, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------------------------------------------------------
# Loading our weights files back as models

KIND_SPECS: dict[str, type[PretrainSpec] | type[FinetuneSpec]] = {"pretrain": PretrainSpec, "classifier": FinetuneSpec}
CheckpointKind = Literal["pretrain", "classifier"]


@dataclass(frozen=True)
class LoadedCheckpoint:
    """One of our checkpoints, loaded: the model in eval mode, its kind, the spec it was trained with and, for a
    classifier, its class names (index = logit)."""

    model: nn.Module
    kind: CheckpointKind
    spec: PretrainSpec | FinetuneSpec
    classes: list[str] | None
    path: Path


def load_checkpoint(path: str | Path, device: str = "cpu") -> LoadedCheckpoint:
    """Load a .safetensors file, a checkpoint dir or a run dir we wrote; a ConfigError (one line) names what is
    wrong with the file. A pretrain checkpoint gives a PretrainVideoMAE (`model(video, mask)` → `.loss`, `.pred`),
    a classifier checkpoint a VideoClassifier (`model(video)` → logits [B, K])."""
    file = weights_file(path)
    if not file.is_file():
        raise ConfigError(f"checkpoint: no such file: {file}")
    try:
        kind, spec_dict = read_spec_json(file)
        if kind not in KIND_SPECS:
            raise ValueError(f"{file}: checkpoints of kind {kind!r} are not supported by this version")
        spec = KIND_SPECS[kind].model_validate(spec_dict)
        classes = json.loads(read_metadata(file)["videomae.classes"]) if kind == "classifier" else None
        model = build_model(spec, classes)
        model.load_state_dict(load_file(str(file), device=device))
    except (ValueError, OSError, SafetensorError) as e:
        raise ConfigError(f"checkpoint: cannot load {file}: {e}") from None
    return LoadedCheckpoint(model.to(device).eval(), kind, spec, classes, file)
