"""The fine-tuning classifier: official fine-tune layout, head init, pretrain → classifier weights, HF parity."""

from __future__ import annotations

import pytest
import torch
from conftest import PARITY_GRID, parity_model, parity_spec, randomize

from videomae_cli.config.schema import ModelSpec
from videomae_cli.interop.hf import hf_config_kwargs, to_hf_classification_state_dict
from videomae_cli.models.classifier import VideoClassifier, classifier_state_from_pretrain
from videomae_cli.models.pretrain import IMAGENET_MEAN, IMAGENET_STD

NUM_CLASSES = 5


def make_classifier(spec: ModelSpec | None = None, seed: int | None = 0) -> VideoClassifier:
    model = VideoClassifier(spec or parity_spec(), PARITY_GRID, NUM_CLASSES).eval()
    if seed is not None:
        randomize(model, seed)
    return model


def make_clip(batch: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.rand(batch, 3, PARITY_GRID.frames, PARITY_GRID.height, PARITY_GRID.width, generator=gen)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return (pixels - mean) / std


def test_state_dict_is_the_official_fine_tune_layout() -> None:
    shapes = {
        k: tuple(v.shape) for k, v in make_classifier(ModelSpec(name="test", depth=1), seed=None).state_dict().items()
    }
    c = 64
    assert shapes == {
        "patch_embed.proj.weight": (c, 3, 2, 16, 16),
        "patch_embed.proj.bias": (c,),
        "blocks.0.norm1.weight": (c,),
        "blocks.0.norm1.bias": (c,),
        "blocks.0.attn.qkv.weight": (3 * c, c),
        "blocks.0.attn.q_bias": (c,),
        "blocks.0.attn.v_bias": (c,),
        "blocks.0.attn.proj.weight": (c, c),
        "blocks.0.attn.proj.bias": (c,),
        "blocks.0.norm2.weight": (c,),
        "blocks.0.norm2.bias": (c,),
        "blocks.0.mlp.fc1.weight": (4 * c, c),
        "blocks.0.mlp.fc1.bias": (4 * c,),
        "blocks.0.mlp.fc2.weight": (c, 4 * c),
        "blocks.0.mlp.fc2.bias": (c,),
        "fc_norm.weight": (c,),
        "fc_norm.bias": (c,),
        "head.weight": (NUM_CLASSES, c),
        "head.bias": (NUM_CLASSES,),
    }


def test_the_head_starts_scaled_down_by_0_001() -> None:
    torch.manual_seed(0)
    model = VideoClassifier(ModelSpec(name="small"), PARITY_GRID, 400)
    truncated_std = 0.02 * 0.8796  # a normal truncated at ±2σ keeps 0.88 of its std
    assert model.blocks[0].mlp.fc1.weight.std().item() == pytest.approx(truncated_std, rel=0.05)
    assert model.head.weight.std().item() == pytest.approx(truncated_std * 0.001, rel=0.05)


def test_a_pretrain_checkpoint_gives_the_classifier_its_encoder() -> None:
    pretrain = parity_model()
    classifier = make_classifier(seed=None)
    result = classifier.load_state_dict(classifier_state_from_pretrain(pretrain.state_dict()), strict=False)
    assert set(result.missing_keys) == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    assert result.unexpected_keys == []
    assert torch.equal(classifier.blocks[1].attn.v_bias, pretrain.encoder.blocks[1].attn.v_bias)


def test_logits_match_transformers_video_classification() -> None:
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    ours = make_classifier()
    spec = parity_spec()
    config = VideoMAEConfig(**{**hf_config_kwargs(spec, PARITY_GRID), "use_mean_pooling": True}, num_labels=NUM_CLASSES)
    config._attn_implementation = "sdpa"
    hf = VideoMAEForVideoClassification(config).eval()
    result = hf.load_state_dict(to_hf_classification_state_dict(ours.state_dict()), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    hf.fc_norm.eps = spec.layer_norm_eps  # HF hard-codes 1e-5 for fc_norm (design.md: weight names)
    video = make_clip()
    with torch.no_grad():
        expected = hf(video.permute(0, 2, 1, 3, 4)).logits  # HF takes [B, T, C, H, W]
        torch.testing.assert_close(ours(video), expected, atol=1e-5, rtol=0)


def test_every_parameter_learns() -> None:
    model = make_classifier().train()
    torch.nn.functional.cross_entropy(model(make_clip()), torch.tensor([1, 3])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_the_mae_st_variant_pools_patch_tokens_only() -> None:
    spec = ModelSpec(name="test", depth=1, pos_embed="separable", cls_token=True)
    model = make_classifier(spec)
    assert {"cls_token", "pos_embed.spatial", "pos_embed.temporal", "pos_embed.cls"} <= set(model.state_dict())
    video = make_clip()
    logits = model(video)
    with torch.no_grad():
        model.cls_token.add_(1.0)  # the cls token attends to the patches but is not itself pooled...
    assert model(video).shape == logits.shape == (2, NUM_CLASSES)
    assert not torch.equal(model(video), logits)  # ...so changing it changes the result only through attention
