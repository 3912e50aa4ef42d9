"""The pretraining model (design.md: run directory, weight names, math): sizes, the official V1 weight layout,
positions, masks as indices."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from videomae_cli.config.schema import MaskSpec, ModelSpec
from videomae_cli.config.sizes import SIZE_NAMES
from videomae_cli.masking import MaskedTokens, MaskGenerator, collate_masks
from videomae_cli.models.pretrain import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PretrainVideoMAE,
    reconstruction_loss,
)
from videomae_cli.models.vit import Attention, Positions, TokenGrid, TubeletEmbed, patchify, unpatchify

# 4 frames of 64×64 with 16-pixel patches: 2 time slices of 4×4 patches, 32 tokens.
GRID = TokenGrid(frames=4, height=64, width=64, patch=16, tubelet=2)
MAE_ST = {"pos_embed": "separable", "cls_token": True, "decoder_embed_bias": True}


def make_model(**overrides: object) -> PretrainVideoMAE:
    torch.manual_seed(0)
    return PretrainVideoMAE(ModelSpec(name="test", **overrides), GRID)


def make_video(batch: int, seed: int = 0, grid: TokenGrid = GRID) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, grid.frames, grid.height, grid.width, generator=generator)


def make_masks(batch: int, mask_type: str = "tube", first_index: int = 0, grid: TokenGrid = GRID) -> MaskedTokens:
    generator = MaskGenerator(MaskSpec(type=mask_type, ratio=0.75), grid, seed=0)
    return collate_masks([generator(0, first_index + i) for i in range(batch)])


def as_bool(tokens: MaskedTokens, num_tokens: int) -> torch.Tensor:
    """The bool mask [B, N] (True = masked) that the index tensors describe."""
    mask = torch.zeros(tokens.decoded.shape[0], num_tokens, dtype=torch.bool)
    return mask.scatter(1, tokens.decoded, True)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------------------------------
# Sizes


def full_size_counts(name: str) -> tuple[int, int]:
    """(encoder, whole model) parameter counts of size `name`, from a one-block build (a stack's blocks are alike)."""
    spec = ModelSpec(name=name)
    grid = TokenGrid(frames=16, height=224, width=224, patch=spec.patch_size, tubelet=2)
    shallow = PretrainVideoMAE(ModelSpec(name=name, depth=1, decoder_depth=1), grid)
    encoder_block, decoder_block = count(shallow.encoder.blocks[0]), count(shallow.decoder.blocks[0])
    encoder = count(shallow.encoder) + (spec.depth - 1) * encoder_block
    total = count(shallow) + (spec.depth - 1) * encoder_block + (spec.decoder_depth - 1) * decoder_block
    return encoder, total


# Encoder parameters of the official models, in millions (VideoMAE V1 / V2 papers, HF model cards).
OFFICIAL_ENCODER_M = {"tiny": 5.7, "small": 22.0, "base": 86.2, "large": 304.0, "huge": 632.0, "giant": 1011.0}


@pytest.mark.parametrize("name", list(OFFICIAL_ENCODER_M))
def test_encoder_parameter_count_matches_the_official_model(name: str) -> None:
    encoder, _ = full_size_counts(name)
    assert encoder / 1e6 == pytest.approx(OFFICIAL_ENCODER_M[name], rel=0.02)


def test_base_pretrain_model_has_the_official_94m_parameters() -> None:
    _, total = full_size_counts("base")
    assert total / 1e6 == pytest.approx(94.2, rel=0.01)


@pytest.mark.parametrize("name", SIZE_NAMES)
def test_every_size_builds_on_the_meta_device_with_official_shapes(name: str) -> None:
    spec = ModelSpec(name=name)
    p = spec.patch_size
    grid = TokenGrid(frames=16, height=224, width=224, patch=p, tubelet=2)  # giant: p=14, 16×16 patches
    with torch.device("meta"):
        model = PretrainVideoMAE(spec, grid)
        visible = torch.zeros(2, grid.num_tokens // 10, dtype=torch.long)
        decoded = torch.zeros(2, grid.num_tokens - grid.num_tokens // 10, dtype=torch.long)
        out = model(torch.empty(2, 3, 16, 224, 224), MaskedTokens(visible, decoded))
    assert model.encoder.patch_embed.proj.weight.shape == (spec.dim, 3, 2, p, p)
    assert model.decoder.head.weight.shape == (2 * p * p * 3, spec.decoder_dim)
    assert out.pred.shape == (2, decoded.shape[1], 2 * p * p * 3)
    assert out.loss.shape == ()


@pytest.mark.parametrize("name", ["test", "tiny", "small"])
def test_small_sizes_predict_every_masked_tubelet(name: str) -> None:
    grid = TokenGrid(frames=4, height=32, width=32, patch=16, tubelet=2)  # 8 tokens
    torch.manual_seed(0)
    model = PretrainVideoMAE(ModelSpec(name=name), grid)
    tokens = make_masks(2, grid=grid)
    out = model(make_video(2, grid=grid), tokens)
    assert out.pred.shape == (2, tokens.decoded.shape[1], 2 * 16 * 16 * 3)
    assert out.loss.shape == ()
    assert torch.isfinite(out.loss)


# ---------------------------------------------------------------------------------------------------------------------
# Weight layout (design.md: weight names)


def block_shapes(prefix: str, dim: int, mlp_dim: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.norm1.weight": (dim,),
        f"{prefix}.norm1.bias": (dim,),
        f"{prefix}.attn.qkv.weight": (3 * dim, dim),
        f"{prefix}.attn.q_bias": (dim,),
        f"{prefix}.attn.v_bias": (dim,),
        f"{prefix}.attn.proj.weight": (dim, dim),
        f"{prefix}.attn.proj.bias": (dim,),
        f"{prefix}.norm2.weight": (dim,),
        f"{prefix}.norm2.bias": (dim,),
        f"{prefix}.mlp.fc1.weight": (mlp_dim, dim),
        f"{prefix}.mlp.fc1.bias": (mlp_dim,),
        f"{prefix}.mlp.fc2.weight": (dim, mlp_dim),
        f"{prefix}.mlp.fc2.bias": (dim,),
    }


def official_v1_shapes(c: int, cd: int, p: int) -> dict[str, tuple[int, ...]]:
    """The MCG-NJU/VideoMAE pretrain state dict of a one-block encoder and decoder."""
    return {
        "encoder.patch_embed.proj.weight": (c, 3, 2, p, p),
        "encoder.patch_embed.proj.bias": (c,),
        **block_shapes("encoder.blocks.0", c, 4 * c),
        "encoder.norm.weight": (c,),
        "encoder.norm.bias": (c,),
        "encoder_to_decoder.weight": (cd, c),
        "mask_token": (1, 1, cd),
        **block_shapes("decoder.blocks.0", cd, 4 * cd),
        "decoder.norm.weight": (cd,),
        "decoder.norm.bias": (cd,),
        "decoder.head.weight": (3 * 2 * p * p, cd),
        "decoder.head.bias": (3 * 2 * p * p,),
    }


def test_state_dict_is_exactly_the_official_v1_layout() -> None:
    model = make_model(depth=1, decoder_depth=1)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert shapes == official_v1_shapes(64, 32, 16)


def test_mae_st_variant_adds_its_own_keys() -> None:
    model = make_model(depth=1, decoder_depth=1, **MAE_ST)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    hw, t, c, cd = GRID.per_slice, GRID.t, 64, 32
    extra = {
        "encoder.pos_embed.spatial": (1, hw, c),
        "encoder.pos_embed.temporal": (1, t, c),
        "encoder.pos_embed.cls": (1, 1, c),
        "encoder.cls_token": (1, 1, c),
        "decoder_cls_token": (1, 1, cd),
        "decoder_pos_embed.spatial": (1, hw, cd),
        "decoder_pos_embed.temporal": (1, t, cd),
        "decoder_pos_embed.cls": (1, 1, cd),
        "encoder_to_decoder.bias": (cd,),
    }
    assert shapes == {**official_v1_shapes(c, cd, 16), **extra}


# ---------------------------------------------------------------------------------------------------------------------
# Gradients


@pytest.mark.parametrize(("variant", "mask_type"), [({}, "tube"), (MAE_ST, "random")], ids=["v1", "mae_st"])
def test_every_parameter_receives_a_gradient(variant: dict[str, object], mask_type: str) -> None:
    model = make_model(**variant)
    out = model(make_video(2), make_masks(2, mask_type))
    out.loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []


# ---------------------------------------------------------------------------------------------------------------------
# Numerics (design.md: math)


def test_unpatchify_inverts_patchify_into_channels_last_frames() -> None:
    grid = TokenGrid(frames=4, height=8, width=12, patch=4, tubelet=2)
    video = make_video(1, grid=grid)  # [1, 3, T, H, W]
    assert torch.equal(unpatchify(patchify(video, grid)[0], grid), video[0].permute(1, 2, 3, 0))


def test_patchify_lays_rows_out_t_h_w_and_each_row_pt_ph_pw_c() -> None:
    grid = TokenGrid(frames=4, height=8, width=12, patch=4, tubelet=2)
    video = make_video(1, grid=grid)
    patches = patchify(video, grid)
    assert patches.shape == (1, grid.num_tokens, 2 * 4 * 4 * 3)
    for token in range(grid.num_tokens):
        t, h, w = token // grid.per_slice, token % grid.per_slice // grid.w, token % grid.w
        clip = video[0, :, 2 * t : 2 * t + 2, 4 * h : 4 * h + 4, 4 * w : 4 * w + 4]  # [3, p_t, p_h, p_w]
        assert torch.equal(patches[0, token], clip.permute(1, 2, 3, 0).reshape(-1))


def test_tubelet_embedding_equals_the_official_conv3d() -> None:
    grid = TokenGrid(frames=4, height=8, width=8, patch=4, tubelet=2)
    torch.manual_seed(0)
    embed = TubeletEmbed(dim=8, patch=4, tubelet=2)
    video = make_video(2, grid=grid)
    conv = F.conv3d(video, embed.proj.weight, embed.proj.bias, stride=(2, 4, 4))  # [B, C, t, h, w]
    assert torch.allclose(embed(patchify(video, grid)), conv.flatten(2).transpose(1, 2), atol=1e-5)


def test_attention_uses_q_and_v_biases_with_a_zero_key_bias() -> None:
    torch.manual_seed(0)
    attn = Attention(dim=32, heads=4)
    torch.nn.init.normal_(attn.q_bias)
    torch.nn.init.normal_(attn.v_bias)
    x = torch.randn(2, 5, 32)
    q, k, v = (x @ attn.qkv.weight.T).chunk(3, dim=-1)
    q, v = q + attn.q_bias, v + attn.v_bias
    heads = [t.reshape(2, 5, 4, 8).transpose(1, 2) for t in (q, k, v)]  # [B, heads, N, 8]
    weights = (heads[0] @ heads[1].transpose(-2, -1) * 8**-0.5).softmax(-1)
    expected = attn.proj((weights @ heads[2]).transpose(1, 2).reshape(2, 5, 32))
    assert torch.allclose(attn(x), expected, atol=1e-5)


def test_norm_pixel_target_standardises_each_tubelet_channel() -> None:
    model = make_model()
    video = make_video(1)
    tokens = make_masks(1)
    target = model(video, tokens).target[0]  # [N_dec, P]
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    pixels = video[0] * std + mean  # [3, T, H, W] in [0, 1]
    for row, token in enumerate(tokens.decoded[0].tolist()):
        t, h, w = token // GRID.per_slice, token % GRID.per_slice // GRID.w, token % GRID.w
        tube = pixels[:, 2 * t : 2 * t + 2, 16 * h : 16 * h + 16, 16 * w : 16 * w + 16].reshape(3, -1)  # [3, 2·p·p]
        normed = (tube - tube.mean(1, keepdim=True)) / (tube.std(1, keepdim=True) + 1e-6)
        assert torch.allclose(target[row], normed.T.reshape(-1), atol=1e-4)


def test_prediction_rows_come_from_mask_tokens_at_the_decoded_positions() -> None:
    model = make_model()
    with torch.no_grad():
        for block in model.decoder.blocks:  # zero residual branches: decoder blocks become the identity
            for layer in (block.attn.proj, block.mlp.fc2):
                layer.weight.zero_()
                layer.bias.zero_()
        tokens = make_masks(2)
        pred = model(make_video(2), tokens).pred
        rows = model.mask_token + model.decoder_pos_embed.table[tokens.decoded]  # [B, N_dec, Cd]
        torch.testing.assert_close(pred, model.decoder.head(model.decoder.norm(rows)))


def test_weighted_loss_averages_only_tokens_the_encoder_did_not_see() -> None:
    pred, target = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    weight = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    per_token = (pred - target).pow(2).mean(-1)
    expected = (per_token[0, 0] + per_token[0, 2] + per_token[1, 2]) / 3
    assert torch.allclose(reconstruction_loss(pred, target, weight), expected)


# ---------------------------------------------------------------------------------------------------------------------
# Positions


def official_sinusoid(num_positions: int, dim: int) -> torch.Tensor:
    def angle(pos: int, j: int) -> float:
        return pos / 10000 ** (2 * (j // 2) / dim)

    rows = [[(math.sin if j % 2 == 0 else math.cos)(angle(p, j)) for j in range(dim)] for p in range(num_positions)]
    return torch.tensor(rows)


def test_sincos_tables_are_non_persistent_buffers_equal_to_the_formula() -> None:
    model = make_model()
    buffers = dict(model.named_buffers())
    for name, dim in (("encoder.pos_embed.table", 64), ("decoder_pos_embed.table", 32)):
        assert name not in model.state_dict()
        assert torch.allclose(buffers[name], official_sinusoid(GRID.num_tokens, dim), atol=1e-6)


def test_sincos_rows_for_token_indices_are_table_rows() -> None:
    positions = Positions("sincos", GRID, 16, cls_token=False)
    idx = torch.tensor([[0, 5, 31], [2, 17, 30]])
    assert torch.equal(positions(idx), positions.table[idx])


def test_separable_rows_add_the_spatial_and_temporal_rows_of_each_token() -> None:
    torch.manual_seed(0)
    positions = Positions("separable", GRID, 16, cls_token=False)
    torch.nn.init.normal_(positions.spatial)
    torch.nn.init.normal_(positions.temporal)
    idx = torch.tensor([[0, 5, 31], [2, 17, 30]])
    rows = positions(idx)
    for b in range(2):
        for k, token in enumerate(idx[b].tolist()):
            t, s = divmod(token, GRID.per_slice)
            assert torch.allclose(rows[b, k], positions.spatial[0, s] + positions.temporal[0, t])


# ---------------------------------------------------------------------------------------------------------------------
# Masks as index tensors


def test_from_mask_rejects_unequal_mask_counts() -> None:
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    with pytest.raises(ValueError):
        MaskedTokens.from_mask(mask)


def test_from_mask_rejects_unequal_decoder_selection_counts() -> None:
    mask = torch.tensor([[True, False, True, False], [False, True, True, False]])
    decode = torch.tensor([[True, True, False, False], [True, True, True, False]])
    with pytest.raises(ValueError):
        MaskedTokens.from_mask(mask, decode)


def test_from_mask_indices_ascend_and_partition_the_tokens() -> None:
    generator = torch.Generator().manual_seed(0)
    mask = torch.stack([torch.randperm(GRID.num_tokens, generator=generator) < 20 for _ in range(3)])
    tokens = MaskedTokens.from_mask(mask)
    assert tokens.visible.shape == (3, GRID.num_tokens - 20)
    assert tokens.decoded.shape == (3, 20)
    for b in range(3):
        visible, decoded = tokens.visible[b], tokens.decoded[b]
        assert bool((visible.diff() > 0).all()) and bool((decoded.diff() > 0).all())
        assert bool(mask[b, decoded].all()) and not bool(mask[b, visible].any())
        assert torch.equal(torch.cat((visible, decoded)).sort().values, torch.arange(GRID.num_tokens))


def test_bool_mask_and_equivalent_index_tensors_give_the_same_output() -> None:
    model = make_model().eval()
    video, tokens = make_video(2), make_masks(2)
    with torch.no_grad():
        from_indices = model(video, tokens)
        from_bool = model(video, as_bool(tokens, GRID.num_tokens))
    assert torch.equal(from_bool.pred, from_indices.pred)
    assert torch.equal(from_bool.loss, from_indices.loss)


def test_a_sample_is_unaffected_by_the_other_samples_of_its_batch() -> None:
    model = make_model().eval()
    video, tokens = make_video(2, seed=0), make_masks(2)
    other_video = torch.cat((video[:1], make_video(1, seed=1)))
    other_tokens = make_masks(2, first_index=6)
    other_tokens = MaskedTokens(
        torch.cat((tokens.visible[:1], other_tokens.visible[1:])),
        torch.cat((tokens.decoded[:1], other_tokens.decoded[1:])),
    )
    assert not torch.equal(other_tokens.decoded[1], tokens.decoded[1])
    with torch.no_grad():
        pred, other_pred = model(video, tokens).pred, model(other_video, other_tokens).pred
    assert not torch.allclose(pred[1], other_pred[1])
    torch.testing.assert_close(pred[0], other_pred[0])


@pytest.mark.parametrize("variant", [{}, MAE_ST], ids=["sincos", "separable"])
def test_predictions_depend_on_where_the_masked_tokens_are(variant: dict[str, object]) -> None:
    # Every tubelet holds the same pixels, so two masks with equal counts show the encoder identical content:
    # only the positions can tell the masks apart.
    model = make_model(**variant).eval()
    tubelet = make_video(1, grid=TokenGrid(frames=2, height=16, width=16, patch=16, tubelet=2))
    video = tubelet.repeat(1, 1, GRID.t, GRID.h, GRID.w)  # [1, 3, T, H, W]
    first, second = make_masks(1, first_index=0), make_masks(1, first_index=1)
    assert not torch.equal(first.decoded, second.decoded)
    with torch.no_grad():
        assert not torch.allclose(model(video, first).pred, model(video, second).pred, atol=1e-4)
        for param in [*model.encoder.pos_embed.parameters(), *model.decoder_pos_embed.parameters()]:
            param.zero_()
        for table in [*model.encoder.pos_embed.buffers(), *model.decoder_pos_embed.buffers()]:
            table.zero_()
        # Control: without position information the two masks are indistinguishable.
        torch.testing.assert_close(model(video, first).pred, model(video, second).pred)
