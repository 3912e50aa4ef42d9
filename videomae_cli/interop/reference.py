"""Reference forward passes of the official models, written from their source, for `videomae convert --verify`.

`--verify` runs one clip and mask through the converted model and through these functions applied to the source
checkpoint's own state dict, and compares. Each function reads the source's tensor names directly (wrapper prefixes
stripped) and follows the official code line by line: MCG-NJU/VideoMAE (V1) and OpenGVLab/VideoMAEv2 (V2:
modeling_pretrain.py, modeling_finetune.py, engine_for_pretraining.py) and facebookresearch/mae_st (models_mae.py,
models_vit.py, util/video_vit.py). Nothing here imports the converter or our models, so a mistake in the name mapping
or the fused math cannot cancel itself out.

Everything is computed in the dtype of `video` (`--verify` passes float64 tensors and a float64 state dict).
Architecture numbers come from the tensor shapes; head counts are not in the shapes, so they are arguments.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

State = dict[str, Tensor]


# ---------------------------------------------------------------------------------------------------------------------
# Shared layers, on official names


def layer_norm(x: Tensor, sd: State, name: str, eps: float) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps)


def linear(x: Tensor, sd: State, name: str) -> Tensor:
    """nn.Linear; the bias only where the file has one (bias=False layers store none)."""
    x = x @ sd[f"{name}.weight"].T
    return x + sd[f"{name}.bias"] if f"{name}.bias" in sd else x


def gelu(x: Tensor) -> Tensor:
    """nn.GELU(): the exact erf form, not the tanh approximation."""
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def split_heads(x: Tensor, heads: int) -> Tensor:
    b, n, _ = x.shape
    return x.reshape(b, n, heads, -1).transpose(1, 2)  # [B, heads, N, head_dim]


def attention(x: Tensor, sd: State, name: str, heads: int) -> Tensor:
    """VideoMAE's fused `qkv` (bias cat(q_bias, zeros, v_bias) when stored) or MAE-ST's separate `q`/`k`/`v` Linears
    (every stored bias used, the k bias included). Scale head_dim^-0.5, explicit softmax."""
    if f"{name}.scale" in sd:
        raise ValueError(f"{name}.scale: VideoMAE V2 cos_attn (cosine attention) is not supported by the reference")
    if f"{name}.qkv.weight" in sd:
        bias = None
        if f"{name}.q_bias" in sd:
            v_bias = sd[f"{name}.v_bias"]
            bias = torch.cat((sd[f"{name}.q_bias"], torch.zeros_like(v_bias), v_bias))
        qkv = F.linear(x, sd[f"{name}.qkv.weight"], bias)
        b, n, _ = x.shape
        q, k, v = qkv.reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)  # 3 × [B, heads, N, head_dim]
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # VideoMAE scales q before the product
    else:
        q, k, v = (split_heads(linear(x, sd, f"{name}.{part}"), heads) for part in "qkv")
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # MAE-ST scales the scores
    out = scores.softmax(dim=-1) @ v  # [B, heads, N, head_dim]
    return linear(out.transpose(1, 2).flatten(2), sd, f"{name}.proj")  # heads back into channels: [B, N, C]


def block(x: Tensor, sd: State, name: str, heads: int, eps: float) -> Tensor:
    """Pre-norm block; VideoMAE's layer scale gamma_1/gamma_2 (init_values > 0) when the file has it."""
    h = attention(layer_norm(x, sd, f"{name}.norm1", eps), sd, f"{name}.attn", heads)
    x = x + (sd[f"{name}.gamma_1"] * h if f"{name}.gamma_1" in sd else h)
    h = linear(gelu(linear(layer_norm(x, sd, f"{name}.norm2", eps), sd, f"{name}.mlp.fc1")), sd, f"{name}.mlp.fc2")
    return x + (sd[f"{name}.gamma_2"] * h if f"{name}.gamma_2" in sd else h)


def blocks(x: Tensor, sd: State, prefix: str, heads: int, eps: float) -> Tensor:
    """Every block `{prefix}.{i}` the file has: the depth is the count of stored blocks."""
    i = 0
    while f"{prefix}.{i}.norm1.weight" in sd:
        x = block(x, sd, f"{prefix}.{i}", heads, eps)
        i += 1
    return x


def patch_embed(video: Tensor, sd: State, name: str) -> Tensor:
    """Conv3d over the whole clip with stride = kernel [t, p, p]. → [B, N, C], tokens ordered (t, h, w)."""
    weight = sd[f"{name}.proj.weight"]  # [C, 3, t, p, p]
    return F.conv3d(video, weight, sd[f"{name}.proj.bias"], stride=weight.shape[2:]).flatten(2).transpose(1, 2)


def _as(sd: State, video: Tensor) -> State:
    """The state dict in the dtype and on the device of `video` (a no-op for the float64 tensors --verify passes)."""
    return {k: v.to(video.device, video.dtype) if v.is_floating_point() else v for k, v in sd.items()}


def _visible(x: Tensor, mask: Tensor) -> Tensor:
    return x[~mask].reshape(x.shape[0], -1, x.shape[-1])  # [B, N_vis, C], ascending token order


# ---------------------------------------------------------------------------------------------------------------------
# VideoMAE V1 / V2


def get_sinusoid_encoding_table(n_position: int, d_hid: int) -> Tensor:
    """The official fixed 1-D table (modeling_finetune.py), as written there. → [1, n_position, d_hid]."""

    def get_position_angle_vec(position: int) -> list[float]:
        return [position / np.power(10000, 2 * (hid_j // 2) / d_hid) for hid_j in range(d_hid)]

    table = np.array([get_position_angle_vec(pos_i) for pos_i in range(n_position)])
    table[:, 0::2] = np.sin(table[:, 0::2])  # dim 2i
    table[:, 1::2] = np.cos(table[:, 1::2])  # dim 2i+1
    # float64 numpy math, then float32 as the official code stores it; callers cast it with .type_as(x).
    return torch.tensor(table, dtype=torch.float).unsqueeze(0)


def _embed_v1(video: Tensor, sd: State, prefix: str) -> Tensor:
    """patch_embed + the fixed table (or a learned `pos_embed` where use_learnable_pos_emb stored one). → [B, N, C]"""
    x = patch_embed(video, sd, f"{prefix}patch_embed")
    pos = sd.get(f"{prefix}pos_embed")
    return x + (get_sinusoid_encoding_table(x.shape[1], x.shape[2]).to(x) if pos is None else pos)


def _v1_target(video: Tensor, tubelet: int, patch: int, target: str) -> Tensor:
    """engine_for_pretraining.py's labels for every token. → [B, N, tubelet·p·p·3], laid out (p0 p1 p2 c)."""
    mean = video.new_tensor(IMAGENET_MEAN)[None, :, None, None, None]
    std = video.new_tensor(IMAGENET_STD)[None, :, None, None, None]
    unnorm = video * std + mean  # in [0, 1]
    b, c, frames, height, width = unnorm.shape
    # 'b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c'
    x = unnorm.reshape(b, c, frames // tubelet, tubelet, height // patch, patch, width // patch, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, -1, tubelet * patch * patch, c)  # [B, N, p0·p1·p2, c]
    if target == "norm_pixel":  # normlize_target=True: per tubelet and channel, unbiased std + 1e-6 outside the sqrt
        x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    return x.flatten(2)  # 'b n p c -> b n (p c)'


def official_pretrain(
    sd: State, video: Tensor, mask: Tensor, *, heads: int, decoder_heads: int, target: str, eps: float = 1e-6
) -> tuple[Tensor, Tensor]:
    """V1/V2 `PretrainVisionTransformer.forward(x, mask)` (V2 without decoder masking) and the engine's loss.

    video [B, 3, T, H, W] ImageNet-normalised; mask [B, N] bool, True = hidden from the encoder, tokens (t, h, w).
    target: "norm_pixel" (normlize_target=True) or "pixel". → (loss scalar, pred [B, N_masked, tubelet·p·p·3] for
    the masked tokens in ascending token order).
    """
    if target not in ("norm_pixel", "pixel"):
        raise ValueError(f"target: expected 'norm_pixel' or 'pixel', got {target!r}")
    sd = _as(sd, video)
    b = video.shape[0]
    # Encoder: embed the full clip, add the table, keep the visible tokens (x[~mask]).
    x_vis = _visible(_embed_v1(video, sd, "encoder."), mask)
    x_vis = layer_norm(blocks(x_vis, sd, "encoder.blocks", heads, eps), sd, "encoder.norm", eps)
    x_vis = linear(x_vis, sd, "encoder_to_decoder")  # bias=False officially; added if a file has one
    # Decoder: visible tokens keep their order, the position table is shuffled to match instead.
    dim = x_vis.shape[-1]
    pos = get_sinusoid_encoding_table(mask.shape[1], dim).to(x_vis).expand(b, -1, -1)
    pos_vis, pos_mask = _visible(pos, mask), pos[mask].reshape(b, -1, dim)
    x = torch.cat([x_vis + pos_vis, sd["mask_token"] + pos_mask], dim=1)  # [B, N, Cd]
    x = blocks(x, sd, "decoder.blocks", decoder_heads, eps)
    pred = linear(layer_norm(x[:, -pos_mask.shape[1] :], sd, "decoder.norm", eps), sd, "decoder.head")
    # Labels: the engine's target rows of the masked tokens; V1 nn.MSELoss() = V2's per-token mean weighted by
    # cal_loss_mask, which is all ones without decoder masking.
    _, _, tubelet, patch, _ = sd["encoder.patch_embed.proj.weight"].shape
    labels = _v1_target(video, tubelet, patch, target)
    labels = labels[mask].reshape(b, -1, labels.shape[-1])  # [B, N_masked, P]
    return F.mse_loss(pred, labels), pred


def official_classifier(sd: State, video: Tensor, *, heads: int, eps: float = 1e-6) -> Tensor:
    """V1/V2 fine-tuning `VisionTransformer` with use_mean_pooling=True. video [B, 3, T, H, W] → logits [B, K]."""
    if "fc_norm.weight" not in sd:
        raise ValueError("fc_norm.weight: missing; only use_mean_pooling=True (fc_norm, no norm) is supported")
    sd = _as(sd, video)
    x = blocks(_embed_v1(video, sd, ""), sd, "blocks", heads, eps)  # self.norm is Identity under mean pooling
    return linear(layer_norm(x.mean(1), sd, "fc_norm", eps), sd, "head")  # dropout: identity in eval


# ---------------------------------------------------------------------------------------------------------------------
# MAE-ST


def _separable_pos(sd: State, prefix: str) -> Tensor:
    """sep_pos_embed: spatial rows repeated per time slice + temporal rows repeated per patch. → [1, N, C]"""
    if f"{prefix}pos_embed" in sd:
        raise ValueError(f"{prefix}pos_embed: a joint position table (sep_pos_embed=False) is not supported")
    spatial, temporal = sd[f"{prefix}pos_embed_spatial"], sd[f"{prefix}pos_embed_temporal"]
    return spatial.repeat(1, temporal.shape[1], 1) + torch.repeat_interleave(temporal, spatial.shape[1], dim=1)


def _with_cls(x: Tensor, sd: State, token: str, pos_class: str) -> tuple[Tensor, Tensor | None]:
    """Prepend the cls token where the file has one (cls_embed) → (x, its position row or None)."""
    if token not in sd:
        return x, None
    return torch.cat((sd[token].expand(x.shape[0], -1, -1), x), dim=1), sd[pos_class]


def _maest_target(video: Tensor, pred_t_dim: int, u: int, patch: int, norm_pix_loss: bool) -> Tensor:
    """forward_loss: pred_t_dim frames spread evenly, patchified with u frames per token. → [B, N, u·p·p·3]"""
    frames = torch.linspace(0, video.shape[2] - 1, pred_t_dim).long().to(video.device)
    imgs = torch.index_select(video, 2, frames)  # [B, 3, pred_t_dim, H, W]
    b, _, t_all, height, width = imgs.shape
    h, w = height // patch, width // patch
    x = imgs.reshape(b, 3, t_all // u, u, h, patch, w, patch)
    x = torch.einsum("nctuhpwq->nthwupqc", x).reshape(b, -1, u * patch**2 * 3)
    if norm_pix_loss:  # over the whole patch vector; unbiased var (torch default) + 1e-6 inside the sqrt
        x = (x - x.mean(dim=-1, keepdim=True)) / (x.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5
    return x


def maest_pretrain(
    sd: State, video: Tensor, mask: Tensor, *, heads: int, decoder_heads: int, norm_pix_loss: bool, eps: float = 1e-6
) -> tuple[Tensor, Tensor]:
    """MAE-ST `MaskedAutoencoderViT.forward` (sep_pos_embed=True; cls_embed iff `cls_token` is stored) for a given mask.

    video [B, 3, T, H, W] ImageNet-normalised; mask [B, N] bool, True = removed, tokens (t, h, w). → (loss scalar,
    pred [B, N_masked, u·p·p·3] for the masked tokens in ascending token order, u = t_pred_patch_size).
    """
    sd = _as(sd, video)
    b = video.shape[0]
    # Encoder. MAE-ST keeps the visible tokens in noise order; attention is permutation-equivariant and each token
    # carries its own position row, so ascending order gives the same tokens.
    pos = _visible(_separable_pos(sd, "").expand(b, -1, -1), mask)  # first: refuses a joint table before any work
    x = _visible(patch_embed(video, sd, "patch_embed"), mask)
    x, pos_cls = _with_cls(x, sd, "cls_token", "pos_embed_class")
    if pos_cls is not None:
        pos = torch.cat((pos_cls.expand(b, -1, -1), pos), dim=1)
    x = layer_norm(blocks(x + pos, sd, "blocks", heads, eps), sd, "norm", eps)
    x = x[:, 1:] if pos_cls is not None else x  # drop cls
    # Decoder: embed, then mask tokens at the masked positions of the full (unshuffled) sequence.
    x = linear(x, sd, "decoder_embed")  # [B, N_vis, Cd]
    full = sd["mask_token"].expand(b, mask.shape[1], -1).clone()  # [B, N, Cd]
    full[~mask] = x.reshape(-1, x.shape[-1])  # boolean assignment fills row-major: each sample's visible, ascending
    pos = _separable_pos(sd, "decoder_")
    x, pos_cls = _with_cls(full, sd, "decoder_cls_token", "decoder_pos_embed_class")
    if pos_cls is not None:
        pos = torch.cat((pos_cls, pos), dim=1)
    x = layer_norm(blocks(x + pos, sd, "decoder_blocks", decoder_heads, eps), sd, "decoder_norm", eps)
    pred = linear(x, sd, "decoder_pred")
    pred = pred[:, 1:] if pos_cls is not None else pred  # [B, N, u·p·p·3], every token
    # Loss: per-token mean, then the mean over removed tokens.
    patch = sd["patch_embed.proj.weight"].shape[-1]
    u = pred.shape[-1] // (3 * patch * patch)  # t_pred_patch_size
    pred_t_dim = u * sd["pos_embed_temporal"].shape[1]  # u frames per time slice
    target = _maest_target(video, pred_t_dim, u, patch, norm_pix_loss)
    per_token = ((pred - target) ** 2).mean(dim=-1)  # [B, N]
    weights = mask.to(per_token.dtype)
    loss = (per_token * weights).sum() / weights.sum()
    return loss, pred[mask].reshape(b, -1, pred.shape[-1])


def maest_classifier(sd: State, video: Tensor, *, heads: int, eps: float = 1e-6) -> Tensor:
    """MAE-ST models_vit `VisionTransformer.forward` (sep_pos_embed=True). video [B, 3, T, H, W] → logits [B, K]."""
    sd = _as(sd, video)
    x, pos_cls = _with_cls(patch_embed(video, sd, "patch_embed"), sd, "cls_token", "pos_embed_class")
    pos = _separable_pos(sd, "")
    if pos_cls is not None:
        pos = torch.cat((pos_cls, pos), dim=1)
    x = blocks(x + pos, sd, "blocks", heads, eps)
    # As the source writes it: drop the first token whether or not it is a cls token (without cls_embed this drops
    # the first patch token), mean, then `norm` after pooling; dropout is identity in eval.
    return linear(layer_norm(x[:, 1:, :].mean(dim=1), sd, "norm", eps), sd, "head")
