"""Training samples streamed from WebDataset tar shards, split over ranks and loader workers, resumable exactly.

Each (rank, worker) pair is one stream. Per epoch, the shards are put in a seeded order and dealt out to the
streams, each shard to the stream with the fewest samples so far: no sample is read twice in an epoch and none is
left out, and every stream reads whole shards, front to back (what object stores and parallel file systems serve
fastest). A stream passes its samples through a seeded shuffle buffer; streams are endless (epoch after epoch), so
every rank always has a next batch.

A stream's output is a pure function of (seed, epoch, stream, world layout): the sample at position p of epoch e is
always the same. Every sample carries its stream's cursor (epoch, position after it); the training loop keeps the
last cursor of each stream it trained on, and a resumed run restarts each stream there, reading (not decoding) the
samples before it again so that the shuffle buffer holds what it held. That is exact as long as the run resumes with
the same number of ranks and workers.

Per-sample randomness (clip position, crop, mask) is keyed by the sample's id, its position in the index (shard by
shard, in index order), as it is keyed by the manifest row for files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from videomae_cli.data.loader import BadClip, Sample
from videomae_cli.data.shards.index import Shard
from videomae_cli.data.shards.tar import tar_members
from videomae_cli.data.video import VideoBytes, VideoError
from videomae_cli.errors import DataError
from videomae_cli.seeding import Stream, sample_rng


@dataclass(frozen=True)
class RawSample:
    """One sample as read from a shard, not decoded: its id, key, video bytes and KEY.json."""

    id: int
    name: str  # URL:KEY.EXT, for messages
    video: bytes
    meta: dict


@dataclass
class Cursor:
    """Where a stream is: the next position to read in `epoch`."""

    epoch: int
    position: int


def deal_shards(shards: list[Shard], streams: int, seed: int, epoch: int) -> list[list[Shard]]:
    """The shards of each stream in `epoch`: a seeded order, each shard to the stream with the fewest samples so far
    (the lowest-numbered on a tie)."""
    order = sample_rng(seed, epoch, 0, Stream.SHUFFLE, 1).permutation(len(shards))
    dealt: list[list[Shard]] = [[] for _ in range(streams)]
    loads = [0] * streams
    for i in order:
        stream = loads.index(min(loads))
        dealt[stream].append(shards[i])
        loads[stream] += shards[i].samples
    return dealt


def read_shard(shard: Shard, failures: list[BadClip]) -> Iterator[RawSample]:
    """The samples of one shard in order. A shard that cannot be opened, ends early (a truncated tar) or holds fewer
    samples than its index says is one failure in `failures` that counts the samples lost; a sample without a video
    is one failure."""
    read = 0
    try:
        stream = wds.gopen(shard.url, "rb")
        try:
            for key, members in _grouped(tar_members(stream)):
                video = next((data for ext, data in members.items() if ext != "json"), None)
                if video is None:
                    failures.append(BadClip(f"{shard.url}:{key}", "no video in the sample"))
                else:
                    meta = json.loads(members["json"]) if "json" in members else {}
                    yield RawSample(shard.first + read, f"{shard.url}:{key}.{meta.get('video', 'mp4')}", video, meta)
                read += 1
        finally:
            stream.close()
    except Exception as e:  # the tar, a pipe's command and the network fail in many ways: each is a damaged shard
        lost = max(shard.samples - read, 1)
        failures.append(BadClip(shard.url, f"damaged shard after {read} samples ({_reason(e)})", count=lost))
        return
    if read < shard.samples:  # cut off between two samples: a tar that ends cleanly, but short
        failures.append(
            BadClip(shard.url, f"damaged shard: {read} of its {shard.samples} samples", count=shard.samples - read)
        )


def _grouped(members: Iterator[tuple[str, bytes]]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) of consecutive tar members that share a key (WebDataset's sample convention: the
    key is the member's folder and its file name up to the first dot)."""
    key, sample = None, {}
    for name, data in members:
        folder, _, file = name.rpartition("/")
        stem, _, extension = file.partition(".")
        stem = f"{folder}/{stem}" if folder else stem
        if stem != key and sample:
            yield key, sample
            sample = {}
        key = stem
        sample[extension] = data
    if sample:
        yield key, sample


def _reason(error: Exception) -> str:
    text = str(error).split(" @ ")[0].strip() or type(error).__name__
    return text[:200]


def shuffled(items: Iterator, size: int, rng: np.random.Generator) -> Iterator:
    """`items` through a buffer of `size`: each item out is drawn from the buffer and replaced by the next one in."""
    buffer: list = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        i = int(rng.integers(size))
        yield buffer[i]
        buffer[i] = item
    while buffer:
        yield buffer.pop(int(rng.integers(len(buffer))))


DecodeSample = Callable[[RawSample, int], Sample]  # (raw sample, epoch) → Sample; raises VideoError


@dataclass
class ShardStream(IterableDataset):
    """Endless training samples from `shards` for one rank; the DataLoader's workers split it further."""

    shards: list[Shard]
    decode: DecodeSample
    seed: int
    rank: int = 0
    world: int = 1
    shuffle_buffer: int = 64
    # Where each stream (rank * workers + worker) resumes; streams not listed start at `start_epoch`.
    cursors: dict[int, Cursor] = field(default_factory=dict)
    start_epoch: int = 0
    # The loader hands out batches from its workers in turn, worker 0 first: a run resumed after b batches lets
    # worker w play stream (w + b) mod workers, so that batch b + k comes from the stream it came from before.
    worker_offset: int = 0

    def __len__(self) -> int:
        return sum(shard.samples for shard in self.shards)

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        stream = self.rank * workers + (worker + self.worker_offset) % workers
        streams = self.world * workers
        if streams > len(self.shards):
            raise DataError(
                f"data.source: {len(self.shards)} shards for {self.world} ranks × {workers} loader workers: every "
                "worker needs a shard of its own (write smaller shards, or use fewer workers)"
            )
        cursor = self.cursors.get(stream, Cursor(self.start_epoch, 0))
        return self._samples(stream, streams, cursor)

    def _samples(self, stream: int, streams: int, cursor: Cursor) -> Iterator[Sample]:
        epoch, skip = cursor.epoch, cursor.position
        pending: list[BadClip] = []  # reported with the next sample out
        while True:
            mine = deal_shards(self.shards, streams, self.seed, epoch)[stream]
            raw = (sample for shard in mine for sample in read_shard(shard, pending))
            order = shuffled(raw, self.shuffle_buffer, sample_rng(self.seed, epoch, stream, Stream.SHUFFLE, 2))
            decoded = 0
            for position, sample in enumerate(order):
                if position < skip:  # read again only to refill the buffer as it was: neither decoded nor reported
                    pending.clear()
                    continue
                try:
                    out = self.decode(sample, epoch)
                except VideoError as e:
                    pending.append(BadClip(sample.name, str(e).removeprefix(f"{sample.name}: ")))
                    continue
                out.failures = [*pending, *out.failures]
                out.cursor = (stream, epoch, position + 1)
                pending.clear()
                decoded += 1
                yield out
            if decoded == 0 and skip == 0:
                reasons = "; ".join(f"{bad.path}: {bad.reason}" for bad in pending[:2])
                raise DataError(f"data.source: no sample of a stream's {len(mine)} shards could be read ({reasons})")
            epoch, skip = epoch + 1, 0


def video_of(sample: RawSample) -> VideoBytes:
    """The sample's video, named for messages."""
    return VideoBytes(sample.name, sample.video)
