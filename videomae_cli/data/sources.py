"""What `predict` and `embed` run on: video files, folders of videos, and manifests, given on the command line.

Inputs that do not exist are not fatal: they come back as failures, reported per file like videos that fail to decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from videomae_cli.data.loader import BadClip
from videomae_cli.data.manifest import ManifestEntry, read_manifest
from videomae_cli.data.prepare import walk_videos
from videomae_cli.errors import ConfigError

MANIFEST_SUFFIXES = (".csv", ".txt", ".lst")


@dataclass
class Inputs:
    """The videos to run on, in the order given (folders sorted), and the inputs that could not be used."""

    entries: list[ManifestEntry] = field(default_factory=list)
    missing: list[BadClip] = field(default_factory=list)


def collect_inputs(paths: list[Path]) -> Inputs:
    """Expand files, folders (recursively, by video extension) and manifests (`PATH LABEL` or `PATH START TOTAL`)."""
    found = Inputs()
    for path in paths:
        if not path.exists():
            found.missing.append(BadClip(str(path), f"{path}: no such file or directory"))
        elif path.is_dir():
            found.entries += [ManifestEntry(video) for video in walk_videos(path)]
        elif path.suffix.lower() in MANIFEST_SUFFIXES:
            found.entries += read_manifest(path)
        else:
            found.entries.append(ManifestEntry(path))  # a file that does not decode is reported when it is read
    if not found.entries and not found.missing:
        raise ConfigError("INPUT: no videos found in " + ", ".join(map(str, paths)))
    return found
