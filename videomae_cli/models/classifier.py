"""The fine-tuning classifier: encoder on every token, mean pooling, fc_norm, a linear head (design.md: weight names).

State-dict names are the official V1 fine-tune layout: `patch_embed.*`, `blocks.{i}.*`, `fc_norm.*`, `head.*` (no
`norm.*`: mean pooling replaces it). A pretrain checkpoint loads after stripping `encoder.` and dropping the decoder.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from videomae_cli.config.schema import FinetuneSpec, ModelSpec
from videomae_cli.models.vit import Encoder, TokenGrid, encoder_options, trunc_normal_init

HEAD_INIT_SCALE = 0.001  # the official fine-tune scales the head's initial weights down by this


class VideoClassifier(Encoder):
    """`model(video)` → logits [B, num_classes]; video is float [B, 3, T, H, W], ImageNet-normalised."""

    def __init__(
        self,
        spec: ModelSpec,
        grid: TokenGrid,
        num_classes: int,
        head_init_scale: float = HEAD_INIT_SCALE,
        pool: str = "mean",
        run_spec: FinetuneSpec | None = None,
        classes: list[str] | None = None,
    ):
        super().__init__(grid, **encoder_options(spec), final_norm=False)  # fc_norm after pooling replaces norm
        if pool not in ("mean", "cls") or (pool == "cls" and not spec.cls_token):
            raise ValueError(f"pool must be 'mean', or 'cls' for a model with a cls token; got {pool!r}")
        if classes is not None and len(classes) != num_classes:
            raise ValueError(f"{len(classes)} class names for {num_classes} classes")
        self.config, self.pool = spec, pool
        self.spec = run_spec  # the whole run spec it was built from (a loaded checkpoint's), or None
        self.classes = classes  # the class names, index = logit (a loaded checkpoint's), or None
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

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's layer grouping (for layer-wise lr decay): embeddings first, then one group per block; parameters
        matched by neither (fc_norm, head) form the last group."""
        return {"stem": r"^cls_token|^pos_embed|^patch_embed", "blocks": [(r"^blocks\.(\d+)", None)]}

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """fc_norm-ed features [B, C]: the mean over every patch token (the cls token, if any, is not pooled), or
        the cls token's output with pool="cls"."""
        x = self.encode_all(video)  # [B, (1+)N, C]
        return self.fc_norm(x[:, 0] if self.pool == "cls" else self.pooled(x))  # [B, C]

    def token_features(self, video: torch.Tensor) -> torch.Tensor:
        """The last block's output for every patch token → [B, N, C] (fc_norm belongs to the pooled vector)."""
        return self.patch_tokens(self.encode_all(video))

    def forward(self, video: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.head(self.features(video))


def classifier_state_from_pretrain(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A pretrain state dict's encoder weights under classifier names."""
    return {new: state_dict[old] for new, old in classifier_names_from_pretrain(state_dict).items()}


def classifier_names_from_pretrain(keys: Iterable[str]) -> dict[str, str]:
    """{classifier key: pretrain key} for the encoder weights: `encoder.` stripped; the decoder and the encoder's
    final norm (replaced by fc_norm after pooling) have no classifier counterpart."""
    prefix = "encoder."
    return {
        key.removeprefix(prefix): key for key in keys if key.startswith(prefix) and not key.startswith(f"{prefix}norm.")
    }
