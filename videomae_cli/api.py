"""The small Python API: load a checkpoint as a ready-to-use model."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from videomae_cli.engine.checkpoint import read_metadata, read_spec_json, weights_file
from videomae_cli.errors import ConfigError
from videomae_cli.models.classifier import VideoClassifier
from videomae_cli.models.pretrain import PretrainVideoMAE
from videomae_cli.specs import FinetuneSpec, PretrainSpec, grid_of

KIND_SPECS = {"pretrain": PretrainSpec, "classifier": FinetuneSpec}


def load(path: str | Path, device: str = "cpu") -> nn.Module:
    """Load one of our checkpoints (a .safetensors file, a checkpoint dir or a run dir) in eval mode, with `.spec`.

    A pretrain checkpoint gives a PretrainVideoMAE: `model(video, mask)` → `.loss`, `.pred` (design.md: run directory).
    A classifier checkpoint gives a VideoClassifier: `model(video)` → logits [B, K], with `.classes` (the names).
    """
    path = weights_file(path)
    kind, spec_dict = read_spec_json(path)
    if kind not in KIND_SPECS:
        raise ValueError(f"{path}: checkpoints of kind {kind!r} are not supported by this version")
    spec = KIND_SPECS[kind].model_validate(spec_dict)
    classes = json.loads(read_metadata(path)["videomae.classes"]) if kind == "classifier" else None
    model = build_model(spec, classes)
    model.load_state_dict(load_file(str(path), device=device))
    return model.to(device).eval()


def load_checkpoint(path: Path) -> nn.Module:
    """Our checkpoint as a model, or a one-line ConfigError naming what is wrong with the file."""
    file = weights_file(path)
    if not file.is_file():
        raise ConfigError(f"checkpoint: no such file: {file}")
    try:
        return load(file, device="cpu")
    except (ValueError, OSError, SafetensorError) as e:
        raise ConfigError(f"checkpoint: cannot load {file}: {e}") from None


def build_model(spec: PretrainSpec | FinetuneSpec, classes: list[str] | None = None) -> nn.Module:
    """A freshly initialised model for a spec, with `.spec` (and `.classes` for a classifier)."""
    model: nn.Module
    if isinstance(spec, PretrainSpec):
        model = PretrainVideoMAE(spec.model, grid_of(spec))
    else:
        if classes is None:
            raise ValueError("a classifier needs its class names")
        m = spec.model
        model = VideoClassifier(m, grid_of(spec), len(classes), m.head_init_scale, pool=m.pool)
        model.classes = classes
    model.spec = spec
    return model
