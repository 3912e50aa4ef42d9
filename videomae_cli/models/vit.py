"""The VideoMAE vision transformer: tubelet embedding, attention, block, and an encoder that sees visible tokens only.

State-dict names follow the official MCG-NJU/VideoMAE layout (design.md: weight names), so official checkpoints load
with strict=True.
Tokens are tubelets of `tubelet` frames × p × p pixels, ordered (t, h, w). Pixel patches are always laid out
(p_t, p_h, p_w, c) with c fastest — the official target layout — so one patchify serves both the embedding and the loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn
from torch.utils.checkpoint import checkpoint

from videomae_cli.config.grid import TokenGrid
from videomae_cli.models.attention import attention

if TYPE_CHECKING:
    from videomae_cli.config.schema import ModelSpec


def patchify(video: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """[B, 3, T, H, W] → [B, N, tubelet·p·p·3], rows ordered (t, h, w), each row laid out (p_t, p_h, p_w, c)."""
    b = video.shape[0]
    x = video.reshape(b, 3, grid.t, grid.tubelet, grid.h, grid.patch, grid.w, grid.patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # [B, t, h, w, p_t, p_h, p_w, 3]
    return x.reshape(b, grid.num_tokens, grid.patch_dim)


def unpatchify(tokens: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """The inverse of `patchify` for one clip: [N, tubelet·p·p·C] → channels-last [T, H, W, C]."""
    channels = tokens.shape[-1] // (grid.tubelet * grid.patch * grid.patch)
    x = tokens.reshape(grid.t, grid.h, grid.w, grid.tubelet, grid.patch, grid.patch, channels)
    x = x.permute(0, 3, 1, 4, 2, 5, 6)  # [t, p_t, h, p_h, w, p_w, C]
    return x.reshape(grid.frames, grid.height, grid.width, channels)


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows `idx` [B, K] of x [B, N, D] → [B, K, D]; the expanded index is a stride-0 view, not a copy."""
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """The official fixed 1-D table: angle(pos, j) = pos / 10000^(2⌊j/2⌋/d); sin on even j, cos on odd j. → [N, dim]."""
    # float64 throughout, cast once, as the official numpy code: float32 exponents drift by ~6e-5 at 1568 positions.
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, 2 * torch.floor(j / 2) / dim)
    table = torch.where(j % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()


class TubeletEmbed(nn.Module):
    """Projects pixel tubelets to tokens. The weight keeps the official Conv3d shape [C, 3, t, p, p] so checkpoints load
    as they are, but it is applied as a Linear on already-gathered patches: masked tubelets are never embedded."""

    def __init__(self, dim: int, patch: int, tubelet: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(3, dim, kernel_size=(tubelet, patch, patch), stride=(tubelet, patch, patch))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """patches [B, K, t·p·p·3] in (p_t, p_h, p_w, c) layout → tokens [B, K, C]."""
        weight = self.proj.weight.permute(0, 2, 3, 4, 1).flatten(1)  # [C, t·p·p·3], matching the patch layout
        return F.linear(patches, weight, self.proj.bias)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv matmul, the official [q_bias, 0, v_bias] bias, and the attention
    kernel measured fastest for the device, dtype and length (models/attention.py: SDPA but for bf16 on a CPU)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        # The key bias is zero by construction (softmax is shift-invariant per row), so it is a buffer, never stored.
        self.register_buffer("k_bias", torch.zeros(dim), persistent=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)  # [B, N, 3C]
        qkv = qkv.reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # [3, B, heads, N, C/heads]
        q, k, v = qkv.unbind(0)  # unbind, not indexing: backward then writes no full-size zero gradients
        x = attention(q, k, v)  # [B, heads, N, C/heads]
        x = x.transpose(1, 2).reshape(b, n, c)  # [B, N, C]
        return self.proj(x)


class Mlp(nn.Module):
    """The transformer feed-forward: fc1 → GELU → fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with optional stochastic depth."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, eps: float, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Blocks(nn.ModuleList):
    """A stack of blocks, optionally with activation checkpointing: in training, each block's activations are
    recomputed in the backward pass instead of stored (memory for compute, for large models)."""

    checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self:
            if self.checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)  # replays DropPath's RNG exactly
            else:
                x = block(x)
        return x


def set_activation_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Turn activation checkpointing on or off for every block stack of `model`."""
    for module in model.modules():
        if isinstance(module, Blocks):
            module.checkpointing = enabled


class Positions(nn.Module):
    """Position embeddings for a token grid, looked up by token index.

    `sincos`: the official fixed sinusoid table over the flattened (t, h, w) index (a non-persistent buffer).
    `separable`: MAE-ST's learned spatial [1, h·w, C] + temporal [1, t, C] tables (+ a class row with a cls token).
    Keys: `<owner>.pos_embed.spatial`, `.temporal`, `.cls` (MAE-ST's pos_embed_spatial/_temporal/_class).
    """

    def __init__(self, kind: str, grid: TokenGrid, dim: int, cls_token: bool) -> None:
        super().__init__()
        self.kind = kind
        self.per_slice = grid.per_slice
        if kind == "sincos":
            self.register_buffer("table", sinusoid_table(grid.num_tokens, dim), persistent=False)
        elif kind == "separable":
            self.spatial = nn.Parameter(torch.zeros(1, grid.per_slice, dim))
            self.temporal = nn.Parameter(torch.zeros(1, grid.t, dim))
            if cls_token:
                self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        else:
            raise ValueError(f"unknown position embedding {kind!r}")

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token indices [B, K] → position rows [B, K, C]."""
        if self.kind == "sincos":
            return F.embedding(idx, self.table)
        spatial = F.embedding(idx % self.per_slice, self.spatial[0])
        temporal = F.embedding(torch.div(idx, self.per_slice, rounding_mode="floor"), self.temporal[0])
        return spatial + temporal

    def class_row(self) -> torch.Tensor | None:
        """The cls token's position row [1, 1, C], or None (the sincos layout gives the cls token no position)."""
        return getattr(self, "cls", None)


class Encoder(nn.Module):
    """The ViT encoder. Given a clip's patches and the indices of the tokens to encode, it embeds only those tokens."""

    def __init__(
        self,
        grid: TokenGrid,
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
        eps: float = 1e-6,
        drop_path: float = 0.0,
        pos_embed: str = "sincos",
        cls_token: bool = False,
        final_norm: bool = True,
    ) -> None:
        super().__init__()
        self.grid = grid
        self.patch_embed = TubeletEmbed(dim, grid.patch, grid.tubelet)
        self.pos_embed = Positions(pos_embed, grid, dim, cls_token)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]  # grows linearly with depth, as official
        self.blocks = Blocks(Block(dim, heads, mlp_dim, eps, rate) for rate in rates)
        self.norm = nn.LayerNorm(dim, eps=eps) if final_norm else None

    def embed(self, patches: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """patches [B, K, P] of tokens `idx` [B, K] → [B, (1+)K, C] tokens with positions (and the cls token first)."""
        x = self.patch_embed(patches) + self.pos_embed(idx).to(patches.dtype)
        if self.cls_token is None:
            return x
        cls = self.cls_token
        row = self.pos_embed.class_row()
        if row is not None:
            cls = cls + row
        return torch.cat((cls.expand(x.shape[0], -1, -1), x), dim=1)

    def forward(self, patches: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Encode the tokens `idx` [B, K] whose pixels are `patches` [B, K, P] → [B, (1+)K, C]."""
        x = self.blocks(self.embed(patches, idx))
        return x if self.norm is None else self.norm(x)

    def encode_all(self, video: torch.Tensor) -> torch.Tensor:
        """Every token of a clip, float [B, 3, T, H, W] → [B, (1+)N, C] (the full-clip path of classifiers and
        frozen-feature evaluation)."""
        patches = patchify(video, self.grid)  # [B, N, P], already in token order: no gather needed
        idx = all_token_indices(video.shape[0], self.grid.num_tokens, video.device)
        return Encoder.forward(self, patches, idx)  # not self(): subclasses (the classifier) redefine forward

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The patch tokens of an encoder output [B, (1+)N, C] → [B, N, C], in (t, h, w) order (cls token dropped)."""
        return x if self.cls_token is None else x[:, 1:]

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the patch tokens of an encoder output [B, (1+)N, C] → [B, C] (a cls token is not pooled)."""
        return self.patch_tokens(x).mean(1)


def encoder_options(spec: ModelSpec) -> dict[str, Any]:
    """Encoder's arguments (after the grid) for a model spec; shared by the pretrain model and the classifier."""
    return {
        "dim": spec.dim,
        "depth": spec.depth,
        "heads": spec.heads,
        "mlp_dim": spec.mlp_dim,
        "eps": spec.layer_norm_eps,
        "drop_path": spec.drop_path,
        "pos_embed": spec.pos_embed,
        "cls_token": spec.cls_token,
    }


def all_token_indices(batch: int, num_tokens: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Indices of every token, [B, N] — the full-clip path used by classifiers."""
    return torch.arange(num_tokens, device=device).expand(batch, -1)


def init_official(module: nn.Module) -> None:
    """The official V1 initialisation: xavier-uniform Linears with zero bias, unit LayerNorms (use with `apply`)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def trunc_normal_init(param: torch.Tensor, std: float = 0.02) -> None:
    """Truncated normal at ±2 std, as timm's trunc_normal_ used by the official code for tokens."""
    nn.init.trunc_normal_(param, std=std, a=-2 * std, b=2 * std)
