"""Tests for videomae_cli.data.sampling: exact indices against the official samplers, windows, bounds, determinism.

The `_official_*` helpers restate the official VideoMAE / VideoMAEv2 index arithmetic with the random draw passed in,
so the library's training samplers can be checked draw by draw and its evaluation samplers exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from videomae_cli.data.sampling import (
    dense_clip_starts,
    dense_indices,
    dense_test_indices,
    pretrain_indices,
    segment_indices,
    segment_test_indices,
)

# --------------------------------------------------------------------------------------- official arithmetic


def _official_dense(length: int, clip_len: int, rate: int, end: int) -> list[int]:
    """kinetics.py loadvideo_decord (one segment), given the drawn `end` (randint(span, length))."""
    span = clip_len * rate
    if length <= span:
        index = np.linspace(0, length, num=length // rate)
        index = np.concatenate((index, np.ones(clip_len - length // rate) * length))
        return np.clip(index, 0, length - 1).astype(np.int64).tolist()
    index = np.linspace(end - span, end, num=clip_len)
    return np.clip(index, end - span, end - 1).astype(np.int64).tolist()


def _official_dense_test(length: int, clip_len: int, rate: int, num_clips: int, chunk: int) -> list[int]:
    """VideoMAEv2 test mode for temporal view `chunk`."""
    span = clip_len * rate
    step = max(1.0 * (length - span) / (num_clips - 1), 0)
    first = int(chunk * step)
    index = list(range(first, min(first + span, length), rate))
    while len(index) < clip_len:
        index.append(index[-1])
    return index


def _official_ssv2_test(length: int, num_segment: int) -> tuple[list[int], list[int]]:
    """ssv2.py test mode: both views merged, sorted, then split by chunk 0 / 1 (buffer[chunk::2])."""
    tick = length / float(num_segment)
    merged = [int(tick / 2.0 + tick * x) for x in range(num_segment)] + [int(tick * x) for x in range(num_segment)]
    merged.sort()
    return merged[0::2], merged[1::2]


def _official_pretrain(length: int, new_length: int, new_step: int, draw: int, skips: list[int]) -> list[int]:
    """_sample_train_indices (one segment, random draw `draw`) + get_frame_id_list."""
    skip_length = new_length * new_step
    average = length - skip_length + 1
    offset = (draw if average > 0 else 0) + 1
    ids = []
    for i in range(new_length):
        ids.append(offset + skips[i] - 1 if offset + skips[i] <= length else offset - 1)
        if offset + new_step < length:
            offset += new_step
    return ids


# ------------------------------------------------------------------------------------------------ dense


def test_dense_eval_is_centred() -> None:
    # span 64 in 300 frames: start (300 - 64) // 2 = 118, linspace step 64 / 15, last clipped to 118 + 63
    expected = [118, 122, 126, 130, 135, 139, 143, 147, 152, 156, 160, 164, 169, 173, 177, 181]
    assert dense_indices(300, 16, 4, None).tolist() == expected
    assert expected == _official_dense(300, 16, 4, end=(64 + 300) // 2)


def test_dense_train_with_seed() -> None:
    first = int(np.random.default_rng(7).integers(0, 300 - 64))
    got = dense_indices(300, 16, 4, np.random.default_rng(7))
    assert got.tolist() == _official_dense(300, 16, 4, end=first + 64)
    assert got.dtype == np.int64


def test_dense_train_covers_every_official_start() -> None:
    length = 70  # span 64: official ends 64..69, starts 0..5
    official = {tuple(_official_dense(length, 16, 4, end)) for end in range(64, length)}
    drawn = {tuple(dense_indices(length, 16, 4, np.random.default_rng(seed)).tolist()) for seed in range(200)}
    assert drawn == official


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (20, [0, 5, 10, 15] + [19] * 12),  # 20 // 4 = 5 frames by linspace(0, 20), the end clipped, then padding
        (2, [1] * 16),  # shorter than one stride: only the last frame
        (64, [0, 4, 8, 12, 17, 21, 25, 29, 34, 38, 42, 46, 51, 55, 59, 63]),  # exactly the span: official short path
    ],
)
def test_dense_short_videos_pad_with_the_last_frame(length: int, expected: list[int]) -> None:
    for rng in (None, np.random.default_rng(0)):
        assert dense_indices(length, 16, 4, rng).tolist() == expected
    assert expected == _official_dense(length, 16, 4, end=0)


def test_dense_test_views_spread_over_the_video() -> None:
    views = dense_test_indices(100, 8, 4, 3)
    assert [v.tolist() for v in views] == [list(range(s, s + 32, 4)) for s in (0, 34, 68)]
    assert dense_clip_starts(100, 8, 4, 3) == [0, 34, 68]
    for length in (20, 33, 100, 257):
        for num_clips in (2, 3, 5, 10):
            got = [v.tolist() for v in dense_test_indices(length, 8, 4, num_clips)]
            assert got == [_official_dense_test(length, 8, 4, num_clips, c) for c in range(num_clips)]


def test_dense_test_single_view_is_centred() -> None:
    assert dense_clip_starts(100, 8, 4, 1) == [34]
    assert dense_test_indices(20, 8, 4, 1)[0].tolist() == [0, 4, 8, 12, 16, 16, 16, 16]


# ---------------------------------------------------------------------------------------------- segments


def test_segment_eval_takes_segment_middles() -> None:
    # tick = 50 / 8 = 6.25: int(3.125 + 6.25 k)
    assert segment_indices(50, 8, None).tolist() == [3, 9, 15, 21, 28, 34, 40, 46]


def test_segment_train_with_seed() -> None:
    draws = np.random.default_rng(3).integers(0, 6, size=8)  # official: segment k * (50 // 8) + randint(50 // 8)
    assert segment_indices(50, 8, np.random.default_rng(3)).tolist() == (np.arange(8) * 6 + draws).tolist()


def test_segment_train_stays_in_its_segment() -> None:
    for seed in range(50):
        got = segment_indices(50, 8, np.random.default_rng(seed))
        assert ((got // 6) == np.arange(8)).all()


def test_segment_short_video_repeats_frames() -> None:
    # tick = 5 / 8: every frame used, in order, some twice (training too: official would give all zeros)
    expected = [0, 0, 1, 2, 2, 3, 4, 4]
    assert segment_indices(5, 8, None).tolist() == expected
    assert segment_indices(5, 8, np.random.default_rng(0)).tolist() == expected
    assert segment_indices(1, 4, None).tolist() == [0, 0, 0, 0]


def test_segment_test_views_match_official() -> None:
    for length in (5, 8, 16, 50, 97, 300):
        starts, middles = _official_ssv2_test(length, 8)
        views = segment_test_indices(length, 8, 2)
        assert [v.tolist() for v in views] == [starts, middles]
        assert views[1].tolist() == segment_indices(length, 8, None).tolist()


# -------------------------------------------------------------------------------------------- pretraining


@pytest.mark.parametrize(
    ("length", "num_frames", "rate", "expected"),
    [
        (100, 16, 4, list(range(18, 79, 4))),  # centred: (100 - 64 + 1 - 1) // 2 = 18
        (20, 16, 4, [0, 4, 8, 12, 16] + [16] * 11),  # short: stops before the end, repeats
        (16, 16, 1, [*range(15), 14]),  # official quirk: the step onto the last frame is never taken
        (3, 4, 2, [0, 0, 0, 0]),  # 1 + 2 < 3 fails at once
    ],
)
def test_pretrain_eval(length: int, num_frames: int, rate: int, expected: list[int]) -> None:
    assert pretrain_indices(length, num_frames, rate, None).tolist() == expected


@pytest.mark.parametrize("jitter", [False, True])
def test_pretrain_train_matches_official(jitter: bool) -> None:
    for length in (3, 20, 64, 65, 100, 301):
        for seed in range(20):
            choices = length - 64 + 1
            rng = np.random.default_rng(seed)
            draw = int(rng.integers(0, choices)) if choices > 0 else 0
            skips = rng.integers(0, 4, size=16).tolist() if jitter else [0] * 16
            got = pretrain_indices(length, 16, 4, np.random.default_rng(seed), jitter=jitter)
            assert got.tolist() == _official_pretrain(length, 16, 4, draw, skips)


# ------------------------------------------------------------------------------------------------- windows


def test_windows_shift_and_bound_the_indices() -> None:
    # window [100, 150): 50 frames, shorter than the span
    expected = [100, 104, 109, 113, 118, 122, 127, 131, 136, 140, 145, 149, 149, 149, 149, 149]
    assert dense_indices(300, 16, 4, None, start=100, total=50).tolist() == expected
    assert (segment_indices(300, 8, None, start=200).tolist()) == (segment_indices(100, 8, None) + 200).tolist()
    assert pretrain_indices(300, 8, 2, None, start=290).tolist() == [290, 292, 294, 296, 298, 298, 298, 298]
    # a total past the end of the video is clipped to it
    assert dense_indices(120, 4, 2, None, start=100, total=500).tolist() == (dense_indices(20, 4, 2) + 100).tolist()
    starts = dense_clip_starts(300, 8, 4, 3, start=50, total=100)
    assert starts == [50, 84, 118]


def test_whole_video_window_is_the_default() -> None:
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    assert (dense_indices(90, 8, 4, rng_a, start=0, total=-1) == dense_indices(90, 8, 4, rng_b)).all()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: dense_indices(0, 16, 4), "at least one frame"),
        (lambda: dense_indices(10, 16, 4, start=10), "outside"),
        (lambda: dense_indices(10, 16, 4, start=-1), "outside"),
        (lambda: segment_indices(10, 8, total=0), "total"),
        (lambda: segment_indices(10, 0), "num_frames"),
        (lambda: pretrain_indices(10, 4, 0), "sampling_rate"),
        (lambda: dense_test_indices(10, 4, 2, 0), "num_clips"),
    ],
)
def test_invalid_arguments(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------- properties


def _all_samplers(
    length: int, n: int, rate: int, rng: np.random.Generator | None, start: int, total: int
) -> Iterator[np.ndarray]:
    window = {"start": start, "total": total}
    yield dense_indices(length, n, rate, rng, **window)
    yield segment_indices(length, n, rng, **window)
    yield pretrain_indices(length, n, rate, rng, **window)
    yield pretrain_indices(length, n, rate, rng, jitter=True, **window)
    yield from dense_test_indices(length, n, rate, 3, **window)
    yield from segment_test_indices(length, n, 2, **window)


def test_bounds_lengths_and_types_over_many_videos() -> None:
    params = np.random.default_rng(123)
    for _ in range(400):
        length = int(params.integers(1, 400))
        n, rate = int(params.choice([1, 2, 3, 8, 16])), int(params.choice([1, 2, 4, 5]))
        start = int(params.integers(0, length)) if params.random() < 0.5 else 0
        total = int(params.integers(1, length + 50)) if params.random() < 0.5 else -1
        end = length if total < 0 else min(start + total, length)
        for rng in (None, np.random.default_rng(int(params.integers(1 << 30)))):
            for index in _all_samplers(length, n, rate, rng, start, total):
                assert index.dtype == np.int64 and index.shape == (n,)
                assert index.min() >= start and index.max() < end


def test_samplers_are_monotonic_without_jitter() -> None:
    for length in range(1, 200, 7):
        rng = np.random.default_rng(length)
        for index in (dense_indices(length, 16, 4, rng), segment_indices(length, 16, rng)):
            assert (np.diff(index) >= 0).all()
        assert (np.diff(pretrain_indices(length, 16, 4, rng)) >= 0).all()


def test_same_seed_same_indices() -> None:
    for length in (7, 64, 300):
        runs = [list(_all_samplers(length, 8, 4, np.random.default_rng(99), 0, -1)) for _ in range(2)]
        assert all((a == b).all() for a, b in zip(*runs, strict=True))
        different = list(_all_samplers(300, 8, 4, np.random.default_rng(100), 0, -1))
    assert not all((a == b).all() for a, b in zip(runs[0], different, strict=True))
