"""`videomae visualize-mask`: the clip is cut as evaluation cuts it, masked as training masks it, reconstructed by the
model with the official V1 de-normalisation, and drawn as a PNG grid, a GIF or an MP4 (design.md: commands, math).

The arrays are checked in-process; every output kind and the exit codes go through the real CLI.
"""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import TOY_ARGS, TOY_SETS, run_cli
from PIL import Image
from typer.testing import CliRunner
from videogen import write_video  # av before decord (see videogen)

from videomae_cli.checkpoint import model_metadata, save_weights
from videomae_cli.cli import app
from videomae_cli.config.resolve import resolve_spec
from videomae_cli.config.schema import FinetuneSpec, MaskSpec, ModelSpec, PretrainSpec, grid_of
from videomae_cli.config.visualize import VisualizeSpec
from videomae_cli.errors import ConfigError
from videomae_cli.models.classifier import VideoClassifier
from videomae_cli.models.pretrain import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PretrainOutput,
    PretrainVideoMAE,
    denormalize_prediction,
    reconstruction_target,
)
from videomae_cli.models.vit import TokenGrid, patchify
from videomae_cli.viz import compute, render

TOY_GRID = TokenGrid(frames=4, height=64, width=64, patch=16, tubelet=2)  # TOY_SETS' clips: 2 × 4 × 4 tokens
VIDEO_FRAMES = 40


# ------------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small odd-sized landscape video and a 320×240 one, whose frames encode their own index."""
    folder = tmp_path_factory.mktemp("videos")
    return {
        "odd": write_video(folder / "odd.mp4", VIDEO_FRAMES, width=97, height=53),
        "vga": write_video(folder / "vga.mp4", VIDEO_FRAMES, width=320, height=240),
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy pretraining run (test size, 4 frames × 64²) of 30 steps."""
    run = tmp_path_factory.mktemp("runs") / "pretrain"
    done = run_cli("pretrain", *TOY_ARGS, "--steps", "30", "--lr", "1e-2", "--out", str(run), "--progress", "off")
    assert done.returncode == 0, done.stderr
    return run


MASK_FIELDS = {"mask_type": "mask.type", "mask_ratio": "mask.ratio", "decoder_mask_ratio": "mask.decoder_ratio"}


def visualize_spec(checkpoint: Path | None = None, **settings: object) -> VisualizeSpec:
    """The spec of `visualize-mask [CKPT] --video clip.mp4 --out x.png` with `settings` (mask_ratio=… sets
    mask.ratio), resolved as the command resolves it: a bad setting is a ConfigError naming its field."""
    given = {"checkpoint": checkpoint, "video": Path("clip.mp4"), "out": Path("x.png"), **settings}
    return resolve_spec(VisualizeSpec, flags={MASK_FIELDS.get(k, k): (k, v) for k, v in given.items()})


def mask_setup(checkpoint: Path | None = None, **settings: object) -> compute.MaskViewSetup:
    """compute.setup of that spec."""
    return compute.setup(visualize_spec(checkpoint, **settings))


def toy_setup(**settings: object) -> compute.MaskViewSetup:
    """The mask alone on TOY_GRID-shaped clips."""
    return mask_setup(None, num_frames=4, input_size=64, **settings)


def grey_cells(rows: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """bool [T, h, w]: the cells of every frame that are entirely MID_GREY."""
    cells = rows.reshape(grid.frames, grid.h, grid.patch, grid.w, grid.patch, 3)
    return (cells == compute.MID_GREY).all(axis=(2, 4, 5))


def token_cells(tokens: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """bool [N] over tokens (t, h, w) → bool [T, h, w]: each tubelet's value on every one of its frames."""
    return np.repeat(tokens.reshape(grid.t, grid.h, grid.w), grid.tubelet, axis=0)


def pixels(cells: np.ndarray, patch: int = 16) -> np.ndarray:
    """bool [T, h, w] cells → bool [T, h·p, w·p] pixels."""
    return cells.repeat(patch, 1).repeat(patch, 2)


def one_line_error(done: object, code: int) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def invoke(*args: str) -> object:
    """The CLI in this process (no interpreter start-up): the same command, output and exit codes as run_cli."""
    result = CliRunner().invoke(app, ["visualize-mask", *args])
    result.returncode = result.exit_code
    return result


class Oracle(PretrainVideoMAE):
    """A model whose prediction is exactly its target: the reconstruction must then be the original."""

    def forward(self, video: torch.Tensor, mask: object) -> PretrainOutput:
        out = super().forward(video, mask)
        return PretrainOutput(out.loss, out.target, out.target)


# ---------------------------------------------------------------------------------------------- through the CLI


def test_png_grid_of_an_odd_sized_video(trained: Path, videos: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "new" / "grid.png"
    done = run_cli("visualize-mask", str(trained), "--video", str(videos["odd"]), "--out", str(out), "--error-map")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [done.stdout.strip()] and str(out) in done.stdout
    assert "5 rows × 2 frames" in done.stdout and "loss" in done.stdout

    setup = mask_setup(trained, error_map=True)
    clip, frames = compute.read_clip(videos["odd"], setup.plan)
    assert tuple(clip.shape) == (4, 64, 64, 3)  # short side 53 → 64, centre crop
    vis = compute.visualize(clip, setup, frames)
    labels = [label for label, _ in vis.rows()]
    assert labels[:4] == ["original", "masked input", "reconstruction", "reconstruction + visible"]
    assert labels[4].startswith("error")
    assert all(rows.shape == (4, 64, 64, 3) for _, rows in vis.rows())
    figure = render.grid_figure(vis)  # the default columns: the first frame of each tubelet
    assert len(figure.axes) == 5 * 2
    assert [ax.get_title().split("\n")[0] for ax in figure.axes[:2]] == ["frame 0", "frame 2"]
    assert "tube mask 0.9" in figure.get_suptitle() and "loss" in figure.get_suptitle()
    with Image.open(out) as png:
        assert png.format == "PNG"
        assert png.size == tuple(round(100 * side) for side in figure.get_size_inches())


def test_png_of_a_320x240_video_without_a_checkpoint(videos: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "mask.png"
    args = ("--video", str(videos["vga"]), "--out", str(out), "--num-frames", "8", "--input-size", "96")
    done = invoke(*args, "--frames", "all")
    assert done.returncode == 0, done.stderr
    assert "2 rows × 8 frames" in done.stdout
    setup = mask_setup(None, num_frames=8, input_size=96)
    clip, frames = compute.read_clip(videos["vga"], setup.plan)
    assert tuple(clip.shape) == (8, 96, 96, 3)
    assert frames.tolist() == list(range(4, 36, 4))  # the centred clip at sampling rate 4
    vis = compute.visualize(clip, setup, frames)
    figure = render.grid_figure(vis, compute.parse_frames("all", setup.grid))
    assert len(figure.axes) == 2 * 8
    with Image.open(out) as png:
        assert png.size == tuple(round(100 * side) for side in figure.get_size_inches())


def test_gif_has_one_image_per_clip_frame(trained: Path, videos: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "clip.gif"
    done = run_cli("visualize-mask", str(trained), "--video", str(videos["vga"]), "--out", str(out))
    assert done.returncode == 0, done.stderr
    with Image.open(out) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 4


def test_mp4_has_one_even_sized_h264_frame_per_clip_frame(
    trained: Path, videos: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "clip.mp4"
    done = run_cli("visualize-mask", str(trained), "--video", str(videos["odd"]), "--out", str(out), "--error-map")
    assert done.returncode == 0, done.stderr
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = list(container.decode(stream))
    assert len(frames) == 4
    assert frames[0].format.name == "yuv420p"
    assert frames[0].width % 2 == 0 and frames[0].height % 2 == 0


def test_missing_video_exits_3_with_one_line(tmp_path: Path) -> None:
    done = run_cli("visualize-mask", "--video", str(tmp_path / "gone.mp4"), "--out", str(tmp_path / "x.png"))
    assert "gone.mp4" in one_line_error(done, 3)
    assert not (tmp_path / "x.png").exists()


def test_help_documents_every_option() -> None:
    result = CliRunner().invoke(app, ["visualize-mask", "--help"])
    assert result.exit_code == 0
    options = re.findall(r"^\s+(--[a-z-]+)(?:\s+\S+)?\s{2,}(\S.*)$", result.stdout, flags=re.M)
    documented = {name for name, text in options if text.strip()}
    flags = {"--video", "--out", "--mask-type", "--mask-ratio", "--decoder-mask-ratio", "--frames", "--error-map"}
    assert flags | {"--seed", "--num-frames", "--input-size"} <= documented


# ------------------------------------------------------------------------------------------------- user errors


def test_bad_suffix_exits_2(videos: dict[str, Path], tmp_path: Path) -> None:
    line = one_line_error(invoke("--video", str(videos["odd"]), "--out", str(tmp_path / "x.jpg")), 2)
    assert "--out" in line


def test_frames_out_of_range_exits_2_naming_frames(videos: dict[str, Path], tmp_path: Path) -> None:
    args = ("--video", str(videos["odd"]), "--out", str(tmp_path / "x.png"), "--num-frames", "4", "--input-size", "64")
    line = one_line_error(invoke(*args, "--frames", "0,4"), 2)
    assert line.startswith("error: frames:") and "4" in line and line.endswith("(set by --frames)")


def test_negative_seed_exits_2_naming_the_flag(videos: dict[str, Path], tmp_path: Path) -> None:
    line = one_line_error(invoke("--video", str(videos["odd"]), "--out", str(tmp_path / "x.png"), "--seed", "-1"), 2)
    assert line.startswith("error: seed: ") and line.endswith("(set by --seed)")
    assert not (tmp_path / "x.png").exists()


def test_classifier_checkpoint_exits_2(videos: dict[str, Path], tmp_path: Path) -> None:
    spec = resolve_spec(FinetuneSpec, sets=[*TOY_SETS, "model.name=test", "init=none"])
    model = VideoClassifier(spec.model, TOY_GRID, 3)
    path = tmp_path / "classifier.safetensors"
    save_weights(
        path, model.state_dict(), model_metadata("classifier", spec.model_dump_json(), classes='["a","b","c"]')
    )
    line = one_line_error(invoke(str(path), "--video", str(videos["odd"]), "--out", str(tmp_path / "x.png")), 2)
    assert "pretrain checkpoint" in line


def test_error_map_needs_a_checkpoint() -> None:
    with pytest.raises(ConfigError, match=r"^error_map: "):
        toy_setup(error_map=True)


def test_the_checkpoint_fixes_the_clip_geometry(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^num_frames: "):
        mask_setup(trained, num_frames=8)
    with pytest.raises(ConfigError, match=r"^input_size: "):
        mask_setup(trained, input_size=96)
    args = ("--video", str(tmp_path / "any.mp4"), "--out", str(tmp_path / "x.png"), "--num-frames", "8")
    line = one_line_error(invoke(str(trained), *args), 2)
    assert line.startswith("error: num_frames: the checkpoint fixes the clip (4 frames of 64²)")
    assert line.endswith("(set by --num-frames)")


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        ({"mask_ratio": 1.5}, "mask.ratio"),
        ({"mask_type": "cube"}, "mask.type"),
        ({"decoder_mask_ratio": 0.3}, "mask.decoder_ratio"),
        ({"mask_ratio": 0.01, "mask_type": "frame"}, "mask.ratio"),  # masks none of the 2 time slices
    ],
)
def test_bad_mask_settings_name_the_field(flags: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(field)}: "):
        toy_setup(**flags)


# ------------------------------------------------------------------------------------------------------ arrays


def test_the_checkpoint_sets_clip_and_mask_and_flags_override_the_mask(tmp_path: Path) -> None:
    sets = [*TOY_SETS, "model.name=test", "mask.type=random", "mask.ratio=0.75", "data.sampling_rate=2"]
    spec = resolve_spec(PretrainSpec, sets=sets)
    path = tmp_path / "random.safetensors"
    save_weights(
        path,
        PretrainVideoMAE(spec.model, grid_of(spec)).state_dict(),
        model_metadata("pretrain", spec.model_dump_json()),
    )
    assert mask_setup(path).mask == MaskSpec(type="random", ratio=0.75)
    setup = mask_setup(path, mask_ratio=0.5, decoder_mask_ratio=0.25)
    assert setup.mask == MaskSpec(type="random", ratio=0.5, decoder_ratio=0.25)
    assert setup.grid == TOY_GRID
    assert (setup.plan.num_frames, setup.plan.size, setup.plan.sampling_rate) == (4, 64, 2)
    assert toy_setup().mask == MaskSpec()  # without a checkpoint: MaskSpec's defaults


def test_tube_masking_greys_the_same_cells_in_every_frame() -> None:
    clip = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8)
    vis = compute.visualize(clip, toy_setup(mask_type="tube", mask_ratio=0.75))
    grey = grey_cells(vis.masked, vis.grid)
    assert (grey == grey[0]).all()
    assert grey[0].sum() == 12  # 0.75 of 16 patches
    assert (grey == token_cells(vis.mask, vis.grid)).all()
    visible = ~pixels(grey)
    assert np.array_equal(vis.masked[visible], vis.original[visible])


def test_random_masking_greys_whole_tubelets() -> None:
    clip = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8)
    vis = compute.visualize(clip, toy_setup(mask_type="random", mask_ratio=0.5))
    grey = grey_cells(vis.masked, vis.grid)
    assert (grey[0] == grey[1]).all() and (grey[2] == grey[3]).all()  # the two frames of each tubelet
    assert (grey[0] != grey[2]).any()  # but not one spatial mask for the whole clip
    assert grey.sum() == 2 * 16  # half the tokens, two frames each


def test_the_mask_is_seeded() -> None:
    clip = torch.zeros(4, 64, 64, 3, dtype=torch.uint8)
    masks = [compute.visualize(clip, toy_setup(seed=seed)).mask for seed in (0, 0, 1)]
    assert np.array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[0], masks[2])


def test_without_a_checkpoint_only_the_mask_is_shown() -> None:
    vis = compute.visualize(torch.zeros(4, 64, 64, 3, dtype=torch.uint8), toy_setup())
    assert [label for label, _ in vis.rows()] == ["original", "masked input"]
    assert vis.reconstruction is None and vis.loss is None and not vis.predicted.any()
    assert "loss" not in vis.title()


def test_frames_default_to_the_first_frame_of_each_tubelet() -> None:
    assert compute.parse_frames(None, TOY_GRID) == [0, 2]
    assert compute.parse_frames("all", TOY_GRID) == [0, 1, 2, 3]
    assert compute.parse_frames("3, 1", TOY_GRID) == [3, 1]
    with pytest.raises(ConfigError, match=r"^frames: "):
        compute.parse_frames("one", TOY_GRID)


def test_a_trained_reconstruction_beats_the_grey_fill(trained: Path, videos: dict[str, Path]) -> None:
    setup = mask_setup(trained, error_map=True)
    clip, _ = compute.read_clip(videos["vga"], setup.plan)
    vis = compute.visualize(clip, setup)
    hidden = pixels(token_cells(vis.mask, vis.grid))  # [T, S, S]
    grey_error = ((vis.masked - vis.original)[hidden] ** 2).mean()
    recon_error = ((vis.reconstruction - vis.original)[hidden] ** 2).mean()
    assert recon_error < grey_error
    assert np.isfinite(vis.loss) and vis.loss > 0
    assert np.array_equal(vis.pasted[~hidden], vis.original[~hidden])
    assert ((vis.reconstruction >= 0) & (vis.reconstruction <= 1)).all()


def test_error_map_is_each_predicted_patchs_mse_and_blank_elsewhere(trained: Path) -> None:
    clip = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8)
    vis = compute.visualize(clip, mask_setup(trained, error_map=True))
    cells = token_cells(vis.predicted, vis.grid)  # [T, h, w]
    predicted = pixels(cells)  # [T, S, S]
    assert np.isnan(vis.error[~predicted]).all()
    # Each tubelet's MSE over its t·p·p·3 values, shown on both of its frames.
    squared = ((vis.reconstruction - vis.original) ** 2).reshape(2, 2, 4, 16, 4, 16, 3)
    expected = np.repeat(squared.mean(axis=(1, 3, 5, 6)), 2, axis=0)  # [T, h, w]
    assert np.allclose(vis.error[:, ::16, ::16][cells], expected[cells], atol=1e-6)
    colours = dict(vis.rows())
    label = next(label for label in colours if label.startswith("error"))
    assert (colours[label][~predicted] == compute.MID_GREY).all()


def test_decoder_masking_leaves_undecoded_cells_grey(trained: Path) -> None:
    clip = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8)
    vis = compute.visualize(clip, mask_setup(trained, decoder_mask_ratio=0.5))
    undecoded = vis.mask & ~vis.predicted
    assert vis.predicted.any() and undecoded.any()
    assert not (vis.predicted & ~vis.mask).any()  # predictions of visible tokens are not shown
    grey = grey_cells(vis.reconstruction, vis.grid)
    assert (grey == token_cells(~vis.predicted, vis.grid)).all()  # grey exactly where nothing was predicted
    assert (grey_cells(vis.pasted, vis.grid) == token_cells(undecoded, vis.grid)).all()
    assert "decoder mask 0.5" in vis.title()


@pytest.mark.parametrize("target", ["norm_pixel", "pixel", "patch_norm", "input"])
def test_denormalisation_inverts_the_reconstruction_target(target: str) -> None:
    gen = torch.Generator().manual_seed(0)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    pixels = torch.rand(1, 3, 4, 64, 64, generator=gen)
    patches = patchify((pixels - mean.view(1, 3, 1, 1, 1)) / std.view(1, 3, 1, 1, 1), TOY_GRID)  # [1, N, P]
    pred = reconstruction_target(patches, target, mean, std)[0]
    restored = denormalize_prediction(pred, patches[0], target)
    assert torch.allclose(restored, patchify(pixels, TOY_GRID)[0], atol=1e-5)


@pytest.mark.parametrize("target", ["norm_pixel", "pixel", "patch_norm", "input"])
def test_a_perfect_prediction_reconstructs_the_original(target: str) -> None:
    model = Oracle(ModelSpec(name="test", target=target), TOY_GRID).eval()
    setup = compute.MaskViewSetup(compute.default_geometry(4, 64)[0], TOY_GRID, MaskSpec(), seed=0, model=model)
    vis = compute.visualize(torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8), setup)
    assert np.allclose(vis.pasted, vis.original, atol=1e-5)


@pytest.mark.skipif("pred_frames" not in ModelSpec.model_fields, reason="no MAE-ST pred_frames in this version")
def test_frames_the_decoder_does_not_predict_stay_grey() -> None:
    model = Oracle(ModelSpec(name="test", target="patch_norm", pred_frames=2), TOY_GRID).eval()  # frames 0 and 3
    setup = compute.MaskViewSetup(
        compute.default_geometry(4, 64)[0], TOY_GRID, MaskSpec(), seed=0, model=model, error_map=True
    )
    vis = compute.visualize(torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8), setup)
    hidden = pixels(token_cells(vis.mask, vis.grid))
    assert np.allclose(vis.pasted[[0, 3]], vis.original[[0, 3]], atol=1e-5)
    assert (vis.reconstruction[[1, 2]] == compute.MID_GREY).all()
    assert (vis.pasted[[1, 2]][hidden[[1, 2]]] == compute.MID_GREY).all()
    assert np.isnan(vis.error[[1, 2]]).all() and np.isfinite(vis.error[[0, 3]][hidden[[0, 3]]]).all()
