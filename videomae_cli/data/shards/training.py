"""Shards as training data: a stream whose samples are decoded like manifest videos (the same clip sampling, crops,
augmentation and masks, keyed by the sample's id), and the DataLoader that batches it for one rank."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch.utils.data import DataLoader

from videomae_cli.config.schema import DataSpec
from videomae_cli.data.clips import VideoClips
from videomae_cli.data.loader import ClipTransform, Sample, batching, sample_masks
from videomae_cli.data.manifest import ManifestEntry
from videomae_cli.data.shards.locate import locate_shards
from videomae_cli.data.shards.stream import Cursor, RawSample, ShardStream, video_of
from videomae_cli.masking import MaskGenerator


def entry_of(raw: RawSample) -> ManifestEntry:
    """A shard sample as a manifest entry: its video in memory, label and frame window from KEY.json."""
    start, total = raw.meta.get("window", (0, -1))
    return ManifestEntry(video_of(raw), int(raw.meta.get("label", 0)), int(start), int(total))


@dataclass
class ShardDecoder:
    """Decodes a shard sample into `num_sample` clips (and their masks) as `clips` decodes a manifest row."""

    clips: VideoClips
    masks: MaskGenerator | None
    num_sample: int = 1

    def __call__(self, raw: RawSample, epoch: int) -> Sample:
        clips, label = self.clips.load_entry(entry_of(raw), epoch, raw.id, self.num_sample)
        return Sample(clips, label, sample_masks(self.masks, epoch, raw.id, clips), [])


def training_stream(
    data: DataSpec,
    seed: int,
    masks: MaskGenerator | None,
    transform: ClipTransform | None = None,
    purpose: Literal["pretrain", "finetune"] = "pretrain",
) -> ShardStream:
    """The training split of the shards `data.source` names, decoded for pretraining (or, with `transform`, for
    fine-tuning)."""
    shards, _ = locate_shards(data.source, "train", data.shard_index)
    decoder = ShardDecoder(VideoClips([], data, seed, transform, purpose), masks, data.num_sample)
    return ShardStream(shards, decoder, seed, shuffle_buffer=data.shuffle_buffer)


def shard_loader(
    stream: ShardStream,
    batch_size: int,
    num_workers: int,
    pin_memory: bool,
    rank: int = 0,
    world: int = 1,
    prefetch: int = 4,
    cursors: dict[int, tuple[int, int]] | None = None,
    start_epoch: int = 0,
    batches_done: int = 0,
) -> DataLoader:
    """An endless loader of ClipBatch for one rank, each stream resuming at its cursor (`cursors`: stream →
    (epoch, position), from the checkpoint; streams without one start at `start_epoch`), `batches_done` batches
    into the run."""
    stream.rank, stream.world, stream.start_epoch = rank, world, start_epoch
    stream.cursors = {number: Cursor(*where) for number, where in (cursors or {}).items()}
    stream.worker_offset = batches_done % max(num_workers, 1)
    return DataLoader(stream, **batching(batch_size, num_workers, pin_memory, prefetch))
