"""`videomae predict`: top-k classes per video for files, folders and manifests; unreadable inputs reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize, run_cli
from videogen import write_text_as_video, write_video  # av before decord (see videogen)

from videomae_cli.checkpoint import model_metadata, save_weights
from videomae_cli.config.schema import FinetuneSpec, grid_of
from videomae_cli.data.clips import VideoClips
from videomae_cli.data.manifest import ManifestEntry
from videomae_cli.data.views import VideoViews, ViewPlan
from videomae_cli.infer.predict import predict_views, top_classes
from videomae_cli.models.classifier import VideoClassifier

CLASSES = ["walk", "run", "jump", "sit"]
NO_WORKERS = ("--num-workers", "0", "--progress", "off")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, VideoClassifier]:
    spec = FinetuneSpec(model={"name": "test"}, data={"num_frames": 4, "input_size": 32, "sampling_rate": 2})
    model = VideoClassifier(spec.model, grid_of(spec), len(CLASSES), run_spec=spec, classes=CLASSES).eval()
    randomize(model, seed=7)
    path = tmp_path_factory.mktemp("ckpt") / "classifier.safetensors"
    save_weights(
        path, model.state_dict(), model_metadata("classifier", spec.model_dump_json(), classes=json.dumps(CLASSES))
    )
    return path, model


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "a.mp4", 20, width=97, height=53)
    (root / "sub").mkdir()
    write_video(root / "sub" / "b.mp4", 24, width=64, height=48)
    write_text_as_video(root / "broken.mp4")
    return root


def test_a_folder_with_one_bad_file_gives_per_file_results_and_one_error_line(
    classifier: tuple[Path, VideoClassifier], folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p.jsonl"
    done = run_cli("predict", str(classifier[0]), str(folder), "--json", str(out), "--top-k", "2", *NO_WORKERS)
    assert done.returncode == 0, done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error:") and "broken.mp4" in errors[0]
    assert "a.mp4" in done.stdout and "b.mp4" in done.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(x["video"]).name for x in lines] == ["a.mp4", "b.mp4", "broken.mp4"]
    assert all(len(x["top"]) == 2 for x in lines[:2]) and "error" in lines[2]


def test_predictions_are_the_models_averaged_view_probabilities(
    classifier: tuple[Path, VideoClassifier], folder: Path, tmp_path: Path
) -> None:
    path, model = classifier
    out = tmp_path / "p.jsonl"
    done = run_cli("predict", str(path), str(folder / "a.mp4"), "--views", "2x3", "--json", str(out), *NO_WORKERS)
    assert done.returncode == 0, done.stderr
    [line] = [json.loads(x) for x in out.read_text().splitlines()]
    views = VideoViews(
        VideoClips([ManifestEntry(folder / "a.mp4")], model.spec.data, 0), ViewPlan.for_data(model.spec.data, 2, 3)
    )
    probs = predict_views(model, views, 1, 0, torch.device("cpu")).probs[0]
    expected = top_classes(probs, CLASSES, 4)
    assert [t["class"] for t in line["top"]] == [name for _, name, _ in expected]
    np.testing.assert_allclose([t["prob"] for t in line["top"]], [p for _, _, p in expected], atol=1e-6)


def test_a_manifest_lists_the_videos(classifier: tuple[Path, VideoClassifier], folder: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "list.csv"
    manifest.write_text(f"{folder / 'sub' / 'b.mp4'} 0\n{folder / 'a.mp4'} 1\n")
    done = run_cli("predict", str(classifier[0]), str(manifest), "--json", str(tmp_path / "p.jsonl"), *NO_WORKERS)
    assert done.returncode == 0, done.stderr
    names = [Path(json.loads(x)["video"]).name for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert names == ["b.mp4", "a.mp4"]


def test_nothing_readable_exits_3(classifier: tuple[Path, VideoClassifier], folder: Path, tmp_path: Path) -> None:
    done = run_cli(
        "predict", str(classifier[0]), str(folder / "broken.mp4"), str(tmp_path / "missing.mp4"), *NO_WORKERS
    )
    assert done.returncode == 3
    assert "Traceback" not in done.stderr and "none of the 2 inputs" in done.stderr


def test_a_pretrain_checkpoint_is_refused(folder: Path, tmp_path: Path) -> None:
    from videomae_cli.config.schema import PretrainSpec
    from videomae_cli.models.factory import build_model

    spec = PretrainSpec(model={"name": "test"}, data={"num_frames": 4, "input_size": 64})
    path = tmp_path / "pretrain.safetensors"
    save_weights(path, build_model(spec).state_dict(), model_metadata("pretrain", spec.model_dump_json()))
    done = run_cli("predict", str(path), str(folder / "a.mp4"), *NO_WORKERS)
    assert done.returncode == 2 and "videomae embed" in done.stderr
