"""WebDataset shards: `prepare-data --shards` packs every usable video of each split into tar shards (KEY.<ext> with
the video's bytes, KEY.json with its label, class, frames, fps, source and window) with an index, leaves bad files
out (reported as without shards), and a rerun keeps the shards that are already complete."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from conftest import run_cli
from videogen import write_text_as_video, write_truncated, write_video

CLASSES = ("archery", "bowling", "cycling")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """3 classes × 4 good videos of 20 frames, one truncated and one text file named .mp4: (root, bad paths)."""
    root = tmp_path_factory.mktemp("corpus")
    for name in CLASSES:
        for i in range(4):
            (root / name).mkdir(exist_ok=True)
            write_video(root / name / f"clip{i}.mp4", 20, 32, 32, fps=10)
    bad = {str(write_truncated(root / "archery" / "cut.mp4", num_frames=20)), str(write_text_as_video(root / "x.mp4"))}
    return root, bad


def prepare(corpus_root: Path, out: Path, *extra: str) -> None:
    done = run_cli("prepare-data", str(corpus_root), "--out", str(out), "--shards", "--shard-size", "12KB", *extra)
    assert done.returncode == 0, done.stdout + done.stderr


def manifest_rows(out: Path, split: str) -> dict[str, int]:
    rows = (line.rsplit(" ", 1) for line in (out / f"{split}.csv").read_text().splitlines())
    return {path: int(label) for path, label in rows}


def shard_samples(tar_path: Path) -> dict[str, dict[str, bytes]]:
    """KEY → {extension: bytes} of one shard, read with the standard library's tarfile."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            key, extension = member.name.split(".", 1)
            samples.setdefault(key, {})[extension] = tar.extractfile(member).read()
    return samples


def test_shards_round_trip_every_usable_video_and_label(corpus, tmp_path: Path) -> None:
    root, bad = corpus
    prepare(root, tmp_path)
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert index["complete"] and index["classes"] == list(CLASSES) and index["labelled"]
    for split in ("train", "val"):
        expected = manifest_rows(tmp_path, split)
        found: dict[str, int] = {}
        shards = index["splits"][split]
        assert [shard["name"] for shard in shards] == [f"{split}-{n:06d}.tar" for n in range(len(shards))]
        for shard in shards:
            path = tmp_path / "shards" / shard["name"]
            samples = shard_samples(path)
            assert (len(samples), path.stat().st_size) == (shard["samples"], shard["bytes"])
            for key, members in samples.items():
                meta = json.loads(members["json"])
                assert key.startswith(f"{split}-") and Path(meta["source"]).read_bytes() == members["mp4"]
                assert meta["class"] == CLASSES[meta["label"]] and meta["frames"] == 20 and meta["fps"] == 10
                assert meta["window"] == [0, -1]
                found[meta["source"]] = meta["label"]
        assert found == expected  # every video of the split once, with its label
    assert len(index["splits"]["train"]) > 1  # 12 KB shards: the training videos need several
    reported = {p["path"] for p in json.loads((tmp_path / "report.json").read_text())["problems"]}
    assert reported == bad


def test_a_rerun_keeps_complete_shards_and_rewrites_a_missing_one(corpus, tmp_path: Path) -> None:
    root, _ = corpus
    prepare(root, tmp_path)
    shards = sorted((tmp_path / "shards").glob("*.tar"))
    before = {path.name: path.stat().st_mtime_ns for path in shards}
    shards[0].unlink()  # as if the run had stopped while writing it
    prepare(root, tmp_path)
    after = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "shards").glob("*.tar")}
    assert after.keys() == before.keys()
    assert [name for name in after if after[name] != before[name]] == [shards[0].name]


def test_shards_are_readable_by_others_as_plain_files_are(corpus, tmp_path: Path) -> None:
    prepare(corpus[0], tmp_path)
    for path in (tmp_path / "shards").iterdir():
        assert path.stat().st_mode & 0o044 == (tmp_path / "train.csv").stat().st_mode & 0o044


def test_a_bad_shard_size_names_the_flag(corpus, tmp_path: Path) -> None:
    done = run_cli("prepare-data", str(corpus[0]), "--out", str(tmp_path), "--shards", "--shard-size", "lots")
    assert done.returncode == 2
    assert "--shard-size" in done.stderr and "not a size" in done.stderr and "Traceback" not in done.stderr


def test_a_fine_tune_from_shards_validates_and_evaluates_on_the_val_split(corpus, tmp_path: Path) -> None:
    prepare(corpus[0], tmp_path / "data")
    done = run_cli(
        "finetune", "--init", "none", "--model", "test", "--set", "model.patch_size=8", "--data",
        str(tmp_path / "data" / "shards"), "--set", "data.num_frames=4", "--set", "data.input_size=32",
        "--batch-size", "2", "--steps", "3", "--set", "data.num_workers=0", "--progress", "off",
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = manifest_rows(tmp_path / "data", "val")
    assert [row for row in rows if "val_top1" in row][-1]["val_videos"] == len(val)
    done = run_cli("evaluate", str(tmp_path / "run"), "--num-workers", "2", "--progress", "off")
    assert done.returncode == 0, done.stdout + done.stderr
    predicted = (tmp_path / "run" / "eval" / "report-predictions.csv").read_text().splitlines()[1:]
    names = [line.split(",")[0] for line in predicted]
    assert len(names) == len(val) and all(":val-" in name and ".tar:" in name for name in names)
    assert names == sorted(names)  # in the index's order
