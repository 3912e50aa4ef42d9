"""Pretraining: `setup()` builds the masked-autoencoder run from a PretrainSpec; the shared loop trains it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videomae_cli.config.schema import DEFAULT_PRETRAIN_STEPS, PretrainSpec, grid_of
from videomae_cli.data.loader import ClipBatch, SampledClips
from videomae_cli.data.sources import pretrain_clips
from videomae_cli.masking import MaskGenerator
from videomae_cli.models.pretrain import PretrainVideoMAE
from videomae_cli.progress import Reporter
from videomae_cli.train.launch import make_run, seed_rank_streams, start_processes
from videomae_cli.train.run import Run


class PretrainTask:
    """Masked reconstruction: the loss is the model's own (masks come with the batch)."""

    kind = "pretrain"

    def __init__(self, spec: PretrainSpec) -> None:
        self.spec = spec

    def loss(self, model: nn.Module, batch: ClipBatch, video: torch.Tensor, step: int, micro: int) -> torch.Tensor:
        return model(video, batch.tokens.to(video.device)).loss

    def after_step(self, run: Run, done: int) -> None:
        pass

    def after_epoch(self, run: Run, done: int, reporter: Reporter) -> dict[str, Any] | None:
        return None

    def describe(self) -> str:
        mask = self.spec.mask
        decoder = f" + running cell {mask.decoder_ratio}" if mask.decoder_ratio else ""
        return f"{mask.type} mask {mask.ratio}{decoder}"

    def metadata(self) -> dict[str, str]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def setup(spec: PretrainSpec, argv: list[str] | None = None) -> Run:
    """Resolve the device, model, optimizer, data and resume point of `spec` (whose run.out must be set)."""
    dist_env, device = start_processes(spec)
    model = PretrainVideoMAE(spec.model, grid_of(spec)).to(device)
    seed_rank_streams(spec, dist_env)
    masks = MaskGenerator(spec.mask, grid_of(spec), spec.run.seed)
    clips = pretrain_clips(spec.data, spec.run.seed)
    dataset = SampledClips(clips, masks, spec.run.seed, spec.data.num_sample)
    backend = getattr(clips, "backend", "synthetic")
    return make_run(
        spec,
        PretrainTask(spec),
        model,
        dataset,
        device,
        default_steps=DEFAULT_PRETRAIN_STEPS,
        argv=argv,
        backend=backend,
        dist_env=dist_env,
    )
