"""Evaluation: multi-view cutting (which frames, which crops, in which order), softmax averaging, robustness to bad
videos and to batching, and `videomae evaluate` end to end through the real CLI (design.md: commands, run
directory, math).

Temporal views are checked on real PyAV-written videos whose frame index is encoded in the pixels; crop positions on
exact uint8 clips served by a small in-memory ViewSource (no codec blur).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TOY_ARGS, randomize, run_cli
from videogen import decode_index, write_text_as_video, write_video  # av before decord (see videogen)

import videomae_cli
from videomae_cli.config.schema import DataSpec, EvaluateSpec, ModelSpec
from videomae_cli.data.clips import VideoClips
from videomae_cli.data.loader import SyntheticSource, ViewIndices
from videomae_cli.data.manifest import ManifestEntry
from videomae_cli.data.sampling import dense_test_indices, segment_test_indices
from videomae_cli.data.synthetic import MOTION_CLASSES, SyntheticVideos
from videomae_cli.data.video import VideoError, available_backends
from videomae_cli.data.views import VideoViews, ViewPlan
from videomae_cli.errors import DataError
from videomae_cli.infer.evaluate import evaluate
from videomae_cli.infer.predict import ViewPredictions, predict_views
from videomae_cli.models.classifier import VideoClassifier
from videomae_cli.models.pretrain import IMAGENET_MEAN, IMAGENET_STD
from videomae_cli.models.vit import TokenGrid
from videomae_cli.ui.progress import make_reporter

CPU = torch.device("cpu")
BACKENDS = [
    "pyav",
    pytest.param("decord", marks=pytest.mark.skipif("decord" not in available_backends(), reason="no decord")),
]
VIDEO_FRAMES = 40  # length of the generated test videos


# ------------------------------------------------------------------------------------------------------- helpers


class ArraySource:
    """A ViewSource over in-memory uint8 clips [T, H, W, 3]: exact pixels, no codec. A clip of None fails to decode."""

    def __init__(self, clips: list[torch.Tensor | None], labels: list[int] | None = None) -> None:
        self.clips = clips
        self.labels = labels if labels is not None else [i % 3 for i in range(len(clips))]

    def __len__(self) -> int:
        return len(self.clips)

    def describe(self, index: int) -> str:
        return f"array:{index}"

    def label(self, index: int) -> int:
        return self.labels[index]

    def decode(self, index: int, choose: ViewIndices) -> list[torch.Tensor]:
        clip = self.clips[index]
        if clip is None:
            raise VideoError(f"array:{index}: cannot decode")
        return [clip[torch.from_numpy(indices)] for indices in choose(clip.shape[0])]


def coordinate_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """R = column, G = row, B = frame index: every pixel says exactly where it came from."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    clip = torch.empty(frames, height, width, 3, dtype=torch.uint8)
    clip[..., 0], clip[..., 1] = xs, ys
    clip[..., 2] = torch.arange(frames).view(frames, 1, 1)
    return clip


def thirds_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """The long side cut into three solid thirds, coloured 10, 20 and 30 (the same in every channel)."""
    clip = torch.empty(frames, height, width, 3, dtype=torch.uint8)
    landscape = width > height
    third = (width if landscape else height) // 3
    for part in range(3):
        window = slice(part * third, (part + 1) * third)
        if landscape:
            clip[:, :, window] = 10 * (part + 1)
        else:
            clip[:, window] = 10 * (part + 1)
    return clip


def random_clip(frames: int, height: int, width: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (frames, height, width, 3), generator=gen, dtype=torch.uint8)


def frame_indices_of(view: torch.Tensor) -> list[int]:
    """The frame index each frame of a view of a videogen video shows."""
    return [decode_index(frame) for frame in view.numpy()]


def tiny_classifier(frames: int, size: int, num_classes: int, seed: int = 0) -> VideoClassifier:
    """The `test` size on a frames × size² grid, every parameter randomised (so logits differ between views)."""
    model = VideoClassifier(ModelSpec(name="test"), TokenGrid(frames, size, size, 16, 2), num_classes).eval()
    randomize(model, seed)
    return model


def normalise(views: torch.Tensor) -> torch.Tensor:
    """uint8 [V, T, H, W, 3] → float [V, 3, T, H, W], ImageNet mean/std in 0..255 units (design.md: run directory)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1) * 255
    return (views.permute(0, 4, 1, 2, 3).float() - mean) / std


@pytest.fixture(scope="module")
def square_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32×32 frames: the short-side resize to 32 is the identity and every crop is the whole frame."""
    return write_video(tmp_path_factory.mktemp("videos") / "square.mp4", VIDEO_FRAMES, width=32, height=32)


def real_views(video: Path, plan: ViewPlan, decoder: str = "auto", **window: int) -> VideoViews:
    spec = DataSpec(decoder=decoder, num_frames=plan.num_frames, input_size=plan.size)
    return VideoViews(VideoClips([ManifestEntry(video, 0, **window)], spec, seed=0), plan)


# ---------------------------------------------------------------------------------------- temporal views, order


@pytest.mark.parametrize("decoder", BACKENDS)
@pytest.mark.parametrize("crops", [1, 3])
def test_dense_views_are_clip_major_with_the_official_test_frames(square_video: Path, decoder: str, crops: int) -> None:
    plan = ViewPlan(clips=3, crops=crops, num_frames=4, size=32, sampling="dense", sampling_rate=2)
    sample = real_views(square_video, plan, decoder)[0]
    assert sample.failure is None
    assert sample.views.dtype == torch.uint8
    assert tuple(sample.views.shape) == (3 * crops, 4, 32, 32, 3)
    expected = dense_test_indices(VIDEO_FRAMES, 4, 2, 3)
    for view in range(3 * crops):
        clip = view // crops  # view c·S + s is clip c, crop s
        assert frame_indices_of(sample.views[view]) == expected[clip].tolist(), f"view {view}"


@pytest.mark.parametrize("clips", [2, 3])
def test_segment_views_are_clip_major_with_the_segment_test_frames(square_video: Path, clips: int) -> None:
    plan = ViewPlan(clips=clips, crops=3, num_frames=4, size=32, sampling="segment")
    sample = real_views(square_video, plan)[0]
    assert tuple(sample.views.shape) == (clips * 3, 4, 32, 32, 3)
    expected = segment_test_indices(VIDEO_FRAMES, 4, clips)
    for view in range(clips * 3):
        assert frame_indices_of(sample.views[view]) == expected[view // 3].tolist(), f"view {view}"


def test_views_of_a_windowed_entry_come_from_its_window(square_video: Path) -> None:
    # A V2 `PATH START TOTAL` entry: frames 10..29 are the whole video as far as the views are concerned.
    plan = ViewPlan(clips=2, crops=1, num_frames=4, size=32, sampling="dense", sampling_rate=2)
    sample = real_views(square_video, plan, start=10, total=20)[0]
    expected = dense_test_indices(VIDEO_FRAMES, 4, 2, 2, start=10, total=20)
    assert [frame_indices_of(view) for view in sample.views] == [e.tolist() for e in expected]
    assert min(min(frame_indices_of(view)) for view in sample.views) >= 10


def test_view_plan_follows_the_data_spec() -> None:
    data = DataSpec(num_frames=8, input_size=48, sampling="segment", sampling_rate=3)
    plan = ViewPlan.for_data(data, clips=2, crops=3)
    assert plan == ViewPlan(clips=2, crops=3, num_frames=8, size=48, sampling="segment", sampling_rate=3)
    assert plan.num_views == 6


# -------------------------------------------------------------------------------------------- crop positions


def test_three_crops_of_a_landscape_clip_are_left_centre_right() -> None:
    clip = coordinate_clip(4, 32, 96)  # short side 32 = size: no resize; crops start at x = 0, 32, 64
    plan = ViewPlan(clips=1, crops=3, num_frames=4, size=32, sampling="segment")
    views = VideoViews(ArraySource([clip]), plan)[0].views
    for crop, left in enumerate([0, 32, 64]):
        assert torch.equal(views[crop], clip[:, :, left : left + 32]), f"crop {crop}"


def test_three_crops_of_a_portrait_clip_are_top_centre_bottom() -> None:
    clip = coordinate_clip(4, 96, 32)
    plan = ViewPlan(clips=1, crops=3, num_frames=4, size=32, sampling="segment")
    views = VideoViews(ArraySource([clip]), plan)[0].views
    for crop, top in enumerate([0, 32, 64]):
        assert torch.equal(views[crop], clip[:, top : top + 32]), f"crop {crop}"


@pytest.mark.parametrize(("height", "width"), [(32, 96), (96, 32), (32, 32)], ids=["landscape", "portrait", "square"])
def test_one_crop_is_the_centre(height: int, width: int) -> None:
    clip = coordinate_clip(4, height, width)
    plan = ViewPlan(clips=1, crops=1, num_frames=4, size=32, sampling="segment")
    (view,) = VideoViews(ArraySource([clip]), plan)[0].views
    top, left = (height - 32) // 2, (width - 32) // 2
    assert torch.equal(view, clip[:, top : top + 32, left : left + 32])


@pytest.mark.parametrize(("height", "width"), [(64, 192), (192, 64)], ids=["landscape", "portrait"])
def test_crops_are_cut_after_the_short_side_resize(height: int, width: int) -> None:
    # An exact 2× downscale to 32 × 96: each third of the resized frame is one crop, each a single colour.
    plan = ViewPlan(clips=1, crops=3, num_frames=4, size=32, sampling="segment")
    views = VideoViews(ArraySource([thirds_clip(4, height, width)]), plan)[0].views
    assert tuple(views.shape) == (3, 4, 32, 32, 3)
    for crop, colour in enumerate([10, 20, 30]):
        assert bool((views[crop] == colour).all()), f"crop {crop}: {views[crop].unique().tolist()}"


def test_every_crop_of_a_clip_keeps_its_frames_in_order() -> None:
    clip = coordinate_clip(10, 32, 96)
    plan = ViewPlan(clips=2, crops=3, num_frames=4, size=32, sampling="segment")
    views = VideoViews(ArraySource([clip]), plan)[0].views
    expected = segment_test_indices(10, 4, 2)
    for view in range(6):
        assert views[view, :, 0, 0, 2].tolist() == expected[view // 3].tolist(), f"view {view}"


# ------------------------------------------------------------------------------------------------ bad videos


def test_a_video_that_fails_to_decode_comes_back_as_a_failure(square_video: Path, tmp_path: Path) -> None:
    garbage = write_text_as_video(tmp_path / "garbage.mp4")
    entries = [ManifestEntry(square_video, 1), ManifestEntry(garbage, 2), ManifestEntry(square_video, 3)]
    plan = ViewPlan(clips=2, crops=3, num_frames=4, size=32, sampling="dense", sampling_rate=2)
    views = VideoViews(VideoClips(entries, DataSpec(num_frames=4, input_size=32), seed=0), plan)
    bad = views[1]
    assert bad.views is None
    assert (bad.index, bad.label) == (1, 2)
    assert bad.failure is not None
    assert bad.failure.path == str(garbage)
    assert bad.failure.reason
    assert views[0].failure is None and views[2].failure is None


def test_prediction_skips_failed_videos_and_reports_them() -> None:
    clips = [random_clip(4, 32, 32, seed) for seed in range(4)]
    clips[2] = None
    plan = ViewPlan(clips=1, crops=1, num_frames=4, size=32, sampling="segment")
    result = predict_views(tiny_classifier(4, 32, 3), VideoViews(ArraySource(clips), plan), 2, 0, CPU)
    assert result.indices == [0, 1, 3]
    assert result.labels.tolist() == [0, 1, 0]
    assert result.probs.shape == (3, 3)
    assert [bad.path for bad in result.failures] == ["array:2"]


# ---------------------------------------------------------------------------------------- softmax averaging


def test_probabilities_are_the_mean_softmax_over_each_videos_views() -> None:
    plan = ViewPlan(clips=2, crops=3, num_frames=4, size=32, sampling="segment")
    source = ArraySource([random_clip(8, 32, 48, seed) for seed in range(3)])
    views = VideoViews(source, plan)
    model = tiny_classifier(4, 32, 5)
    # One video per batch, chunks of exactly its 6 views: the forward passes below see the same inputs and shapes.
    result = predict_views(model, views, batch_size=1, num_workers=0, device=CPU, chunk_views=plan.num_views)
    assert result.probs.dtype == np.float64
    assert result.indices == [0, 1, 2]
    assert result.labels.tolist() == source.labels
    for video in range(3):
        with torch.no_grad():
            logits = model(normalise(views[video].views))  # float32 [6, 5]
        reference = torch.softmax(logits.double(), dim=-1).mean(0).numpy()
        np.testing.assert_allclose(result.probs[video], reference, rtol=1e-12, atol=1e-15)
        averaged_logits = torch.softmax(logits.double().mean(0), dim=-1).numpy()
        assert np.abs(averaged_logits - reference).max() > 1e-6  # the test tells softmax- from logit-averaging
    np.testing.assert_allclose(result.probs.sum(1), 1.0, rtol=1e-12)


# ------------------------------------------------------------------------------------ batching independence


@pytest.fixture(scope="module")
def synthetic_views() -> tuple[VideoViews, VideoClassifier, ViewPredictions]:
    """9 synthetic videos × 6 views, a tiny classifier, and its predictions one video per batch in this process."""
    videos = SyntheticVideos(9, num_frames=4, size=64, first_index=1000)
    views = VideoViews(SyntheticSource(videos), ViewPlan(clips=2, crops=3, num_frames=4, size=64))
    model = tiny_classifier(4, 64, 8)
    return views, model, predict_views(model, views, batch_size=1, num_workers=0, device=CPU, chunk_views=16)


@pytest.mark.parametrize(("batch_size", "num_workers"), [(7, 0), (7, 2), (4, 0)])
def test_predictions_do_not_depend_on_batch_size_or_workers(
    synthetic_views: tuple[VideoViews, VideoClassifier, ViewPredictions], batch_size: int, num_workers: int
) -> None:
    views, model, one = synthetic_views
    other = predict_views(model, views, batch_size=batch_size, num_workers=num_workers, device=CPU, chunk_views=16)
    assert one.probs.shape == (9, 8)
    assert np.array_equal(one.probs, other.probs)  # bitwise
    assert np.array_equal(one.labels, other.labels)
    assert one.indices == other.indices == list(range(9))
    assert one.labels.tolist() == views.source.labels()


# ------------------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 4-step toy pretraining run and a 1-epoch fine-tune of it (8 held-out synthetic validation videos)."""
    root = tmp_path_factory.mktemp("runs")
    pretrain, finetune = root / "RUN1", root / "RUN2"
    small_val = ["--set", "data.synthetic_val_videos=8"]
    done = run_cli("pretrain", *TOY_ARGS, *small_val, "--steps", "4", "--out", str(pretrain), "--progress", "off")
    assert done.returncode == 0, done.stderr
    done = run_cli(
        "finetune",
        "--init",
        str(pretrain),
        *("--set", "data.synthetic_videos=16", *small_val, "--set", "data.num_workers=0"),
        *("--set", "optim.batch_size=4", "--epochs", "1", "--out", str(finetune), "--progress", "off"),
    )
    assert done.returncode == 0, done.stderr
    return {"root": root, "pretrain": pretrain, "finetune": finetune}


def test_evaluate_a_pretrain_run(runs: dict[str, Path]) -> None:
    done = run_cli("evaluate", str(runs["pretrain"]), "--num-workers", "0", "--progress", "off")
    assert done.returncode == 0, done.stderr
    report = json.loads((runs["pretrain"] / "eval" / "report.json").read_text())
    assert report["kind"] == "pretrain"
    assert report["num_videos"] == 8
    assert math.isfinite(report["reconstruction_loss"]) and report["reconstruction_loss"] > 0
    assert 0.0 <= report["knn"]["top1"] <= 1.0
    assert 0.0 <= report["linear_probe"]["top1"] <= 1.0


@pytest.fixture(scope="module")
def classifier_report(runs: dict[str, Path]) -> tuple[dict, Path]:
    path = runs["root"] / "reports" / "R.json"
    args = ("--views", "2x3", "--report", str(path), "--num-workers", "0", "--progress", "off")
    done = run_cli("evaluate", str(runs["finetune"] / "model.safetensors"), *args)
    assert done.returncode == 0, done.stderr
    return json.loads(path.read_text()), path


def test_evaluate_a_classifier_reports_accuracy_per_class_and_confusion(classifier_report: tuple[dict, Path]) -> None:
    report, _ = classifier_report
    assert report["kind"] == "classifier"
    assert (report["views"], report["num_views"]) == ("2x3", 6)
    assert report["num_videos"] == 8 and report["num_classes"] == 8
    for key in ("top1", "top5", "mean_class_accuracy"):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["top5"] >= report["top1"]
    assert [row["name"] for row in report["per_class"]] == list(MOTION_CLASSES)
    assert sum(row["support"] for row in report["per_class"]) == 8
    matrix = np.asarray(report["confusion_matrix"])
    assert matrix.shape == (8, 8)
    assert matrix.sum() == report["num_videos"]
    assert report["top1"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert report["skipped"] == []


def test_evaluate_writes_its_csvs_and_png_beside_the_report(classifier_report: tuple[dict, Path]) -> None:
    report, path = classifier_report
    assert set(report["files"]) == {"confusion_csv", "confusion_png", "predictions_csv"}
    for name in report["files"].values():
        assert Path(name).parent == path.parent and Path(name).is_file(), name
    assert Path(report["files"]["confusion_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(report["files"]["predictions_csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == report["num_videos"]
    assert sum(int(row["correct"]) for row in rows) == round(report["top1"] * report["num_videos"])


@pytest.fixture(scope="module")
def bad_views_run(runs: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    return run_cli("evaluate", str(runs["finetune"]), "--views", "5x2", "--progress", "off")


def test_evaluate_rejects_bad_views(bad_views_run: subprocess.CompletedProcess[str]) -> None:
    assert bad_views_run.returncode == 2
    lines = bad_views_run.stderr.strip().splitlines()
    assert len(lines) == 1 and "views" in lines[0], bad_views_run.stderr
    assert "Traceback" not in bad_views_run.stderr


def test_bad_views_error_names_the_field_once(bad_views_run: subprocess.CompletedProcess[str]) -> None:
    assert bad_views_run.stderr.startswith("error: views: "), bad_views_run.stderr


def test_evaluate_a_missing_checkpoint_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli("evaluate", str(tmp_path / "nope" / "model.safetensors"), "--progress", "off")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope" in lines[0] and "internal error" not in lines[0], done.stderr


def manifest_with_a_broken_video(folder: Path) -> Path:
    """val.csv over three good 64² videos (labels 0, 3, 5) and, second, a text file named broken.mp4."""
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        write_video(folder / name, 20, width=64, height=64)
    write_text_as_video(folder / "broken.mp4")
    manifest = folder / "val.csv"
    manifest.write_text("a.mp4 0\nbroken.mp4 1\nb.mp4 3\nc.mp4 5\n")
    return manifest


def test_evaluate_skips_undecodable_videos_and_names_them(runs: dict[str, Path], tmp_path: Path) -> None:
    manifest = manifest_with_a_broken_video(tmp_path)
    report_path = tmp_path / "report.json"
    done = run_cli(
        "evaluate",
        str(runs["finetune"]),
        *("--data", str(manifest), "--views", "2x1", "--report", str(report_path)),
        *("--num-workers", "0", "--progress", "plain"),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert report["num_videos"] == 3
    assert [row["video"] for row in report["skipped"]] == [str(tmp_path / "broken.mp4")]
    assert "broken.mp4" in done.stdout + done.stderr  # the warning names the file
    with open(report["files"]["predictions_csv"], newline="") as f:
        assert [Path(row["video"]).name for row in csv.DictReader(f)] == ["a.mp4", "b.mp4", "c.mp4"]


def test_skipped_video_warnings_survive_progress_off(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = manifest_with_a_broken_video(tmp_path)
    spec = EvaluateSpec(
        checkpoint=runs["finetune"], data=str(manifest), views="1x1", report=tmp_path / "r.json", num_workers=0
    )
    evaluate(spec, make_reporter("off"))
    captured = capsys.readouterr()
    assert "broken.mp4" in captured.out + captured.err


def test_evaluate_with_no_decodable_video_is_a_data_error(runs: dict[str, Path], tmp_path: Path) -> None:
    write_text_as_video(tmp_path / "broken.mp4")
    manifest = tmp_path / "val.csv"
    manifest.write_text("broken.mp4 1\n")
    spec = EvaluateSpec(checkpoint=runs["finetune"], data=str(manifest), report=tmp_path / "r.json", num_workers=0)
    with pytest.raises(DataError, match="could be decoded") as caught:
        evaluate(spec, make_reporter("off"))
    assert caught.value.exit_code == 3


def test_classifier_default_views_follow_the_sampling(runs: dict[str, Path], tmp_path: Path) -> None:
    spec = EvaluateSpec(
        checkpoint=runs["finetune"] / "model.safetensors", report=tmp_path / "r.json", num_workers=0, progress="off"
    )
    result = evaluate(spec, make_reporter("off"))
    assert (result.report["views"], result.report["num_views"]) == ("5x3", 15)  # dense sampling: official K400 views
    assert json.loads((tmp_path / "r.json").read_text())["views"] == "5x3"


# ----------------------------------------------------------------------------------------------------- Python API


def test_load_a_classifier_checkpoint(runs: dict[str, Path]) -> None:
    model = videomae_cli.load(runs["finetune"] / "model.safetensors")
    assert isinstance(model, VideoClassifier)
    assert model.spec.kind == "finetune"
    assert list(model.classes) == list(MOTION_CLASSES)
    assert not any(module.training for module in model.modules())
    with torch.no_grad():
        logits = model(torch.zeros(2, 3, 4, 64, 64))
    assert tuple(logits.shape) == (2, len(MOTION_CLASSES))


def test_load_a_run_directory_gives_the_same_classifier(runs: dict[str, Path]) -> None:
    from_file = videomae_cli.load(runs["finetune"] / "model.safetensors")
    from_dir = videomae_cli.load(runs["finetune"])
    assert from_dir.classes == from_file.classes
    for (name, a), (_, b) in zip(from_file.state_dict().items(), from_dir.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
