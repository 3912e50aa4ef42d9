"""The teacher target (MVD, Wang et al. 2023; UMT / SALT): a frozen model's token features, predicted by the
student's decoder at the tokens it reconstructs.

The teacher reads the full clip (every token, no mask), without gradients, in bf16 where the device has it. Its
target is the output of block `layer` (default: the last) for every patch token, normalised per token by a
LayerNorm without affine parameters, so its scale is the same whatever the teacher. The teacher is held outside the
student's module tree: it is not in the student's state dict, not optimised, and not wrapped by DDP or FSDP.

Student and teacher must cut the clip into the same tokens (same patch and tubelet size); a teacher trained on
another clip size is rebuilt for the student's (its sinusoid positions are a function of the grid; learned position
tables are refused).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from videomae_cli.checkpoint import LoadedCheckpoint, load_checkpoint, weights_file
from videomae_cli.config.schema import PretrainSpec, grid_of
from videomae_cli.errors import ConfigError
from videomae_cli.models.factory import build_model
from videomae_cli.models.vit import Encoder, TokenGrid, all_token_indices, patchify
from videomae_cli.runtime import resolve_precision

# Ways to turn a teacher reference into a local checkpoint besides a path: interop/hub.py registers hub ids (the CLI,
# the Python API and the training setup register it before anything loads), so this layer needs no network code.
_RESOLVERS: list[Callable[[str, str], Path | None]] = []


class FrozenTeacher:
    """A frozen encoder's normalised token features: `teacher(video)` [B, 3, T, H, W] → [B, N, C] float32."""

    def __init__(self, encoder: Encoder, layer: int | None = None, autocast: bool = False) -> None:
        depth = len(encoder.blocks)
        self.layer = depth if layer is None else layer
        if not 1 <= self.layer <= depth:
            raise ValueError(f"model.teacher_layer: the teacher has {depth} blocks, got {self.layer}")
        self.encoder = encoder.eval().requires_grad_(False)
        self.autocast = autocast
        self.dim = encoder.patch_embed.proj.out_channels

    def to(self, device: torch.device | str) -> FrozenTeacher:
        self.encoder.to(device)
        return self

    @torch.no_grad()
    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        grid = self.encoder.grid
        patches = patchify(video, grid)  # [B, N, P]
        idx = all_token_indices(video.shape[0], grid.num_tokens, video.device)
        with torch.autocast(video.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            x = self.encoder.embed(patches, idx)  # [B, (1+)N, C]
            for block in self.encoder.blocks[: self.layer]:
                x = block(x)
        x = self.encoder.patch_tokens(x).float()  # [B, N, C]
        return F.layer_norm(x, (x.shape[-1],))


def check_teacher_grid(teacher: TokenGrid, student: TokenGrid) -> None:
    """Refuse a teacher whose tokens are not the student's: ValueError naming model.teacher."""
    if (teacher.patch, teacher.tubelet) != (student.patch, student.tubelet):
        raise ValueError(
            f"model.teacher: its tokens are {teacher.tubelet} frames × {teacher.patch}² pixels, the student's "
            f"{student.tubelet} × {student.patch}²: their tokens do not correspond"
        )


def register_resolver(resolve: Callable[[str, str], Path | None]) -> None:
    """Add `resolve(reference, field)` → a local checkpoint file, or None when `reference` is not its kind."""
    if resolve not in _RESOLVERS:
        _RESOLVERS.append(resolve)


def reference_file(reference: str, field: str) -> Path:
    """The weights file a reference names: through a registered resolver (a hub id), else as a path; ConfigError
    naming `field` when there is none."""
    for resolve in _RESOLVERS:
        found = resolve(reference, field)
        if found is not None:
            return found
    file = weights_file(reference)
    if not file.is_file():
        raise ConfigError(f"{field}: no such checkpoint: {file}")
    return file


def with_teacher(loaded: LoadedCheckpoint, device: str | torch.device) -> LoadedCheckpoint:
    """`loaded` with its teacher attached when it is a teacher-target pretrain model (its loss needs the teacher's
    features: evaluate, visualize-mask and the Python API call this)."""
    if loaded.kind == "pretrain" and loaded.spec.model.target == "teacher":
        loaded.model.teacher = load_teacher(loaded.spec, device)
    return loaded


def load_teacher(spec: PretrainSpec, device: str | torch.device) -> FrozenTeacher:
    """The frozen teacher of a teacher-target spec, on `device`, cutting the spec's clips into the same tokens: a
    sinusoid-position teacher trained on another clip size is rebuilt for this one. Only the teacher's encoder is
    used (a teacher with a teacher of its own needs none)."""
    m = spec.model
    loaded = load_checkpoint(reference_file(m.teacher, "model.teacher"), "cpu")
    student = grid_of(spec)
    try:
        check_teacher_grid(grid_of(loaded.spec), student)
        model = loaded.model if grid_of(loaded.spec) == student else _rebuilt_for(loaded, spec)
        encoder = model.encoder if loaded.kind == "pretrain" else model
        in_bf16 = resolve_precision(spec.run.precision, torch.device(device))[0] == "bf16"  # the run's precision
        teacher = FrozenTeacher(encoder, m.teacher_layer, autocast=in_bf16)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return teacher.to(device)


def _rebuilt_for(loaded: LoadedCheckpoint, spec: PretrainSpec) -> nn.Module:
    """The teacher's model on the student's clip size: only where its positions are a function of the grid."""
    if loaded.spec.model.pos_embed != "sincos":
        raise ValueError(
            f"model.teacher: it was trained on {grid_of(loaded.spec).frames} × {grid_of(loaded.spec).height}² clips "
            "with learned position tables, which do not extend to the student's clips: use the same data.num_frames "
            "and data.input_size"
        )
    data = {"num_frames": spec.data.num_frames, "input_size": spec.data.input_size}
    rebuilt_spec = loaded.spec.model_copy(update={"data": loaded.spec.data.model_copy(update=data)})
    model = build_model(rebuilt_spec, loaded.classes)
    model.load_state_dict(loaded.model.state_dict())
    return model.eval()
