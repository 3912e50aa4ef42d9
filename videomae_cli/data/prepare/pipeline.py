"""prepare-data's pipeline: read the source, probe every video, drop and report bad ones, transcode if asked, split,
and write the output folder (the package docstring lists what it holds)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videomae_cli.config.prepare import PrepareSpec
from videomae_cli.data.pace import measure_pace, sample_videos
from videomae_cli.data.prepare.jobs import probe_all, transcode_all
from videomae_cli.data.prepare.outputs import (
    PROBE_CACHE,
    REPORT_FILE,
    TRANSCODE_CACHE,
    VIDEOS_DIR,
    write_json,
    write_outputs,
)
from videomae_cli.data.prepare.readers import read_source
from videomae_cli.data.prepare.report import build_report
from videomae_cli.data.prepare.shards import pack_shards
from videomae_cli.data.prepare.source import Problem, Source, SourceItem
from videomae_cli.data.prepare.splits import assign_splits
from videomae_cli.data.prepare.synthetic import synthetic_source
from videomae_cli.data.probe import ProbeResult
from videomae_cli.data.shards.index import ShardIndex
from videomae_cli.data.video import VideoError, resolve_backend
from videomae_cli.errors import ConfigError, DataError
from videomae_cli.progress import Reporter

DECODE_SAMPLE = 4  # videos timed before and after transcoding: a few seconds, however large the dataset


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
    shards: ShardIndex | None = None  # the index of OUT/shards/, when asked for


def resolve_decoder(name: str) -> str:
    """The backend the spec's `decoder` means here ("auto": pyav); an explicitly requested one that cannot be used
    here is a `ConfigError` naming the field."""
    try:
        return resolve_backend(name)
    except VideoError as e:
        raise ConfigError(f"decoder: {e}") from None


def prepare_data(spec: PrepareSpec, reporter: Reporter) -> PrepareResult:
    """Read the source, probe every video, drop and report bad ones, transcode if asked, split, and write spec.out."""
    # Resolved before anything is written, and kept concrete from here on: the probe cache and report.json must say
    # which backend was checked, which "auto" does not.
    spec = spec.model_copy(update={"decoder": resolve_decoder(spec.decoder)})
    out = spec.out.absolute()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {spec.out} is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    source = synthetic_source(spec, out, reporter) if spec.synthetic is not None else read_source(spec, out)
    if not source.items and not source.problems:
        raise DataError(f"src: no videos found in {source.location} (format {source.format})")
    reporter.status(f"{source.location}: {len(source.items)} videos listed ({source.format})")

    paths = [item.path for item in source.items]
    probes, probe_counts = probe_all(paths, out / PROBE_CACHE, spec.workers, reporter, spec.decoder)
    usable, problems = _screen(source, probes, spec.min_frames)
    transcode_counts = None
    if spec.transcodes:
        cache = out / TRANSCODE_CACHE
        usable, failed, transcode_counts = transcode_all(usable, out / VIDEOS_DIR, spec, reporter, cache)
        problems += failed
        if usable:
            reporter.status("timing the training reader on a sample of the sources and their copies")
            transcode_counts["decode_speed"] = decode_speed(usable, spec.decoder)
    splits = assign_splits(usable, spec.val_fraction, spec.seed)
    report = build_report(spec, source, probes, splits, problems, probe_counts, transcode_counts)
    write_json(out / REPORT_FILE, report)
    if not usable:
        first = problems[0] if problems else None
        example = f" (e.g. {first.path}: {first.reason})" if first else ""
        listed = len(source.items) + len(source.problems)
        raise DataError(f"no usable videos: all {listed} listed have problems{example}; see {out / REPORT_FILE}")
    # Chunks of one video share its split: the split is drawn over videos, before they are listed file by file.
    rows = {
        name: [(path, item.label) for item in items for path in item.listed_paths] for name, items in splits.items()
    }
    write_outputs(out, source, rows)
    shards = pack_shards(spec, out, source, splits, reporter) if spec.shards else None
    return PrepareResult(out, source.format, source.labelled, source.classes, rows, problems, report, shards)


def decode_speed(items: list[SourceItem], backend: str, sample: int = DECODE_SAMPLE) -> dict[str, Any]:
    """Clips per second of one loader worker (data/pace.py: the training path, 16 frames at stride 4, 224 crop) on
    an even sample of the sources and on their first copies: what the transcode bought."""
    chosen = sample_videos(items, sample)
    before = measure_pace([item.path for item in chosen], backend)
    after = measure_pace([item.listed_paths[0] for item in chosen], backend)
    rate = before.clips_per_second
    return {
        "backend": backend,
        "videos": len(chosen),
        "clip": "16 frames at stride 4, 224 crop",
        "source_clips_per_second": round(rate, 2),
        "prepared_clips_per_second": round(after.clips_per_second, 2),
        "speedup": round(after.clips_per_second / rate, 2) if rate else None,
    }


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
            reason = f"too short: {probe.info.frames} frames < min_frames {min_frames}"
            problems.append(Problem(str(item.path), reason))
        else:
            usable.append(item)
        seen.add(item.path)
    return usable, problems
