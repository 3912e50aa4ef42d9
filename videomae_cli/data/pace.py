"""How fast the training loader reads a set of videos: clips per second for one loader worker, per backend.

`measure_pace` times the training path itself (data/clips.py `VideoClips.load`: sample the frame indices, decode
only those, crop and resize), not a copy of it, so what it reports is what a DataLoader worker will do. A worker is
one process running one torch thread, so the timing runs with torch set to one thread. `workers_needed` turns that
rate into the number of loader workers a training speed needs.

What it cannot see: the page cache. A video timed here was just read (the warm-up, or an earlier clip of it), while a
large dataset is read cold once per epoch; on slow or network storage the real loader is slower than measured.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from pydantic import ValidationError

from videomae_cli.config.schema import DataSpec
from videomae_cli.data.clips import VideoClips
from videomae_cli.data.manifest import ManifestEntry
from videomae_cli.data.video import VideoError
from videomae_cli.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class DecodePace:
    """One backend's pace on a set of videos. `clips_per_second` is for one loader worker (one process, one thread);
    `failures` holds `"PATH: reason"` for each video that failed to load (and was skipped)."""

    backend: str  # "decord" or "pyav"
    videos: int  # files timed
    clips: int  # clips loaded
    seconds: float  # wall time of the timed loads
    clips_per_second: float  # per worker: one process, one thread
    failures: list[str] = field(default_factory=list)

    @property
    def ms_per_clip(self) -> float | None:
        """Milliseconds one worker spends on a clip; None when nothing loaded."""
        return 1000.0 * self.seconds / self.clips if self.clips else None


def measure_pace(
    paths: Sequence[Path],
    backend: str,
    *,
    num_frames: int = 16,
    sampling_rate: int = 4,
    input_size: int = 224,
    clips_per_video: int = 2,
    seed: int = 0,
) -> DecodePace:
    """Time `clips_per_video` training clips (epochs 0, 1, ...: different clips) of each of `paths` with `backend`,
    after one untimed warm-up load (decoder start-up is not per clip). A video that raises VideoError is recorded in
    `failures` and skipped. ConfigError naming the spec field (`data.decoder`, `data.num_frames`, ...) for a backend
    that is not available here or a clip that cannot be."""
    if clips_per_video < 1:
        raise ValueError(f"clips_per_video must be at least 1, got {clips_per_video}")
    try:
        spec = DataSpec(decoder=backend, num_frames=num_frames, input_size=input_size, sampling_rate=sampling_rate)
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"data.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    clips = VideoClips([ManifestEntry(Path(path)) for path in paths], spec, seed)
    failures: dict[int, str] = {}
    seconds, loaded = 0.0, 0
    with one_torch_thread():
        _warm_up(clips, clips_per_video, failures)
        for index in range(len(clips)):
            for epoch in range(clips_per_video):
                if index in failures:
                    break
                took = _timed_load(clips, epoch, index, failures)
                if took is not None:
                    seconds, loaded = seconds + took, loaded + 1
    videos = len(clips) - len(failures)
    rate = loaded / seconds if seconds > 0 else 0.0
    return DecodePace(clips.backend, videos, loaded, seconds, rate, [failures[i] for i in sorted(failures)])


def _warm_up(clips: VideoClips, epoch: int, failures: dict[int, str]) -> None:
    """One untimed load of the first video that loads, at an epoch the timing does not use (so its clip is not one
    the timing reads again)."""
    for index in range(len(clips)):
        if _timed_load(clips, epoch, index, failures) is not None:
            return


def _timed_load(clips: VideoClips, epoch: int, index: int, failures: dict[int, str]) -> float | None:
    """Seconds to load sample (epoch, index), or None after recording the video's VideoError in `failures`."""
    started = time.perf_counter()
    try:
        clips.load(epoch, index)
    except VideoError as e:
        failures[index] = _failure(clips.describe(index), e)
        return None
    return time.perf_counter() - started


def _failure(path: str, error: VideoError) -> str:
    """`PATH: reason` (VideoError messages already start with the path; a few, like a short window, may not)."""
    text = str(error)
    return text if text.startswith(f"{path}:") else f"{path}: {text}"


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one thread for the block, as in a DataLoader worker; the previous thread count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sample_videos(videos: Sequence[T], count: int) -> list[T]:
    """`count` videos spread evenly over the list (all of them when it is shorter): sorted class folders and
    manifests group similar videos, so an even spread sees every part of the dataset."""
    if count >= len(videos):
        return list(videos)
    return [videos[i * len(videos) // count] for i in range(count)]


def workers_needed(clips_per_second: float, steps_per_second: float, batch_size: int, headroom: float = 1.25) -> int:
    """Loader workers that feed `steps_per_second` steps of `batch_size` clips when one worker makes
    `clips_per_second`, with `headroom` to spare (the loader must stay ahead of the step, not just keep up)."""
    if clips_per_second <= 0:
        raise ValueError(f"clips_per_second must be positive, got {clips_per_second}")
    if steps_per_second <= 0 or batch_size < 1 or headroom <= 0:
        raise ValueError(
            f"need steps_per_second > 0, batch_size >= 1, headroom > 0; got {steps_per_second}, "
            f"{batch_size}, {headroom}"
        )
    demand = steps_per_second * batch_size * headroom
    # round first: 0.2 steps/s × 6 × 1.25 / 0.1 is 15.000000000000002 in floating point: 15 workers, not 16
    return max(1, math.ceil(round(demand / clips_per_second, 9)))
