"""Model FLOPs: the matmul arithmetic one clip costs, by the formulas in docs/design.md ("Model FLOPs").

Counted as MFU counts them (PaLM's appendix B): 2 FLOPs per multiply-add of every matmul in the model (the linear
layers and the two attention products), none for norms, softmax or elementwise work, and none for what an
implementation adds (flash attention's recomputation, activation checkpointing). A training step is three forward
passes' worth: the backward takes two matmuls per forward matmul.
"""

from __future__ import annotations

from videomae_cli.config.grid import TokenGrid
from videomae_cli.config.schema import ModelSpec
from videomae_cli.models.pretrain import predicted_grid, target_dim

TRAIN_STEP_FORWARDS = 3  # forward + backward (grad of the input and of the weight: two matmuls per matmul)


def block_flops(tokens: int, dim: int, mlp_dim: int) -> int:
    """One transformer block over `tokens` tokens: qkv (3·D²) and proj (D²) per token, the MLP (2·D·H) per token,
    and q kᵀ and P v (N·D each) per token."""
    return 2 * tokens * (4 * dim * dim + 2 * dim * mlp_dim) + 4 * tokens * tokens * dim


def pretrain_flops(spec: ModelSpec, grid: TokenGrid, visible: int, decoded: int) -> int:
    """One clip's forward through the pretraining model: `visible` tokens embedded and encoded, the decoder over the
    visible and the `decoded` mask tokens, the head on the decoded ones."""
    cls = int(spec.cls_token)
    encoded = visible + cls
    flops = 2 * visible * grid.patch_dim * spec.dim  # the tubelet embedding, visible tokens only
    flops += spec.depth * block_flops(encoded, spec.dim, spec.mlp_dim)
    flops += 2 * encoded * spec.dim * spec.decoder_dim  # encoder_to_decoder
    flops += spec.decoder_depth * block_flops(visible + decoded + cls, spec.decoder_dim, spec.decoder_mlp_dim)
    return flops + 2 * decoded * spec.decoder_dim * target_dim(spec, predicted_grid(grid, spec.pred_frames))


def classifier_flops(spec: ModelSpec, grid: TokenGrid, num_classes: int) -> int:
    """One clip's forward through the classifier: every token embedded and encoded, the pooled vector classified."""
    tokens = grid.num_tokens
    flops = 2 * tokens * grid.patch_dim * spec.dim
    flops += spec.depth * block_flops(tokens + int(spec.cls_token), spec.dim, spec.mlp_dim)
    return flops + 2 * spec.dim * num_classes
