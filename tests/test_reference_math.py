"""Our fused model against a plain float64 reference written from the official code, line by line (design.md: math).

The reference reads the weights by their official names and does what MCG-NJU/VideoMAE (V1), OpenGVLab/VideoMAEv2
(decoder masking) and facebookresearch/mae_st (patch-norm target) do: a Conv3d over the full clip, the sinusoid
table added to every token, boolean selection of the visible ones, attention written out, concatenation of
[visible + pos, mask_token + pos_masked], and the targets of their training engines.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import PARITY_GRID, parity_model, parity_spec
from torch import Tensor, nn

from videomae_cli.config.schema import ModelSpec
from videomae_cli.masking import MaskedTokens, random_mask, running_cell_selection, tube_mask
from videomae_cli.models.vit import sinusoid_table

GRID = PARITY_GRID
BATCH = 2
ATOL = 1e-5
MEAN = torch.tensor((0.485, 0.456, 0.406), dtype=torch.float64)
STD = torch.tensor((0.229, 0.224, 0.225), dtype=torch.float64)
EPS = 1e-6


# ---------------------------------------------------------------------------------------------------------------------
# The reference, in float64, on a state dict with the official names.


def get_sinusoid_encoding_table(n_position: int, d_hid: int) -> np.ndarray:
    """The official V1 table (modeling_finetune.py), as written there. → [n_position, d_hid]."""

    def get_position_angle_vec(position: int) -> list[float]:
        return [position / np.power(10000, 2 * (hid_j // 2) / d_hid) for hid_j in range(d_hid)]

    table = np.array([get_position_angle_vec(pos_i) for pos_i in range(n_position)])
    table[:, 0::2] = np.sin(table[:, 0::2])  # dim 2i
    table[:, 1::2] = np.cos(table[:, 1::2])  # dim 2i+1
    return table


def layer_norm(x: Tensor, sd: dict[str, Tensor], name: str) -> Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased, as nn.LayerNorm
    return (x - mean) / torch.sqrt(var + EPS) * sd[f"{name}.weight"] + sd[f"{name}.bias"]


def linear(x: Tensor, sd: dict[str, Tensor], name: str) -> Tensor:
    return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]


def attention(x: Tensor, sd: dict[str, Tensor], name: str, heads: int) -> Tensor:
    """The official Attention.forward: qkv bias cat(q_bias, zeros, v_bias), softmax(q·scale @ kᵀ) @ v."""
    b, n, c = x.shape
    qkv_bias = torch.cat((sd[f"{name}.q_bias"], torch.zeros_like(sd[f"{name}.v_bias"]), sd[f"{name}.v_bias"]))
    qkv = x @ sd[f"{name}.qkv.weight"].T + qkv_bias
    qkv = qkv.reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    q = q * (c // heads) ** -0.5
    attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
    x = (attn @ v).transpose(1, 2).reshape(b, n, -1)
    return linear(x, sd, f"{name}.proj")


def block(x: Tensor, sd: dict[str, Tensor], name: str, heads: int) -> Tensor:
    x = x + attention(layer_norm(x, sd, f"{name}.norm1"), sd, f"{name}.attn", heads)
    h = linear(layer_norm(x, sd, f"{name}.norm2"), sd, f"{name}.mlp.fc1")
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))  # exact GELU, nn.GELU()
    return x + linear(h, sd, f"{name}.mlp.fc2")


def reference_pred(
    video: Tensor, mask: Tensor, sd: dict[str, Tensor], spec: ModelSpec, decode: Tensor | None = None
) -> Tensor:
    """The official PretrainVisionTransformer.forward (V1), or V2's with `decode` (True = the decoder reconstructs it).

    → pred [B, N_pred, P] for the masked (or decoded) tokens in ascending token order.
    """
    b = video.shape[0]
    # Encoder: Conv3d patch embedding of the full clip, + the fixed table, then keep the visible tokens.
    weight = sd["encoder.patch_embed.proj.weight"]
    x = F.conv3d(video, weight, sd["encoder.patch_embed.proj.bias"], stride=weight.shape[2:])
    x = x.flatten(2).transpose(1, 2)  # [B, N, C]
    x = x + torch.from_numpy(get_sinusoid_encoding_table(GRID.num_tokens, spec.dim))
    x_vis = x[~mask].reshape(b, -1, spec.dim)
    for i in range(spec.depth):
        x_vis = block(x_vis, sd, f"encoder.blocks.{i}", spec.heads)
    x_vis = layer_norm(x_vis, sd, "encoder.norm")
    # Decoder: [visible + pos, mask_token + pos of the masked (V2: decoded) tokens], head on the last ones.
    x_vis = x_vis @ sd["encoder_to_decoder.weight"].T
    pos = torch.from_numpy(get_sinusoid_encoding_table(GRID.num_tokens, spec.decoder_dim)).expand(b, -1, -1)
    pos_vis = pos[~mask].reshape(b, -1, spec.decoder_dim)
    pos_mask = pos[mask if decode is None else decode].reshape(b, -1, spec.decoder_dim)
    x = torch.cat([x_vis + pos_vis, sd["mask_token"] + pos_mask], dim=1)
    for j in range(spec.decoder_depth):
        x = block(x, sd, f"decoder.blocks.{j}", spec.decoder_heads)
    return linear(layer_norm(x[:, -pos_mask.shape[1] :], sd, "decoder.norm"), sd, "decoder.head")


def rearrange_tubelets(video: Tensor, p: int) -> Tensor:
    """einops 'b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c' with p0=2, written as explicit slicing."""
    rows = []
    for t in range(video.shape[2] // 2):
        for h in range(video.shape[3] // p):
            for w in range(video.shape[4] // p):
                cube = video[:, :, 2 * t : 2 * t + 2, h * p : (h + 1) * p, w * p : (w + 1) * p]  # [B, c, p0, p1, p2]
                rows.append(cube.permute(0, 2, 3, 4, 1).reshape(video.shape[0], -1, 3))  # [B, p0·p1·p2, c]
    return torch.stack(rows, dim=1)


def reference_v1_target(video: Tensor, normalize: bool) -> Tensor:
    """The official engine_for_pretraining.py target for every token. → [B, N, P]."""
    unnorm_videos = video * STD[None, :, None, None, None] + MEAN[None, :, None, None, None]
    videos_squeeze = rearrange_tubelets(unnorm_videos, GRID.patch)
    if normalize:
        videos_squeeze = (videos_squeeze - videos_squeeze.mean(dim=-2, keepdim=True)) / (
            videos_squeeze.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6
        )
    return videos_squeeze.flatten(2)  # 'b n p c -> b n (p c)'


def reference_mae_st_target(video: Tensor, norm_pix_loss: bool) -> Tensor:
    """MAE-ST's forward_loss target: patchify the (normalised) input, with pred_t_dim = T so u = tubelet, and with
    norm_pix_loss standardise each patch. → [B, N, P]."""
    n, _, t_all, h_all, _ = video.shape
    p, u = GRID.patch, GRID.tubelet
    x = video.reshape(n, 3, t_all // u, u, h_all // p, p, -1, p)
    x = torch.einsum("nctuhpwq->nthwupqc", x).reshape(n, GRID.num_tokens, -1)
    if not norm_pix_loss:
        return x
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True)
    return (x - mean) / (var + 1.0e-6) ** 0.5


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures: tiny models with every parameter random, clips, masks.


def float64_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.double() for k, v in model.state_dict().items()}


def make_video(seed: int = 0) -> Tensor:
    """float32 [B, 3, T, H, W]: [0, 1] pixels normalised with ImageNet mean/std."""
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.rand(BATCH, 3, GRID.frames, GRID.height, GRID.width, generator=gen, dtype=torch.float64)
    return ((pixels - MEAN[:, None, None, None]) / STD[:, None, None, None]).float()


def make_mask(kind: str, ratio: float = 0.75, seed: int = 0) -> Tensor:
    make = {"tube": tube_mask, "random": random_mask}[kind]
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([make(GRID, ratio, rng) for _ in range(BATCH)]))


# ---------------------------------------------------------------------------------------------------------------------


def test_model_position_tables_are_the_sinusoid_table() -> None:
    model = parity_model()
    assert torch.equal(model.encoder.pos_embed.table, sinusoid_table(GRID.num_tokens, 64))
    assert torch.equal(model.decoder_pos_embed.table, sinusoid_table(GRID.num_tokens, 32))
    pos, j, dim = 5, 7, 64  # one entry by hand: odd j → cos(pos / 10000^(2·⌊j/2⌋/d))
    assert math.isclose(
        float(model.encoder.pos_embed.table[pos, j]), math.cos(pos / 10000 ** (2 * 3 / dim)), abs_tol=1e-6
    )


@pytest.mark.parametrize(("num_positions", "dim"), [(GRID.num_tokens, 384), (1568, 768)])
def test_sinusoid_table_is_the_official_table(num_positions: int, dim: int) -> None:
    """Both are float64 math cast to float32 once, so they agree to the last bit at the official sizes too
    (a float32 exponent 10000^(2⌊j/2⌋/d) alone drifts by ~6e-5 at 1568 positions)."""
    official = torch.FloatTensor(get_sinusoid_encoding_table(num_positions, dim))
    torch.testing.assert_close(sinusoid_table(num_positions, dim), official, atol=2e-7, rtol=0)  # ~1 float32 ulp


@pytest.mark.parametrize("target", ["norm_pixel", "pixel"])
@pytest.mark.parametrize("mask_kind", ["tube", "random"])
@torch.no_grad()
def test_loss_and_pred_match_official_v1(mask_kind: str, target: str) -> None:
    model, video, mask = parity_model(target), make_video(), make_mask(mask_kind)
    out = model(video, mask)

    pred = reference_pred(video.double(), mask, float64_state(model), parity_spec())
    labels = reference_v1_target(video.double(), normalize=target == "norm_pixel")
    labels = labels[mask].reshape(BATCH, -1, GRID.patch_dim)
    loss = F.mse_loss(pred, labels)

    torch.testing.assert_close(out.target.double(), labels, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.pred.double(), pred, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.loss.double(), loss, atol=ATOL, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize(("target_name", "norm_pix_loss"), [("patch_norm", True), ("input", False)])
def test_mae_st_targets_match_mae_st(target_name: str, norm_pix_loss: bool) -> None:
    model, video, mask = parity_model(target_name), make_video(), make_mask("random")
    out = model(video, mask)

    pred = reference_pred(video.double(), mask, float64_state(model), parity_spec())
    target = reference_mae_st_target(video.double(), norm_pix_loss)
    # MAE-ST's forward_loss: per-token mean, then the mean over masked tokens.
    per_token = (pred - target[mask].reshape(BATCH, -1, GRID.patch_dim)) ** 2
    per_token = per_token.mean(dim=-1)
    loss_mask = mask.double()[mask].reshape(per_token.shape)
    loss = (per_token * loss_mask).sum() / loss_mask.sum()

    torch.testing.assert_close(out.target.double(), target[mask].reshape(BATCH, -1, GRID.patch_dim), atol=ATOL, rtol=0)
    torch.testing.assert_close(out.loss.double(), loss, atol=ATOL, rtol=0)


def running_cell_decode(seed: int = 0) -> Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([running_cell_selection(GRID, 0.5, rng) for _ in range(BATCH)]))


def random_decode(seed: int = 0) -> Tensor:
    """Any fixed-count selection will do: 12 of 32 tokens per sample, anywhere."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(GRID.num_tokens, generator=gen) for _ in range(BATCH)])
    return torch.zeros(BATCH, GRID.num_tokens, dtype=torch.bool).scatter(1, order[:, :12], True)


@pytest.mark.parametrize("make_decode", [running_cell_decode, random_decode])
@torch.no_grad()
def test_decoder_masking_matches_official_v2(make_decode) -> None:
    """V2 dual masking: mask tokens at every decoded position (seen by the encoder or not), pred rows ascending,
    loss only over decoded positions the encoder did not see (engine_for_pretraining.py's cal_loss_mask)."""
    model, video, mask, decode = parity_model(), make_video(), make_mask("tube", ratio=0.5), make_decode()
    assert bool((decode & ~mask).any()) and bool((decode & mask).any())  # both kinds of decoded token occur
    tokens = MaskedTokens.from_mask(mask, decode)
    out = model(video, tokens)

    pred = reference_pred(video.double(), mask, float64_state(model), parity_spec(), decode=decode)
    labels = reference_v1_target(video.double(), normalize=True)[decode].reshape(BATCH, -1, GRID.patch_dim)
    per_token = ((pred - labels) ** 2).mean(dim=-1)
    cal_loss_mask = mask[decode].reshape(BATCH, -1).double()
    loss = (per_token * cal_loss_mask).sum() / cal_loss_mask.sum()

    assert torch.equal(tokens.decoded, torch.nonzero(decode)[:, 1].reshape(BATCH, -1))
    torch.testing.assert_close(out.pred.double(), pred, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.loss.double(), loss, atol=ATOL, rtol=0)
