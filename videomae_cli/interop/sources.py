"""Reading SRC for `videomae convert`: which file holds the weights, in which layout, with what beside them.

Sources: official VideoMAE V1/V2 `.pth` (our native names), MAE-ST `.pth`, HF transformers directories (or a
`model.safetensors` / `.pth` with `config.json` beside it), each possibly wrapped (`module.`, `_orig_mod.`, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from videomae_cli.checkpoint import DamagedCheckpoint, read_header
from videomae_cli.errors import ConfigError
from videomae_cli.interop import maest
from videomae_cli.interop.pth import read_pth, strip_wrappers, unwrap_weights

LAYOUTS = {
    "official": "official VideoMAE V1/V2",
    "maest": "MAE-ST",
    "hf": "HF transformers VideoMAE",
}
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HF_SHARD_INDEX = "model.safetensors.index.json"


@dataclass
class Source:
    """Weights read from SRC, before any renaming."""

    path: Path
    layout: str
    state_dict: dict[str, Tensor]
    args: dict[str, Any] = field(default_factory=dict)  # the training args saved beside official weights
    config: dict[str, Any] | None = None  # HF config.json
    steps: list[str] = field(default_factory=list)  # how the weights were reached ("under ['model']", ...)


def read_source(path: Path) -> Source:
    """The weights behind SRC (file or HF directory), with the layout they are in."""
    if not path.exists():
        raise ConfigError(f"SRC: no such file or directory: {path}")
    if path.is_dir():
        return _read_hf_dir(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    obj = read_pth(path)
    state_dict, args, where = unwrap_weights(obj, path)
    state_dict, stripped = strip_wrappers(state_dict)
    steps = [f"weights under {where}", *(f"stripped the '{p}' prefix" for p in stripped)]
    config = _config_beside(path) if _layout_of(state_dict, path) == "hf" else None
    return Source(path, _layout_of(state_dict, path), state_dict, args, config, steps)


def _read_hf_dir(path: Path) -> Source:
    config = _config_beside(path / "config.json")
    if config is None:
        raise ConfigError(f"SRC: {path} has no config.json (expected an HF transformers model directory)")
    if (path / HF_SHARD_INDEX).is_file():
        index = json.loads((path / HF_SHARD_INDEX).read_text())
        state_dict: dict[str, Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state_dict.update(_load_safetensors(path / shard))
        return Source(path, "hf", state_dict, config=config, steps=[f"{HF_SHARD_INDEX} shards"])
    for name in HF_WEIGHT_FILES:
        if (path / name).is_file():
            weights = path / name
            loaded = _load_safetensors(weights) if name.endswith(".safetensors") else read_pth(weights)
            state_dict, _, _ = unwrap_weights(loaded, weights)
            return Source(path, "hf", state_dict, config=config, steps=[f"weights from {name}"])
    raise ConfigError(f"SRC: {path} has none of {', '.join(HF_WEIGHT_FILES)}")


def is_our_checkpoint(path: Path) -> bool:
    """Whether a safetensors file carries our spec metadata; DamagedCheckpoint, with the reason in words, when it is
    not a sound safetensors file (our own header reader: a truncated copy of one of ours, say)."""
    return "videomae.spec" in (read_header(path).get("__metadata__") or {})


def _read_safetensors(path: Path) -> Source:
    try:
        ours = is_our_checkpoint(path)
    except DamagedCheckpoint as e:
        raise ConfigError(f"SRC: damaged or not a safetensors file: {path} ({e})") from None
    if ours:
        raise ConfigError(f"SRC: {path} is already a videomae-cli checkpoint; nothing to convert")
    state_dict, stripped = strip_wrappers(_load_safetensors(path))
    layout = _layout_of(state_dict, path)
    config = _config_beside(path) if layout == "hf" else None
    return Source(path, layout, state_dict, config=config, steps=[f"stripped the '{p}' prefix" for p in stripped])


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"SRC: {path} is not a readable safetensors file ({e})") from None


def _config_beside(path: Path) -> dict[str, Any] | None:
    """config.json at `path` (or beside a weights file), or None."""
    file = path if path.name == "config.json" else path.parent / "config.json"
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except ValueError as e:
        raise ConfigError(f"SRC: {file} is not valid JSON ({e})") from None


def _layout_of(state_dict: dict[str, Tensor], path: Path) -> str:
    if any(k.startswith(("videomae.", "embeddings.patch_embeddings.")) for k in state_dict):
        return "hf"
    if maest.is_maest(state_dict):
        return "maest"
    if any(k.endswith("attn.qkv.weight") for k in state_dict):
        return "official"
    shown = ", ".join(list(state_dict)[:4])
    raise ConfigError(f"SRC: {path}: not a VideoMAE, MAE-ST or HF VideoMAE checkpoint (keys: {shown}, ...)")
