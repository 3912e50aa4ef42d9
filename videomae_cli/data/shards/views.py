"""Evaluation views of the samples in shards: every sample once, in the index's order, each cut into the views of a
ViewPlan exactly as a manifest video is (data/views.py). For `evaluate`, `predict`, `embed` and fine-tuning's
validation.

Loader workers read whole shards, worker w the shards w, w + W, ...; the loader hands out their batches in turn, so
batches come in shard order when each shard fills whole batches, and every ViewSample carries its sample id and name
for the rest (consumers that write per-video results order them by id). A shard that cannot be read is one
ViewSample without views whose failure counts the samples lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import IterableDataset, get_worker_info

from videomae_cli.data.clips import VideoClips
from videomae_cli.data.loader import BadClip
from videomae_cli.data.shards.index import Shard
from videomae_cli.data.shards.stream import RawSample, read_shard
from videomae_cli.data.shards.training import entry_of
from videomae_cli.data.video import VideoError
from videomae_cli.data.views import ViewPlan, ViewSample


@dataclass
class ShardViews(IterableDataset):
    """Every view of every sample of `shards`, each sample once, decoded by `clips` (its decoder settings)."""

    shards: list[Shard]
    plan: ViewPlan
    clips: VideoClips

    def __len__(self) -> int:
        return sum(shard.samples for shard in self.shards)

    def __iter__(self) -> Iterator[ViewSample]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for shard in self.shards[worker::workers]:
            failures: list[BadClip] = []
            for raw in read_shard(shard, failures):
                yield self.views_of(raw)
            for bad in failures:  # a damaged shard, or samples without a video
                yield ViewSample(-1, None, -1, bad, name=bad.path)

    def views_of(self, raw: RawSample) -> ViewSample:
        """The sample's views, or its failure."""
        entry = entry_of(raw)
        try:
            clips = self.clips.decode_entry(entry, self.plan.frame_indices)
            views = [view for clip in clips for view in self.plan.spatial_views(clip)]
        except (VideoError, ValueError) as e:  # ValueError: frames smaller than the crop after a bad resize
            reason = str(e).removeprefix(f"{raw.name}: ")
            return ViewSample(raw.id, None, entry.label, BadClip(raw.name, reason), name=raw.name)
        return ViewSample(raw.id, torch.stack(views), entry.label, name=raw.name)


@dataclass
class ShardViewSource:
    """A split's shards with the decoder settings to read them: what `ShardViews` cuts for a given plan."""

    shards: list[Shard]
    clips: VideoClips

    def __len__(self) -> int:
        return sum(shard.samples for shard in self.shards)

    def views(self, plan: ViewPlan) -> ShardViews:
        return ShardViews(self.shards, plan, self.clips)
