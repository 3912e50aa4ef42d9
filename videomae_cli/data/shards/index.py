"""The index of a shards folder: which tar shards each split has, how many samples and bytes each holds, and the
class names. `prepare-data --shards` writes it beside the shards; a training run reads it to know the epoch's length
without listing, opening or guessing anything.

    OUT/shards/index.json
    {"format": "videomae-shards", "version": 1, "labelled": true, "classes": ["a", "b"], "shard_size": 1000000000,
     "complete": true,
     "splits": {"train": [{"name": "train-000000.tar", "samples": 812, "bytes": 999123456, "plan": "…"}, ...],
                "val": [...]}}

A shard's `plan` is a digest of the samples planned into it (keys, files, sizes): a resumed `prepare-data` keeps a
shard whose file and plan still match, and writes the others again. `complete` is false until every shard is written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

INDEX_FILE = "index.json"
SHARDS_DIR = "shards"
FORMAT = "videomae-shards"
VERSION = 1


@dataclass(frozen=True)
class ShardInfo:
    """One tar shard: its file name (beside the index), samples, bytes and the digest of its planned samples."""

    name: str
    samples: int
    bytes: int
    plan: str


@dataclass(frozen=True)
class Shard:
    """One shard to read: where (a path or a URL webdataset opens), its samples, and the id of its first sample."""

    url: str
    samples: int
    first: int


@dataclass
class ShardIndex:
    """What `index.json` says: the shards of each split in order, the classes, and whether all are written."""

    classes: list[str]
    labelled: bool
    shard_size: int
    splits: dict[str, list[ShardInfo]] = field(default_factory=dict)
    complete: bool = False

    def samples(self, split: str) -> int:
        """Samples in all shards of `split` (0 when it has none)."""
        return sum(shard.samples for shard in self.splits.get(split, []))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "labelled": self.labelled,
            "classes": self.classes,
            "shard_size": self.shard_size,
            "complete": self.complete,
            "splits": {split: [asdict(shard) for shard in shards] for split, shards in self.splits.items()},
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> ShardIndex:
        """Parse an index; ValueError naming `where` and what is wrong."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f'{where}: not a videomae shards index (no "format": "{FORMAT}")')
        if data.get("version") != VERSION:
            raise ValueError(f"{where}: index version {data.get('version')!r}; this version reads {VERSION}")
        try:
            splits = {
                str(split): [
                    ShardInfo(str(s["name"]), int(s["samples"]), int(s["bytes"]), str(s["plan"])) for s in shards
                ]
                for split, shards in data["splits"].items()
            }
            return cls(
                classes=[str(name) for name in data["classes"]],
                labelled=bool(data["labelled"]),
                shard_size=int(data["shard_size"]),
                splits=splits,
                complete=bool(data["complete"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{where}: malformed index ({type(e).__name__}: {e})") from None


def read_index(path: Path) -> ShardIndex:
    """The index at `path`; ValueError naming the file when it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    return ShardIndex.from_json(data, str(path))
