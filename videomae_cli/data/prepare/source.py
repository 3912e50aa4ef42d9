"""What a prepare-data source is read into, before any video file is opened: items to check, and entries rejected
while reading the listing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePath


@dataclass(frozen=True)
class Problem:
    """A video left out of the manifests, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class SourceItem:
    """One listed video. `split` is None where the source does not say; `rel` names its transcoded `copies` (one
    file, or one per chunk), which the manifests list instead of `path` once they exist."""

    path: Path
    label: int
    split: str | None
    rel: PurePath
    copies: tuple[Path, ...] = ()

    @property
    def listed_paths(self) -> tuple[Path, ...]:
        """The files the manifests point at: the copies, or the video itself."""
        return self.copies or (self.path,)


@dataclass
class Source:
    """A source read into items, before any file is opened. `problems` are entries rejected while reading it."""

    format: str
    location: str
    classes: list[str]
    labelled: bool
    items: list[SourceItem]
    problems: list[Problem] = field(default_factory=list)
