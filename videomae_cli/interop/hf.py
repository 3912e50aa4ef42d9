"""Weights and config for HF transformers' `VideoMAEForPreTraining` (design.md: weight names).

Our pretrain state dict uses the official V1 names. One rename table drives both directions; the only entry that is
not a rename is the fused qkv weight, which HF stores as separate query/key/value Linears. The q/v biases are
`attention.attention.query.bias`/`value.bias` in transformers 5.x and `attention.attention.q_bias`/`v_bias` in 4.x:
we write either style and read both.

HF hard-codes eps 1e-5 for `decoder.norm` (ours 1e-6), so a converted model differs from ours by about 1e-5 there;
nothing in config.json can carry that eps across.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from videomae_cli.config.schema import ModelSpec
from videomae_cli.interop.names import rename, split_block_key, swap
from videomae_cli.models.vit import TokenGrid

QV_BIAS_STYLES = ("v4", "v5")

# (ours, HF) name prefixes of the transformer blocks; the block index follows the prefix in both layouts.
_BLOCK_PREFIXES = (
    ("encoder.blocks.", "videomae.encoder.layer."),
    ("decoder.blocks.", "decoder.decoder_layers."),
)
# (ours, HF) names inside one block. A name ending in "." renames every key under it.
_BLOCK_RENAMES = (
    ("norm1.", "layernorm_before."),
    ("attn.proj.", "attention.output.dense."),
    ("norm2.", "layernorm_after."),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
)
_QV_BIAS_RENAMES = {
    "v5": (("attn.q_bias", "attention.attention.query.bias"), ("attn.v_bias", "attention.attention.value.bias")),
    "v4": (("attn.q_bias", "attention.attention.q_bias"), ("attn.v_bias", "attention.attention.v_bias")),
}
_QKV = "attn.qkv.weight"
_QKV_PARTS = ("attention.attention.query.weight", "attention.attention.key.weight", "attention.attention.value.weight")
# (ours, HF) names outside the blocks.
_TOP_RENAMES = (
    ("encoder.patch_embed.proj.", "videomae.embeddings.patch_embeddings.projection."),
    ("encoder.norm.", "videomae.layernorm."),  # HF has it only with use_mean_pooling=False
    ("encoder_to_decoder.weight", "encoder_to_decoder.weight"),
    ("mask_token", "mask_token"),
    ("decoder.norm.", "decoder.norm."),
    ("decoder.head.", "decoder.head."),
)


def installed_qv_bias_style() -> str:
    """The q/v bias naming of the installed transformers ("v5" when it is not installed: the current layout)."""
    try:
        major = int(importlib.metadata.version("transformers").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return "v5"
    return "v5" if major >= 5 else "v4"


def in_qv_bias_style(state_dict: dict[str, Tensor], style: str) -> dict[str, Tensor]:
    """An HF state dict with its q/v bias names (either style) renamed to `style` ("v4" or "v5")."""
    other = _QV_BIAS_RENAMES["v4" if style == "v5" else "v5"]
    renames = {theirs: ours for (_, theirs), (_, ours) in zip(other, _QV_BIAS_RENAMES[style], strict=True)}
    out = {}
    for key, value in state_dict.items():
        block = split_block_key(key, swap(_BLOCK_PREFIXES))
        if block is not None and block[1] in renames:
            key = key[: -len(block[1])] + renames[block[1]]
        out[key] = value
    return out


def to_hf_pretraining_state_dict(state_dict: dict[str, Tensor], qv_bias_style: str = "auto") -> dict[str, Tensor]:
    """Our pretrain state dict → `VideoMAEForPreTraining` keys.

    qv_bias_style: "v5" (query.bias/value.bias), "v4" (q_bias/v_bias), or "auto" for the installed transformers.
    Raises ValueError for keys HF cannot hold (MAE-ST position tables, cls tokens, a decoder-embed bias), rather
    than dropping them silently.
    """
    style = installed_qv_bias_style() if qv_bias_style == "auto" else qv_bias_style
    if style not in QV_BIAS_STYLES:
        raise ValueError(f"qv_bias_style must be 'auto', 'v4' or 'v5', got {qv_bias_style!r}")
    block_renames = _BLOCK_RENAMES + _QV_BIAS_RENAMES[style]
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        block = split_block_key(key, _BLOCK_PREFIXES)
        if block is not None and block[1] == _QKV:
            # Cloned so the three parts do not share storage (safetensors refuses shared tensors).
            out.update((block[0] + name, part.clone()) for name, part in zip(_QKV_PARTS, value.chunk(3), strict=True))
            continue
        name = rename(key, _TOP_RENAMES) if block is None else rename(block[1], block_renames)
        if name is None:
            unknown.append(key)
        else:
            out[name if block is None else block[0] + name] = value
    if unknown:
        raise ValueError(f"no HF VideoMAEForPreTraining equivalent for: {', '.join(unknown)}")
    return out


def from_hf_pretraining_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """`VideoMAEForPreTraining` state dict (transformers 4.x or 5.x names) → our pretrain state dict.

    Raises ValueError for keys we have no place for, or a block whose query/key/value weights are incomplete.
    """
    out, qkv, unknown = _rename_hf(state_dict)
    if unknown:
        raise ValueError(f"not a VideoMAEForPreTraining weight we can map: {', '.join(unknown)}")
    for prefix, parts in qkv.items():
        if len(parts) != len(_QKV_PARTS):
            raise ValueError(f"incomplete query/key/value weights for {prefix}: have {sorted(parts)}")
        out[prefix + _QKV] = torch.cat([parts[name] for name in _QKV_PARTS])  # [3C, C], rows q, k, v
    return out


def renamed_from_hf(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Every tensor of an HF pretraining or classification state dict that maps by renaming alone (all but the
    query/key/value weights), under our names. Safe on tensors of any shape: nothing is concatenated."""
    rename_only = lambda sd: _rename_hf(sd)[0]  # noqa: E731
    return _as_classifier(state_dict, rename_only) if is_hf_classification(state_dict) else rename_only(state_dict)


def _rename_hf(
    state_dict: dict[str, Tensor],
) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]], list[str]]:
    """(renamed tensors, {our block prefix: {HF query/key/value name: weight}}, HF keys with no place in ours)."""
    block_prefixes = swap(_BLOCK_PREFIXES)
    block_renames = swap(_BLOCK_RENAMES + _QV_BIAS_RENAMES["v5"] + _QV_BIAS_RENAMES["v4"])
    top_renames = swap(_TOP_RENAMES)
    out: dict[str, Tensor] = {}
    qkv: dict[str, dict[str, Tensor]] = {}
    unknown = []
    for key, value in state_dict.items():
        block = split_block_key(key, block_prefixes)
        if block is not None and block[1] in _QKV_PARTS:
            qkv.setdefault(block[0], {})[block[1]] = value
            continue
        name = rename(key, top_renames) if block is None else rename(block[1], block_renames)
        if name is None:
            unknown.append(key)
        else:
            out[name if block is None else block[0] + name] = value
    return out, qkv, unknown


_CLASSIFIER_HEAD = (("fc_norm.", "fc_norm."), ("head.", "classifier."))  # (ours, HF)


def to_hf_classification_state_dict(state_dict: dict[str, Tensor], qv_bias_style: str = "auto") -> dict[str, Tensor]:
    """Our classifier state dict → `VideoMAEForVideoClassification` keys (mean pooling: fc_norm, no videomae.layernorm).

    The encoder part goes through the pretraining table (our classifier names are the pretrain encoder's without
    `encoder.`), so both models share one mapping.
    """
    head = {k: v for k, v in state_dict.items() if rename(k, _CLASSIFIER_HEAD) is not None}
    encoder = {f"encoder.{k}": v for k, v in state_dict.items() if k not in head}
    out = to_hf_pretraining_state_dict(encoder, qv_bias_style)
    out.update((rename(k, _CLASSIFIER_HEAD), v) for k, v in head.items())
    return out


def from_hf_classification_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """`VideoMAEForVideoClassification` state dict (4.x or 5.x names) → our classifier state dict."""
    return _as_classifier(state_dict, from_hf_pretraining_state_dict)


def _as_classifier(
    state_dict: dict[str, Tensor], map_encoder: Callable[[dict[str, Tensor]], dict[str, Tensor]]
) -> dict[str, Tensor]:
    """An HF classification state dict → our classifier names: the head renamed, the encoder through `map_encoder`
    (a pretraining mapping, whose `encoder.` prefix our classifier names do not have)."""
    hf_head = swap(_CLASSIFIER_HEAD)
    head = {k: v for k, v in state_dict.items() if rename(k, hf_head) is not None}
    encoder = map_encoder({k: v for k, v in state_dict.items() if k not in head})
    out = {k.removeprefix("encoder."): v for k, v in encoder.items()}
    out.update((rename(k, hf_head), v) for k, v in head.items())
    return out


def is_hf_classification(state_dict: dict[str, Tensor]) -> bool:
    """Whether an HF VideoMAE state dict is a `VideoMAEForVideoClassification` (it has the `classifier` head)."""
    return "classifier.weight" in state_dict


def add_base_prefix(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """A bare `VideoMAEModel` state dict (no `videomae.` prefix) → the prefixed names of the models with heads."""
    if any(k.startswith("videomae.") for k in state_dict):
        return state_dict
    return {f"videomae.{k}": v for k, v in state_dict.items()}


HF_TARGETS = ("norm_pixel", "pixel")  # what VideoMAEForPreTraining's decoder predicts (norm_pix_loss True / False)


def hf_config_kwargs(
    spec: ModelSpec, grid: TokenGrid, classifier: bool = False, encoder_only: bool = False
) -> dict[str, Any]:
    """`VideoMAEConfig` keyword arguments for a model of `spec` on clips of `grid`.

    Only the official V1 layout maps onto HF: sincos positions, no cls token, no decoder-embed bias, a decoder that
    predicts every frame, and (for pretraining) a `norm_pixel` or `pixel` target (HF `norm_pix_loss` True / False);
    `encoder_only` (a `VideoMAEModel`) asks nothing of the decoder. Drop path has no HF equivalent and is left out:
    it only matters for training.
    """
    decoder = not classifier and not encoder_only
    unsupported = {
        "model.pos_embed": spec.pos_embed != "sincos",
        "model.cls_token": spec.cls_token,
        "model.decoder_embed_bias": spec.decoder_embed_bias and decoder,
        "model.target": spec.target not in HF_TARGETS and decoder,
        "model.pred_frames": getattr(spec, "pred_frames", None) is not None and decoder,
    }
    bad = [name for name, is_bad in unsupported.items() if is_bad]
    if bad:
        model = "VideoMAEForVideoClassification" if classifier else "VideoMAEForPreTraining"
        raise ValueError(f"HF {model} cannot represent {', '.join(bad)} of this model")
    return {
        "image_size": grid.height if grid.height == grid.width else [grid.height, grid.width],
        "patch_size": grid.patch,
        "num_channels": 3,
        "num_frames": grid.frames,
        "tubelet_size": grid.tubelet,
        "hidden_size": spec.dim,
        "num_hidden_layers": spec.depth,
        "num_attention_heads": spec.heads,
        "intermediate_size": spec.mlp_dim,
        "hidden_act": "gelu",  # exact (erf) GELU, as nn.GELU()
        "decoder_hidden_size": spec.decoder_dim,
        "decoder_num_hidden_layers": spec.decoder_depth,
        "decoder_num_attention_heads": spec.decoder_heads,
        "decoder_intermediate_size": spec.decoder_mlp_dim,
        "layer_norm_eps": spec.layer_norm_eps,  # HF defaults to 1e-12
        "qv_bias": True,
        # Pretraining keeps videomae.layernorm (our encoder.norm); classifiers mean-pool into fc_norm.
        "use_mean_pooling": classifier,
        "norm_pix_loss": spec.target == "norm_pixel",
    }


def hf_config(
    spec: ModelSpec, grid: TokenGrid, classes: list[str] | None = None, encoder_only: bool = False
) -> dict[str, Any]:
    """A complete config.json: every VideoMAEConfig field, for a classifier (with `classes`), a pretrain model, or
    (`encoder_only`) a pretrain model's encoder as a `VideoMAEModel`.

    Both bias flags are written: transformers 5.x reads `qv_bias`, 4.x reads `qkv_bias`.
    """
    classifier = classes is not None
    architecture = "VideoMAEForVideoClassification" if classifier else "VideoMAEForPreTraining"
    config: dict[str, Any] = {
        "model_type": "videomae",
        "architectures": ["VideoMAEModel" if encoder_only else architecture],
        **hf_config_kwargs(spec, grid, classifier=classifier, encoder_only=encoder_only),
        "qkv_bias": True,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    }
    if classifier:
        config["id2label"] = {str(i): name for i, name in enumerate(classes)}
        config["label2id"] = {name: i for i, name in enumerate(classes)}
    return config


# (our spec field, HF config field, HF default) for the fields that carry across unchanged.
_CONFIG_FIELDS = (
    ("model.dim", "hidden_size", 768),
    ("model.depth", "num_hidden_layers", 12),
    ("model.heads", "num_attention_heads", 12),
    ("model.mlp_dim", "intermediate_size", 3072),
    ("model.patch_size", "patch_size", 16),
    ("model.tubelet_size", "tubelet_size", 2),
    ("model.decoder_dim", "decoder_hidden_size", 384),
    ("model.decoder_depth", "decoder_num_hidden_layers", 4),
    ("model.decoder_heads", "decoder_num_attention_heads", 6),
    ("model.decoder_mlp_dim", "decoder_intermediate_size", 1536),
    ("model.layer_norm_eps", "layer_norm_eps", 1e-12),
    ("data.num_frames", "num_frames", 16),
)


def settings_from_hf_config(config: dict[str, Any], classifier: bool) -> dict[str, Any]:
    """Our spec settings (dotted paths) from an HF VideoMAE config.json; HF's defaults fill missing fields.

    Raises ValueError for configurations our models do not have (non-square input, patch-token pooling, a
    pretraining encoder without its final norm).
    """
    if config.get("model_type", "videomae") != "videomae":
        raise ValueError(f"config.json model_type is {config.get('model_type')!r}, not 'videomae'")
    size = config.get("image_size", 224)
    if isinstance(size, list | tuple):
        if len(set(size)) != 1:
            raise ValueError(f"image_size {size} is not square; videomae-cli models take square clips")
        size = size[0]
    mean_pooling = config.get("use_mean_pooling", True)
    if classifier and not mean_pooling:
        raise ValueError("use_mean_pooling=false classifiers pool the first patch token; only mean pooling works")
    if not classifier and mean_pooling:
        raise ValueError(
            "this VideoMAEForPreTraining has use_mean_pooling=true, so its encoder has no final norm (ours does)"
        )
    settings = {ours: config.get(theirs, default) for ours, theirs, default in _CONFIG_FIELDS}
    settings["data.input_size"] = size
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"hidden_act {config['hidden_act']!r}: only exact GELU is supported")
    if not classifier:
        settings["model.target"] = "norm_pixel" if config.get("norm_pix_loss", True) else "pixel"
    return settings


def classes_from_hf_config(config: dict[str, Any], num_classes: int) -> list[str]:
    """Class names from id2label (the numbers where it has none or does not match the head)."""
    id2label = config.get("id2label") or {}
    names = [id2label.get(str(i), id2label.get(i)) for i in range(num_classes)]
    if len(id2label) != num_classes or any(name is None for name in names):
        return [str(i) for i in range(num_classes)]
    return [str(name) for name in names]
