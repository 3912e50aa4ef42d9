"""The output folder of prepare-data: its file names, and writing the manifests and classes.json.

Every file is written through a temporary file and a rename, so a reader (a training run started meanwhile) never
sees half a manifest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from videomae_cli.data.manifest import CLASSES_FILE
from videomae_cli.data.prepare.source import Source
from videomae_cli.errors import naming

SPLITS = ("train", "val", "test")
REPORT_FILE = "report.json"
PRETRAIN_LIST = "train_pretrain.csv"
PROBE_CACHE = ".probe_cache.json"
TRANSCODE_CACHE = ".transcode_cache.json"
VIDEOS_DIR = "videos"
OUTPUT_FILES = frozenset({*(f"{split}.csv" for split in SPLITS), PRETRAIN_LIST, CLASSES_FILE, REPORT_FILE})


def write_outputs(out: Path, source: Source, rows: dict[str, list[tuple[Path, int]]]) -> None:
    """The manifests and classes.json. test.csv only where the source has a test split (a stale one is removed)."""
    for name in SPLITS:
        path = out / f"{name}.csv"
        if name == "test" and not rows[name]:
            path.unlink(missing_ok=True)
            continue
        write_text(path, "".join(f"{video} {label}\n" for video, label in rows[name]))
    write_text(out / PRETRAIN_LIST, "".join(f"{video} 0 -1\n" for video, _ in rows["train"]))
    classes = {str(index): name for index, name in enumerate(source.classes)} if source.labelled else {}
    write_json(out / CLASSES_FILE, {"labelled": source.labelled, "num_classes": len(classes), "classes": classes})


def write_text(path: Path, text: str) -> None:
    """Write via a temporary file and a rename, so a reader never sees half a manifest."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.part")
    with naming(path):
        temp.write_text(text)
        os.replace(temp, path)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def was_transcoded(folder: Path) -> bool:
    """Whether `folder` is a prepare-data output whose report says it re-encoded the videos for training."""
    try:
        report = json.loads((folder / REPORT_FILE).read_text()) if folder.is_dir() else None
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and bool(report.get("transcode"))
