"""Pretraining on real videos: manifests, decoding through the loader, and bad clips that are reported, never hidden."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from torch.utils.data import DataLoader
from videogen import write_text_as_video, write_truncated, write_video

from videomae_cli.config.resolve import resolve_spec
from videomae_cli.config.schema import PretrainSpec, grid_of
from videomae_cli.data import clips as clips_module
from videomae_cli.data.clips import VideoClips
from videomae_cli.data.loader import SampledClips, batches_from, ignore_stop_signals
from videomae_cli.data.manifest import ManifestEntry, read_manifest
from videomae_cli.data.video import open_video
from videomae_cli.errors import ConfigError, DataError
from videomae_cli.masking import MaskGenerator

# 4 frames of 64² at sampling rate 2 → 2 × 4 × 4 tokens; videos are 80×64 so the multi-scale crop has room.
REAL_ARGS = [
    "--model", "test", "--batch-size", "2", "--num-workers", "0", "--progress", "plain",
    "--set", "data.input_size=64", "--set", "data.num_frames=4", "--set", "data.sampling_rate=2",
    "--set", "run.log_every=1",
]  # fmt: skip


def write(tmp_path: Path, text: str, name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_manifest_lists_paths_and_labels_relative_to_its_folder(tmp_path: Path) -> None:
    manifest = write(tmp_path, "a/b.mp4 3\nmy clip 12.mp4 1\n/abs/x.mp4 0\n")
    assert read_manifest(manifest) == [
        ManifestEntry(tmp_path / "a/b.mp4", 3),
        ManifestEntry(tmp_path / "my clip 12.mp4", 1),
        ManifestEntry(Path("/abs/x.mp4"), 0),
    ]


def test_a_v2_pretraining_list_gives_frame_windows(tmp_path: Path) -> None:
    manifest = write(tmp_path, "a.mp4 0 -1\nframes/b 12 100\n")
    assert read_manifest(manifest, root=Path("/data")) == [
        ManifestEntry(Path("/data/a.mp4"), 0, 0, -1),
        ManifestEntry(Path("/data/frames/b"), 0, 12, 100),
    ]


def test_bad_manifests_are_reported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="lists no videos"):
        read_manifest(write(tmp_path, "\n# nothing\n"))
    with pytest.raises(ConfigError, match=r"list\.csv:2: expected 'PATH LABEL'"):
        read_manifest(write(tmp_path, "a.mp4 1\nb.mp4 x\n"))


def make_videos(root: Path, good: int, bad: int = 0) -> Path:
    """`good` readable H.264 videos (two classes) and `bad` broken ones, listed in root/train.csv."""
    lines = []
    for folder in ("class0", "class1"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(good):
        path = write_video(root / f"class{i % 2}" / f"v{i}.mp4", num_frames=24, width=80, height=64)
        lines.append(f"{path.relative_to(root)} {i % 2}")
    for i in range(bad):
        maker = write_truncated if i % 2 else write_text_as_video
        lines.append(f"{maker(root / f'bad{i}.mp4').relative_to(root)} 0")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root


def test_pretrain_trains_on_decoded_videos(tmp_path: Path) -> None:
    data = make_videos(tmp_path / "data", good=6)
    out = tmp_path / "run"
    result = run_cli("pretrain", *REAL_ARGS, "--data", str(data / "train.csv"), "--steps", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5] and all(r["bad_videos"] == 0 for r in records)
    meta = yaml.safe_load((out / "spec.yaml").read_text())["meta"]
    assert meta["decoder_backend"] in ("decord", "pyav")
    assert not (out / "bad_videos.txt").exists()


def test_a_prepare_data_directory_is_accepted_as_data(tmp_path: Path) -> None:
    data = make_videos(tmp_path / "data", good=4)
    result = run_cli("pretrain", *REAL_ARGS, "--data", str(data), "--steps", "2", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr


def test_a_corrupt_video_is_recorded_and_the_run_completes(tmp_path: Path) -> None:
    data = make_videos(tmp_path / "data", good=9, bad=1)  # one epoch of 10 clips = 5 steps of 2: every video is tried
    out = tmp_path / "run"
    result = run_cli(
        "pretrain", *REAL_ARGS, "--data", str(data), "--steps", "5", "--set", "data.max_bad_fraction=0.2",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = (out / "bad_videos.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(str(data / "bad0.mp4") + "\t")
    assert "warning: skipped a video that failed to decode" in result.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["bad_videos"] == 1


def test_too_many_corrupt_videos_stop_the_run_with_exit_3(tmp_path: Path) -> None:
    data = make_videos(tmp_path / "data", good=4, bad=2)
    result = run_cli("pretrain", *REAL_ARGS, "--data", str(data), "--steps", "5", "--out", str(tmp_path / "run"))
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "failed to decode" in lines[0] and "bad" in lines[0] and "Traceback" not in lines[0]


def test_a_missing_data_path_is_a_config_error(tmp_path: Path) -> None:
    result = run_cli("pretrain", *REAL_ARGS, "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and result.stderr.startswith("error: data.source: no such file")


def test_repeated_sampling_cuts_several_clips_from_one_decode(tmp_path: Path, monkeypatch) -> None:
    data = make_videos(tmp_path / "data", good=2)
    sets = ["model.name=test", "data.input_size=64", "data.num_frames=4", "data.num_sample=3", "optim.batch_size=3"]
    spec = resolve_spec(PretrainSpec, sets=sets)
    opened = []
    monkeypatch.setattr(clips_module, "open_video", lambda *args: opened.append(args) or open_video(*args))
    source = VideoClips(read_manifest(data / "train.csv"), spec.data, seed=0)
    dataset = SampledClips(source, MaskGenerator(spec.mask, grid_of(spec), seed=0), seed=0, num_sample=3)
    sample = dataset[(0, 1)]
    assert len(opened) == 1 and len(sample.clips) == len(sample.masks) == 3
    assert len({clip.numpy().tobytes() for clip in sample.clips}) > 1  # crops drawn independently
    assert len({tuple(mask.visible) for mask in sample.masks}) == 3  # and a mask each


def test_num_sample_must_divide_the_batch() -> None:
    with pytest.raises(ConfigError, match=r"data\.num_sample: 3 clips per video must divide optim\.batch_size 8"):
        resolve_spec(PretrainSpec, sets=["data.num_sample=3"])


def test_pretrain_with_repeated_sampling_trains(tmp_path: Path) -> None:
    data = make_videos(tmp_path / "data", good=4)
    result = run_cli(
        "pretrain", *REAL_ARGS, "--data", str(data), "--steps", "2", "--set", "data.num_sample=2",
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["epoch"] == 0.5  # a step is 2 clips = 1 video; 2 steps of a 4-video dataset


def test_leaving_a_loop_shuts_its_workers_down_even_while_the_iterator_lives_on() -> None:
    # Workers ignore SIGTERM, so multiprocessing's terminate() at exit cannot end them: a worker left behind by an
    # iterator that outlives its loop would keep the process from exiting. batches_from ends them on leaving.
    loader = DataLoader(
        range(64), batch_size=2, num_workers=1, worker_init_fn=ignore_stop_signals, persistent_workers=True
    )
    before = set(multiprocessing.active_children())
    with batches_from(loader) as batches:
        next(batches)
        workers = set(multiprocessing.active_children()) - before
        assert workers and all(worker.is_alive() for worker in workers)
    assert batches is not None  # still referenced, as a reference cycle would keep it
    assert not any(worker.is_alive() for worker in workers)
