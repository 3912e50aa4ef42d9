"""Parity with HF transformers' VideoMAEForPreTraining: our random weights copied across give the same loss and logits.

Every parameter, biases and LayerNorm weights included, gets its own random values, so a swapped or dropped mapping
entry cannot hide behind zeros or ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PARITY_GRID, parity_model, parity_spec, randomize
from torch import nn

from videomae_cli.config.schema import MaskSpec, ModelSpec
from videomae_cli.interop.hf import (
    from_hf_pretraining_state_dict,
    hf_config_kwargs,
    installed_qv_bias_style,
    to_hf_pretraining_state_dict,
)
from videomae_cli.masking import MaskedTokens, MaskGenerator, collate_masks, random_mask, tube_mask
from videomae_cli.models.pretrain import IMAGENET_MEAN, IMAGENET_STD, PretrainVideoMAE
from videomae_cli.models.vit import TokenGrid

transformers = pytest.importorskip("transformers")  # the `dev` extra

GRID = PARITY_GRID
BATCH = 2
ATOL = 1e-5


def make_hf(spec: ModelSpec, attn: str = "sdpa") -> nn.Module:
    """A random-init HF model of the same shape, with the decoder norm eps aligned to ours (HF hard-codes 1e-5)."""
    config = transformers.VideoMAEConfig(**hf_config_kwargs(spec, GRID), attn_implementation=attn)
    model = transformers.VideoMAEForPreTraining(config).eval()
    model.decoder.norm.eps = spec.layer_norm_eps
    return model


def copy_into_hf(ours: PretrainVideoMAE, hf: nn.Module) -> None:
    result = hf.load_state_dict(to_hf_pretraining_state_dict(ours.state_dict()), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def make_clip(seed: int = 0) -> torch.Tensor:
    """A clip [B, 3, T, H, W] of [0, 1] pixels normalised with ImageNet mean/std, as the data pipeline produces."""
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.rand(BATCH, 3, GRID.frames, GRID.height, GRID.width, generator=gen)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None, None]
    return (pixels - mean) / std


def make_mask(kind: str, seed: int = 0) -> torch.Tensor:
    """bool [B, N], True = masked, a different mask per sample with the same count."""
    make = {"tube": tube_mask, "random": random_mask}[kind]
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([make(GRID, 0.75, rng) for _ in range(BATCH)]))


def hf_forward(hf: nn.Module, video: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HF takes [B, T, C, H, W]."""
    out = hf(pixel_values=video.permute(0, 2, 1, 3, 4), bool_masked_pos=mask)
    return out.loss, out.logits


def test_converted_keys_and_shapes_are_hf_keys() -> None:
    ours = parity_model()
    converted = to_hf_pretraining_state_dict(ours.state_dict())
    expected = make_hf(parity_spec()).state_dict()
    assert set(converted) == set(expected)
    assert all(converted[k].shape == expected[k].shape for k in expected)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("target", ["norm_pixel", "pixel"])
@pytest.mark.parametrize("mask_kind", ["tube", "random"])
@torch.no_grad()
def test_loss_and_logits_match_hf(mask_kind: str, target: str, attn: str) -> None:
    ours = parity_model(target)
    hf = make_hf(parity_spec(target), attn)
    assert hf.config.norm_pix_loss == (target == "norm_pixel")
    copy_into_hf(ours, hf)
    video, mask = make_clip(), make_mask(mask_kind)

    out = ours(video, mask)
    hf_loss, hf_logits = hf_forward(hf, video, mask)

    assert out.pred.shape == hf_logits.shape == (BATCH, int(mask[0].sum()), GRID.patch_dim)
    torch.testing.assert_close(out.pred, hf_logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.loss, hf_loss, atol=ATOL, rtol=0)


@torch.no_grad()
def test_masked_tokens_input_matches_bool_mask_and_hf() -> None:
    ours = parity_model()
    hf = make_hf(parity_spec())
    copy_into_hf(ours, hf)
    generator = MaskGenerator(MaskSpec(type="tube", ratio=0.75), GRID, seed=3)
    tokens = collate_masks([generator(epoch=0, index=i) for i in range(BATCH)])
    mask = torch.ones(BATCH, GRID.num_tokens, dtype=torch.bool).scatter(1, tokens.visible, False)
    video = make_clip()

    from_indices, from_bool = ours(video, tokens), ours(video, mask)
    hf_loss, hf_logits = hf_forward(hf, video, mask)

    torch.testing.assert_close(from_indices.pred, from_bool.pred, atol=0, rtol=0)
    torch.testing.assert_close(from_indices.loss, from_bool.loss, atol=0, rtol=0)
    torch.testing.assert_close(from_indices.pred, hf_logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(from_indices.loss, hf_loss, atol=ATOL, rtol=0)
    assert isinstance(tokens, MaskedTokens)


@pytest.mark.parametrize("style", ["v4", "v5"])
def test_round_trip_ours_hf_ours_is_identity(style: str) -> None:
    state = parity_model().state_dict()
    back = from_hf_pretraining_state_dict(to_hf_pretraining_state_dict(state, qv_bias_style=style))
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_qv_bias_styles_name_the_biases() -> None:
    state = parity_model().state_dict()
    prefix = "videomae.encoder.layer.1.attention.attention."
    v4 = to_hf_pretraining_state_dict(state, qv_bias_style="v4")
    v5 = to_hf_pretraining_state_dict(state, qv_bias_style="v5")
    assert torch.equal(v4[prefix + "q_bias"], state["encoder.blocks.1.attn.q_bias"])
    assert torch.equal(v5[prefix + "value.bias"], state["encoder.blocks.1.attn.v_bias"])
    assert prefix + "query.bias" not in v4 and prefix + "q_bias" not in v5
    expected = "v5" if int(transformers.__version__.split(".")[0]) >= 5 else "v4"
    assert installed_qv_bias_style() == expected


def assert_hf_qv_biases_are_ours(hf: nn.Module, ours: PretrainVideoMAE) -> None:
    """design.md: weight names: some HF 5.x releases loaded the q/v biases as zeros, so check them after every load."""
    pairs = [(hf.videomae.encoder.layer, ours.encoder.blocks), (hf.decoder.decoder_layers, ours.decoder.blocks)]
    for hf_layers, our_blocks in pairs:
        for layer, block in zip(hf_layers, our_blocks, strict=True):
            hf_attn, our_attn = layer.attention.attention, block.attn
            for hf_bias, our_bias in ((hf_attn.query.bias, our_attn.q_bias), (hf_attn.value.bias, our_attn.v_bias)):
                assert bool((hf_bias != 0).all())
                assert torch.equal(hf_bias, our_bias)


def test_hf_holds_our_nonzero_qv_biases_after_load_state_dict() -> None:
    ours = parity_model()
    hf = make_hf(parity_spec())
    copy_into_hf(ours, hf)
    assert_hf_qv_biases_are_ours(hf, ours)


@pytest.mark.parametrize("style", ["v4", "v5"])
def test_hf_from_pretrained_keeps_qv_biases(tmp_path, style: str) -> None:
    """What `export --format hf` writes must survive the installed transformers' own loader, in either bias style."""
    safetensors_torch = pytest.importorskip("safetensors.torch")
    ours = parity_model()
    make_hf(parity_spec()).config.save_pretrained(tmp_path)
    weights = to_hf_pretraining_state_dict(ours.state_dict(), qv_bias_style=style)
    safetensors_torch.save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})

    hf = transformers.VideoMAEForPreTraining.from_pretrained(tmp_path).eval()

    assert_hf_qv_biases_are_ours(hf, ours)
    hf.decoder.norm.eps = parity_spec().layer_norm_eps
    video, mask = make_clip(), make_mask("tube")
    with torch.no_grad():
        torch.testing.assert_close(ours(video, mask).loss, hf_forward(hf, video, mask)[0], atol=ATOL, rtol=0)


def test_hf_to_ours_loads_strict_and_matches() -> None:
    """The other direction: a random HF model converted to ours loads with strict=True and agrees."""
    hf = make_hf(parity_spec())
    randomize(hf, seed=1)
    ours = PretrainVideoMAE(parity_spec(), GRID).eval()
    ours.load_state_dict(from_hf_pretraining_state_dict(hf.state_dict()), strict=True)
    video, mask = make_clip(), make_mask("random")
    with torch.no_grad():
        torch.testing.assert_close(ours(video, mask).loss, hf_forward(hf, video, mask)[0], atol=ATOL, rtol=0)


def test_unmappable_keys_are_errors_not_dropped() -> None:
    with pytest.raises(ValueError, match=r"encoder\.pos_embed\.spatial"):
        to_hf_pretraining_state_dict({"encoder.pos_embed.spatial": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"classifier\.weight"):
        from_hf_pretraining_state_dict({"classifier.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="incomplete query/key/value"):
        from_hf_pretraining_state_dict({"videomae.encoder.layer.0.attention.attention.query.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="qv_bias_style"):
        to_hf_pretraining_state_dict({}, qv_bias_style="v3")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"target": "patch_norm"}, "model.target"),
        ({"target": "input"}, "model.target"),
        ({"pos_embed": "separable"}, "model.pos_embed"),
        ({"cls_token": True}, "model.cls_token"),
    ],
)
def test_hf_config_rejects_what_hf_cannot_represent(override: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        hf_config_kwargs(ModelSpec(name="test", **override), GRID)


def test_hf_config_carries_eps_and_nonsquare_size() -> None:
    grid = TokenGrid(frames=4, height=32, width=64, patch=16, tubelet=2)
    kwargs = hf_config_kwargs(ModelSpec(name="test", layer_norm_eps=1e-6), grid)
    assert kwargs["layer_norm_eps"] == 1e-6 and kwargs["image_size"] == [32, 64]
    hf = transformers.VideoMAEForPreTraining(transformers.VideoMAEConfig(**kwargs))
    assert hf.videomae.embeddings.num_patches == grid.num_tokens
