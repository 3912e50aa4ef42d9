"""Optimizer and learning-rate schedule (design.md: math: AdamW, linear warmup then cosine, per step)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from torch import nn

from videomae_cli.config.schema import OptimSpec


@dataclass(frozen=True)
class Schedule:
    """Per-step learning rate: linear warmup from 0 to `peak`, then half-cosine down to `floor` at `total` steps."""

    peak: float
    floor: float
    warmup: int
    total: int

    def lr(self, step: int) -> float:
        """The learning rate used for optimizer step `step` (0-based)."""
        if step < self.warmup:
            return self.peak * step / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return self.floor + 0.5 * (self.peak - self.floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def make_schedule(spec: OptimSpec, global_batch: int, total_steps: int, steps_per_epoch: int) -> Schedule:
    """Scale the per-256 learning rates by the global batch (as official) and resolve the warmup length in steps."""
    scale = global_batch / 256
    if spec.warmup_steps is not None:
        warmup = spec.warmup_steps
    elif spec.warmup_epochs is not None:
        warmup = round(spec.warmup_epochs * steps_per_epoch)
    else:
        warmup = round(0.05 * total_steps)  # the official 40-of-800 epochs
    return Schedule(peak=spec.lr * scale, floor=spec.min_lr * scale, warmup=min(warmup, total_steps), total=total_steps)


def make_optimizer(model: nn.Module, spec: OptimSpec, device: torch.device) -> torch.optim.AdamW:
    """AdamW without weight decay on 1-D parameters and on the model's `no_weight_decay()` names (tokens, positions).

    With `layer_decay` (fine-tuning), timm's layer groups from the model's `group_matcher()` get an `lr_scale` of
    decay^(depth + 1 − layer id): embeddings 0, block i at i + 1, the head last (scale 1) — the official formula.
    """
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    layer_decay = getattr(spec, "layer_decay", None)
    if layer_decay is not None and layer_decay < 1.0:
        groups = param_groups_layer_decay(
            model, weight_decay=spec.weight_decay, no_weight_decay_list=skip, layer_decay=layer_decay
        )
    else:
        groups = param_groups_weight_decay(model, weight_decay=spec.weight_decay, no_weight_decay_list=skip)
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=0.0, betas=spec.betas, eps=spec.eps, fused=fused)
