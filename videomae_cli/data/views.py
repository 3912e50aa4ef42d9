"""Evaluation views: each video becomes C temporal clips × S spatial crops, deterministically (design.md: math).

Temporal clips follow the official test modes (`dense_test_indices`: clips spread evenly over the video;
`segment_test_indices`: segment starts, then middles, ...); every clip is resized to short side = input size and cut
into 1 crop (centre) or 3 crops (start/centre/end of the long side). Views are ordered clip-major: view c·S + s is
clip c, crop s. One view (1x1) is the single-view validation of fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from videomae_cli.config.schema import DataSpec
from videomae_cli.data.loader import BadClip, ViewIndices, ignore_stop_signals
from videomae_cli.data.sampling import dense_test_indices, segment_test_indices
from videomae_cli.data.transforms import ShortSideResize, center_crop, three_crops
from videomae_cli.data.video import VideoError


@dataclass(frozen=True)
class ViewPlan:
    """How many views of which shape each evaluated video gives."""

    clips: int
    crops: int
    num_frames: int
    size: int
    sampling: str = "dense"
    sampling_rate: int = 4

    @classmethod
    def for_data(cls, data: DataSpec, clips: int = 1, crops: int = 1) -> ViewPlan:
        """The plan for clips shaped as `data` describes."""
        return cls(clips, crops, data.num_frames, data.input_size, data.sampling, data.sampling_rate)

    @property
    def num_views(self) -> int:
        return self.clips * self.crops

    def frame_indices(self, window_length: int) -> list[np.ndarray]:
        """The frames of each temporal clip of a video (window) of `window_length` frames."""
        if self.sampling == "segment":
            return segment_test_indices(window_length, self.num_frames, self.clips)
        return dense_test_indices(window_length, self.num_frames, self.sampling_rate, self.clips)

    def spatial_views(self, clip: torch.Tensor) -> list[torch.Tensor]:
        """The 1 or 3 crops of one temporal clip, after the short-side resize."""
        resized = ShortSideResize(self.size)(clip)
        return three_crops(resized, self.size) if self.crops == 3 else [center_crop(resized, self.size)]


class ViewSource(Protocol):
    """Videos that can be cut into evaluation views (VideoClips, SyntheticSource)."""

    def __len__(self) -> int: ...

    def describe(self, index: int) -> str: ...

    def label(self, index: int) -> int: ...

    def decode(self, index: int, choose: ViewIndices) -> list[torch.Tensor]: ...


@dataclass
class ViewSample:
    index: int
    views: torch.Tensor | None  # uint8 [V, T, S, S, 3], None when the video failed to decode
    label: int
    failure: BadClip | None = None
    name: str | None = None  # what results call the video, when the source cannot say it by index (shards)


class VideoViews(Dataset):
    """Index → every view of that video. A video that fails to decode comes back with its failure, to be reported
    and skipped (evaluation never substitutes another video)."""

    def __init__(self, source: ViewSource, plan: ViewPlan) -> None:
        self.source, self.plan = source, plan

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> ViewSample:
        label = self.source.label(index)
        try:
            clips = self.source.decode(index, self.plan.frame_indices)
            views = [view for clip in clips for view in self.plan.spatial_views(clip)]
        except (VideoError, ValueError) as e:  # ValueError: frames smaller than the crop after a bad resize
            return ViewSample(index, None, label, BadClip(self.source.describe(index), str(e)))
        return ViewSample(index, torch.stack(views), label)


def view_loader(dataset: VideoViews, batch_size: int, num_workers: int) -> DataLoader:
    """Batches of ViewSample lists, in index order."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=list,
        worker_init_fn=ignore_stop_signals,  # a stop signal during fine-tuning's validation must not kill them
        persistent_workers=False,
    )
