"""The token grid of a clip, free of torch so that specs (and every command's argument checks) can use it cheaply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenGrid:
    """The token grid of a clip: T/tubelet time slices of (H/p) × (W/p) patches."""

    frames: int
    height: int
    width: int
    patch: int
    tubelet: int

    @property
    def t(self) -> int:
        return self.frames // self.tubelet

    @property
    def h(self) -> int:
        return self.height // self.patch

    @property
    def w(self) -> int:
        return self.width // self.patch

    @property
    def per_slice(self) -> int:
        return self.h * self.w

    @property
    def num_tokens(self) -> int:
        return self.t * self.h * self.w

    @property
    def patch_dim(self) -> int:
        return 3 * self.tubelet * self.patch * self.patch
