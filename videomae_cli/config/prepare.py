"""The spec of `videomae prepare-data`: the source to read, the folder to write, and how to check and split it.

Torch-free like the rest of config/, so that a bad value is refused before any video library loads. Errors name the
spec's fields (`src`, `out`, `val_fraction`, ...); the CLI says them in its own flags (cli/common.py: in_flag_terms).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from videomae_cli.config.schema import Strict, SyntheticScene

SourceFormat = Literal["auto", "folders", "annotations", "kinetics", "ssv2"]
Decoder = Literal["auto", "decord", "pyav"]
EncodeFor = Literal["decode", "size"]
TRANSCODE_FIELDS = ("resize_short", "fps", "keyframe_interval", "encode_for", "chunk_seconds")


def default_workers() -> int:
    """min(8, CPU count): probing is I/O- and decoder-bound, and more processes than that rarely help."""
    return min(8, os.cpu_count() or 1)


class PrepareSpec(Strict):
    """Everything `videomae prepare-data` needs (data/prepare/pipeline.py: prepare_data)."""

    src: Path | None = None
    out: Path
    format: SourceFormat = "auto"
    root: Path | None = None
    val_fraction: float = 0.1
    seed: int = 0
    min_frames: int = 16
    workers: int = Field(default_factory=default_workers)
    # Transcoding for training (data/transcode.py): on when any of these five is given.
    resize_short: int | None = None  # short side of the copies; never enlarged
    fps: float | None = None  # constant output frame rate (None: each source's average rate)
    keyframe_interval: int | None = None  # frames between keyframes (None: 48 for decode, x264's 250 for size)
    encode_for: EncodeFor = "decode"  # decode: x264 tune=fastdecode; size: x264's defaults
    chunk_seconds: float | None = None  # cut long videos into files of this many seconds (AVION)
    decoder: Decoder = "auto"
    progress: Literal["auto", "rich", "plain", "off"] = "auto"
    synthetic: int | None = None
    num_frames: int = 16
    size: int = 112
    scene: SyntheticScene = "busy"

    @model_validator(mode="before")
    @classmethod
    def _check_out_given(cls, data: Any) -> Any:
        # Said here rather than as pydantic's "Field required", so the line tells what to give.
        if isinstance(data, dict) and data.get("out") is None:
            raise ValueError("out: missing (give `out`, the folder to write the manifests to)")
        return data

    @field_validator("val_fraction")
    @classmethod
    def _check_fraction(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError("must be in [0, 1)")
        return value

    @field_validator("seed")
    @classmethod
    def _check_seed(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be >= 0")
        return value

    @field_validator("fps", "chunk_seconds")
    @classmethod
    def _check_positive_float(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value < float("inf"):
            raise ValueError("must be a positive number")
        return value

    @field_validator("min_frames", "workers", "synthetic", "keyframe_interval")
    @classmethod
    def _check_positive(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("must be >= 1")
        return value

    @field_validator("resize_short")
    @classmethod
    def _check_resize(cls, value: int | None) -> int | None:
        if value is not None and (value < 2 or value % 2):
            raise ValueError("must be a positive even number (H.264 needs even frame sizes)")
        return value

    @field_validator("num_frames")
    @classmethod
    def _check_num_frames(cls, value: int) -> int:
        if value < 2:
            raise ValueError("must be >= 2 (motion needs at least two frames)")
        return value

    @field_validator("size")
    @classmethod
    def _check_size(cls, value: int) -> int:
        if value < 8 or value % 2:
            raise ValueError("must be an even number >= 8")
        return value

    @model_validator(mode="after")
    def _check_source(self) -> PrepareSpec:
        if self.synthetic is None:
            if self.src is None:
                raise ValueError("src: missing (give `src`, a folder or file to prepare, or `synthetic=N`)")
            return self
        if self.src is not None:
            raise ValueError("src: give a source or `synthetic=N`, not both")
        for name in ("root", *TRANSCODE_FIELDS):
            if name in self.model_fields_set and getattr(self, name) is not None:
                raise ValueError(f"{name}: not used with `synthetic`")
        if self.format != "auto":
            raise ValueError("format: not used with `synthetic`")
        if "min_frames" not in self.model_fields_set:
            self.min_frames = self.num_frames  # synthetic clips are exactly this long; 16 would reject shorter ones
        return self

    @property
    def transcodes(self) -> bool:
        """Whether the videos are re-encoded for training (any transcode field given)."""
        return any(name in self.model_fields_set for name in TRANSCODE_FIELDS)
