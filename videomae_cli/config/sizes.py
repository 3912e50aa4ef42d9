"""Named model sizes (design.md: commands). Each maps to the encoder/decoder shape fields of ModelSpec."""

from __future__ import annotations

from typing import Any

SIZE_NAMES = ("test", "tiny", "small", "base", "large", "huge", "giant")


def _size(
    dim: int, depth: int, heads: int, dec_dim: int, dec_depth: int, dec_heads: int, **extra: Any
) -> dict[str, Any]:
    return {
        "dim": dim,
        "depth": depth,
        "heads": heads,
        "mlp_dim": extra.get("mlp_dim", 4 * dim),
        "patch_size": extra.get("patch_size", 16),
        "decoder_dim": dec_dim,
        "decoder_depth": dec_depth,
        "decoder_heads": dec_heads,
        "decoder_mlp_dim": 4 * dec_dim,
    }


SIZES: dict[str, dict[str, Any]] = {
    # A toy size for unit tests: seconds on a CPU.
    "test": _size(64, 2, 4, 32, 1, 2),
    # ViT-Ti has no official VideoMAE decoder; it borrows ViT-S's.
    "tiny": _size(192, 12, 3, 192, 4, 3),
    "small": _size(384, 12, 6, 192, 4, 3),
    "base": _size(768, 12, 12, 384, 4, 6),
    "large": _size(1024, 24, 16, 512, 12, 8),
    "huge": _size(1280, 32, 16, 640, 12, 8),
    "giant": _size(1408, 40, 16, 512, 4, 8, mlp_dim=6144, patch_size=14),
}
