"""`predict` and `embed` read shards: a shards folder (every split), a brace pattern of tar shards; each sample once,
in the index's order, named SHARD:KEY, with the results the same videos give as files; `embed` resumes per tar shard;
a truncated shard is reported with the samples it lost and the other shards' samples are still read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import randomize, run_cli
from videogen import write_video  # av before decord (see videogen)

from videomae_cli.checkpoint import model_metadata, save_weights
from videomae_cli.config.schema import EmbedSpec, FinetuneSpec, grid_of
from videomae_cli.data.shards.index import ShardIndex
from videomae_cli.data.shards.writer import ShardSample, plan_shards, write_shards
from videomae_cli.infer.embed import embed, read_embedding
from videomae_cli.models.classifier import VideoClassifier
from videomae_cli.ui.progress import make_reporter

CLASSES = ["a", "b", "c"]
QUIET = ("--num-workers", "2", "--progress", "off")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = FinetuneSpec(model={"name": "test"}, data={"num_frames": 4, "input_size": 32, "sampling_rate": 2})
    model = VideoClassifier(spec.model, grid_of(spec), len(CLASSES), run_spec=spec, classes=CLASSES).eval()
    randomize(model, seed=11)
    path = tmp_path_factory.mktemp("ckpt") / "classifier.safetensors"
    meta = model_metadata("classifier", spec.model_dump_json(), classes=json.dumps(CLASSES))
    save_weights(path, model.state_dict(), meta)
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A shards folder: 4 training videos in 2 shards, 2 validation videos in 1; (folder, the videos in index order)."""
    root = tmp_path_factory.mktemp("videos")
    files = [write_video(root / f"v{n}.mp4", 16, 40, 32, fps=10, start=7 * n) for n in range(6)]
    size = max(file.stat().st_size for file in files) * 2 + 4096
    splits = {}
    for split, part in (("train", files[:4]), ("val", files[4:])):
        samples = [
            ShardSample(f"{split}-{n:08d}", f, n % 3, CLASSES[n % 3], 16, 10.0, str(f)) for n, f in enumerate(part)
        ]
        splits[split] = plan_shards(split, samples, size)
    index = write_shards(root / "shards", splits, ShardIndex(CLASSES, True, size))
    assert [len(index.splits[split]) for split in ("train", "val")] == [2, 1]
    return root / "shards", files


def sample_names(folder: Path) -> list[str]:
    """The names results give the samples of the fixture's folder, in index order."""
    train = [f"{folder}/train-{n // 2:06d}.tar:train-{n:08d}.mp4" for n in range(4)]
    return train + [f"{folder}/val-000000.tar:val-{n:08d}.mp4" for n in range(2)]


def predict_json(*args: str, out: Path) -> list[dict]:
    done = run_cli("predict", *args, "--json", str(out), "--top-k", "3", *QUIET)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_predict_reads_every_sample_of_a_shards_folder_once_in_order(classifier, shards, tmp_path: Path) -> None:
    folder, files = shards
    from_shards = predict_json(str(classifier), str(folder), out=tmp_path / "shards.jsonl")
    from_files = predict_json(str(classifier), *map(str, files), out=tmp_path / "files.jsonl")
    assert [row["video"] for row in from_shards] == sample_names(folder)
    for shard_row, file_row in zip(from_shards, from_files, strict=True):
        assert [t["class"] for t in shard_row["top"]] == [t["class"] for t in file_row["top"]]
        np.testing.assert_allclose([t["prob"] for t in shard_row["top"]], [t["prob"] for t in file_row["top"]])


def test_embed_reads_a_brace_pattern_as_it_reads_the_same_videos_as_files(classifier, shards, tmp_path: Path) -> None:
    folder, files = shards
    pattern = f"{folder}/train-{{000000..000001}}.tar"
    for name, inputs in (("shards", [pattern]), ("files", list(map(str, files[:4])))):
        done = run_cli("embed", str(classifier), *inputs, "--out", str(tmp_path / f"{name}.safetensors"), *QUIET)
        assert done.returncode == 0, done.stderr
    (got, info), (expected, _) = (read_embedding(tmp_path / f"{name}.safetensors") for name in ("shards", "files"))
    assert got.video.tolist() == [0, 1, 2, 3] and info["paths"] == sample_names(folder)[:4]
    np.testing.assert_allclose(got.features.numpy(), expected.features.numpy(), atol=1e-6)
    assert got.frames.tolist() == expected.frames.tolist()


def test_embed_of_shards_resumes_at_the_first_unfinished_tar_shard(classifier, shards, tmp_path: Path) -> None:
    folder, _ = shards
    spec = EmbedSpec(checkpoint=classifier, inputs=[folder], out=tmp_path / "f.safetensors", num_workers=0)

    def stop_after_first(part: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed(spec, make_reporter("off"), after_shard=stop_after_first)
    done = run_cli("embed", str(classifier), str(folder), "--out", str(tmp_path / "f.safetensors"), *QUIET)
    assert done.returncode == 0, done.stderr
    assert "1 of 3 shards already done" in done.stdout + done.stderr
    resumed, info = read_embedding(tmp_path / "f.safetensors")
    run_cli("embed", str(classifier), str(folder), "--out", str(tmp_path / "whole.safetensors"), *QUIET)
    whole, _ = read_embedding(tmp_path / "whole.safetensors")
    assert info["paths"] == sample_names(folder) and resumed.video.tolist() == list(range(6))
    assert np.array_equal(resumed.features.numpy(), whole.features.numpy())


def test_a_truncated_shard_is_reported_and_the_other_shards_are_read(classifier, shards, tmp_path: Path) -> None:
    damaged = tmp_path / "shards"
    shutil.copytree(shards[0], damaged)
    tar = damaged / "train-000001.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 3])
    out = tmp_path / "f.safetensors"
    done = run_cli("embed", str(classifier), str(damaged), "--out", str(out), *QUIET)
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert str(tar) in line and "damaged shard after" in line and "Traceback" not in done.stderr
    result, info = read_embedding(out)
    assert result.video.tolist() == [0, 1, 4, 5]  # train-000001.tar held samples 2 and 3
    assert [info["paths"][v] for v in (0, 4)] == [sample_names(damaged)[0], sample_names(damaged)[4]]


def test_shards_mixed_with_video_files_are_refused_naming_inputs(classifier, shards, tmp_path: Path) -> None:
    folder, files = shards
    done = run_cli("predict", str(classifier), str(folder), str(files[0]), *QUIET)
    assert done.returncode == 2 and done.stderr.startswith("error: inputs:") and "Traceback" not in done.stderr
