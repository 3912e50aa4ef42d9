"""VideoMAE annotation files (design.md: data formats): `PATH LABEL` lines, or V2's `PATH START TOTAL` lists.

Space separated, no header. Paths may contain spaces (the numeric columns are split off the right end) and may be
relative to a data root (by default the manifest's own folder).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from videomae_cli.errors import ConfigError, DataError

if TYPE_CHECKING:
    from videomae_cli.data.video import VideoBytes

TRAIN_MANIFEST = "train.csv"
VAL_MANIFEST = "val.csv"
CLASSES_FILE = "classes.json"  # written by `videomae prepare-data`: {"classes": {"0": name, ...}, ...}


@dataclass(frozen=True)
class ManifestEntry:
    """One video: its path, label (0 when unlabelled), and frame window (start, total; total -1 = to the end)."""

    path: Path | VideoBytes  # a file, or a video in memory (a shard's sample)
    label: int = 0
    start: int = 0
    total: int = -1


# Labels index a classifier's outputs and name lists: a larger one is a broken file, not a class (and would make
# lists of that many names).
MAX_LABEL = 999_999
_INTEGER = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only ("²".isdigit() is true, int("²") fails), fits int64


def _numeric_tail(line: str, count: int) -> tuple[str, list[int]] | None:
    """(path, the last `count` columns as ints), or None when they are not all integers."""
    parts = line.rsplit(" ", count)
    if len(parts) != count + 1 or not all(_INTEGER.fullmatch(p) for p in parts[1:]):
        return None
    return parts[0], [int(p) for p in parts[1:]]


def read_manifest(path: Path, root: Path | None = None) -> list[ManifestEntry]:
    """Entries of a VideoMAE annotation file. Files whose every line ends in two integers are V2 `PATH START TOTAL`
    pretraining lists (unlabelled); otherwise every line must be `PATH LABEL`."""
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines()]
    except OSError as e:
        raise ConfigError(f"data.source: cannot read {path} ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"data.source: {path}: not UTF-8 text (byte {e.start})") from None
    base = Path(root) if root is not None else Path(path).parent
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line and not line.startswith("#")]
    if not numbered:
        raise DataError(f"{path}: the manifest lists no videos")
    columns = 2 if all(_numeric_tail(line, 2) for _, line in numbered) else 1
    entries = []
    for number, line in numbered:
        parsed = _numeric_tail(line, columns)
        if parsed is None:
            raise ConfigError(f"data.source: {path}:{number}: expected 'PATH LABEL' or 'PATH START TOTAL'")
        video, values = parsed
        if "\x00" in video:
            raise ConfigError(f"data.source: {path}:{number}: the path holds a NUL character")
        if columns == 1 and values[0] > MAX_LABEL:
            raise ConfigError(f"data.source: {path}:{number}: label {values[0]} is over {MAX_LABEL}")
        location = Path(video) if Path(video).is_absolute() else base / video
        entry = ManifestEntry(location, 0, *values) if columns == 2 else ManifestEntry(location, values[0])
        entries.append(entry)
    return entries


def resolve_manifest(source: Path) -> Path:
    """A manifest file, or the training manifest of a `videomae prepare-data` output directory."""
    source = Path(source)
    if source.is_dir():
        candidate = source / TRAIN_MANIFEST
        if not candidate.is_file():
            raise ConfigError(f"data.source: {source} has no {TRAIN_MANIFEST} (make one with videomae prepare-data)")
        return candidate
    if not source.is_file():
        raise ConfigError(f"data.source: no such file or directory: {source}")
    return source


def validation_manifest(source: Path, explicit: str | Path | None = None) -> Path | None:
    """The validation manifest that goes with training data `source`: `explicit` when given, else val.csv in a
    prepare-data directory or beside a train.csv; None when there is none."""
    if explicit:
        explicit = Path(explicit)
        if not explicit.is_file():
            raise ConfigError(f"data.val_source: no such file: {explicit}")
        return explicit
    source = Path(source)
    if source.is_dir():
        candidate = source / VAL_MANIFEST
    elif source.name == TRAIN_MANIFEST:
        candidate = source.with_name(VAL_MANIFEST)
    else:
        return None
    return candidate if candidate.is_file() else None


def class_names(folder: Path, count: int) -> list[str]:
    """Names of labels 0..count-1 from the classes.json in `folder` (as prepare-data writes it), else the numbers."""
    try:
        named = json.loads((Path(folder) / CLASSES_FILE).read_text())["classes"]
        names = [named.get(str(i)) for i in range(max(count, len(named)))]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return [str(i) for i in range(count)]
    return [name if isinstance(name, str) else str(i) for i, name in enumerate(names)]
