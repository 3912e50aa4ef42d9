"""Reading a prepare-data source into items: which format the spec's `src` is, and one reader per format (a
class-per-folder tree or flat folder of videos, a VideoMAE annotation file, Kinetics csvs, Something-Something V2 json
files).

Readers only list: no video file is opened here (jobs.py probes them). Entries a listing itself rejects (a video
outside any class folder, an unknown SSv2 label) come back as the source's problems.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path, PurePath
from typing import Any

from videomae_cli.config.prepare import PrepareSpec
from videomae_cli.data.manifest import class_names, read_manifest
from videomae_cli.data.prepare.outputs import OUTPUT_FILES
from videomae_cli.data.prepare.source import Problem, Source, SourceItem
from videomae_cli.errors import ConfigError

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv", ".ts"}
)


def read_source(spec: PrepareSpec, out: Path) -> Source:
    """Read spec.src in its format (`auto`: detected from what it is and holds)."""
    assert spec.src is not None
    src = spec.src.absolute()
    if not src.exists():
        raise ConfigError(f"src: no such file or directory: {spec.src}")
    if src == out or (src.parent == out and src.name in OUTPUT_FILES):
        raise ConfigError(f"out: {spec.out} would overwrite the source; choose another folder")
    root = spec.root.absolute() if spec.root is not None else None
    if root is not None and not root.is_dir():
        raise ConfigError(f"root: no such directory: {spec.root}")
    fmt = detect_format(src) if spec.format == "auto" else spec.format
    if fmt == "folders":
        if root is not None:
            raise ConfigError("root: only used with annotation, Kinetics or SSv2 sources (`src` is a video folder)")
        return _read_folders(src, out)
    readers = {"annotations": _read_annotations, "kinetics": _read_kinetics, "ssv2": _read_ssv2}
    return readers[fmt](src, root)


def detect_format(src: Path) -> str:
    """Which reader fits src: a file is a Kinetics csv (by its header), SSv2 labels.json, or an annotation file; a
    folder holds SSv2 json files, Kinetics csvs, VideoMAE manifests (train.csv), or videos."""
    if src.is_file():
        if src.name == "labels.json":
            return "ssv2"
        return "kinetics" if _is_kinetics_csv(src) else "annotations"
    if _ssv2_labels(src) is not None:
        return "ssv2"
    if _kinetics_csvs(src):
        return "kinetics"
    if (src / "train.csv").is_file():
        return "annotations"
    return "folders"


def is_video(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def walk_videos(root: Path, skip: Path | None = None) -> list[Path]:
    """Video files under root (by extension), sorted, skipping hidden entries and `skip` (the output folder)."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and Path(folder, d) != skip)
        found.extend(Path(folder, name) for name in files if is_video(name))
    return sorted(found)


def _read_folders(src: Path, out: Path) -> Source:
    """src/<class>/<video> (labels by sorted class name), or a flat folder of videos (unlabelled)."""
    if not src.is_dir():
        raise ConfigError(f"src: {src} is a file; `format=folders` needs a folder of videos")
    videos = walk_videos(src, skip=out)
    nested = [path for path in videos if len(path.relative_to(src).parts) > 1]
    if not nested:
        items = [SourceItem(path, 0, None, path.relative_to(src)) for path in videos]
        return Source("folders", str(src), [], False, items)
    classes = sorted({path.relative_to(src).parts[0] for path in nested})
    index = {name: i for i, name in enumerate(classes)}
    items = [SourceItem(p, index[p.relative_to(src).parts[0]], None, p.relative_to(src)) for p in nested]
    loose = [Problem(str(path), "not inside a class folder") for path in videos if path not in set(nested)]
    return Source("folders", str(src), classes, True, items, loose)


def _relative_to(path: Path, root: Path) -> PurePath:
    """path under root, or path without its anchor where it lies elsewhere (it still needs a unique copy name)."""
    try:
        return path.relative_to(root)
    except ValueError:
        return PurePath(*path.parts[1:])


_ANNOTATION_FILES = {"train": "train.csv", "val": "val.csv", "test": "test.csv"}
_TWO_INTS = re.compile(r" -?[0-9]{1,18} -?[0-9]{1,18}$")  # as data/manifest.py reads the columns


def _read_annotations(src: Path, root: Path | None) -> Source:
    """A VideoMAE annotation file (`PATH LABEL`, or V2 `PATH START TOTAL` = unlabelled), or a folder with
    train.csv / val.csv / test.csv. Relative paths are under `root` (default: the file's folder). Class names come
    from a classes.json next to the files (as this command writes), else they are the label numbers."""

    files = {None: src} if src.is_file() else {s: src / n for s, n in _ANNOTATION_FILES.items() if (src / n).is_file()}
    if not files:
        raise ConfigError(f"src: {src} has no train.csv (give an annotation file or a folder with train.csv/val.csv)")
    base = root or (src if src.is_dir() else src.parent)
    items: list[SourceItem] = []
    pretrain_list = False
    for split, path in files.items():
        try:
            entries = read_manifest(path, base)
        except ConfigError as e:
            raise ConfigError(f"src: {str(e).removeprefix('data.source: ')}") from None
        pretrain_list |= _is_pretrain_list(path)
        items += [SourceItem(e.path.absolute(), e.label, split, _relative_to(e.path.absolute(), base)) for e in entries]
    if pretrain_list:
        return Source("annotations", str(src), [], False, [SourceItem(i.path, 0, i.split, i.rel) for i in items])
    classes = class_names(src if src.is_dir() else src.parent, max(i.label for i in items) + 1)
    bad = [Problem(str(i.path), f"negative label {i.label}") for i in items if i.label < 0]
    return Source("annotations", str(src), classes, True, [i for i in items if i.label >= 0], bad)


def _is_pretrain_list(path: Path) -> bool:
    """True for V2 `PATH START TOTAL` lists: every entry line ends in two integers (the manifest reader's rule)."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    return bool(lines) and all(_TWO_INTS.search(line) for line in lines)


_KINETICS_HEADER = ("label", "youtube_id", "time_start", "time_end")
# Kinetics releases spell the validation split "val" or "validate" (and its file validate.csv).
_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "validate": "val",
    "validation": "val",
    "test": "test",
}


def _is_kinetics_csv(path: Path) -> bool:
    try:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return tuple(column.strip().lower() for column in header[:4]) == _KINETICS_HEADER


def _kinetics_csvs(folder: Path) -> list[Path]:
    return sorted(path for path in folder.glob("*.csv") if _is_kinetics_csv(path))


def _index_videos(root: Path) -> dict[str, Path]:
    """Video files under root by file stem (the first in sorted order wins), for name-pattern lookups."""
    index: dict[str, Path] = {}
    for path in walk_videos(root):
        index.setdefault(path.stem, path)
    return index


def _read_kinetics(src: Path, root: Path | None) -> Source:
    """Kinetics csv(s) (`label,youtube_id,time_start,time_end,split`). Videos are found anywhere under `root`
    (default: the csv's folder) as `<youtube_id>_<start:06d>_<end:06d>.<any video extension>` or `<youtube_id>.*`."""
    csvs = [src] if src.is_file() else _kinetics_csvs(src)
    if not csvs or not all(_is_kinetics_csv(path) for path in csvs):
        raise ConfigError(f"src: {src} is not a Kinetics csv (header {','.join(_KINETICS_HEADER)},split)")
    root = root or csvs[0].parent
    rows = [row for path in csvs for row in _kinetics_rows(path)]
    classes = sorted({row["label"] for row in rows if row["label"]})
    index = {name: i for i, name in enumerate(classes)}
    videos = _index_videos(root)
    items = []
    for row in rows:
        stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
        path = videos.get(stem) or videos.get(row["youtube_id"]) or root / f"{stem}.mp4"
        items.append(SourceItem(path, index.get(row["label"], 0), row["split"], _relative_to(path, root)))
    return Source("kinetics", str(src), classes, True, items)


def _kinetics_rows(path: Path) -> list[dict[str, Any]]:
    """Rows with a normalised `split` (train/val/test; without a split column, from the file name)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = []
        try:
            for row in reader:
                rows.append(_kinetics_row(row, f"{path}:{reader.line_num}", path.stem))
        except UnicodeDecodeError:
            raise ConfigError(f"src: {path}: not UTF-8 text") from None
        except csv.Error as e:
            raise ConfigError(f"src: {path}:{reader.line_num}: {e}") from None
    return rows


def _kinetics_row(row: dict[str | None, Any], where: str, file_split: str) -> dict[str, Any]:
    """One csv row with stripped lower-case keys, checked times, and a normalised `split`."""
    # Cells beyond the header's columns (DictReader's key None, a list) are not Kinetics columns.
    row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
    try:
        times = float(row["time_start"]), float(row["time_end"])
    except ValueError:
        times = (math.nan,)
    if not all(math.isfinite(t) for t in times):
        raise ConfigError(f"src: {where}: time_start/time_end must be numbers")
    if "\x00" in row["youtube_id"]:
        raise ConfigError(f"src: {where}: youtube_id holds a NUL character")
    split = row.get("split") or file_split
    return {**row, "split": _SPLIT_NAMES.get(split.lower())}


def _ssv2_labels(folder: Path) -> Path | None:
    """labels.json of an SSv2 layout rooted at folder (also in its labels/ subfolder), next to train.json."""
    for candidate in (folder / "labels.json", folder / "labels" / "labels.json"):
        if candidate.is_file() and (candidate.parent / "train.json").is_file():
            return candidate
    return None


def _read_ssv2(src: Path, root: Path | None) -> Source:
    """Something-Something V2: labels.json (template → index), train.json/validation.json ({"id", "template"}),
    videos `<id>.webm` under `root` (default: src, or its 20bn-something-something-v2 folder). The unlabelled test
    list is not used."""
    labels_path = src if src.is_file() else _ssv2_labels(src)
    if labels_path is None:
        raise ConfigError(f"src: {src} has no labels.json next to train.json (Something-Something V2 layout)")
    labels = _load_json(labels_path)
    classes = _ssv2_classes(labels, labels_path)
    folder = labels_path.parent if src.is_file() else src
    if root is None:
        bundled = folder / "20bn-something-something-v2"
        root = bundled if bundled.is_dir() else folder
    videos = _index_videos(root)
    items, problems = [], []
    for split, name in (("train", "train.json"), ("val", "validation.json")):
        path = labels_path.parent / name
        if path.is_file():
            found, bad = _ssv2_items(_load_json(path), labels, videos, root, split)
            items += found
            problems += bad
    return Source("ssv2", str(src), classes, True, items, problems)


def _ssv2_classes(labels: Any, path: Path) -> list[str]:
    try:
        by_index = {int(index): name for name, index in labels.items()}
    except (AttributeError, ValueError, TypeError, OverflowError):  # OverflowError: int(Infinity)
        raise ConfigError(f"src: {path} must map template names to class indices") from None
    if sorted(by_index) != list(range(len(by_index))):
        raise ConfigError(f"src: {path}: class indices must be 0..{len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]


def _ssv2_items(
    entries: Any, labels: dict[str, str], videos: dict[str, Path], root: Path, split: str
) -> tuple[list[SourceItem], list[Problem]]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
        raise ConfigError(f"src: the SSv2 {split} list must be a JSON list of objects with an 'id'")
    items, problems = [], []
    for entry in entries:
        video_id = str(entry["id"])
        if "\x00" in video_id:
            raise ConfigError(f"src: the SSv2 {split} list has an id holding a NUL character")
        path = videos.get(video_id) or root / f"{video_id}.webm"
        name = str(entry.get("template", "")).replace("[", "").replace("]", "")
        if name not in labels:
            problems.append(Problem(str(path), f"label {name!r} is not in labels.json"))
            continue
        items.append(SourceItem(path, int(labels[name]), split, _relative_to(path, root)))
    return items, problems


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise ConfigError(f"src: cannot read {path} as JSON ({e})") from None
