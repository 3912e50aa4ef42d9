"""Pretraining from shards through the CLI: `--data` as a shards folder, a brace pattern or `pipe:cat` URLs; a run
resumed from a checkpoint reaches the weights of an uninterrupted one; two torchrun processes read disjoint shards
that together make the epoch; a truncated shard is reported with the samples it lost."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file
from test_distributed import interrupted_copy, torchrun
from videogen import write_video

from videomae_cli.data.shards.index import ShardIndex
from videomae_cli.data.shards.writer import ShardSample, plan_shards, write_shards

VIDEOS, PER_SHARD = 24, 4
TOY = [
    "--model", "test", "--set", "model.patch_size=8", "--set", "data.num_frames=4", "--set", "data.sampling_rate=2",
    "--set", "data.input_size=32", "--set", "data.shuffle_buffer=3", "--batch-size", "2", "--precision", "fp32",
    "--set", "run.log_every=1", "--progress", "off",
]  # fmt: skip


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 videos of 12 frames, 3 classes, in 6 training shards of 4: the shards folder."""
    root = tmp_path_factory.mktemp("videos")
    samples = []
    for n in range(VIDEOS):
        file = write_video(root / f"v{n}.mp4", 12, 32, 32, fps=10, start=n)
        samples.append(ShardSample(f"train-{n:08d}", file, n % 3, str(n % 3), 12, 10.0, str(file)))
    size = max(s.file.stat().st_size for s in samples) * PER_SHARD + PER_SHARD * 2048
    folder = root / "shards"
    index = write_shards(
        folder, {"train": plan_shards("train", samples, size)}, ShardIndex(["0", "1", "2"], True, size)
    )
    assert [shard.samples for shard in index.splits["train"]] == [PER_SHARD] * (VIDEOS // PER_SHARD)
    return folder


def pretrain(out: Path, data: str, *extra: str) -> None:
    done = run_cli("pretrain", *TOY, "--data", data, *extra, "--out", str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def losses(run: Path) -> list[float]:
    return [row["loss"] for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in row]


@pytest.mark.parametrize("form", ["folder", "brace pattern", "pipe urls"])
def test_pretraining_reads_shards_given_as(form: str, shards: Path, tmp_path: Path) -> None:
    names = [f"{shards}/train-{n:06d}.tar" for n in range(VIDEOS // PER_SHARD)]
    data = {
        "folder": str(shards),
        "brace pattern": f"{shards}/train-{{000000..000005}}.tar",
        "pipe urls": "::".join(f"pipe:cat {name}" for name in names),
    }[form]
    extra = ["--set", f"data.shard_index={shards / 'index.json'}"] if form == "pipe urls" else []
    pretrain(tmp_path / "run", data, "--steps", "2", "--set", "data.num_workers=0", *extra)
    assert len(losses(tmp_path / "run")) == 2


def test_a_resumed_run_reaches_the_weights_of_an_uninterrupted_one(shards: Path, tmp_path: Path) -> None:
    # Two loader workers and a checkpoint after an odd step: the resumed run's first batch must come from the
    # stream that was next, not from worker 0's.
    options = ("--steps", "10", "--set", "run.save_every=5", "--set", "data.num_workers=2")
    pretrain(tmp_path / "straight", str(shards), *options)
    resumed = interrupted_copy(tmp_path / "straight", tmp_path / "resumed", keep=5)
    pretrain(resumed, str(shards), *options, "--resume", "auto")
    straight, again = load_file(tmp_path / "straight" / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert max(float((straight[k] - again[k]).abs().max()) for k in straight) <= 1e-6
    assert losses(tmp_path / "straight") == losses(resumed)


def test_two_torchrun_processes_read_disjoint_shards_that_make_the_epoch(shards: Path, tmp_path: Path) -> None:
    steps = VIDEOS // 4  # a global batch of 4 (2 per process): one epoch
    done = torchrun("pretrain", *TOY, "--data", str(shards), "--steps", str(steps), "--set", "data.num_workers=0",
                    "--out", str(tmp_path / "run"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (state_file,) = (tmp_path / "run" / "checkpoints").glob("*/train_state.pt")
    state = torch.load(state_file, weights_only=False)
    assert state["data_layout"] == [2, 0]
    # Each process's stream read exactly its share of epoch 0 (whole shards, dealt without overlap), no more.
    assert state["data_cursors"] == {0: (0, VIDEOS // 2), 1: (0, VIDEOS // 2)}


def test_a_truncated_shard_is_reported_with_the_samples_it_lost(shards: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "shards"
    shutil.copytree(shards, damaged)
    tar = damaged / "train-000002.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 3])
    pretrain(tmp_path / "run", str(damaged), "--steps", "12", "--set", "data.num_workers=0",
             "--set", "data.max_bad_fraction=0.5")  # fmt: skip
    (line,) = (tmp_path / "run" / "bad_videos.txt").read_text().splitlines()
    path, reason, lost = line.split("\t")
    assert path == str(tar) and reason.startswith("damaged shard after") and 1 <= int(lost) <= PER_SHARD
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["bad_videos"] == int(lost)
