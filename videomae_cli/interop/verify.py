"""`videomae convert --verify`: the converted model against the source's own math, on one fixed clip and mask.

The reference runs on SRC's tensors under SRC's names, so it shares nothing with the converter's mapping: an HF
source runs in transformers' own `VideoMAEForPreTraining` / `VideoMAEForVideoClassification`; official V1/V2 and
MAE-ST sources run in `reference`, written from those codebases. Both sides compute in float64, so any difference
above rounding is a conversion that computes something else.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from videomae_cli.config.schema import grid_of
from videomae_cli.errors import ConfigError
from videomae_cli.interop import hf, reference
from videomae_cli.interop.convert import Conversion, source_names
from videomae_cli.masking import random_mask
from videomae_cli.models.factory import build_model

TOLERANCE = 1e-4
MASK_RATIO = 0.75  # some tokens seen and some reconstructed, whatever the grid
OFFICIAL_EPS = 1e-6  # the LayerNorm eps of every official VideoMAE and MAE-ST model
# The targets each codebase computes (ours → the source's own name for it).
SOURCE_TARGETS = {"official": ("norm_pixel", "pixel"), "maest": ("patch_norm", "input"), "hf": ("norm_pixel", "pixel")}

Outputs = tuple[Tensor, ...]  # (logits,) or (loss, pred)


@dataclass
class Verification:
    """How the converted model compared with the source's reference."""

    reference: str
    compared: str
    max_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_diff <= self.tolerance


def verify(conversion: Conversion, tolerance: float = TOLERANCE) -> Verification:
    """Run one fixed clip (and, for pretraining, one fixed random mask) through the converted model and the source's
    reference, in float64; the largest absolute difference over the outputs both compute."""
    spec, grid = conversion.spec, grid_of(conversion.spec)
    video = torch.randn(1, 3, grid.frames, grid.height, grid.width, generator=torch.Generator().manual_seed(0))
    video = video.double()  # [1, 3, T, H, W], as ImageNet-normalised pixels
    mask = torch.from_numpy(random_mask(grid, MASK_RATIO, np.random.default_rng(0)))[None]  # [1, N], True = hidden
    name, run_reference = _reference(conversion)
    ours = _converted_model(conversion)
    pretrain = conversion.kind == "pretrain"
    with torch.no_grad():
        try:
            expected = run_reference(video, mask)
        except ValueError as e:  # a variant the reference does not compute (e.g. V2 cosine attention)
            raise ConfigError(f"SRC: cannot be verified: {e}") from None
        got: Outputs = (ours(video),) if not pretrain else tuple(_loss_and_pred(ours(video, mask)))
    compared = _compared(conversion, mask)
    if pretrain and spec.model.target not in SOURCE_TARGETS[conversion.source.layout]:
        expected, got = expected[1:], got[1:]  # the source has no such target: compare predictions only
    diff = max(float((a - b).abs().max()) for a, b in zip(got, expected, strict=True))
    return Verification(name, compared, diff, tolerance)


def _loss_and_pred(output: object) -> Outputs:
    return output.loss, output.pred  # type: ignore[attr-defined]


def _compared(conversion: Conversion, mask: Tensor) -> str:
    grid = grid_of(conversion.spec)
    clip = f"one {grid.frames}×{grid.height}² clip"
    if conversion.kind == "classifier":
        return f"logits on {clip}"
    what = "loss and predictions"
    if conversion.spec.model.target not in SOURCE_TARGETS[conversion.source.layout]:
        what = f"predictions (the source has no {conversion.spec.model.target} target)"
    return f"{what} on {clip}, {int(mask.sum())} of {mask.shape[1]} tokens masked"


def _converted_model(conversion: Conversion) -> nn.Module:
    """Our model holding the converted weights exactly (strict load), in float64."""
    model = build_model(conversion.spec, conversion.classes)
    model.load_state_dict(conversion.state_dict, strict=True)
    return model.double().eval()


def _reference(conversion: Conversion) -> tuple[str, Callable[[Tensor, Tensor], Outputs]]:
    """(what the reference is, a function (video, mask) → the outputs the converted model is compared with)."""
    source, m = conversion.source, conversion.spec.model
    if source.layout == "hf":
        return _hf_reference(conversion)
    sd = {k: v.double() for k, v in source_names(source).items()}
    pretrain = conversion.kind == "pretrain"
    if source.layout == "maest":
        name = "the MAE-ST reference (models_mae.py / models_vit.py math)"
        if pretrain:
            norm_pix_loss = m.target == "patch_norm"
            return name, lambda v, mask: reference.maest_pretrain(
                sd, v, mask, heads=m.heads, decoder_heads=m.decoder_heads, norm_pix_loss=norm_pix_loss, eps=OFFICIAL_EPS
            )
        return name, lambda v, _: (reference.maest_classifier(sd, v, heads=m.heads, eps=OFFICIAL_EPS),)
    name = "the official VideoMAE V1/V2 reference (modeling_pretrain.py / modeling_finetune.py math)"
    if pretrain:
        target = m.target if m.target in SOURCE_TARGETS["official"] else "norm_pixel"
        return name, lambda v, mask: reference.official_pretrain(
            sd, v, mask, heads=m.heads, decoder_heads=m.decoder_heads, target=target, eps=OFFICIAL_EPS
        )
    return name, lambda v, _: (reference.official_classifier(sd, v, heads=m.heads, eps=OFFICIAL_EPS),)


def _hf_reference(conversion: Conversion) -> tuple[str, Callable[[Tensor, Tensor], Outputs]]:
    """transformers' own model, built from SRC's config.json and loaded with SRC's tensors (strict)."""
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            "SRC: verifying an HF source runs it in transformers, which is not installed (pip install transformers)"
        ) from None
    source = conversion.source
    config = transformers.VideoMAEConfig.from_dict(source.config or {})
    config._attn_implementation = "eager"  # the plain softmax(QKᵀ)V, in float64 like ours
    pretrain = conversion.kind == "pretrain"
    cls = transformers.VideoMAEForPreTraining if pretrain else transformers.VideoMAEForVideoClassification
    model = cls(config)
    model.load_state_dict(hf.in_qv_bias_style(source_names(source), hf.installed_qv_bias_style()), strict=True)
    eps = conversion.spec.model.layer_norm_eps
    for norm in (getattr(model, "decoder", None), model):  # decoder.norm (pretraining), fc_norm (classification)
        for layer in (getattr(norm, "norm", None), getattr(norm, "fc_norm", None)):
            if isinstance(layer, nn.LayerNorm):
                layer.eps = eps
    model = model.double().eval()
    version = importlib.metadata.version("transformers")
    name = f"transformers {version} {cls.__name__} (its hard-coded 1e-5 norm eps set to ours, {eps:g})"
    if pretrain:
        return name, lambda v, mask: _hf_pretraining(model, v, mask)
    return name, lambda v, _: (model(pixel_values=v.transpose(1, 2)).logits,)


def _hf_pretraining(model: nn.Module, video: Tensor, mask: Tensor) -> Outputs:
    output = model(pixel_values=video.transpose(1, 2), bool_masked_pos=mask)  # HF takes [B, T, C, H, W]
    return output.loss, output.logits
