"""The spec of `videomae prepare-data`: the source to read, the folder to write, and how to check and split it.

Torch-free like the rest of config/, so that a bad value is refused before any video library loads. Errors name the
spec's fields (`src`, `out`, `val_fraction`, ...); the CLI says them in its own flags (cli/common.py: in_flag_terms).
"""

from __future__ import annotations

import os
import re
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


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
          "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}  # fmt: skip
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*")


def parse_bytes(text: str) -> int:
    """`1GB` → 10**9, `500MiB` → 500 * 2**20, `123` → 123; ValueError naming the units it knows."""
    match = _SIZE.fullmatch(text.lower())
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(f"{text!r} is not a size: give bytes, or a number with B, KB, MB, GB, TB (or KiB, MiB, GiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


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
    # WebDataset tar shards of the usable videos in OUT/shards/ (data/shards/), per split, about this many bytes each
    shards: bool = False
    shard_size: int = 1_000_000_000
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

    @field_validator("shard_size", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> Any:
        return parse_bytes(value) if isinstance(value, str) else value

    @field_validator("shard_size")
    @classmethod
    def _check_shard_size(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be a positive number of bytes (e.g. 1000000000, 1GB, 500MiB)")
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
