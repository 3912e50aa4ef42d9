"""The masked-autoencoder pretraining model: encoder on visible tokens, light decoder, the loss (design.md: math).

Nothing is computed for tokens that are not needed: the encoder embeds only visible tubelets, the decoder head runs only
on the tokens it reconstructs, and targets are computed only for those tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from videomae_cli.config.schema import ModelSpec, PretrainSpec
from videomae_cli.masking import MaskedTokens
from videomae_cli.models.hog import hog_dim, hog_target
from videomae_cli.models.vit import (
    Block,
    Blocks,
    Encoder,
    Positions,
    TokenGrid,
    encoder_options,
    gather_tokens,
    init_official,
    patchify,
    trunc_normal_init,
)

if TYPE_CHECKING:
    from videomae_cli.models.teacher import FrozenTeacher

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PIXEL_TARGETS = ("norm_pixel", "pixel", "patch_norm", "input")  # the targets `denormalize_prediction` turns into pixels


@dataclass
class PretrainOutput:
    """loss: scalar; pred/target: [B, N_dec, tubelet·p·p·3] rows for the decoded tokens in ascending order (with
    model.pred_frames, MAE-ST's pred_t_dim, each row holds pred_frames/t frames instead of tubelet)."""

    loss: torch.Tensor
    pred: torch.Tensor
    target: torch.Tensor


def reconstruction_target(patches: torch.Tensor, kind: str, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Targets for patches [B, K, P] of the normalised clip, laid out (p_t, p_h, p_w, c).

    norm_pixel (V1): un-normalise to [0, 1], then per tubelet and channel subtract the mean and divide by
    (unbiased std + 1e-6). pixel: un-normalised [0, 1]. patch_norm (MAE-ST norm_pix_loss=True): the normalised input,
    standardised over the whole patch vector with var + 1e-6 under the square root. input (MAE-ST's default,
    norm_pix_loss=False): the normalised input patch itself.
    """
    if kind == "input":
        return patches
    if kind == "patch_norm":
        return (patches - patches.mean(-1, keepdim=True)) / (patches.var(-1, keepdim=True) + 1e-6).sqrt()
    x = patches.unflatten(-1, (-1, 3)) * std + mean  # [B, K, t·p·p, 3] in [0, 1]
    if kind == "norm_pixel":
        x = (x - x.mean(-2, keepdim=True)) / (x.var(-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    return x.flatten(2)  # [B, K, P]


def denormalize_prediction(pred: torch.Tensor, patches: torch.Tensor, target: str) -> torch.Tensor:
    """Invert `reconstruction_target`: predictions [K, P] for the ImageNet-normalised input patches [K, P] → [0, 1]
    pixels [K, P], using the statistics of the original patches as the official V1 visualisation does."""
    mean, std = patches.new_tensor(IMAGENET_MEAN), patches.new_tensor(IMAGENET_STD)
    if target in ("patch_norm", "input"):
        # Both are ImageNet-normalised pixels; patch_norm was also standardised over the whole patch vector.
        x = pred
        if target == "patch_norm":
            x = pred * (patches.var(-1, keepdim=True) + 1e-6).sqrt() + patches.mean(-1, keepdim=True)
        return (x.unflatten(-1, (-1, 3)) * std + mean).flatten(-2)
    pred = pred.unflatten(-1, (-1, 3))  # [K, t·p·p, 3]
    if target == "norm_pixel":
        # Per tubelet and channel: pred · (unbiased std + 1e-6) + mean, over the un-normalised [0, 1] pixels.
        pixels = patches.unflatten(-1, (-1, 3)) * std + mean
        pred = pred * (pixels.var(-2, unbiased=True, keepdim=True).sqrt() + 1e-6) + pixels.mean(-2, keepdim=True)
    return pred.flatten(-2)  # "pixel": already [0, 1]


def target_dim(spec: ModelSpec, target_grid: TokenGrid) -> int:
    """Values the decoder predicts per token: a patch of pixels (tubelet·p·p·3), its HOG histograms, or the
    teacher's features (their width recorded as model.teacher_dim when the run started)."""
    if spec.target == "teacher":
        if spec.teacher_dim is None:
            raise ValueError("model.teacher_dim: unknown until the teacher is loaded (the run sets it)")
        return spec.teacher_dim
    return hog_dim(spec.patch_size, spec.hog_cell) if spec.target == "hog" else target_grid.patch_dim


def predicted_grid(grid: TokenGrid, pred_frames: int | None) -> TokenGrid:
    """The grid of what the decoder predicts: the clip's, or (MAE-ST pred_t_dim) `pred_frames` frames cut into the
    same time slices, pred_frames/t frames per token."""
    if pred_frames is None:
        return grid
    return TokenGrid(pred_frames, grid.height, grid.width, grid.patch, pred_frames // grid.t)


class Decoder(nn.Module):
    """The light decoder: blocks over visible + mask tokens, then norm and head on the reconstructed tokens only."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, out_dim: int, eps: float) -> None:
        super().__init__()
        self.blocks = Blocks(Block(dim, heads, mlp_dim, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, num_predicted: int) -> torch.Tensor:
        """x [B, L, Cd] with the tokens to reconstruct last → [B, num_predicted, out_dim]."""
        x = self.blocks(x)
        return self.head(self.norm(x[:, -num_predicted:]))


class PretrainVideoMAE(nn.Module):
    """VideoMAE pretraining model. `model(video, mask)` → PretrainOutput (design.md: run directory).

    video: float [B, 3, T, H, W] normalised with ImageNet mean/std. mask: bool [B, N] (True = masked, tokens ordered
    (t, h, w)) or MaskedTokens index tensors, which is what the training loop passes.
    """

    def __init__(self, spec: ModelSpec, grid: TokenGrid, run_spec: PretrainSpec | None = None) -> None:
        super().__init__()
        self.config, self.grid = spec, grid
        self.spec = run_spec  # the whole run spec it was built from (a loaded checkpoint's), or None
        self.encoder = Encoder(grid, **encoder_options(spec))
        self.encoder_to_decoder = nn.Linear(spec.dim, spec.decoder_dim, bias=spec.decoder_embed_bias)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, spec.decoder_dim))
        self.decoder_pos_embed = Positions(spec.pos_embed, grid, spec.decoder_dim, spec.cls_token)
        self.decoder_cls_token = nn.Parameter(torch.zeros(1, 1, spec.decoder_dim)) if spec.cls_token else None
        self.target_grid = predicted_grid(grid, spec.pred_frames)
        if spec.pred_frames is not None:  # MAE-ST pred_t_dim: evenly spread frames, as torch.linspace(...).long()
            frames = torch.linspace(0, grid.frames - 1, spec.pred_frames).long()
            self.register_buffer("target_frames", frames, persistent=False)
        self.decoder = Decoder(
            spec.decoder_dim,
            spec.decoder_depth,
            spec.decoder_heads,
            spec.decoder_mlp_dim,
            target_dim(spec, self.target_grid),
            spec.layer_norm_eps,
        )
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD), persistent=False)
        self.teacher: FrozenTeacher | None = None  # target teacher: attached by whoever loads it (not a submodule)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official V1 initialisation."""
        self.apply(init_official)
        for token in (self.mask_token, self.encoder.cls_token, self.decoder_cls_token):
            if token is not None:
                trunc_normal_init(token)
        for positions in (self.encoder.pos_embed, self.decoder_pos_embed):
            for param in positions.parameters():  # only the learned (MAE-ST) layout has any
                trunc_normal_init(param)

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay besides 1-D ones (timm convention): tokens and position tables."""
        return {n for n, _ in self.named_parameters() if "token" in n or "pos_embed" in n}

    def forward(self, video: torch.Tensor, mask: torch.Tensor | MaskedTokens) -> PretrainOutput:
        if not isinstance(mask, MaskedTokens):
            if mask.shape[1] != self.grid.num_tokens:
                raise ValueError(f"mask has {mask.shape[1]} tokens, the model's grid has {self.grid.num_tokens}")
            mask = MaskedTokens.from_mask(mask)
        tokens = mask
        patches = patchify(video, self.grid)  # [B, N, P]
        x = self.encoder(gather_tokens(patches, tokens.visible), tokens.visible)  # [B, (1+)N_vis, C]
        pred = self.decode(self.encoder_to_decoder(x), tokens)  # [B, N_dec, P]
        with torch.no_grad():
            target = self.target(video, patches, tokens)  # [B, N_dec, target_dim]
        return PretrainOutput(reconstruction_loss(pred, target, tokens.weight, self.loss_kind), pred, target)

    @property
    def loss_kind(self) -> str:
        """How a prediction is compared with its target: l2 (every pixel and HOG target), or the teacher's loss."""
        return self.config.teacher_loss if self.config.target == "teacher" else "l2"

    def target(self, video: torch.Tensor, patches: torch.Tensor, tokens: MaskedTokens) -> torch.Tensor:
        """What the decoder is trained to predict for tokens.decoded, in float32 → [B, N_dec, target_dim]."""
        if self.config.target == "hog":
            return hog_target(video, self.grid, tokens.decoded, self.config.hog_cell)
        if self.config.target == "teacher":
            if self.teacher is None:
                raise ValueError("model.teacher: the teacher model is not loaded (attach it as model.teacher)")
            return gather_tokens(self.teacher(video), tokens.decoded)  # [B, N_dec, C_teacher]
        if self.target_grid is not self.grid:
            patches = patchify(video.index_select(2, self.target_frames), self.target_grid)  # [B, N, P_pred]
        return reconstruction_target(
            gather_tokens(patches, tokens.decoded).float(), self.config.target, self.pixel_mean, self.pixel_std
        )

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """Frozen-feature evaluation: the encoder (with its final norm) on every token, mean-pooled → [B, C]."""
        return self.encoder.pooled(self.encoder.encode_all(video))

    def token_features(self, video: torch.Tensor) -> torch.Tensor:
        """The encoder's output (with its final norm) for every patch token → [B, N, C]."""
        return self.encoder.patch_tokens(self.encoder.encode_all(video))

    def decode(self, x: torch.Tensor, tokens: MaskedTokens) -> torch.Tensor:
        """Encoder output mapped to decoder width [B, (1+)N_vis, Cd] → predictions for tokens.decoded [B, N_dec, P]."""
        if self.decoder_cls_token is not None:
            x = x[:, 1:]  # MAE-ST: the encoder's cls token is dropped; the decoder has its own
        b, num_decoded = x.shape[0], tokens.decoded.shape[1]
        visible = x + self.decoder_pos_embed(tokens.visible).to(x.dtype)  # [B, N_vis, Cd]
        masked = self.mask_token.to(x.dtype) + self.decoder_pos_embed(tokens.decoded).to(x.dtype)  # [B, N_dec, Cd]
        parts = [visible, masked]
        if self.decoder_cls_token is not None:
            cls = self.decoder_cls_token
            row = self.decoder_pos_embed.class_row()
            parts.insert(0, (cls if row is None else cls + row).expand(b, -1, -1).to(x.dtype))
        return self.decoder(torch.cat(parts, dim=1), num_decoded)


def reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, kind: str = "l2"
) -> torch.Tensor:
    """The mean token error over the reconstructed tokens (MSE for l2); with a weight, only over tokens the encoder
    did not see."""
    if weight is None:
        return F.mse_loss(pred.float(), target) if kind == "l2" else token_errors(pred, target, kind).mean()
    return (token_errors(pred, target, kind) * weight).sum() / weight.sum().clamp_min(1.0)


def per_video_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, kind: str = "l2"
) -> torch.Tensor:
    """The reconstruction loss of each video [B] (the training loss averages these over a batch)."""
    errors = token_errors(pred, target, kind)  # [B, N_dec]
    if weight is None:
        return errors.mean(1)
    return (errors * weight).sum(1) / weight.sum(1).clamp_min(1.0)


def token_errors(pred: torch.Tensor, target: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Each reconstructed token's error, in float32 → [B, N_dec]: l2 the squared error averaged over its values,
    smooth_l1 the smooth L1 (β = 1) likewise, cosine 1 − the cosine similarity of the two vectors."""
    pred = pred.float()
    if kind == "cosine":
        return 1 - F.cosine_similarity(pred, target, dim=-1)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, reduction="none").mean(-1)
    return (pred - target).pow(2).mean(-1)
