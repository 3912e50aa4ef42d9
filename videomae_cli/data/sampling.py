"""Which frames of a video make a clip: pure functions of (video length, parameters, rng), after the official code.

Every function returns `num_frames` int64 indices into the video, each in [0, video_frames). Training passes a
`numpy.random.Generator`; evaluation passes `rng=None` and gets a deterministic clip. Each takes an optional window
(`start`, `total`; VideoMAEv2 manifests' `PATH START TOTAL`, total -1 = to the end of the video): indices are drawn
inside [start, start + total) clipped to the video, as if that window were the whole video.

Sources (facts, not code): the dense sampler follows `loadvideo_decord` of VideoMAE's fine-tuning `kinetics.py`,
its multi-view test mode the VideoMAEv2 version; the segment sampler follows `ssv2.py`; the pretraining sampler
follows `_sample_train_indices` + `get_frame_id_list` of the pretraining datasets (V1 and V2 agree). Deviations are
named where they happen.
"""

from __future__ import annotations

import numpy as np


def _window(video_frames: int, start: int, total: int) -> tuple[int, int]:
    """(first frame, length) of the window [start, start + total) clipped to the video; total < 0 = to the end."""
    if video_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {video_frames}")
    if not 0 <= start < video_frames:
        raise ValueError(f"window start {start} is outside the video's {video_frames} frames")
    if total == 0:
        raise ValueError("window total must be positive, or negative for the whole video")
    available = video_frames - start
    return start, available if total < 0 else min(total, available)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


def dense_indices(
    video_frames: int,
    num_frames: int,
    sampling_rate: int,
    rng: np.random.Generator | None = None,
    *,
    start: int = 0,
    total: int = -1,
) -> np.ndarray:
    """K400-style clip: `num_frames` frames spread over a window of `num_frames * sampling_rate` frames.

    As official: the frames are `linspace(s, s + span, num_frames)` truncated and clipped to `s + span - 1`, so the
    step is span / (num_frames - 1), slightly over `sampling_rate`. Training draws s uniformly from
    [0, length - span) (the official `randint(span, length)` end, so the last possible start is never drawn).
    Evaluation (rng None) centres the window, s = (length - span) // 2; this deviates from official V1, whose
    "validation" mode draws at random like training. A video no longer than the span is official too:
    `length // sampling_rate` frames by linspace over the whole video, padded with the last frame.
    """
    _check_positive(num_frames=num_frames, sampling_rate=sampling_rate)
    offset, length = _window(video_frames, start, total)
    span = num_frames * sampling_rate
    if length <= span:
        spread = np.linspace(0, length, num=length // sampling_rate)
        index = np.concatenate([spread, np.full(num_frames - spread.size, length)])
        return np.clip(index, 0, length - 1).astype(np.int64) + offset
    first = (length - span) // 2 if rng is None else int(rng.integers(0, length - span))
    index = np.linspace(first, first + span, num=num_frames)
    return np.clip(index, first, first + span - 1).astype(np.int64) + offset


def dense_clip_starts(
    video_frames: int, num_frames: int, sampling_rate: int, num_clips: int, *, start: int = 0, total: int = -1
) -> list[int]:
    """First frame of each of `num_clips` test clips, spread evenly from the window's start to its last full span.

    Official test mode: clip c starts at int(c * (length - span) / (num_clips - 1)), or 0 for all when the video is
    shorter than the span. One clip (official divides by zero there) starts centred, as `dense_indices` evaluates.
    """
    _check_positive(num_frames=num_frames, sampling_rate=sampling_rate, num_clips=num_clips)
    offset, length = _window(video_frames, start, total)
    slack = max(length - num_frames * sampling_rate, 0)
    if num_clips == 1:
        return [offset + slack // 2]
    step = slack / (num_clips - 1)
    return [offset + int(clip * step) for clip in range(num_clips)]


def dense_test_indices(
    video_frames: int, num_frames: int, sampling_rate: int, num_clips: int, *, start: int = 0, total: int = -1
) -> list[np.ndarray]:
    """The `num_clips` temporal views of multi-view testing, each `num_frames` frames at exactly `sampling_rate`.

    As official test mode: from each clip start take every `sampling_rate`-th frame up to the span or the end of the
    window, then pad with the last one taken (so short videos differ from `dense_indices`, which spreads by linspace).
    """
    offset, length = _window(video_frames, start, total)
    end = offset + length
    views = []
    for first in dense_clip_starts(video_frames, num_frames, sampling_rate, num_clips, start=start, total=total):
        taken = np.arange(first, min(first + num_frames * sampling_rate, end), sampling_rate, dtype=np.int64)
        views.append(np.concatenate([taken, np.full(num_frames - taken.size, taken[-1], dtype=np.int64)]))
    return views


def segment_indices(
    video_frames: int,
    num_frames: int,
    rng: np.random.Generator | None = None,
    *,
    start: int = 0,
    total: int = -1,
) -> np.ndarray:
    """SSv2/TSN-style clip: the window cut into `num_frames` equal segments, one frame from each.

    Training (official): segments of `length // num_frames` frames, a uniformly random frame in each. Evaluation
    (rng None): each segment's middle, int(tick / 2 + tick * k) with tick = length / num_frames (official test view
    1; official "validation" draws at random like training). Videos shorter than `num_frames` repeat frames:
    evaluation's formula does so by itself and training uses it too, deviating from official, whose all-zero indices
    would turn the clip into a still of the first frame.
    """
    _check_positive(num_frames=num_frames)
    offset, length = _window(video_frames, start, total)
    segment = length // num_frames
    if rng is None or segment == 0:
        return _segment_positions(length, num_frames, 0.5) + offset
    return np.arange(num_frames, dtype=np.int64) * segment + rng.integers(0, segment, size=num_frames) + offset


def segment_test_indices(
    video_frames: int, num_frames: int, num_clips: int = 2, *, start: int = 0, total: int = -1
) -> list[np.ndarray]:
    """`num_clips` deterministic segment views: view c takes int(tick * (k + c / num_clips)) from segment k.

    With the official two views this is exactly official SSv2 test mode: segment starts, then segment middles (the
    view for rng None in `segment_indices` is the second one).
    """
    _check_positive(num_frames=num_frames, num_clips=num_clips)
    offset, length = _window(video_frames, start, total)
    return [_segment_positions(length, num_frames, clip / num_clips) + offset for clip in range(num_clips)]


def _segment_positions(length: int, num_frames: int, phase: float) -> np.ndarray:
    """int(tick * phase + tick * k) for k < num_frames, tick = length / num_frames (official float arithmetic)."""
    tick = length / float(num_frames)
    return (tick * phase + tick * np.arange(num_frames)).astype(np.int64)


def pretrain_indices(
    video_frames: int,
    num_frames: int,
    sampling_rate: int,
    rng: np.random.Generator | None = None,
    *,
    jitter: bool = False,
    start: int = 0,
    total: int = -1,
) -> np.ndarray:
    """VideoMAE pretraining clip: `num_frames` frames every `sampling_rate` from a random start (one segment).

    Official `_sample_train_indices` + `get_frame_id_list` (new_length = num_frames, new_step = sampling_rate): the
    start is uniform over [0, length - num_frames * sampling_rate], or 0 when the video is shorter; the position
    stops advancing once the next step would reach the last frame, so short videos repeat their last reachable frame
    (and with sampling_rate 1 at the latest start the final frame repeats the one before: official too). `jitter`
    adds the official temporal jitter (a random 0..sampling_rate-1 per frame, kept inside the video). Evaluation
    (rng None, not in the official code) starts centred and never jitters.
    """
    _check_positive(num_frames=num_frames, sampling_rate=sampling_rate)
    offset, length = _window(video_frames, start, total)
    choices = length - num_frames * sampling_rate + 1
    if choices <= 0:  # shorter than the span: from the first frame
        first = 0
    elif rng is None:
        first = (choices - 1) // 2
    else:
        first = int(rng.integers(0, choices))
    if jitter and rng is not None:
        shifts = rng.integers(0, sampling_rate, size=num_frames)
    else:
        shifts = np.zeros(num_frames, dtype=np.int64)
    return _stepped(first + 1, length, num_frames, sampling_rate, shifts) + offset


def _stepped(position: int, length: int, num_frames: int, step: int, shifts: np.ndarray) -> np.ndarray:
    """Official get_frame_id_list for one segment; `position` is 1-based, as there."""
    index = np.empty(num_frames, dtype=np.int64)
    for i in range(num_frames):
        shifted = position + int(shifts[i])
        index[i] = (shifted if shifted <= length else position) - 1
        if position + step < length:
            position += step
    return index


def sliding_window_starts(video_frames: int, window: int, stride: int) -> np.ndarray:
    """Start frames of sliding windows: 0, stride, 2·stride, ... up to the first window that reaches the last frame,
    so the windows keep a regular stride (feature i is at frame i·stride, as temporal-detection heads expect) and
    every frame lies in some window when stride <= window. A last window may run past the end of the video; its
    frames are clamped by `window_indices`."""
    _check_positive(video_frames=video_frames, window=window, stride=stride)
    count = -(-max(video_frames - window, 0) // stride) + 1  # ceil: the smallest k with k·stride + window >= frames
    return np.arange(count, dtype=np.int64) * stride


def window_indices(video_frames: int, start: int, window: int, num_frames: int) -> np.ndarray:
    """The `num_frames` frames of the window [start, start + window), evenly spaced from its first frame (a window of
    num_frames × r frames gives sampling rate r), clamped to the last frame of the video."""
    _check_positive(video_frames=video_frames, window=window, num_frames=num_frames)
    offsets = np.arange(num_frames, dtype=np.int64) * window // num_frames
    return np.minimum(start + offsets, video_frames - 1)
