"""Running a model over evaluation views: batched over videos and views, softmax averaged per video.

The model always sees chunks of exactly `chunk_views` views (the last chunk padded with copies of a real view), so
every forward pass has the same shape and a video's result cannot depend on the loader's batch size or on which
videos share its batch: CPU kernels pick their blocking by shape, which changes the last bits of the output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from videomae_cli.checkpoint import atomic_write
from videomae_cli.config.schema import PredictSpec, default_views, parse_views
from videomae_cli.data.loader import BadClip, ClipNormalizer, batches_from
from videomae_cli.data.views import VideoViews, ViewPlan, ViewSource, view_loader
from videomae_cli.errors import ConfigError
from videomae_cli.infer.metrics import average_view_probabilities
from videomae_cli.progress import Reporter
from videomae_cli.runtime import autocast_for, pick_device

DEFAULT_CHUNK_VIEWS = 16


@dataclass
class ViewPredictions:
    """Per-video results in dataset order, skipping videos that failed to decode."""

    probs: np.ndarray  # float64 [N, K], softmax averaged over each video's views
    labels: np.ndarray  # int64 [N]
    indices: list[int]  # dataset index of each row
    failures: list[BadClip] = field(default_factory=list)
    names: list[str | None] = field(default_factory=list)  # each row's video, where the source names it (shards)

    def video(self, row: int, source: ViewSource) -> str:
        """What row `row`'s video is called: its own name, else the source's description of its index."""
        name = self.names[row] if self.names else None
        return name if name is not None else source.describe(self.indices[row])


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

    probs, labels, indices, names, failures = [], [], [], [], []
    with torch.no_grad(), batches_from(view_loader(views, batch_size, num_workers)) as batches:
        for batch in batches:
            good = [s for s in batch if s.views is not None]
            failures += [s.failure for s in batch if s.failure is not None]
            if good:
                logits = run_in_chunks(forward, torch.cat([s.views for s in good]), chunk_views)
                probs.append(average_view_probabilities(logits, num_views).cpu().numpy())
                labels += [s.label for s in good]
                indices += [s.index for s in good]
                names += [s.name for s in good]
            if on_batch is not None:
                on_batch(len(batch))
    width = probs[0].shape[1] if probs else 0
    stacked = np.concatenate(probs) if probs else np.zeros((0, width))
    order = np.argsort(np.asarray(indices, dtype=np.int64), kind="stable")  # shards' workers interleave their shards
    return ViewPredictions(
        stacked[order],
        np.asarray(labels, dtype=np.int64)[order],
        [indices[i] for i in order],
        failures,
        [names[i] for i in order],
    )


@dataclass
class Prediction:
    """One video's top classes: (class index, name, averaged probability), best first."""

    video: str
    top: list[tuple[int, str, float]]

    def as_json(self) -> dict[str, object]:
        return {"video": self.video, "top": [{"index": i, "class": name, "prob": p} for i, name, p in self.top]}


def top_classes(probs: np.ndarray, classes: list[str], k: int) -> list[tuple[int, str, float]]:
    """The k most probable classes of one probability row, best first (ties by index)."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), classes[int(i)], float(probs[i])) for i in order]


def predictions(result: ViewPredictions, source: ViewSource, classes: list[str], k: int) -> list[Prediction]:
    """Per-video top-k predictions, in input order."""
    return [Prediction(result.video(row, source), top_classes(p, classes, k)) for row, p in enumerate(result.probs)]


def predict(spec: PredictSpec, reporter: Reporter) -> tuple[list[Prediction], list[BadClip]]:
    """Top-k classes of every input video under a classifier checkpoint (multi-view, as `evaluate`), and the inputs
    that could not be read. Writes spec.json_path (JSON lines: predictions, then errors) when given."""
    from videomae_cli.checkpoint import load_checkpoint
    from videomae_cli.data.sources import collect_inputs, cut_views, input_source

    loaded = load_checkpoint(spec.checkpoint)
    if loaded.kind != "classifier":
        raise ConfigError(
            f"checkpoint: {spec.checkpoint} is a pretrain checkpoint; predict needs a classifier "
            "(videomae embed extracts features from pretrain checkpoints)"
        )
    inputs = collect_inputs(spec.inputs)
    device = pick_device(spec.device, field="device")
    model, trained = loaded.model, loaded.spec
    clips, crops = parse_views(spec.views or default_views(trained.data))
    source = input_source(inputs, trained.data, trained.run.seed)
    views = cut_views(source, ViewPlan.for_data(trained.data, clips, crops))
    reporter.start(
        "predict",
        len(views),
        0,
        f"predict with {spec.checkpoint} | {len(views)} videos | {clips}x{crops} views | {device}",
    )
    model = model.to(device)
    result = predict_views(
        model,
        views,
        spec.batch_size,
        spec.num_workers,
        device,
        spec.precision,
        spec.chunk_views,
        on_batch=reporter.advance,
    )
    found = predictions(result, source, loaded.classes, min(spec.top_k, len(loaded.classes)))
    failures = inputs.missing + result.failures
    if spec.json_path is not None:
        lines = [json.dumps(p.as_json()) for p in found] + [
            json.dumps({"video": b.path, "error": b.reason}) for b in failures
        ]
        atomic_write(spec.json_path, lambda tmp: tmp.write_text("".join(line + "\n" for line in lines)))
    return found, failures
