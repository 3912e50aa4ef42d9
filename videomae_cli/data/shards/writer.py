"""Write prepared videos as WebDataset tar shards: per split, samples packed in order into shards of about
`shard_size` bytes, each sample `KEY.<ext>` (the video file's bytes, as prepared) + `KEY.json` (label, class name,
frames, fps, source path, frame window).

The packing is planned from the file sizes before anything is written, so it is the same on every run: a resumed
run keeps each shard whose file and plan (index.py) still match and writes only the others. A shard is written to a
hidden temporary file and renamed when complete, and the index is rewritten after every shard, so a reader never sees
half a shard and an interrupted run loses at most the shard it was writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import webdataset as wds

from videomae_cli.checkpoint import atomic_write
from videomae_cli.data.shards.index import INDEX_FILE, ShardIndex, ShardInfo, read_index

TAR_OVERHEAD = 4 * 512  # per sample: two tar headers, the JSON's block, the video's padding (about)


@dataclass(frozen=True)
class ShardSample:
    """One video to pack: its sample key (unique in the dataset), the file holding it, and what KEY.json says."""

    key: str
    file: Path
    label: int
    class_name: str | None
    frames: int | None
    fps: float | None
    source: str
    window: tuple[int, int] = (0, -1)  # (start, total): total -1 = to the end

    @property
    def extension(self) -> str:
        """The member extension of the video: its file's suffix (`mp4`, `webm`, ...)."""
        return self.file.suffix.lower().lstrip(".") or "mp4"

    def metadata(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "class": self.class_name,
            "frames": self.frames,
            "fps": self.fps,
            "source": self.source,
            "window": list(self.window),
            "video": self.extension,
        }


@dataclass(frozen=True)
class PlannedShard:
    """The samples planned into one shard, and the digest of that plan."""

    name: str
    samples: list[ShardSample]

    @property
    def plan(self) -> str:
        digest = hashlib.sha256()
        for s in self.samples:
            digest.update(f"{s.key}\0{s.file}\0{s.file.stat().st_size}\0{s.metadata()}\n".encode())
        return digest.hexdigest()[:16]


def plan_shards(split: str, samples: list[ShardSample], shard_size: int) -> list[PlannedShard]:
    """`samples` in order, cut into shards of at most `shard_size` bytes (a larger video gets a shard of its own):
    SPLIT-000000.tar, SPLIT-000001.tar, ..."""
    shards: list[list[ShardSample]] = []
    size = 0
    for sample in samples:
        cost = sample.file.stat().st_size + TAR_OVERHEAD
        if not shards or (size + cost > shard_size and shards[-1]):
            shards.append([])
            size = 0
        shards[-1].append(sample)
        size += cost
    return [PlannedShard(f"{split}-{number:06d}.tar", chunk) for number, chunk in enumerate(shards)]


def write_shards(
    folder: Path,
    plans: dict[str, list[PlannedShard]],
    index: ShardIndex,
    on_shard: Callable[[str, bool], None] | None = None,
) -> ShardIndex:
    """Write every planned shard into `folder` (keeping those a previous run finished), with the index after each;
    `on_shard(name, written)` after each shard (written False: kept). Returns the complete index."""
    folder.mkdir(parents=True, exist_ok=True)
    done = _finished(folder)
    index.splits, index.complete = {split: [] for split in plans}, False
    for split, shards in plans.items():
        for planned in shards:
            plan = planned.plan
            kept = done.get(planned.name)
            if kept is not None and kept.plan == plan and _size(folder / planned.name) == kept.bytes:
                index.splits[split].append(kept)
                _report(on_shard, planned.name, written=False)
                continue
            index.splits[split].append(_write(folder, planned, plan))
            _save(folder, index)
            _report(on_shard, planned.name, written=True)
    _remove_stale(folder, {shard.name for shards in index.splits.values() for shard in shards})
    index.complete = True
    _save(folder, index)
    return index


def _write(folder: Path, planned: PlannedShard, plan: str) -> ShardInfo:
    """One shard, through a hidden temporary file and a rename."""
    final = folder / planned.name

    def write(temp: Path) -> None:
        # Whole-second times: TarWriter's default (a float) gives each member a pax header, twice the headers to read.
        with open(temp, "wb") as out, wds.TarWriter(out, mtime=int(time.time())) as tar:
            for sample in planned.samples:
                tar.write(
                    {"__key__": sample.key, sample.extension: sample.file.read_bytes(), "json": sample.metadata()}
                )
        _readable(temp)

    atomic_write(final, write)
    return ShardInfo(planned.name, len(planned.samples), final.stat().st_size, plan)


def _finished(folder: Path) -> dict[str, ShardInfo]:
    """The shards an earlier run recorded in the index (complete or not), by name; none when there is no index."""
    try:
        index = read_index(folder / INDEX_FILE)
    except ValueError:
        return {}
    return {shard.name: shard for shards in index.splits.values() for shard in shards}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _save(folder: Path, index: ShardIndex) -> None:
    text = json.dumps(index.to_json(), indent=1) + "\n"

    def write(temp: Path) -> None:
        temp.write_text(text)
        _readable(temp)

    atomic_write(folder / INDEX_FILE, write)


def _readable(temp: Path) -> None:
    """The permissions of any file the user writes (the temporary file is private): other ranks and users read
    shards."""
    mask = os.umask(0)
    os.umask(mask)
    temp.chmod(0o666 & ~mask)


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Shards of an earlier plan that this one no longer has (fewer shards now), and leftover temporary files."""
    for path in folder.iterdir():
        stale_shard = path.suffix == ".tar" and path.name not in keep
        if stale_shard or (path.name.startswith(".") and path.suffix == ".tmp"):
            path.unlink(missing_ok=True)


def _report(on_shard: Callable[[str, bool], None] | None, name: str, written: bool) -> None:
    if on_shard is not None:
        on_shard(name, written)
