"""`videomae prepare-data`: turn a video collection into checked VideoMAE manifests.

A source (class-per-folder tree, flat folder, VideoMAE annotation file, Kinetics csv, Something-Something V2 json, or
the built-in synthetic videos) is read into a list of (video, label, split) items. Every video is probed in parallel
(`probe.probe_video`: PyAV's checks, then a first- and last-frame decode with the training decoder, `--decoder`), bad
ones are reported and left out, optionally transcoded to a smaller short side, split (stratified, seeded) where the
source has no split, and written to DIR as (design.md: data formats):

- `train.csv`, `val.csv` (and `test.csv` where the source has a test split): `PATH LABEL` lines, space separated, no
  header. PATH is absolute, so the manifests work from any working directory and need no data root.
- `train_pretrain.csv`: the training videos as VideoMAE V2 pretraining lines, `PATH 0 -1`.
- `classes.json`: `{"labelled": bool, "num_classes": K, "classes": {"0": name, ...}}`. Unlabelled sources (a flat
  folder, a V2 pretraining list) write label 0 everywhere and `"labelled": false`.
- `report.json`: source, format, counts per split and class, duration/fps/resolution/codec summary, and `problems`
  (`[{"path", "reason"}]`, the videos left out), and `settings` (the flags, with `decoder` resolved to the backend
  that was checked).
- `.probe_cache.json`: probe results keyed by (absolute path, size, mtime, decoder), so a re-run probes only changed
  files, and a run with another decoder checks every file again.

`prepare_data(spec, reporter)` does the work and reports progress through a `Reporter`; it never prints. The
reporters and the summary renderable at the end of this module are what the CLI uses to show it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path, PurePath
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from videomae_cli.config.schema import Strict, SyntheticScene
from videomae_cli.data.manifest import CLASSES_FILE, class_names, read_manifest
from videomae_cli.data.probe import ProbeResult, probe_video, transcode_video
from videomae_cli.data.video import VideoError, resolve_backend
from videomae_cli.errors import ConfigError, DataError
from videomae_cli.progress import Reporter
from videomae_cli.runtime import cores_per_process

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv", ".ts"}
)
SPLITS = ("train", "val", "test")
REPORT_FILE = "report.json"
PRETRAIN_LIST = "train_pretrain.csv"
PROBE_CACHE = ".probe_cache.json"
VIDEOS_DIR = "videos"
SYNTHETIC_FPS = 16  # a 16-frame synthetic clip lasts one second
_OUTPUT_FILES = frozenset({*(f"{split}.csv" for split in SPLITS), PRETRAIN_LIST, CLASSES_FILE, REPORT_FILE})
_CACHE_VERSION = 2  # bump when probe_video learns to catch more problems, so old verdicts are not trusted
_SYNTHETIC_MARKER = ".synthetic.json"

SourceFormat = Literal["auto", "folders", "annotations", "kinetics", "ssv2"]
Decoder = Literal["auto", "decord", "pyav"]


def default_workers() -> int:
    """min(8, CPU count): probing is I/O- and decoder-bound, and more processes than that rarely help."""
    return min(8, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------------------------------
# The spec


class PrepareSpec(Strict):
    """Everything `videomae prepare-data` needs. `build_prepare_spec` builds it from flags; errors name the flag."""

    src: Path | None = None
    out: Path
    format: SourceFormat = "auto"
    root: Path | None = None
    val_fraction: float = 0.1
    seed: int = 0
    min_frames: int = 16
    workers: int = Field(default_factory=default_workers)
    resize_short: int | None = None
    decoder: Decoder = "auto"
    progress: Literal["auto", "rich", "plain", "off"] = "auto"
    synthetic: int | None = None
    num_frames: int = 16
    size: int = 112
    scene: SyntheticScene = "busy"

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

    @field_validator("min_frames", "workers", "synthetic")
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
                raise ValueError("SRC: missing (give a folder or file to prepare, or --synthetic N)")
            return self
        if self.src is not None:
            raise ValueError("SRC: give a source or --synthetic N, not both")
        for name in ("root", "resize_short"):
            if getattr(self, name) is not None:
                raise ValueError(f"{_FLAGS[name]}: not used with --synthetic")
        if self.format != "auto":
            raise ValueError("--format: not used with --synthetic")
        if "min_frames" not in self.model_fields_set:
            self.min_frames = self.num_frames  # synthetic clips are exactly this long; 16 would reject shorter ones
        return self


_FLAGS = {
    "src": "SRC",
    "out": "--out",
    "format": "--format",
    "root": "--root",
    "val_fraction": "--val-fraction",
    "seed": "--seed",
    "min_frames": "--min-frames",
    "workers": "--workers",
    "resize_short": "--resize-short",
    "decoder": "--decoder",
    "progress": "--progress",
    "synthetic": "--synthetic",
    "num_frames": "--num-frames",
    "size": "--size",
    "scene": "--scene",
}
_NAMED = re.compile(r"^(SRC|--[a-z-]+): ")


def build_prepare_spec(**flags: Any) -> PrepareSpec:
    """Validate the command-line values (None = not given); errors are one `ConfigError` line naming the flag."""
    try:
        return PrepareSpec.model_validate({k: v for k, v in flags.items() if v is not None})
    except ValidationError as e:
        first = e.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if _NAMED.match(message):
            raise ConfigError(message) from None  # a cross-field check already named its flag
        flag = _FLAGS.get(str(first["loc"][0]) if first["loc"] else "", "prepare-data")
        if first["type"] == "missing":
            message = "required"
        got = "" if first["type"] in ("missing", "value_error") else f", got {first.get('input')!r}"
        raise ConfigError(f"{flag}: {message[:1].lower()}{message[1:]}{got}") from None


def resolve_decoder(name: str) -> str:
    """The backend `--decoder name` means here ("auto": decord where importable, else pyav); an explicitly requested
    one that cannot be used here is a `ConfigError` naming the flag."""
    try:
        return resolve_backend(name)
    except VideoError as e:
        raise ConfigError(f"--decoder: {e}") from None


# ---------------------------------------------------------------------------------------------------------------------
# Results and reporting


@dataclass(frozen=True)
class Problem:
    """A video left out of the manifests, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class SourceItem:
    """One listed video. `split` is None where the source does not say; `rel` names its transcoded `copy`, which the
    manifests list instead of `path` once it exists."""

    path: Path
    label: int
    split: str | None
    rel: PurePath
    copy: Path | None = None

    @property
    def listed_path(self) -> Path:
        """The file the manifests point at."""
        return self.copy or self.path


@dataclass
class Source:
    """A source read into items, before any file is opened. `problems` are entries rejected while reading it."""

    format: str
    location: str
    classes: list[str]
    labelled: bool
    items: list[SourceItem]
    problems: list[Problem] = field(default_factory=list)


@dataclass
class PrepareResult:
    """What `prepare_data` wrote: the manifests' rows per split, the problems, and the report.json content."""

    out: Path
    format: str
    labelled: bool
    classes: list[str]
    splits: dict[str, list[tuple[Path, int]]]
    problems: list[Problem]
    report: dict[str, Any]


# ---------------------------------------------------------------------------------------------------------------------
# The pipeline


def prepare_data(spec: PrepareSpec, reporter: Reporter) -> PrepareResult:
    """Read the source, probe every video, drop and report bad ones, transcode if asked, split, and write DIR."""
    # Resolved before anything is written, and kept concrete from here on: the probe cache and report.json must say
    # which backend was checked, which "auto" does not.
    spec = spec.model_copy(update={"decoder": resolve_decoder(spec.decoder)})
    out = spec.out.absolute()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {spec.out} is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    source = _synthetic_source(spec, out, reporter) if spec.synthetic is not None else read_source(spec, out)
    if not source.items and not source.problems:
        raise DataError(f"SRC: no videos found in {source.location} (format {source.format})")
    reporter.status(f"{source.location}: {len(source.items)} videos listed ({source.format})")

    paths = [item.path for item in source.items]
    probes, probe_counts = probe_all(paths, out / PROBE_CACHE, spec.workers, reporter, spec.decoder)
    usable, problems = _screen(source, probes, spec.min_frames)
    transcode_counts = None
    if spec.resize_short is not None:
        usable, failed, transcode_counts = _transcode_all(usable, out / VIDEOS_DIR, spec, reporter)
        problems += failed
    splits = _assign_splits(usable, spec.val_fraction, spec.seed)
    report = _report(spec, source, probes, splits, problems, probe_counts, transcode_counts)
    _write_json(out / REPORT_FILE, report)
    if not usable:
        first = problems[0] if problems else None
        example = f" (e.g. {first.path}: {first.reason})" if first else ""
        listed = len(source.items) + len(source.problems)
        raise DataError(f"no usable videos: all {listed} listed have problems{example}; see {out / REPORT_FILE}")
    rows = {name: [(item.listed_path, item.label) for item in items] for name, items in splits.items()}
    _write_outputs(out, source, rows)
    return PrepareResult(out, source.format, source.labelled, source.classes, rows, problems, report)


def _screen(source: Source, probes: dict[str, ProbeResult], min_frames: int) -> tuple[list[SourceItem], list[Problem]]:
    """Split the items into usable ones and problems (probe failures, too few frames, duplicates)."""
    usable: list[SourceItem] = []
    problems = list(source.problems)
    seen: set[Path] = set()
    for item in source.items:
        probe = probes[str(item.path)]
        if item.path in seen:
            problems.append(Problem(str(item.path), "listed twice (first entry kept)"))
        elif probe.problem is not None:
            problems.append(Problem(str(item.path), probe.problem))
        elif probe.info is not None and probe.info.frames < min_frames:
            reason = f"too short: {probe.info.frames} frames < --min-frames {min_frames}"
            problems.append(Problem(str(item.path), reason))
        else:
            usable.append(item)
        seen.add(item.path)
    return usable, problems


# ---------------------------------------------------------------------------------------------------------------------
# Parallel per-file jobs


def run_jobs(
    fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int, reporter: Reporter, task: str
) -> Iterator[Any]:
    """Yield fn(*job) for each job, in order, from a process pool (in-process for one worker or one job)."""
    if not jobs:
        return
    reporter.start(task, len(jobs), header=f"{task}: {len(jobs)} videos")
    try:
        if workers == 1 or len(jobs) == 1:
            for job in jobs:
                result = fn(*job)
                reporter.advance()
                yield result
            return
        # Spawned, not forked: the parent may run a progress-bar thread, and forking a threaded process can deadlock.
        pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn"))
        try:
            chunk = max(1, min(16, len(jobs) // (workers * 8)))
            for result in pool.map(fn, *zip(*jobs, strict=True), chunksize=chunk):
                reporter.advance()
                yield result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        reporter.finish()


def probe_all(
    paths: Sequence[Path], cache_path: Path, workers: int, reporter: Reporter, decoder: str | None = None
) -> tuple[dict[str, ProbeResult], dict[str, int]]:
    """Probe results for every path (keyed by str(path)), reusing cached ones whose size, mtime and decoder still
    match. `decoder` is the concrete training backend each video must also decode with (None: PyAV's probe only);
    its check runs inside the same worker call as the probe, so it is parallel too.

    Returns the results and counts {"probed", "cached", "missing"}. The cache is saved even when interrupted, so an
    interrupted run resumes where it stopped.
    """
    cache = _load_cache(cache_path)
    results: dict[str, ProbeResult] = {}
    todo: list[tuple[str]] = []
    for path in dict.fromkeys(str(p) for p in paths):
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            results[path] = ProbeResult(path, -1, 0, problem="missing file", decoder=decoder)
            continue
        except OSError:
            todo.append((path, decoder))  # let the probe word the error
            continue
        hit = cache.get(path)
        # Another decoder's verdict says nothing about this one: decord can fail on files PyAV decodes.
        if hit is not None and (hit.size, hit.mtime_ns, hit.decoder) == (stat.st_size, stat.st_mtime_ns, decoder):
            results[path] = hit
        else:
            todo.append((path, decoder))
    missing = len(results) - sum(1 for r in results.values() if r.size >= 0)
    counts = {"probed": len(todo), "cached": len(results) - missing, "missing": missing}
    if counts["cached"]:
        reporter.status(f"probe: {counts['cached']} unchanged videos from the cache, {len(todo)} to probe")
    try:
        for result in run_jobs(probe_video, todo, workers, reporter, "probe"):
            results[result.path] = result
    finally:
        _save_cache(cache_path, results)
    return results, counts


def _load_cache(path: Path) -> dict[str, ProbeResult]:
    try:
        data = json.loads(path.read_text())
        if data.get("version") != _CACHE_VERSION:
            return {}
        return {key: ProbeResult.from_json(value) for key, value in data["entries"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # no cache, or a damaged one: probing again is always safe


def _save_cache(path: Path, results: dict[str, ProbeResult]) -> None:
    # Missing files are left out: there is no (size, mtime) to key them by.
    entries = {key: result.to_json() for key, result in results.items() if result.size >= 0}
    _write_json(path, {"version": _CACHE_VERSION, "entries": entries})


def _transcode_all(
    items: list[SourceItem], videos: Path, spec: PrepareSpec, reporter: Reporter
) -> tuple[list[SourceItem], list[Problem], dict[str, int]]:
    """Transcode each item to videos/<rel>.mp4 unless a finished copy newer than the source exists."""
    assert spec.resize_short is not None
    targets = _transcode_targets(items, videos)
    todo = [item for item in items if not _is_fresh(targets[item.path], item.path)]
    threads = cores_per_process(min(spec.workers, len(todo) or 1))
    jobs = [(str(item.path), str(targets[item.path]), spec.resize_short, threads) for item in todo]
    failures = {
        item.path: reason
        for item, reason in zip(todo, run_jobs(transcode_video, jobs, spec.workers, reporter, "transcode"), strict=True)
        if reason is not None
    }
    done = [replace(item, copy=targets[item.path]) for item in items if item.path not in failures]
    problems = [Problem(str(path), reason) for path, reason in failures.items()]
    counts = {"transcoded": len(todo) - len(failures), "reused": len(items) - len(todo), "failed": len(failures)}
    return done, problems, counts


def _transcode_targets(items: list[SourceItem], videos: Path) -> dict[Path, Path]:
    """videos/<rel with .mp4> per item; where two sources would share a name (a.avi, a.mkv), keep the old suffix."""
    targets: dict[Path, Path] = {}
    taken: set[Path] = set()
    for item in items:
        target = videos / item.rel.with_suffix(".mp4")
        if target in taken:
            target = videos / item.rel.with_name(item.rel.name + ".mp4")
        taken.add(target)
        targets[item.path] = target
    return targets


def _is_fresh(target: Path, source: Path) -> bool:
    try:
        return target.stat().st_mtime_ns >= source.stat().st_mtime_ns
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------------------------
# Splitting


def _assign_splits(items: list[SourceItem], val_fraction: float, seed: int) -> dict[str, list[SourceItem]]:
    """Keep the source's splits; where it has no validation split, draw one (stratified, seeded) from the rest."""
    splits: dict[str, list[SourceItem]] = {name: [] for name in SPLITS}
    has_val = any(item.split == "val" for item in items)
    pool = []
    for item in items:
        if item.split in ("val", "test"):
            splits[item.split].append(item)
        elif has_val:
            splits["train"].append(item)  # the source's own train split, and any unsplit extras
        else:
            pool.append(item)
    val = stratified_val_indices([item.label for item in pool], [str(item.path) for item in pool], val_fraction, seed)
    for index, item in enumerate(pool):
        splits["val" if index in val else "train"].append(item)
    return splits


def stratified_val_indices(labels: list[int], keys: list[str], fraction: float, seed: int) -> set[int]:
    """Indices of a validation subset of about `fraction` of the items, spread over labels in proportion.

    Deterministic for a given (items, fraction, seed) whatever the input order (items are ordered by `keys` before the
    seeded shuffle). Every label keeps at least one training item, and a fraction > 0 takes at least one item when
    there are two or more.
    """
    if not labels or fraction <= 0:
        return set()
    groups: dict[int, list[int]] = {}
    for index in sorted(range(len(labels)), key=lambda i: keys[i]):
        groups.setdefault(labels[index], []).append(index)
    quotas = _quotas({label: len(members) for label, members in groups.items()}, fraction, seed)
    chosen: set[int] = set()
    for label, members in groups.items():
        random.Random(f"{seed}/{label}").shuffle(members)
        chosen.update(members[: quotas[label]])
    return chosen


def _quotas(sizes: dict[int, int], fraction: float, seed: int) -> dict[int, int]:
    """Validation count per label: largest-remainder apportionment of round(N × fraction), at most size - 1 each."""
    total = sum(sizes.values())
    room = {label: size - 1 for label, size in sizes.items()}
    target = min(max(math.floor(total * fraction + 0.5), 1 if total >= 2 else 0), sum(room.values()))
    exact = {label: size * target / total for label, size in sizes.items()}
    quotas = {label: min(math.floor(exact[label]), room[label]) for label in sizes}
    tiebreak = random.Random(f"{seed}/quotas")
    order = sorted(sizes, key=lambda label: (-(exact[label] - math.floor(exact[label])), tiebreak.random()))
    while sum(quotas.values()) < target:
        for label in order:
            if sum(quotas.values()) < target and quotas[label] < room[label]:
                quotas[label] += 1
    return quotas


# ---------------------------------------------------------------------------------------------------------------------
# Writing DIR


def _write_outputs(out: Path, source: Source, rows: dict[str, list[tuple[Path, int]]]) -> None:
    """The manifests and classes.json. test.csv only where the source has a test split (a stale one is removed)."""
    for name in SPLITS:
        path = out / f"{name}.csv"
        if name == "test" and not rows[name]:
            path.unlink(missing_ok=True)
            continue
        _write_text(path, "".join(f"{video} {label}\n" for video, label in rows[name]))
    _write_text(out / PRETRAIN_LIST, "".join(f"{video} 0 -1\n" for video, _ in rows["train"]))
    classes = {str(index): name for index, name in enumerate(source.classes)} if source.labelled else {}
    _write_json(out / CLASSES_FILE, {"labelled": source.labelled, "num_classes": len(classes), "classes": classes})


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file and a rename, so a reader never sees half a manifest."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.part")
    temp.write_text(text)
    os.replace(temp, path)


def _write_json(path: Path, data: Any) -> None:
    _write_text(path, json.dumps(data, indent=2) + "\n")


def _report(
    spec: PrepareSpec,
    source: Source,
    probes: dict[str, ProbeResult],
    splits: dict[str, list[SourceItem]],
    problems: list[Problem],
    probe_counts: dict[str, int],
    transcode_counts: dict[str, int] | None,
) -> dict[str, Any]:
    """The report.json content. Stream statistics describe the source videos, before any transcoding."""
    names = source.classes if source.labelled else ["unlabelled"]
    per_class = {name: dict.fromkeys(SPLITS, 0) for name in names}
    for split, items in splits.items():
        for item in items:
            per_class[names[item.label] if source.labelled else names[0]][split] += 1
    usable = sum(len(items) for items in splits.values())
    infos = [probes[str(item.path)].info for items in splits.values() for item in items]
    return {
        "source": source.location,
        "format": source.format,
        "labelled": source.labelled,
        "out": str(spec.out.absolute()),
        "manifest_paths": "absolute",
        "counts": {
            "listed": len(source.items) + len(source.problems),
            "usable": usable,
            "problems": len(problems),
            **{split: len(items) for split, items in splits.items()},
        },
        "classes": per_class,
        "videos": _stream_summary([info for info in infos if info is not None]),
        "probe": probe_counts,
        "transcode": transcode_counts,
        "problems": [{"path": p.path, "reason": p.reason} for p in problems],
        "settings": spec.model_dump(mode="json"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _stream_summary(infos: list[Any]) -> dict[str, Any]:
    """min/median/max of duration, fps and frames; counts of resolutions and codecs."""
    if not infos:
        return {}

    def spread(values: list[float]) -> dict[str, float]:
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}

    durations = [info.duration for info in infos]
    return {
        "count": len(infos),
        "duration_s": {**spread(durations), "total": round(sum(durations), 3)},
        "fps": spread([info.fps for info in infos]),
        "frames": spread([info.frames for info in infos]),
        "resolution": dict(Counter(f"{info.width}x{info.height}" for info in infos).most_common()),
        "codec": dict(Counter(info.codec for info in infos).most_common()),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Reading sources


def read_source(spec: PrepareSpec, out: Path) -> Source:
    """Read spec.src in its format (`auto`: detected from what SRC is and holds)."""
    assert spec.src is not None
    src = spec.src.absolute()
    if not src.exists():
        raise ConfigError(f"SRC: no such file or directory: {spec.src}")
    if src == out or (src.parent == out and src.name in _OUTPUT_FILES):
        raise ConfigError(f"--out: {spec.out} would overwrite the source; choose another folder")
    root = spec.root.absolute() if spec.root is not None else None
    if root is not None and not root.is_dir():
        raise ConfigError(f"--root: no such directory: {spec.root}")
    fmt = detect_format(src) if spec.format == "auto" else spec.format
    if fmt == "folders":
        if root is not None:
            raise ConfigError("--root: only used with annotation, Kinetics or SSv2 sources (SRC is a video folder)")
        return _read_folders(src, out)
    readers = {"annotations": _read_annotations, "kinetics": _read_kinetics, "ssv2": _read_ssv2}
    return readers[fmt](src, root)


def detect_format(src: Path) -> str:
    """Which reader fits SRC: a file is a Kinetics csv (by its header), SSv2 labels.json, or an annotation file; a
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
    """SRC/<class>/<video> (labels by sorted class name), or a flat folder of videos (unlabelled)."""
    if not src.is_dir():
        raise ConfigError(f"SRC: {src} is a file; --format folders needs a folder of videos")
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
_TWO_INTS = re.compile(r" -?\d+ -?\d+$")


def _read_annotations(src: Path, root: Path | None) -> Source:
    """A VideoMAE annotation file (`PATH LABEL`, or V2 `PATH START TOTAL` = unlabelled), or a folder with
    train.csv / val.csv / test.csv. Relative paths are under --root (default: the file's folder). Class names come
    from a classes.json next to the files (as this command writes), else they are the label numbers."""

    files = {None: src} if src.is_file() else {s: src / n for s, n in _ANNOTATION_FILES.items() if (src / n).is_file()}
    if not files:
        raise ConfigError(f"SRC: {src} has no train.csv (give an annotation file or a folder with train.csv/val.csv)")
    base = root or (src if src.is_dir() else src.parent)
    items: list[SourceItem] = []
    pretrain_list = False
    for split, path in files.items():
        try:
            entries = read_manifest(path, base)
        except ConfigError as e:
            raise ConfigError(f"SRC: {str(e).removeprefix('data.source: ')}") from None
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
    except (OSError, UnicodeDecodeError):
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
    """Kinetics csv(s) (`label,youtube_id,time_start,time_end,split`). Videos are found anywhere under --root
    (default: the csv's folder) as `<youtube_id>_<start:06d>_<end:06d>.<any video extension>` or `<youtube_id>.*`."""
    csvs = [src] if src.is_file() else _kinetics_csvs(src)
    if not csvs or not all(_is_kinetics_csv(path) for path in csvs):
        raise ConfigError(f"SRC: {src} is not a Kinetics csv (header {','.join(_KINETICS_HEADER)},split)")
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
        for number, row in enumerate(reader, 2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            try:
                float(row["time_start"]), float(row["time_end"])
            except ValueError:
                raise ConfigError(f"SRC: {path}:{number}: time_start/time_end must be numbers") from None
            split = row.get("split") or path.stem
            rows.append({**row, "split": _SPLIT_NAMES.get(split.lower())})
    return rows


def _ssv2_labels(folder: Path) -> Path | None:
    """labels.json of an SSv2 layout rooted at folder (also in its labels/ subfolder), next to train.json."""
    for candidate in (folder / "labels.json", folder / "labels" / "labels.json"):
        if candidate.is_file() and (candidate.parent / "train.json").is_file():
            return candidate
    return None


def _read_ssv2(src: Path, root: Path | None) -> Source:
    """Something-Something V2: labels.json (template → index), train.json/validation.json ({"id", "template"}),
    videos `<id>.webm` under --root (default: SRC, or its 20bn-something-something-v2 folder). The unlabelled test
    list is not used."""
    labels_path = src if src.is_file() else _ssv2_labels(src)
    if labels_path is None:
        raise ConfigError(f"SRC: {src} has no labels.json next to train.json (Something-Something V2 layout)")
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
    except (AttributeError, ValueError, TypeError):
        raise ConfigError(f"SRC: {path} must map template names to class indices") from None
    if sorted(by_index) != list(range(len(by_index))):
        raise ConfigError(f"SRC: {path}: class indices must be 0..{len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]


def _ssv2_items(
    entries: Any, labels: dict[str, str], videos: dict[str, Path], root: Path, split: str
) -> tuple[list[SourceItem], list[Problem]]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
        raise ConfigError(f"SRC: the SSv2 {split} list must be a JSON list of objects with an 'id'")
    items, problems = [], []
    for entry in entries:
        video_id = str(entry["id"])
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
    except (OSError, ValueError) as e:
        raise ConfigError(f"SRC: cannot read {path} as JSON ({e})") from None


# ---------------------------------------------------------------------------------------------------------------------
# Synthetic videos


def _synthetic_source(spec: PrepareSpec, out: Path, reporter: Reporter) -> Source:
    """Render the built-in synthetic dataset to DIR/videos/<class>/<i:06d>.mp4 (H.264) and list it like real data.

    Labels are the synthetic motion classes in MOTION_CLASSES order (so labels equal `synthetic_label`). Files from an
    earlier run with the same settings are kept; different settings re-render everything.
    """
    from videomae_cli.data.probe import write_synthetic_video
    from videomae_cli.data.synthetic import MOTION_CLASSES, synthetic_label

    assert spec.synthetic is not None
    videos = out / VIDEOS_DIR
    marker = videos / _SYNTHETIC_MARKER
    settings = {
        "seed": spec.seed,
        "num_frames": spec.num_frames,
        "size": spec.size,
        "fps": SYNTHETIC_FPS,
        "scene": spec.scene,
    }
    try:
        reuse = json.loads(marker.read_text()) == settings
    except (OSError, ValueError):
        reuse = False
    marker.unlink(missing_ok=True)  # until every file is written with these settings
    items, jobs = [], []
    for index in range(spec.synthetic):
        label = synthetic_label(index, spec.seed)
        rel = PurePath(MOTION_CLASSES[label], f"{index:06d}.mp4")
        items.append(SourceItem(videos / rel, label, None, rel))
        if not (reuse and (videos / rel).is_file()):
            jobs.append((str(videos / rel), index, spec.seed, spec.num_frames, spec.size, SYNTHETIC_FPS, spec.scene))
    for _ in run_jobs(write_synthetic_video, jobs, spec.workers, reporter, "render"):
        pass
    _write_json(marker, settings)
    return Source("synthetic", f"synthetic:{spec.synthetic}", list(MOTION_CLASSES), True, items)


_MAX_CLASS_ROWS = 30
_MAX_PROBLEM_ROWS = 10


def render_summary(result: PrepareResult) -> Any:
    """A rich renderable: videos per class and split, the stream spread, the problems, and the files written."""
    from rich.console import Group
    from rich.table import Table

    report = result.report
    splits = [name for name in SPLITS if name != "test" or result.splits["test"]]
    per_class = Table(title="Videos per class", title_justify="left")
    for column in ("#", "class", *splits, "total"):
        per_class.add_column(column, justify="left" if column == "class" else "right")
    for number, (name, counts) in enumerate(report["classes"].items()):
        if number == _MAX_CLASS_ROWS:
            per_class.add_row("…", f"{len(report['classes']) - number} more in {REPORT_FILE}")
            break
        index = str(number) if result.labelled else "-"
        per_class.add_row(index, name, *(str(counts[s]) for s in splits), str(sum(counts.values())))
    parts: list[Any] = [per_class, _videos_table(report)]
    if result.problems:
        problems = Table(title=f"Left out: {len(result.problems)}", title_justify="left")
        problems.add_column("video", overflow="fold")
        problems.add_column("reason", overflow="fold")
        for problem in result.problems[:_MAX_PROBLEM_ROWS]:
            problems.add_row(problem.path, problem.reason)
        if len(result.problems) > _MAX_PROBLEM_ROWS:
            problems.add_row("…", f"{len(result.problems) - _MAX_PROBLEM_ROWS} more in {REPORT_FILE}")
        parts.append(problems)
    written = ", ".join(f"{name}.csv ({len(result.splits[name])})" for name in splits)
    parts.append(f"wrote {written}, {CLASSES_FILE}, {REPORT_FILE} in {result.out}")
    return Group(*parts)


def _videos_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    from videomae_cli.ui.progress import format_duration

    table = Table(title="Videos", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    counts, videos = report["counts"], report["videos"]
    table.add_row("usable", f"{counts['usable']} of {counts['listed']} listed")
    if videos:
        d, f, n = videos["duration_s"], videos["fps"], videos["frames"]
        table.add_row("duration", f"{d['min']:.1f} / {d['median']:.1f} / {d['max']:.1f} s (min/median/max)")
        table.add_row("total", format_duration(d["total"]))
        table.add_row("frames", f"{n['min']} / {n['median']:g} / {n['max']}")
        table.add_row("fps", f"{f['min']:g} / {f['median']:g} / {f['max']:g}")
        table.add_row("resolution", _top(videos["resolution"]))
        table.add_row("codec", _top(videos["codec"]))
    probe = report["probe"]
    table.add_row("probed", f"{probe['probed']} probed, {probe['cached']} cached")
    table.add_row("decoder", f"{report['settings']['decoder']} (checked on every video)")
    if report["transcode"]:
        t = report["transcode"]
        table.add_row("transcoded", f"{t['transcoded']} new, {t['reused']} reused, {t['failed']} failed")
    return table


def _top(counts: dict[str, int], limit: int = 4) -> str:
    shown = ", ".join(f"{key} ({count})" for key, count in list(counts.items())[:limit])
    return shown + (f", … {len(counts) - limit} more" if len(counts) > limit else "")
