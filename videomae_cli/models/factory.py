"""A freshly initialised model for a run spec: the one place that maps a spec's kind to a model class."""

from __future__ import annotations

from torch import nn

from videomae_cli.config.schema import FinetuneSpec, PretrainSpec, grid_of
from videomae_cli.models.classifier import VideoClassifier
from videomae_cli.models.pretrain import PretrainVideoMAE


def build_model(spec: PretrainSpec | FinetuneSpec, classes: list[str] | None = None) -> nn.Module:
    """A PretrainVideoMAE for a pretrain spec, a VideoClassifier (with `classes`, its names) for a fine-tune spec;
    either keeps `spec` as `.spec`."""
    if isinstance(spec, PretrainSpec):
        return PretrainVideoMAE(spec.model, grid_of(spec), run_spec=spec)
    if classes is None:
        raise ValueError("a classifier needs its class names")
    m = spec.model
    return VideoClassifier(
        m, grid_of(spec), len(classes), m.head_init_scale, pool=m.pool, run_spec=spec, classes=list(classes)
    )
