"""`init`: start a classifier from one of our pretrain or classifier checkpoints, and say exactly what happened.

A pretrain checkpoint gives its encoder (`encoder.` stripped; the decoder, the mask token and the encoder's final norm
are dropped, since fc_norm after pooling replaces it). `fc_norm` and `head` start fresh. When the checkpoint saw a
different clip geometry, learned (MAE-ST) position tables are interpolated to the new grid and the fixed sinusoid
table is rebuilt for it; any other shape difference is refused, never silently mismatched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from videomae_cli.checkpoint import DamagedCheckpoint, inspect_weights, load_state, weights_file
from videomae_cli.config.schema import FinetuneSpec
from videomae_cli.errors import ConfigError
from videomae_cli.interop.hub import hub_checkpoint, parse_hub_ref
from videomae_cli.models.classifier import VideoClassifier, classifier_names_from_pretrain
from videomae_cli.models.vit import TokenGrid
from videomae_cli.progress import Reporter

INIT_KINDS = ("pretrain", "classifier")


@dataclass
class InitReport:
    """Which tensors came from the checkpoint, which start fresh, and which checkpoint tensors were not used."""

    checkpoint: str | None
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the console."""
        if self.checkpoint is None:
            return "init: none (training from scratch)"
        parts = [f"init: loaded {len(self.loaded)} tensors from {self.checkpoint}", f"new: {group_names(self.new)}"]
        parts.append(f"ignored: {group_names(self.ignored)}")
        return "; ".join(parts + self.notes)


def group_names(keys: list[str], spell_out: int = 2) -> str:
    """Keys grouped by their first component: `decoder.* (17), encoder.norm.bias, encoder.norm.weight, mask_token`
    (groups of up to `spell_out` keys are listed in full)."""
    if not keys:
        return "none"
    groups: dict[str, list[str]] = {}
    for key in sorted(keys):
        groups.setdefault(key.split(".")[0], []).append(key)
    parts = [
        f"{head}.* ({len(members)})" if len(members) > spell_out else ", ".join(members)
        for head, members in groups.items()
    ]
    return ", ".join(parts)


def checkpoint_file(choice: str) -> Path:
    """A weights file from a file, checkpoint directory or run directory path, or a hub id (interop/hub.py: fetched,
    and converted once, into the cache)."""
    ref = parse_hub_ref(choice)
    if ref is not None:
        return hub_checkpoint(ref, "init").path
    path = weights_file(choice)
    if not path.is_file():
        raise ConfigError(f"init: no such checkpoint: {path}")
    return path


def describe_init(choice: str) -> str:
    """How the init checkpoint is named to the user: its path, or a hub id with its commit and cached copy."""
    ref = parse_hub_ref(choice)
    return hub_checkpoint(ref, "init").describe() if ref is not None else str(checkpoint_file(choice))


def read_init_spec(choice: str) -> tuple[str, dict[str, Any]]:
    """(kind, spec dict) of the `init` checkpoint, after checking the whole file (inspect_weights): fine-tuning from
    a damaged file, or one whose tensors do not fill its own spec's model, would silently start those layers fresh."""
    path = checkpoint_file(choice)
    try:
        info = inspect_weights(path)
    except DamagedCheckpoint as e:
        raise ConfigError(f"init: damaged or not a checkpoint: {path} ({e})") from None
    if info.kind not in INIT_KINDS:
        raise ConfigError(f"init: {path} is a {info.kind!r} checkpoint; fine-tuning starts from pretrain or classifier")
    return info.kind, info.spec_dict


def load_init(model: VideoClassifier, spec: FinetuneSpec, reporter: Reporter) -> dict[str, Any]:
    """Initialise `model` from spec.init (or leave it fresh for "none"); report and return what was loaded."""
    if spec.init is None:
        raise ConfigError("init: give `init=CKPT` to fine-tune a checkpoint, or `init=none` to train from scratch")
    if spec.init == "none":
        report = InitReport(None, new=sorted(model.state_dict()))
    else:
        kind, saved = read_init_spec(spec.init)
        path = checkpoint_file(spec.init)
        try:
            state = load_state(path)
        except DamagedCheckpoint as e:
            raise ConfigError(f"init: damaged or not a checkpoint: {path} ({e})") from None
        report = init_from_state(model, state, kind, saved_grid(saved, model.grid), describe_init(spec.init))
    reporter.notice(report.summary())
    return asdict(report)


def saved_grid(saved: dict[str, Any], current: TokenGrid) -> TokenGrid:
    """The token grid a checkpoint was trained on (its spec's clip geometry)."""
    data, model = saved.get("data", {}), saved.get("model", {})
    return TokenGrid(
        frames=data.get("num_frames", current.frames),
        height=data.get("input_size", current.height),
        width=data.get("input_size", current.width),
        patch=model.get("patch_size", current.patch),
        tubelet=model.get("tubelet_size", current.tubelet),
    )


def init_from_state(
    model: VideoClassifier, state: dict[str, torch.Tensor], kind: str, grid: TokenGrid, source: str
) -> InitReport:
    """Load the usable tensors of a pretrain/classifier state dict into `model` and report the rest."""
    renamed = classifier_names(state, kind)  # classifier name → checkpoint name
    own = model.state_dict()
    report = InitReport(source)
    taken: dict[str, torch.Tensor] = {}
    for name, original in renamed.items():
        if name not in own:
            continue
        value, want = state[original], own[name]
        if value.shape != want.shape:
            value = reshaped(name, value, want, grid, model.grid, report)
            if value is None:
                continue
        taken[name] = value
        report.loaded.append(name)
    report.new = sorted(set(own) - set(taken))
    used = {renamed[name] for name in taken}
    report.ignored = sorted(set(state) - used)
    if grid.num_tokens != model.grid.num_tokens and model.pos_embed.kind == "sincos":
        report.notes.append(f"the fixed sinusoid positions are rebuilt for {describe_grid(model.grid)}")
    model.load_state_dict({**own, **taken})
    return report


def classifier_names(state: dict[str, torch.Tensor], kind: str) -> dict[str, str]:
    """{classifier key: checkpoint key} for the tensors a classifier could use."""
    return {key: key for key in state} if kind == "classifier" else classifier_names_from_pretrain(state)


def reshaped(
    name: str, value: torch.Tensor, want: torch.Tensor, old: TokenGrid, new: TokenGrid, report: InitReport
) -> torch.Tensor | None:
    """A checkpoint tensor whose shape differs: interpolated (learned positions), dropped (a head for another
    number of classes), or refused."""
    if name == "pos_embed.spatial":
        report.notes.append(f"spatial positions interpolated {old.h}×{old.w} → {new.h}×{new.w}")
        return resize_spatial_positions(value, old, new)
    if name == "pos_embed.temporal":
        report.notes.append(f"temporal positions interpolated {old.t} → {new.t}")
        return resize_temporal_positions(value, new.t)
    if name.startswith("head."):
        report.notes.append(f"{name}: the checkpoint has {value.shape[0]} classes, the data {want.shape[0]} (new head)")
        return None
    raise ConfigError(
        f"init: {name} is {tuple(value.shape)} in the checkpoint but the model needs {tuple(want.shape)}; "
        "fine-tune with the checkpoint's model (leave model.* unset)"
    )


def resize_spatial_positions(table: torch.Tensor, old: TokenGrid, new: TokenGrid) -> torch.Tensor:
    """[1, h·w, C] → [1, h'·w', C], bicubic over the spatial grid (as MAE-ST's interpolate_pos_embed)."""
    dim = table.shape[-1]
    grid = table.reshape(1, old.h, old.w, dim).permute(0, 3, 1, 2).float()  # [1, C, h, w]
    grid = F.interpolate(grid, size=(new.h, new.w), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, new.h * new.w, dim).to(table.dtype)  # [1, h'·w', C]


def resize_temporal_positions(table: torch.Tensor, frames: int) -> torch.Tensor:
    """[1, t, C] → [1, t', C], linear over time."""
    line = table.permute(0, 2, 1).float()  # [1, C, t]
    line = F.interpolate(line, size=frames, mode="linear", align_corners=False)
    return line.permute(0, 2, 1).contiguous().to(table.dtype)  # [1, t', C]


def describe_grid(grid: TokenGrid) -> str:
    return f"{grid.t}×{grid.h}×{grid.w} tokens"
