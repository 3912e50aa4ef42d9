"""Training batches: clips, labels and (for pretraining) masks, keyed by (epoch, sample index).

The sampler yields (epoch, index) keys and the dataset is a pure function of the key, so every sample — its pixels and
its mask — is the same whatever the batch size, worker count or restart point. Clips stay uint8 until they reach
the training device, where they are normalised in one fused step.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from videomae_cli.data.synthetic import SyntheticVideos
from videomae_cli.data.video import VideoError
from videomae_cli.masking import MaskedTokens, MaskGenerator, SampleMask, collate_masks
from videomae_cli.models.pretrain import IMAGENET_MEAN, IMAGENET_STD
from videomae_cli.seeding import Stream, sample_rng

if TYPE_CHECKING:
    from videomae_cli.config.schema import DataSpec


class EpochSampler(Sampler[tuple[int, int]]):
    """Endless (epoch, index) keys: a fresh seeded permutation of the dataset each epoch, from `start` samples in.

    Resuming at sample position `start` continues the exact sequence an uninterrupted run would have produced. With
    several ranks, the one global stream is dealt out in turns of `batch` samples (rank 0 the first `batch`, rank 1
    the next, ...), so a step trains on the same samples whatever the world size.
    """

    def __init__(self, num_samples: int, seed: int, start: int = 0, rank: int = 0, world: int = 1, batch: int = 1):
        self.num_samples, self.seed, self.start = num_samples, seed, start
        self.rank, self.world, self.batch = rank, world, batch

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of `epoch`."""
        return sample_rng(self.seed, epoch, 0, Stream.SHUFFLE).permutation(self.num_samples)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.num_samples)
        position = self.start
        while True:
            for index in self.order(epoch)[offset:]:
                if (position // self.batch) % self.world == self.rank:
                    yield epoch, int(index)
                position += 1
            epoch, offset = epoch + 1, 0


class ClipSource(Protocol):
    """Clips by (epoch, index): a pure function of the key, so any worker can load any sample."""

    def __len__(self) -> int: ...

    def load(self, epoch: int, index: int, repeats: int = 1) -> tuple[list[torch.Tensor], int]:
        """`repeats` uint8 clips [T, H, W, 3] cut from one decode of the video, and its label; raises VideoError when
        the video cannot be decoded."""
        ...

    def describe(self, index: int) -> str:
        """The video behind `index` (for error reports)."""
        ...


ClipTransform = Callable[[torch.Tensor, np.random.Generator], torch.Tensor]  # uint8 clip, its rng → uint8 clip
ViewIndices = Callable[[int], list[np.ndarray]]  # window length → the frame indices of each clip to cut


class SyntheticSource:
    """The built-in synthetic videos as a ClipSource. Rendered at the final size, so pretraining uses them as they
    are; fine-tuning passes its augmentation as `transform`."""

    def __init__(self, videos: SyntheticVideos, transform: ClipTransform | None = None, seed: int = 0) -> None:
        self.videos, self.transform, self.seed = videos, transform, seed

    def __len__(self) -> int:
        return len(self.videos)

    def load(self, epoch: int, index: int, repeats: int = 1) -> tuple[list[torch.Tensor], int]:
        clip, label = self.videos[index]
        if self.transform is None:
            return [clip] * repeats, label
        rngs = (sample_rng(self.seed, epoch, index, Stream.AUGMENT, r) for r in range(repeats))
        return [self.transform(clip, rng) for rng in rngs], label

    def describe(self, index: int) -> str:
        return f"synthetic:{self.videos.first_index + index}"

    def label(self, index: int) -> int:
        return self.videos.labels_of([index])[0]

    def labels(self) -> list[int]:
        return self.videos.labels()

    def decode(self, index: int, choose: ViewIndices) -> list[torch.Tensor]:
        """One clip per index array `choose` asks for. A synthetic video is exactly one clip long, so every
        temporal view is the whole clip."""
        clip, _ = self.videos[index]
        return [clip] * len(choose(self.videos.num_frames))


def synthetic_validation(data: DataSpec, seed: int) -> SyntheticSource:
    """The held-out synthetic videos (indices no synthetic training set reaches)."""
    return SyntheticSource(SyntheticVideos.from_spec(data, seed, held_out=True))


@dataclass(frozen=True)
class BadClip:
    """A video that failed to decode, and why; `count` > 1 when one failure lost several (a damaged shard)."""

    path: str
    reason: str
    count: int = 1

    @property
    def message(self) -> str:
        """One line naming the video: the reason, led by the path where the reason does not start with it."""
        return self.reason if self.reason.startswith(self.path) else f"{self.path}: {self.reason}"


@dataclass
class Sample:
    clips: list[torch.Tensor]  # num_sample uint8 clips [T, H, W, 3] of one video
    label: int
    masks: list[SampleMask]  # one per clip; empty without a mask generator
    failures: list[BadClip]  # videos tried (and replaced) before this clip loaded
    valid: bool = True  # False when no replacement decoded either: the batch must not be trained on
    cursor: tuple[int, int, int] | None = None  # from shards: (stream, epoch, position after this sample)


class SampledClips(Dataset):
    """Training samples by (epoch, index) key: `num_sample` clips of one video, its label, and (for pretraining) the
    mask of each clip. A video that fails to decode is replaced by another index (chosen deterministically from the
    key) and reported with the sample, never swapped silently."""

    def __init__(
        self,
        clips: ClipSource,
        masks: MaskGenerator | None,
        seed: int,
        num_sample: int = 1,
        max_tries: int = 10,
    ) -> None:
        self.clips, self.masks, self.seed = clips, masks, seed
        self.num_sample, self.max_tries = num_sample, max_tries

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        epoch, index = key
        failures: list[BadClip] = []
        candidate = index
        replacements = sample_rng(self.seed, epoch, index, Stream.REPLACE)
        for _ in range(self.max_tries):
            try:
                clips, label = self.clips.load(epoch, candidate, self.num_sample)
                return Sample(clips, label, self.masks_of(epoch, index, clips), failures)
            except VideoError as e:
                failures.append(BadClip(self.clips.describe(candidate), str(e)))
                candidate = int(replacements.integers(len(self.clips)))
        return Sample([], -1, self.masks_of(epoch, index, [None] * self.num_sample), failures, valid=False)

    def masks_of(self, epoch: int, index: int, clips: Sequence[torch.Tensor | None]) -> list[SampleMask]:
        """One mask per clip, keyed by the sample (a motion mask also reads its clip); none without a generator."""
        return sample_masks(self.masks, epoch, index, clips)


def sample_masks(
    masks: MaskGenerator | None, epoch: int, index: int, clips: Sequence[torch.Tensor | None]
) -> list[SampleMask]:
    """One mask per clip of sample `index` in `epoch` (a motion mask also reads its clip); none without a generator."""
    if masks is None:
        return []
    return [masks(epoch, index, repeat, None if clip is None else clip.numpy()) for repeat, clip in enumerate(clips)]


@dataclass
class ClipBatch:
    clips: torch.Tensor  # uint8 [B, T, H, W, 3]
    labels: torch.Tensor  # int64 [B]
    tokens: MaskedTokens | None  # pretraining only
    failures: list[BadClip]
    valid: bool
    cursors: dict[int, tuple[int, int]] = field(default_factory=dict)  # from shards: stream → (epoch, next position)

    def pin_memory(self) -> ClipBatch:
        return replace(self, clips=self.clips.pin_memory())


def collate_samples(samples: Sequence[Sample]) -> ClipBatch:
    """Stack the clips, labels and masks of one batch; gather its decode failures. A batch with an invalid sample
    carries no pixels (it must not be trained on)."""
    valid = all(s.valid for s in samples)
    failures = [bad for s in samples for bad in s.failures]
    masks = [mask for s in samples for mask in s.masks]
    tokens = collate_masks(masks) if masks else None
    cursors = {s.cursor[0]: (s.cursor[1], s.cursor[2]) for s in samples if s.cursor is not None}  # the last wins
    if not valid:
        empty = torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
        return ClipBatch(*empty, tokens, failures, False, cursors)
    return ClipBatch(
        torch.stack([clip for s in samples for clip in s.clips]),
        torch.tensor([s.label for s in samples for _ in s.clips], dtype=torch.int64),
        tokens,
        failures,
        True,
        cursors,
    )


STOP_SIGNALS = ("SIGTERM", "SIGUSR1")  # what clusters send before preempting a job (train/guards.py's StopRequest)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers ignore the stop signals: SLURM (scancel, preemption) and `kill -- -PGID` send them to every
    process of the job, and a worker they killed would fail the step that the training process is finishing before
    it writes its checkpoint. The training process shuts its workers down itself."""
    for name in STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None:  # SIGUSR1 does not exist on Windows
            signal.signal(number, signal.SIG_IGN)


@contextlib.contextmanager
def batches_from(loader: DataLoader) -> Iterator[Iterator]:
    """Iterate `loader` with its workers shut down on leaving the block, however the loop ends. Workers ignore the
    stop signals, so the terminate() that multiprocessing sends its children at exit cannot end one: an iterator that
    outlived its loop (kept by a reference cycle until the interpreter exits) would hold the process open forever."""
    batches = iter(loader)
    try:
        yield batches
    finally:
        shut_down = getattr(batches, "_shutdown_workers", None)  # torch's own teardown (what __del__ calls)
        if shut_down is not None:  # absent without workers: nothing to shut down
            shut_down()


def batching(batch_size: int, num_workers: int, pin_memory: bool, prefetch: int) -> dict:
    """The DataLoader options every training loader shares: whole batches of `collate_samples`, workers that ignore
    the stop signals and live as long as the run, each keeping `prefetch` batches ready."""
    return {
        "batch_size": batch_size,
        "num_workers": num_workers,
        "collate_fn": collate_samples,
        "worker_init_fn": ignore_stop_signals,
        "pin_memory": pin_memory,
        "persistent_workers": num_workers > 0,
        "prefetch_factor": prefetch if num_workers > 0 else None,
        "drop_last": True,
    }


def train_loader(
    dataset: SampledClips,
    batch_size: int,
    seed: int,
    start_sample: int,
    num_workers: int,
    pin_memory: bool,
    rank: int = 0,
    world: int = 1,
    prefetch: int = 4,
) -> DataLoader:
    """An endless loader of ClipBatch (`batch_size` videos each), starting `start_sample` samples into the
    (seed-determined) global stream, of which this rank gets its turns (EpochSampler); each worker keeps `prefetch`
    batches ready."""
    return DataLoader(
        dataset,
        sampler=EpochSampler(len(dataset), seed, start_sample, rank, world, batch_size),
        **batching(batch_size, num_workers, pin_memory, prefetch),
        # Its own generator: the loader's base seed must not come from (and shift) the global RNG that DropPath
        # draws from, or a resumed run would drop different paths than an uninterrupted one.
        generator=torch.Generator().manual_seed(seed),
    )


class ClipNormalizer:
    """uint8 [B, T, H, W, 3] → float [B, 3, T, H, W] on the training device, normalised with ImageNet mean/std."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1, 1) * 255
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1, 1) * 255

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.to(self.device, non_blocking=True).permute(0, 4, 1, 2, 3).float()  # [B, 3, T, H, W]
        return ((x - self.mean) / self.std).contiguous()
