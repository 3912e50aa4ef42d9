"""`videomae embed`: encoder features per video or per sliding window, batch-size independent, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize, run_cli
from videogen import decode_index, write_text_as_video, write_video  # av before decord (see videogen)

from videomae_cli.checkpoint import model_metadata, save_weights
from videomae_cli.config.schema import EmbedSpec, FinetuneSpec, PretrainSpec, grid_of
from videomae_cli.data.loader import ClipNormalizer
from videomae_cli.data.sampling import sliding_window_starts, window_indices
from videomae_cli.data.transforms import ShortSideResize, center_crop
from videomae_cli.data.video import open_video
from videomae_cli.infer.embed import embed, read_embedding
from videomae_cli.models.classifier import VideoClassifier
from videomae_cli.models.pretrain import PretrainVideoMAE
from videomae_cli.ui.progress import make_reporter

QUIET = ("--num-workers", "0", "--progress", "off")
DATA = {"num_frames": 4, "input_size": 64, "sampling_rate": 2}
LENGTHS = {"a.mp4": 40, "b.mp4": 24}


@pytest.fixture(scope="module")
def pretrain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PretrainVideoMAE]:
    spec = PretrainSpec(model={"name": "test"}, data=DATA)
    model = PretrainVideoMAE(spec.model, grid_of(spec)).eval()
    randomize(model, seed=3)
    path = tmp_path_factory.mktemp("ckpt") / "pretrain.safetensors"
    save_weights(path, model.state_dict(), model_metadata("pretrain", spec.model_dump_json()))
    return path, model


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, VideoClassifier]:
    spec = FinetuneSpec(model={"name": "test"}, data=DATA)
    model = VideoClassifier(spec.model, grid_of(spec), 3).eval()
    randomize(model, seed=5)
    path = tmp_path_factory.mktemp("ckpt") / "classifier.safetensors"
    meta = model_metadata("classifier", spec.model_dump_json(), classes=json.dumps(["x", "y", "z"]))
    save_weights(path, model.state_dict(), meta)
    return path, model


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "a.mp4", LENGTHS["a.mp4"], width=97, height=53)
    write_video(root / "b.mp4", LENGTHS["b.mp4"], width=64, height=48)
    write_text_as_video(root / "broken.mp4")
    return root


def run_embed(ckpt: Path, *inputs: Path | str, out: Path, extra: tuple[str, ...] = ()) -> Path:
    done = run_cli("embed", str(ckpt), *map(str, inputs), "--out", str(out), *QUIET, *extra)
    assert done.returncode == 0, done.stderr
    return out


def direct_features(model: torch.nn.Module, video: Path, frames: np.ndarray, tokens: bool = False) -> torch.Tensor:
    """The model's features of one clip, built by hand: decode the frames, short-side resize, centre crop."""
    with open_video(video, "pyav") as reader:
        clip = torch.from_numpy(reader.get_frames(frames.tolist()))
    clip = center_crop(ShortSideResize(64)(clip), 64)
    x = ClipNormalizer(torch.device("cpu"))(clip[None])
    with torch.no_grad():
        return (model.token_features(x) if tokens else model.features(x))[0]


@pytest.mark.parametrize("which", ["pretrain", "classifier"])
def test_features_are_the_models_pooled_features(which: str, request, folder: Path, tmp_path: Path) -> None:
    path, model = request.getfixturevalue(which)
    result, info = read_embedding(run_embed(path, folder / "a.mp4", folder / "b.mp4", out=tmp_path / "f.safetensors"))
    assert result.features.shape == (2, model.config.dim)
    assert [Path(info["paths"][v]).name for v in result.video.tolist()] == ["a.mp4", "b.mp4"]
    for row, video in enumerate(["a.mp4", "b.mp4"]):
        expected = direct_features(model, folder / video, result.frames[row].numpy())
        torch.testing.assert_close(result.features[row], expected, atol=1e-5, rtol=1e-5)


def test_the_single_clip_is_the_centred_test_clip(pretrain, folder: Path, tmp_path: Path) -> None:
    result, _ = read_embedding(run_embed(pretrain[0], folder / "a.mp4", out=tmp_path / "f.safetensors"))
    frames = result.frames[0].tolist()  # 4 frames at rate 2 span 8 of the 40 frames, centred: 16..22
    assert frames == [16, 18, 20, 22]
    assert result.window[0].tolist() == [16, 23]


def test_token_features_are_every_patch_token(pretrain, folder: Path, tmp_path: Path) -> None:
    path, model = pretrain
    out = run_embed(path, folder / "b.mp4", out=tmp_path / "t.safetensors", extra=("--pool", "tokens"))
    result, _ = read_embedding(out)
    assert result.features.shape == (1, model.grid.num_tokens, model.config.dim)
    expected = direct_features(model, folder / "b.mp4", result.frames[0].numpy(), tokens=True)
    torch.testing.assert_close(result.features[0], expected, atol=1e-5, rtol=1e-5)


def test_features_are_identical_at_batch_sizes_1_and_5(pretrain, folder: Path, tmp_path: Path) -> None:
    windows = ("--window-frames", "8", "--window-stride", "4")
    one = run_embed(pretrain[0], folder, out=tmp_path / "one.safetensors", extra=(*windows, "--batch-size", "1"))
    five = run_embed(
        pretrain[0],
        folder,
        out=tmp_path / "five.safetensors",
        extra=(*windows, "--batch-size", "5", "--num-workers", "2"),
    )
    a, b = read_embedding(one)[0], read_embedding(five)[0]
    assert len(a.video) == 9 + 5
    assert torch.equal(a.features, b.features) and torch.equal(a.frames, b.frames)


def test_sliding_windows_cover_the_video_with_the_stated_stride(pretrain, folder: Path, tmp_path: Path) -> None:
    out = run_embed(
        pretrain[0],
        folder / "a.mp4",
        out=tmp_path / "w.safetensors",
        extra=("--window-frames", "12", "--window-stride", "8"),
    )
    result, info = read_embedding(out)
    starts, ends = result.window[:, 0].tolist(), result.window[:, 1].tolist()
    assert starts == [0, 8, 16, 24, 32] and info["window_stride"] == 8
    covered = set().union(*(range(s, e) for s, e in zip(starts, ends, strict=True)))
    assert covered == set(range(LENGTHS["a.mp4"]))
    for (start, end), frames in zip(result.window.tolist(), result.frames.tolist(), strict=True):
        assert all(start <= f < end for f in frames)


@pytest.mark.parametrize(
    ("frames", "window", "stride", "starts"),
    [
        (40, 12, 8, [0, 8, 16, 24, 32]),  # the last window runs past the end (its frames are clamped)
        (40, 8, 8, [0, 8, 16, 24, 32]),
        (41, 8, 8, [0, 8, 16, 24, 32, 40]),
        (5, 16, 4, [0]),  # shorter than one window
        (40, 4, 10, [0, 10, 20, 30, 40]),  # stride > window leaves gaps, yet reaches the last frame
    ],
)
def test_window_starts_keep_a_regular_stride_to_the_last_frame(frames, window, stride, starts) -> None:
    got = sliding_window_starts(frames, window, stride)
    assert got.tolist() == starts[: len(got)] == starts
    assert got[-1] + window >= frames


def test_window_frames_are_spread_at_the_window_rate_and_clamped() -> None:
    assert window_indices(40, 8, 16, 4).tolist() == [8, 12, 16, 20]
    assert window_indices(10, 4, 8, 4).tolist() == [4, 6, 8, 9]


def test_the_decoded_frames_are_the_indexed_frames(pretrain, folder: Path, tmp_path: Path) -> None:
    """The index is exact: the pixels the model saw carry the frame numbers the index names (videogen's code)."""
    out = run_embed(pretrain[0], folder / "a.mp4", out=tmp_path / "w.safetensors", extra=("--window-frames", "8"))
    result, _ = read_embedding(out)
    with open_video(folder / "a.mp4", "pyav") as reader:
        for frames in result.frames.tolist():
            assert [decode_index(f) for f in reader.get_frames(frames)] == frames


def test_a_resumed_run_writes_the_same_file_as_an_uninterrupted_one(pretrain, folder: Path, tmp_path: Path) -> None:
    settings = ("--window-frames", "8", "--shard-size", "1")
    straight = run_embed(pretrain[0], folder, out=tmp_path / "straight.safetensors", extra=settings)

    class Interrupted(Exception):
        pass

    def stop_after_first(shard: int) -> None:
        raise Interrupted

    spec = EmbedSpec(
        checkpoint=pretrain[0],
        inputs=[folder],
        out=tmp_path / "resumed.safetensors",
        window_frames=8,
        shard_size=1,
        num_workers=0,
    )
    with pytest.raises(Interrupted):
        embed(spec, make_reporter("off"), after_shard=stop_after_first)
    assert not spec.out.exists()
    assert [p.name for p in sorted((tmp_path / "resumed.safetensors.parts").glob("shard-*"))] == [
        "shard-00000.safetensors"
    ]
    done = run_cli("embed", str(pretrain[0]), str(folder), "--out", str(spec.out), "--progress", "plain", *settings)
    assert done.returncode == 0, done.stderr
    assert "1 of 3 shards already done" in done.stdout
    assert spec.out.read_bytes() == straight.read_bytes()
    assert not (tmp_path / "resumed.safetensors.parts").exists()


def test_an_unfinished_run_with_other_settings_is_not_mixed_in(pretrain, folder: Path, tmp_path: Path) -> None:
    spec = EmbedSpec(
        checkpoint=pretrain[0], inputs=[folder], out=tmp_path / "f.safetensors", shard_size=1, num_workers=0
    )

    def stop(shard: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed(spec, make_reporter("off"), after_shard=stop)
    done = run_cli("embed", str(pretrain[0]), str(folder), "--out", str(spec.out), "--pool", "tokens", *QUIET)
    assert done.returncode == 2 and "--overwrite" in done.stderr and "Traceback" not in done.stderr
    run_embed(pretrain[0], folder, out=spec.out, extra=("--pool", "tokens", "--overwrite"))


def test_a_bad_file_is_reported_and_skipped(pretrain, folder: Path, tmp_path: Path) -> None:
    done = run_cli("embed", str(pretrain[0]), str(folder), "--out", str(tmp_path / "f.safetensors"), *QUIET)
    assert done.returncode == 0, done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error:") and "broken.mp4" in errors[0]
    result, info = read_embedding(tmp_path / "f.safetensors")
    assert len(result.video) == 2 and [Path(e.path).name for e in result.errors] == ["broken.mp4"]
    assert Path(info["errors"][0]["video"]).name == "broken.mp4"


def test_npy_output_has_a_json_lines_index(pretrain, folder: Path, tmp_path: Path) -> None:
    run_embed(pretrain[0], folder, out=tmp_path / "f.npy")
    features = np.load(tmp_path / "f.npy")
    lines = [json.loads(x) for x in (tmp_path / "f.index.jsonl").read_text().splitlines()]
    rows = [x for x in lines if "row" in x]
    assert features.shape == (2, pretrain[1].config.dim) and [x["row"] for x in rows] == [0, 1]
    assert [Path(x["video"]).name for x in rows] == ["a.mp4", "b.mp4"]
    assert [Path(x["video"]).name for x in lines if "error" in x] == ["broken.mp4"]
    safetensors = read_embedding(run_embed(pretrain[0], folder, out=tmp_path / "f.safetensors"))[0]
    assert np.array_equal(features, safetensors.features.numpy())


def test_nothing_readable_exits_3_and_writes_nothing(pretrain, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.safetensors"
    done = run_cli(
        "embed", str(pretrain[0]), str(folder / "broken.mp4"), str(tmp_path / "gone.mp4"), "--out", str(out), *QUIET
    )
    assert done.returncode == 3 and "none of the 2 inputs" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() and not (tmp_path / "f.safetensors.parts").exists()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--out", "f.txt"), "out"),
        (("--out", "f.npy", "--window-stride", "4"), "window_stride"),
        (("--out", "f.npy", "--pool", "max"), "pool"),
        ((), "--out"),
    ],
)
def test_bad_requests_exit_2_naming_the_field(pretrain, folder: Path, tmp_path: Path, args, field) -> None:
    done = run_cli("embed", str(pretrain[0]), str(folder), *args, *QUIET, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith(f"error: {field}") and "Traceback" not in done.stderr


def test_an_existing_output_is_kept_without_overwrite(pretrain, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.safetensors"
    out.write_bytes(b"keep")
    done = run_cli("embed", str(pretrain[0]), str(folder / "a.mp4"), "--out", str(out), *QUIET)
    assert done.returncode == 2 and "--overwrite" in done.stderr and out.read_bytes() == b"keep"
