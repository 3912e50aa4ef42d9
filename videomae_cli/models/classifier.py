"""The fine-tuning classifier: the encoder on every token, mean pooling, fc_norm, and a linear head (DESIGN §5).

State-dict names are the official V1 fine-tune layout: `patch_embed.*`, `blocks.{i}.*`, `fc_norm.*`, `head.*` (no
`norm.*`: mean pooling replaces it). A pretrain checkpoint loads after stripping `encoder.` and dropping the decoder.
"""

from __future__ import annotations

import torch
from torch import nn

from videomae_cli.models.vit import Encoder, TokenGrid, all_token_indices, encoder_options, patchify, trunc_normal_init
from videomae_cli.specs import ModelSpec

HEAD_INIT_SCALE = 0.001  # the official fine-tune scales the head's initial weights down by this


class VideoClassifier(Encoder):
    """`model(video)` → logits [B, num_classes]; video is float [B, 3, T, H, W], ImageNet-normalised."""

    def __init__(self, spec: ModelSpec, grid: TokenGrid, num_classes: int, head_init_scale: float = HEAD_INIT_SCALE):
        super().__init__(grid, **encoder_options(spec), final_norm=False)  # fc_norm after pooling replaces norm
        self.config = spec
        self.fc_norm = nn.LayerNorm(spec.dim, eps=spec.layer_norm_eps)
        self.head = nn.Linear(spec.dim, num_classes)
        self.reset_parameters(head_init_scale)

    def reset_parameters(self, head_init_scale: float = HEAD_INIT_SCALE) -> None:
        """Official fine-tune initialisation: truncated-normal Linears (std 0.02), zero biases, unit LayerNorms, and a
        head scaled by `head_init_scale` so that training starts from near-uniform predictions."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_init(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for param in (self.cls_token, *self.pos_embed.parameters()):
            if param is not None:
                trunc_normal_init(param)
        with torch.no_grad():
            self.head.weight.mul_(head_init_scale)
            self.head.bias.mul_(head_init_scale)

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay besides 1-D ones: the cls token and position tables."""
        return {n for n, _ in self.named_parameters() if "cls_token" in n or "pos_embed" in n}

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """Mean-pooled, fc_norm-ed encoder features [B, C] of every token (the cls token, if any, is not pooled)."""
        patches = patchify(video, self.grid)  # [B, N, P], already in token order: no gather needed
        x = super().forward(patches, all_token_indices(video.shape[0], self.grid.num_tokens, video.device))
        if self.cls_token is not None:
            x = x[:, 1:]
        return self.fc_norm(x.mean(1))  # [B, C]

    def forward(self, video: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.head(self.features(video))


def classifier_state_from_pretrain(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A pretrain state dict's encoder weights under classifier names: `encoder.` stripped, the decoder and the
    encoder's final norm (replaced by fc_norm) dropped."""
    prefix = "encoder."
    return {
        key.removeprefix(prefix): value
        for key, value in state_dict.items()
        if key.startswith(prefix) and not key.startswith(f"{prefix}norm.")
    }
