"""MAE-ST (facebookresearch/mae_st) checkpoints → our names (design.md: weight names).

MAE-ST keeps separate q/k/v Linears with biases; we fuse the weights into `attn.qkv` and keep the q and v biases.
The k bias is dropped exactly: it adds q·b_k to every score of a query row, and softmax is shift-invariant per row.
Its learned separable position tables, cls token and decoder-embed bias map onto our `separable` layout. The
fine-tuned model mean-pools the patch tokens into `norm` and `head`: our `fc_norm` and `head`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from videomae_cli.interop.names import Pairs, rename, split_block_key, swap

_POSITIONS = (("pos_embed_spatial", "spatial"), ("pos_embed_temporal", "temporal"), ("pos_embed_class", "cls"))

_PRETRAIN_TOP: Pairs = (
    ("patch_embed.proj.", "encoder.patch_embed.proj."),
    ("cls_token", "encoder.cls_token"),
    *((theirs, f"encoder.pos_embed.{ours}") for theirs, ours in _POSITIONS),
    ("norm.", "encoder.norm."),
    ("decoder_embed.", "encoder_to_decoder."),
    ("mask_token", "mask_token"),
    ("decoder_cls_token", "decoder_cls_token"),
    *((f"decoder_{theirs}", f"decoder_pos_embed.{ours}") for theirs, ours in _POSITIONS),
    ("decoder_norm.", "decoder.norm."),
    ("decoder_pred.", "decoder.head."),
)
_PRETRAIN_BLOCKS: Pairs = (("blocks.", "encoder.blocks."), ("decoder_blocks.", "decoder.blocks."))

_CLASSIFIER_TOP: Pairs = (
    ("patch_embed.proj.", "patch_embed.proj."),
    ("cls_token", "cls_token"),
    *((theirs, f"pos_embed.{ours}") for theirs, ours in _POSITIONS),
    ("norm.", "fc_norm."),  # MAE-ST normalises after pooling
    ("head.", "head."),
)
_CLASSIFIER_BLOCKS: Pairs = (("blocks.", "blocks."),)

# Inside a block only the attention projections change.
_BLOCK_SAME = ("norm1.", "norm2.", "mlp.fc1.", "mlp.fc2.", "attn.proj.")
_QKV = ("attn.q.", "attn.k.", "attn.v.")
_JOINT_TABLES = ("pos_embed", "decoder_pos_embed")


def is_maest(state_dict: dict[str, Tensor]) -> bool:
    """MAE-ST's layout: separate q/k/v projections, or its decoder/position names."""
    return any(k.endswith("attn.q.weight") or k in ("decoder_embed.weight", "pos_embed_spatial") for k in state_dict)


def maest_kind(state_dict: dict[str, Tensor]) -> str:
    """ "pretrain" (it has a decoder) or "classifier" (it has a head)."""
    return "pretrain" if "decoder_pred.weight" in state_dict else "classifier"


def from_maest_state_dict(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[tuple[str, str]]]:
    """(our state dict, [(dropped MAE-ST key, why)]). Raises ValueError for layouts we cannot hold.

    The caller checks every tensor's shape first (`to_maest_state_dict` gives what each should be), so the fusion
    below only ever concatenates matching projections.
    """
    out, attention, unknown = rename_maest(state_dict)
    if unknown:
        raise ValueError(f"not an MAE-ST weight we can map: {', '.join(unknown[:5])}")
    _, blocks = _tables(state_dict)
    dropped = []
    for prefix, parts in attention.items():
        out.update(_fused_attention(prefix, parts))
        if "k.bias" in parts:
            dropped.append((_maest_block_name(prefix, blocks) + "attn.k.bias", "exact: softmax ignores a key bias"))
    return out, dropped


def rename_maest(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]], list[str]]:
    """Every tensor but the attention projections under our names: (renamed, {our block prefix: {"q.weight": ...}},
    MAE-ST keys with no place in our layout). Renaming only, so it is safe on tensors of any shape."""
    joint = [k for k in _JOINT_TABLES if k in state_dict]
    if joint:
        raise ValueError(
            f"{joint[0]} is a joint learned position table (MAE-ST sep_pos_embed=False); only the separable "
            "layout (pos_embed_spatial/pos_embed_temporal) is supported"
        )
    top, blocks = _tables(state_dict)
    out: dict[str, Tensor] = {}
    attention: dict[str, dict[str, Tensor]] = {}
    unknown = []
    for key, value in state_dict.items():
        block = split_block_key(key, blocks)
        if block is None:
            name = rename(key, top)
        elif block[1].startswith(_QKV):
            attention.setdefault(block[0], {})[block[1].removeprefix("attn.")] = value
            continue
        else:
            name = block[0] + block[1] if block[1].startswith(_BLOCK_SAME) else None
        if name is None:
            unknown.append(key)
        else:
            out[name] = value
    return out, attention, unknown


def to_maest_state_dict(state_dict: dict[str, Tensor], pretrain: bool) -> dict[str, Tensor]:
    """Our state dict → MAE-ST names, as MAE-ST would store it: qkv split into q/k/v, the q/v biases and a zero k
    bias. Used (on shape-only tensors) to say what shape every tensor of an MAE-ST file must have."""
    top, blocks = (_PRETRAIN_TOP, _PRETRAIN_BLOCKS) if pretrain else (_CLASSIFIER_TOP, _CLASSIFIER_BLOCKS)
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        block = split_block_key(key, swap(blocks))
        if block is None:
            name = rename(key, swap(top))
            if name is None:
                raise ValueError(f"no MAE-ST equivalent for {key}")
            out[name] = value
        elif block[1] == "attn.qkv.weight":
            out.update((f"{block[0]}attn.{part}.weight", w) for part, w in zip("qkv", value.chunk(3), strict=True))
        elif block[1] in ("attn.q_bias", "attn.v_bias"):
            out[f"{block[0]}attn.{block[1][5]}.bias"] = value
            if block[1] == "attn.q_bias":
                out[f"{block[0]}attn.k.bias"] = torch.zeros_like(value)
        else:
            out[block[0] + block[1]] = value
    return out


def _tables(state_dict: dict[str, Tensor]) -> tuple[Pairs, Pairs]:
    """(top-level, block) rename tables for this file's kind."""
    if maest_kind(state_dict) == "pretrain":
        return _PRETRAIN_TOP, _PRETRAIN_BLOCKS
    return _CLASSIFIER_TOP, _CLASSIFIER_BLOCKS


def _fused_attention(prefix: str, parts: dict[str, Tensor]) -> dict[str, Tensor]:
    """MAE-ST q/k/v Linears of one block → our qkv weight [3C, C] (rows q, k, v) and q/v biases."""
    missing = [f"{p}.weight" for p in "qkv" if f"{p}.weight" not in parts]
    if missing:
        raise ValueError(f"{prefix}: incomplete attention weights, missing {', '.join(missing)}")
    qkv = torch.cat([parts["q.weight"], parts["k.weight"], parts["v.weight"]])
    dim = qkv.shape[1]
    return {  # MAE-ST with no_qkv_bias has no biases: zeros are exact
        f"{prefix}attn.qkv.weight": qkv,
        f"{prefix}attn.q_bias": parts.get("q.bias", torch.zeros(dim, dtype=qkv.dtype)),
        f"{prefix}attn.v_bias": parts.get("v.bias", torch.zeros(dim, dtype=qkv.dtype)),
    }


def _maest_block_name(our_prefix: str, blocks: Pairs) -> str:
    for theirs, ours in blocks:
        if our_prefix.startswith(ours):
            return theirs + our_prefix[len(ours) :]
    return our_prefix
