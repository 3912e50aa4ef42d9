"""Running a model over evaluation views: batched over videos and views, softmax averaged per video.

The model always sees chunks of exactly `chunk_views` views (the last chunk padded with copies of a real view), so
every forward pass has the same shape and a video's result cannot depend on the loader's batch size or on which
videos share its batch: CPU kernels pick their blocking by shape, which changes the last bits of the output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from videomae_cli.data.loader import BadClip, ClipNormalizer
from videomae_cli.data.views import VideoViews, view_loader
from videomae_cli.engine.loop import autocast_for
from videomae_cli.engine.metrics import average_view_probabilities

DEFAULT_CHUNK_VIEWS = 16


@dataclass
class ViewPredictions:
    """Per-video results in dataset order, skipping videos that failed to decode."""

    probs: np.ndarray  # float64 [N, K], softmax averaged over each video's views
    labels: np.ndarray  # int64 [N]
    indices: list[int]  # dataset index of each row
    failures: list[BadClip] = field(default_factory=list)


def run_in_chunks(forward: Callable[[torch.Tensor], torch.Tensor], views: torch.Tensor, chunk: int) -> torch.Tensor:
    """forward() over `views` [V, ...] in chunks of exactly `chunk` rows (the last padded), outputs concatenated."""
    outputs = []
    for start in range(0, views.shape[0], chunk):
        part = views[start : start + chunk]
        real = part.shape[0]
        if real < chunk:
            pad = part[:1].expand(chunk - real, *part.shape[1:])
            part = torch.cat([part, pad])
        outputs.append(forward(part)[:real])
    return torch.cat(outputs)


def predict_views(
    model: nn.Module,
    views: VideoViews,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    precision: str = "fp32",
    chunk_views: int = DEFAULT_CHUNK_VIEWS,
    on_batch: Callable[[int], None] | None = None,
) -> ViewPredictions:
    """Class probabilities of every video of `views` under `model` (logits out), views merged by mean softmax."""
    normalize = ClipNormalizer(device)
    num_views = views.plan.num_views

    def forward(clips: torch.Tensor) -> torch.Tensor:
        with autocast_for(device, precision):
            return model(normalize(clips)).float()

    probs, labels, indices, failures = [], [], [], []
    with torch.no_grad():
        for batch in view_loader(views, batch_size, num_workers):
            good = [s for s in batch if s.views is not None]
            failures += [s.failure for s in batch if s.failure is not None]
            if good:
                logits = run_in_chunks(forward, torch.cat([s.views for s in good]), chunk_views)
                probs.append(average_view_probabilities(logits, num_views).cpu().numpy())
                labels += [s.label for s in good]
                indices += [s.index for s in good]
            if on_batch is not None:
                on_batch(len(batch))
    width = probs[0].shape[1] if probs else 0
    stacked = np.concatenate(probs) if probs else np.zeros((0, width))
    return ViewPredictions(stacked, np.asarray(labels, dtype=np.int64), indices, failures)
