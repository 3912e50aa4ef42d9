"""Head counts are in no tensor shape: `convert` takes them from what SRC records, or refuses naming the fields.

Every layout is built with head counts its width does not suggest: a tiny width (96 with four 24-dim heads, where a
64-dim guess gives one) and ViT-S's released width 384 with four heads instead of six, saved with and without the
training args. Each conversion either computes what the source computes (to 1e-4) or stops naming model.heads /
model.decoder_heads: never a converted model with different outputs. The attention weights are scaled up so that a
wrong head count changes the outputs by far more than the tolerance (checked below), so these tests can fail.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
import transformers
from conftest import PARITY_GRID, randomize, run_cli
from test_convert_maest import FRAMES, SIZE, MaskedAutoencoderViT, VisionTransformer, make_clip, make_noise
from torch import nn

import videomae_cli
from videomae_cli.config.schema import FinetuneSpec, ModelSpec, PretrainSpec
from videomae_cli.errors import ConfigError
from videomae_cli.interop.convert import convert, save_conversion
from videomae_cli.interop.hf import hf_config_kwargs
from videomae_cli.interop.settings import MissingSettings
from videomae_cli.models.factory import build_model

ATOL = 1e-4
GEOMETRY = {"num_frames": PARITY_GRID.frames, "input_size": PARITY_GRID.height}
GEOMETRY_SETS = [f"data.{key}={value}" for key, value in GEOMETRY.items()]  # official files do not record it
CLASSES = ["a", "b", "c"]
TINY, RELEASED_WIDTH = (96, 4, 48, 4), (384, 4, 192, 4)  # (dim, heads, decoder dim, decoder heads)
BOTH_FIELDS, ENCODER_FIELD = ["model.heads", "model.decoder_heads"], ["model.heads"]


def sharpened(model: nn.Module, seed: int) -> nn.Module:
    """Random weights with peaked attention: q and k scaled so that the head count matters."""
    randomize(model, seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("qkv.weight", "attn.q.weight", "attn.k.weight")):
                param.mul_(4)  # measured: one head instead of four then moves predictions by ~0.6, not ~0.01
    return model.eval()


def model_spec(dims: tuple[int, int, int, int], depth: int = 1) -> dict:
    dim, heads, dec_dim, dec_heads = dims
    return {
        "name": "test", "dim": dim, "heads": heads, "mlp_dim": 4 * dim, "depth": depth,
        "decoder_dim": dec_dim, "decoder_heads": dec_heads, "decoder_mlp_dim": 4 * dec_dim, "decoder_depth": 1,
    }  # fmt: skip


def official_source(kind: str, dims: tuple[int, int, int, int], depth: int = 1) -> nn.Module:
    """A model in the official V1 layout (ours): its state dict is what the official code saves."""
    if kind == "pretrain":
        return sharpened(build_model(PretrainSpec(model=model_spec(dims, depth), data=GEOMETRY)), seed=1)
    return sharpened(build_model(FinetuneSpec(model=model_spec(dims, depth), data=GEOMETRY), CLASSES), seed=2)


def save_pth(source: nn.Module, path: Path, **args: object) -> Path:
    """Saved as the official training scripts do: the weights under "model", the args beside them."""
    state = {k: v.clone() for k, v in source.state_dict().items()}
    torch.save({"model": state, **({"args": argparse.Namespace(**args)} if args else {})}, path)
    return path


def converted(src: Path, *sets: str) -> nn.Module:
    """`convert` in-process, written and loaded back as a user would."""
    out = src.with_suffix(".safetensors")
    save_conversion(convert(src, list(sets)), out)
    return videomae_cli.load(out)


def official_inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    video = torch.randn(batch, 3, PARITY_GRID.frames, 64, 64, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(batch, PARITY_GRID.num_tokens, dtype=torch.bool)
    mask[:, 1::3] = True
    return video, mask


def assert_same_outputs(source: nn.Module, ours: nn.Module, kind: str) -> None:
    video, mask = official_inputs()
    with torch.no_grad():
        if kind == "classifier":
            torch.testing.assert_close(ours(video), source(video), atol=ATOL, rtol=0)
            return
        expected, got = source(video, mask), ours(video, mask)
    torch.testing.assert_close((got.loss, got.pred), (expected.loss, expected.pred), atol=ATOL, rtol=0)


def refused_fields(src: Path, *sets: str) -> list[str]:
    with pytest.raises(MissingSettings) as refused:
        convert(src, list(sets))
    return refused.value.fields


# ----------------------------------------------------------------------------------------------- the tests can fail


def test_a_wrong_head_count_changes_the_outputs_far_beyond_the_tolerance(tmp_path: Path) -> None:
    source = official_source("pretrain", TINY)
    ours = converted(save_pth(source, tmp_path / "ckpt.pth"), *GEOMETRY_SETS, "model.heads=1", "model.decoder_heads=4")
    with pytest.raises(AssertionError):
        assert_same_outputs(source, ours, "pretrain")
    source = maest_pretrain(TINY)
    src = save_pth(source, tmp_path / "maest.pth", num_heads=1, decoder_num_heads=4)
    with pytest.raises(AssertionError):
        assert_maest_outputs(source, converted(src))


# ---------------------------------------------------------------------------------------------- official V1 / V2


@pytest.mark.parametrize("dims", [TINY, RELEASED_WIDTH], ids=["tiny-width", "released-width"])
@pytest.mark.parametrize(("kind", "fields"), [("pretrain", BOTH_FIELDS), ("classifier", ENCODER_FIELD)])
def test_official_without_args_is_refused_naming_the_head_fields(
    kind: str, fields: list[str], dims: tuple[int, int, int, int], tmp_path: Path
) -> None:
    src = save_pth(official_source(kind, dims), tmp_path / "ckpt.pth")
    assert refused_fields(src, *GEOMETRY_SETS) == fields


@pytest.mark.parametrize("dims", [TINY, RELEASED_WIDTH], ids=["tiny-width", "released-width"])
@pytest.mark.parametrize("kind", ["pretrain", "classifier"])
def test_official_with_heads_in_the_saved_args_converts_exactly(
    kind: str, dims: tuple[int, int, int, int], tmp_path: Path
) -> None:
    source = official_source(kind, dims)
    src = save_pth(source, tmp_path / "ckpt.pth", **GEOMETRY, num_heads=dims[1], decoder_num_heads=dims[3])
    assert_same_outputs(source, converted(src), kind)


@pytest.mark.parametrize("kind", ["pretrain", "classifier"])
def test_official_with_heads_set_by_the_user_converts_exactly(kind: str, tmp_path: Path) -> None:
    source = official_source(kind, TINY)
    heads = ["model.heads=4", "model.decoder_heads=4"] if kind == "pretrain" else ["model.heads=4"]
    assert_same_outputs(source, converted(save_pth(source, tmp_path / "ckpt.pth"), *GEOMETRY_SETS, *heads), kind)


def test_official_factory_named_in_the_args_gives_its_heads(tmp_path: Path) -> None:
    source = official_source("pretrain", (384, 6, 192, 3))  # pretrain_videomae_small_patch16_224's heads
    src = save_pth(source, tmp_path / "ckpt.pth", **GEOMETRY, model="pretrain_videomae_small_patch16_224")
    conversion = convert(src, [])
    assert "pretrain_videomae_small_patch16_224" in conversion.settings["model.heads"].origin
    assert_same_outputs(source, converted(src), "pretrain")


def test_official_factory_of_another_width_is_refused(tmp_path: Path) -> None:
    src = save_pth(official_source("pretrain", TINY), tmp_path / "ckpt.pth", model="pretrain_videomae_base_patch16_224")
    with pytest.raises(ConfigError, match=r"args\.model pretrain_videomae_base_patch16_224 builds width 768"):
        convert(src, GEOMETRY_SETS)


def test_official_released_architecture_without_args_takes_the_released_heads(tmp_path: Path) -> None:
    source = official_source("pretrain", (384, 6, 192, 3), depth=12)  # ViT-S: 12 blocks of MLP 1536
    src = save_pth(source, tmp_path / "ckpt.pth")
    conversion = convert(src, GEOMETRY_SETS)
    assert conversion.settings["model.heads"].origin == "released ViT-S (width 384, depth 12, MLP 1536)"
    assert_same_outputs(source, converted(src, *GEOMETRY_SETS), "pretrain")


# ---------------------------------------------------------------------------------------------------------- MAE-ST


def maest_pretrain(dims: tuple[int, int, int, int]) -> nn.Module:
    return sharpened(MaskedAutoencoderViT(dims=dims), seed=3)


def assert_maest_outputs(source: nn.Module, ours: nn.Module) -> None:
    video, noise = make_clip(), make_noise()
    with torch.no_grad():
        loss, pred, mask = source(video, 0.75, noise)
        got = ours(video, mask.bool())
    expected = pred[mask.bool()].reshape(got.pred.shape)
    torch.testing.assert_close((got.loss, got.pred), (loss, expected), atol=ATOL, rtol=0)


@pytest.mark.parametrize("dims", [TINY, RELEASED_WIDTH], ids=["tiny-width", "released-width"])
def test_maest_without_args_is_refused_naming_the_head_fields(dims: tuple[int, int, int, int], tmp_path: Path) -> None:
    src = tmp_path / "released.pth"
    torch.save({"model_state": maest_pretrain(dims).state_dict()}, src)
    assert refused_fields(src) == BOTH_FIELDS


@pytest.mark.parametrize("dims", [TINY, RELEASED_WIDTH], ids=["tiny-width", "released-width"])
def test_maest_with_heads_in_the_saved_args_converts_exactly(dims: tuple[int, int, int, int], tmp_path: Path) -> None:
    source = maest_pretrain(dims)
    args = {"num_frames": FRAMES, "input_size": SIZE, "norm_pix_loss": True}
    src = save_pth(source, tmp_path / "ckpt.pth", **args, num_heads=dims[1], decoder_num_heads=dims[3])
    assert_maest_outputs(source, converted(src))


@pytest.mark.parametrize("dims", [TINY, RELEASED_WIDTH], ids=["tiny-width", "released-width"])
def test_maest_classifier_is_refused_without_heads_and_exact_with_them(
    dims: tuple[int, int, int, int], tmp_path: Path
) -> None:
    source = sharpened(VisionTransformer(dim=dims[0], heads=dims[1]), seed=4)
    torch.save({"model_state": source.state_dict()}, tmp_path / "released.pth")
    assert refused_fields(tmp_path / "released.pth") == ENCODER_FIELD
    video = make_clip()
    with torch.no_grad():
        expected = source(video)
        by_user = converted(tmp_path / "released.pth", f"model.heads={dims[1]}")(video)
        by_args = converted(save_pth(source, tmp_path / "ft.pth", num_heads=dims[1]))(video)
    torch.testing.assert_close(by_user, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(by_args, expected, atol=ATOL, rtol=0)


# -------------------------------------------------------------------------------------------------------------- HF


@pytest.mark.parametrize("dims", [TINY, RELEASED_WIDTH], ids=["tiny-width", "released-width"])
def test_hf_takes_non_default_heads_from_config_json(dims: tuple[int, int, int, int], tmp_path: Path) -> None:
    spec = ModelSpec(**model_spec(dims))
    hf = transformers.VideoMAEForPreTraining(transformers.VideoMAEConfig(**hf_config_kwargs(spec, PARITY_GRID)))
    sharpened(hf, seed=5)
    hf.decoder.norm.eps = spec.layer_norm_eps  # HF hard-codes 1e-5 here; only the head count is under test
    hf.save_pretrained(tmp_path / "hf")
    conversion = convert(tmp_path / "hf", [])
    assert conversion.settings["model.heads"].origin == "config.json"
    video, mask = official_inputs()
    with torch.no_grad():
        expected = hf(pixel_values=video.transpose(1, 2), bool_masked_pos=mask)
        got = converted(tmp_path / "hf")(video, mask)
    torch.testing.assert_close((got.loss, got.pred), (expected.loss, expected.logits), atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------------------------------- CLI


def test_cli_refusal_is_one_line_naming_the_fields_and_how_to_set_them(tmp_path: Path) -> None:
    src = save_pth(official_source("pretrain", TINY), tmp_path / "ckpt.pth")
    done = run_cli("convert", str(src), "--out", str(tmp_path / "out.safetensors"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "model.heads or model.decoder_heads" in lines[0]
    assert "--set model.heads=N --set model.decoder_heads=N" in lines[0]
    assert not (tmp_path / "out.safetensors").exists()
