"""Model FLOPs (models/flops.py) against torch's own FLOP counter (torch.utils.flop_counter), which counts every
matmul and attention product a forward pass runs."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from videomae_cli.config.schema import MaskSpec, ModelSpec
from videomae_cli.masking import MaskGenerator, collate_masks
from videomae_cli.models.classifier import VideoClassifier
from videomae_cli.models.flops import classifier_flops, pretrain_flops
from videomae_cli.models.pretrain import PretrainVideoMAE
from videomae_cli.models.vit import TokenGrid

GRID = TokenGrid(8, 64, 64, 16, tubelet=2)  # 64 tokens


def counted(model: torch.nn.Module, *inputs) -> int:
    """FLOPs torch counts in one forward; attention by SDPA's math backend, whose products the counter sees as
    matmuls (it has no formula for the CPU flash kernel)."""
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops()


@pytest.mark.parametrize(
    "mask", [MaskSpec(type="tube", ratio=0.75), MaskSpec(type="tube", ratio=0.75, decoder_ratio=0.5)]
)
@pytest.mark.parametrize("cls_token", [False, True])
def test_pretraining_flops_are_what_torch_counts(mask: MaskSpec, cls_token: bool) -> None:
    spec = ModelSpec(name="test", cls_token=cls_token)
    model = PretrainVideoMAE(spec, GRID).eval()
    tokens = collate_masks([MaskGenerator(mask, GRID, seed=0)(epoch=0, index=i) for i in range(2)])
    video = torch.randn(2, 3, 8, 64, 64)
    visible, decoded = tokens.visible.shape[1], tokens.decoded.shape[1]
    assert counted(model, video, tokens) == 2 * pretrain_flops(spec, GRID, visible, decoded)


def test_classifier_flops_are_what_torch_counts() -> None:
    spec = ModelSpec(name="test")
    model = VideoClassifier(spec, GRID, num_classes=7).eval()
    assert counted(model, torch.randn(3, 3, 8, 64, 64)) == 3 * classifier_flops(spec, GRID, 7)
