"""The official model zoos' architectures: what a saved `args.model` name fixes, and the released sizes.

Head counts are not in any tensor shape, so a converter has to learn them elsewhere. The official training scripts
build their model from `args.model` (a factory name, e.g. `pretrain_videomae_base_patch16_224`), and the factories
fix the encoder heads (and, in V1/V2, the decoder heads). MAE-ST takes its decoder heads from `args.decoder_num_heads`
instead (default 16). The tables below are copied from the factories in MCG-NJU/VideoMAE (modeling_pretrain.py,
modeling_finetune.py), OpenGVLab/VideoMAEv2 (models/) and facebookresearch/mae_st (models_mae.py, models_vit.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    """One released encoder (and its decoder's heads, where the family fixes them)."""

    name: str  # ViT-S, ViT-B, ...
    dim: int
    depth: int
    heads: int
    mlp_dim: int
    decoder_heads: dict[int, int]  # decoder width → heads, for the decoders released with this encoder


_S = Architecture("ViT-S", 384, 12, 6, 1536, {192: 3})
_B = Architecture("ViT-B", 768, 12, 12, 3072, {384: 6})
_L = Architecture("ViT-L", 1024, 24, 16, 4096, {512: 8})
_H = Architecture("ViT-H", 1280, 32, 16, 5120, {640: 8, 512: 8})  # V1 decodes at 640, V2 at 512
_G = Architecture("ViT-g", 1408, 40, 16, 6144, {512: 8})
# MAE-ST's decoder is 512 wide with 16 heads by default (main_pretrain.py), whatever the encoder.
_MAEST_DECODER = {512: 16}

# The released architectures of each layout: a file whose weights are one of these, and whose saved args do not say
# otherwise, was built by that factory.
RELEASED: dict[str, tuple[Architecture, ...]] = {
    "official": (_S, _B, _L, _H, _G),
    "maest": tuple(Architecture(a.name, a.dim, a.depth, a.heads, a.mlp_dim, _MAEST_DECODER) for a in (_B, _L, _H)),
}

_V1_SIZES = (("small", _S), ("base", _B), ("large", _L), ("huge", _H))

# args.model → the architecture that factory builds. V1 and V2 share their names (V2 adds giant); the decoder heads
# of a V1/V2 pretraining factory are fixed by the name, MAE-ST's come from args.decoder_num_heads.
FACTORIES: dict[str, dict[str, Architecture]] = {
    "official": {
        **{f"pretrain_videomae_{size}_patch16_224": arch for size, arch in _V1_SIZES},
        "pretrain_videomae_giant_patch14_224": _G,
        **{f"vit_{size}_patch16_224": arch for size, arch in _V1_SIZES},
        "vit_base_patch16_384": _B,
        "vit_large_patch16_384": _L,
        "vit_large_patch16_512": _L,
        "vit_giant_patch14_224": _G,
    },
    "maest": {
        "mae_vit_base_patch16": RELEASED["maest"][0],
        "mae_vit_large_patch16": RELEASED["maest"][1],
        "mae_vit_huge_patch14": RELEASED["maest"][2],
        "vit_base_patch16": RELEASED["maest"][0],
        "vit_large_patch16": RELEASED["maest"][1],
        "vit_huge_patch14": RELEASED["maest"][2],
    },
}


def released_architecture(layout: str, dim: int, depth: int, mlp_dim: int) -> Architecture | None:
    """The released encoder of `layout` with exactly this width, depth and MLP width, or None."""
    for arch in RELEASED.get(layout, ()):
        if (arch.dim, arch.depth, arch.mlp_dim) == (dim, depth, mlp_dim):
            return arch
    return None
