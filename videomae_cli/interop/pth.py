"""Reading checkpoints from other codebases safely: `.pth` files via `torch.load(weights_only=True)` only.

Checkpoints come from the internet, and a pickle can run any code while it loads. The weights-only unpickler builds
tensors, containers and primitives and refuses every other global before anything runs. We allow two harmless
extras that the official training scripts save beside the weights: `argparse.Namespace` (their `args`, which tells
us the clip geometry and masking a model was trained with) and numpy scalars (metrics such as `max_accuracy`).
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from videomae_cli.errors import ConfigError

# Where the weights sit inside the saved dict, most specific first (official: model; DeepSpeed: module;
# MAE-ST releases: model_state; Lightning and others: state_dict).
WEIGHT_KEYS = ("model", "module", "model_state", "state_dict")
# Wrappers that prefix every key: DDP/DeepSpeed, torch.compile, detection/segmentation-style backbones.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "backbone.")


def _harmless_globals() -> list[Any]:
    """Globals a weights-only load may build besides tensors: an args Namespace and numpy scalars/dtypes."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 moved np.core to np._core
    scalar = core.multiarray.scalar
    dtypes = [type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    return [argparse.Namespace, scalar, np.dtype, *dtypes]


def read_pth(path: Path) -> Any:
    """The object in a torch-saved file, loaded without arbitrary unpickling.

    A file that needs any other global (a pickled object, e.g. a malicious `__reduce__` payload) is refused with a
    ConfigError naming the globals; the payload never runs.
    """
    try:
        with torch.serialization.safe_globals(_harmless_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        names = ", ".join(_unsafe_globals(path))
        if not names:  # not a torch.save archive (garbage, or a legacy pickle we will not unpickle either)
            raise ConfigError(f"{path}: not a readable PyTorch checkpoint (not a torch.save archive)") from None
        raise ConfigError(
            f"{path}: refused: loading it would unpickle arbitrary objects ({names}); checkpoints are read with "
            "torch.load(weights_only=True) only. If you trust the file, re-save just its weights: "
            "torch.save(torch.load(f, weights_only=False)['model'], 'weights.pth')"
        ) from None
    except (RuntimeError, OSError, EOFError) as e:
        raise ConfigError(f"{path}: not a readable PyTorch checkpoint ({e})") from None


def _unsafe_globals(path: Path) -> list[str]:
    """The globals the file would import, read from the pickle opcodes without executing them."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a damaged archive: the caller's message is enough
        return []


def unwrap_weights(obj: Any, path: Path) -> tuple[dict[str, Tensor], dict[str, Any], str]:
    """(state dict, training args as a dict (empty if none), where the weights were) from a loaded checkpoint."""
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a dict of weights, found {type(obj).__name__}")
    args = obj.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else args if isinstance(args, dict) else {}
    for key in WEIGHT_KEYS:
        if isinstance(obj.get(key), dict) and _is_state_dict(obj[key]):
            return obj[key], args, f"['{key}']"
    if _is_state_dict(obj):
        return obj, args, "the top level"
    raise ConfigError(f"{path}: no state dict found (looked under {', '.join(WEIGHT_KEYS)} and the top level)")


def _is_state_dict(obj: dict[str, Any]) -> bool:
    tensors = [v for v in obj.values() if isinstance(v, Tensor)]
    return bool(tensors) and len(tensors) >= len(obj) // 2


def strip_wrappers(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Remove wrapper prefixes (`module.`, `_orig_mod.`, `backbone.`, possibly nested) shared by every key."""
    stripped = []
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if state_dict and all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
                stripped.append(prefix)
                changed = True
    return state_dict, stripped
