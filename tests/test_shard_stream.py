"""Streaming samples from tar shards (data/shards/stream.py): per epoch every sample once across all ranks and
workers, a deterministic order for a seed, exact continuation from a stream's cursor, `pipe:` URLs read like files,
and damaged shards or videos reported (with the samples they lost) and skipped."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch
from videogen import decode_index, write_video

from videomae_cli.data.loader import Sample
from videomae_cli.data.shards.index import Shard, ShardIndex
from videomae_cli.data.shards.stream import Cursor, RawSample, ShardStream, deal_shards, video_of
from videomae_cli.data.shards.writer import ShardSample, plan_shards, write_shards
from videomae_cli.data.video import open_video
from videomae_cli.errors import DataError

VIDEOS = 24


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[Shard]:
    """24 tiny videos (video n starts at frame n, so its pixels say which it is) in 6 shards of 4."""
    root = tmp_path_factory.mktemp("shards")
    samples = []
    for n in range(VIDEOS):
        file = write_video(root / f"v{n}.mp4", 4, 32, 32, fps=10, start=n)
        samples.append(ShardSample(f"train-{n:08d}", file, n % 3, None, 4, 10.0, str(file)))
    size = max(sample.file.stat().st_size for sample in samples) * 4 + 4 * 2048
    index = write_shards(root / "out", {"train": plan_shards("train", samples, size)}, ShardIndex([], False, size))
    assert [shard.samples for shard in index.splits["train"]] == [4] * 6
    return [Shard(str(root / "out" / s.name), s.samples, 4 * n) for n, s in enumerate(index.splits["train"])]


def ids_only(raw: RawSample, epoch: int) -> Sample:
    return Sample([torch.tensor(raw.id)], int(raw.meta["label"]), [], [])


def decoded(raw: RawSample, epoch: int) -> Sample:
    with open_video(video_of(raw)) as reader:
        first = decode_index(reader.get_frames([0])[0])
    return Sample([torch.tensor(first)], int(raw.meta["label"]), [], [])


def epoch_of(stream: ShardStream, number: int, streams: int, epoch: int = 0) -> list[Sample]:
    """The samples stream `number` of `streams` gives in `epoch`."""
    out = []
    for sample in stream._samples(number, streams, Cursor(epoch, 0)):
        if sample.cursor[1] != epoch:
            return out
        out.append(sample)
    raise AssertionError("unreachable: streams are endless")


def ids(samples: list[Sample]) -> list[int]:
    return [int(s.clips[0]) for s in samples]


def test_each_epoch_deals_every_shard_to_exactly_one_stream(shards) -> None:
    for epoch in range(3):
        dealt = deal_shards(shards, 4, seed=0, epoch=epoch)
        assert sorted(s.url for stream in dealt for s in stream) == sorted(s.url for s in shards)
        assert max(map(len, dealt)) - min(map(len, dealt)) <= 1
    assert deal_shards(shards, 4, 0, 0) != deal_shards(shards, 4, 0, 1)


def test_two_ranks_with_two_workers_each_read_every_sample_once_per_epoch(shards) -> None:
    seen = []
    for rank in range(2):
        stream = ShardStream(shards, ids_only, seed=3, rank=rank, world=2, shuffle_buffer=5)
        for worker in range(2):
            seen += ids(epoch_of(stream, rank * 2 + worker, streams=4, epoch=1))
    assert sorted(seen) == list(range(VIDEOS))


def test_the_order_is_a_function_of_the_seed_and_the_epoch(shards) -> None:
    def order(seed: int, epoch: int) -> list[int]:
        return ids(epoch_of(ShardStream(shards, ids_only, seed=seed, shuffle_buffer=8), 0, 1, epoch))

    assert order(0, 0) == order(0, 0)
    assert sorted(order(0, 0)) == list(range(VIDEOS))
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)


def test_a_stream_resumed_at_its_cursor_continues_exactly_without_decoding_what_it_skips(shards) -> None:
    whole = ShardStream(shards, ids_only, seed=0, shuffle_buffer=6)._samples(0, 2, Cursor(0, 0))
    first = [next(whole) for _ in range(30)]  # into the second epoch
    calls = []

    def counting(raw: RawSample, epoch: int) -> Sample:
        calls.append(raw.id)
        return ids_only(raw, epoch)

    stream, epoch, position = first[6].cursor
    resumed = ShardStream(shards, counting, seed=0, shuffle_buffer=6)._samples(stream, 2, Cursor(epoch, position))
    assert ids([next(resumed) for _ in range(23)]) == ids(first[7:30])
    assert len(calls) == 23


def test_pipe_urls_read_like_files(shards) -> None:
    piped = [Shard(f"pipe:cat {shard.url}", shard.samples, shard.first) for shard in shards]
    assert ids(epoch_of(ShardStream(piped, ids_only, seed=0), 0, 1)) == ids(
        epoch_of(ShardStream(shards, ids_only, seed=0), 0, 1)
    )


def test_samples_decode_from_memory_to_their_own_video(shards) -> None:
    samples = epoch_of(ShardStream(shards[:2], decoded, seed=0, shuffle_buffer=3), 0, 1)
    assert sorted(ids(samples)) == list(range(8))  # video n's first frame is frame n


def test_a_truncated_shard_is_reported_with_the_samples_it_lost(shards, tmp_path: Path) -> None:
    cut = tmp_path / "cut.tar"
    data = Path(shards[1].url).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    broken = [shards[0], Shard(str(cut), 4, 4), *shards[2:]]
    samples = epoch_of(ShardStream(broken, ids_only, seed=0, shuffle_buffer=1), 0, 1)
    failures = [bad for s in samples for bad in s.failures]
    assert len(failures) == 1 and failures[0].path == str(cut) and "damaged shard" in failures[0].reason
    read = set(ids(samples))
    assert failures[0].count == 4 - len(read & {4, 5, 6, 7})
    assert read >= set(range(VIDEOS)) - {4, 5, 6, 7}


def test_a_shard_that_ends_cleanly_but_short_is_reported_with_the_samples_it_lost(shards, tmp_path: Path) -> None:
    short = tmp_path / "short.tar"
    with tarfile.open(shards[1].url) as whole, tarfile.open(short, "w") as cut:
        for member in whole.getmembers()[:4]:  # the first two samples: a tar that ends where a sample ends
            cut.addfile(member, whole.extractfile(member))
    broken = [shards[0], Shard(str(short), 4, 4), *shards[2:]]
    samples = epoch_of(ShardStream(broken, ids_only, seed=0, shuffle_buffer=1), 0, 1)
    (failure,) = [bad for s in samples for bad in s.failures]
    assert failure.path == str(short) and failure.count == 2 and "2 of its 4 samples" in failure.reason
    assert sorted(ids(samples)) == sorted(set(range(VIDEOS)) - {6, 7})


def test_a_video_that_does_not_decode_is_reported_and_skipped(shards, tmp_path: Path) -> None:
    calls = []

    def bad_fifth(raw: RawSample, epoch: int) -> Sample:
        calls.append(raw.id)
        return decoded(RawSample(raw.id, raw.name, b"not a video" if raw.id == 5 else raw.video, raw.meta), epoch)

    samples = epoch_of(ShardStream(shards[:2], bad_fifth, seed=0, shuffle_buffer=1), 0, 1)
    assert sorted(ids(samples)) == [0, 1, 2, 3, 4, 6, 7]
    (failure,) = [bad for s in samples for bad in s.failures]
    assert failure.path.endswith("train-00000005.mp4") and "not a readable video" in failure.reason


def test_more_streams_than_shards_is_refused_naming_the_source(shards) -> None:
    with pytest.raises(DataError, match=r"data\.source: 2 shards for 3 ranks"):
        iter(ShardStream(shards[:2], ids_only, seed=0, rank=0, world=3))


def test_evaluation_views_give_every_sample_once_in_order_with_its_name(shards) -> None:
    from videomae_cli.config.schema import DataSpec
    from videomae_cli.data.clips import VideoClips
    from videomae_cli.data.shards.views import ShardViews
    from videomae_cli.data.views import ViewPlan

    data = DataSpec(num_frames=2, sampling_rate=1, input_size=32)
    views = ShardViews(shards[:3], ViewPlan.for_data(data, clips=2), VideoClips([], data, 0))
    samples = list(views)
    assert [s.index for s in samples] == list(range(12)) and len(views) == 12
    assert all(s.views.shape == (2, 2, 32, 32, 3) for s in samples)  # 2 temporal clips of 2 frames
    assert [decode_index(s.views[0, 0].numpy()) for s in samples] == list(range(12))  # video n starts at frame n
    assert samples[5].name == f"{shards[1].url}:train-00000005.mp4" and samples[5].label == 5 % 3
