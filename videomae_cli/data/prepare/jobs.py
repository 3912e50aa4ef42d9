"""Parallel per-file work for prepare-data: probing every video and transcoding it for training, each with a cache
so that a re-run redoes only what changed (a changed file, or for transcodes other settings)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from videomae_cli.config.prepare import PrepareSpec
from videomae_cli.data.prepare.outputs import write_json
from videomae_cli.data.prepare.source import Problem, SourceItem
from videomae_cli.data.probe import ProbeResult, probe_video
from videomae_cli.data.transcode import EncodeSettings, TranscodeResult, transcode_video
from videomae_cli.progress import Reporter
from videomae_cli.runtime import cores_per_process

_CACHE_VERSION = 2  # bump when probe_video learns to catch more problems, so old verdicts are not trusted
_TRANSCODE_CACHE_VERSION = 1


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
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return {}  # no cache, or a damaged one: probing again is always safe


def _save_cache(path: Path, results: dict[str, ProbeResult]) -> None:
    # Missing files are left out: there is no (size, mtime) to key them by.
    entries = {key: result.to_json() for key, result in results.items() if result.size >= 0}
    write_json(path, {"version": _CACHE_VERSION, "entries": entries})


def transcode_all(
    items: list[SourceItem], videos: Path, spec: PrepareSpec, reporter: Reporter, cache_path: Path
) -> tuple[list[SourceItem], list[Problem], dict[str, Any]]:
    """Transcode each item for training (data/transcode.py) under videos/<rel>.mp4 (chunked: <rel>.NNN.mp4),
    reusing a finished transcode whose source and settings are unchanged (the cache records what each one wrote).

    Returns the items with their copies, the problems, and counts with the bytes before and after. The cache is
    saved even when interrupted, so an interrupted run resumes where it stopped.
    """
    settings = encode_settings(spec)
    cache, same_settings = _load_transcodes(cache_path, settings)
    targets = _transcode_targets(items, videos)
    results: dict[str, TranscodeResult] = {}
    todo = []
    for item in items:
        hit = cache.pop(str(item.path), None)
        if hit is not None and same_settings and _still_valid(hit, item.path):
            results[hit.source] = hit
        else:
            todo.append(item)
            cache[str(item.path)] = hit or TranscodeResult(str(item.path), 0, 0)  # its old files, if any, go
    _remove_stale(cache.values(), keep={o.path for r in results.values() for o in r.outputs})
    threads = cores_per_process(min(spec.workers, len(todo) or 1))
    jobs = [(str(item.path), str(targets[item.path]), settings, threads) for item in todo]
    try:
        for result in run_jobs(transcode_video, jobs, spec.workers, reporter, "transcode"):
            results[result.source] = result
    finally:
        _save_transcodes(cache_path, settings, results)
    done, problems = [], []
    for item in items:
        result = results[str(item.path)]
        if result.problem is not None:
            problems.append(Problem(str(item.path), result.problem))
        else:
            done.append(replace(item, copies=tuple(Path(o.path) for o in result.outputs)))
    return done, problems, _transcode_counts(results.values(), len(todo))


def encode_settings(spec: PrepareSpec) -> EncodeSettings:
    """The spec's transcode fields as the encoder's settings (the shortest chunk is one clip: `min_frames`)."""
    return EncodeSettings(
        short_side=spec.resize_short,
        fps=spec.fps,
        keyframe_interval=spec.keyframe_interval,
        encode_for=spec.encode_for,
        chunk_seconds=spec.chunk_seconds,
        min_frames=spec.min_frames,
    )


def _transcode_counts(results: Iterable[TranscodeResult], fresh: int) -> dict[str, Any]:
    """Videos transcoded now, reused and failed; files written; bytes of the sources and of their copies."""
    results = list(results)
    good = [r for r in results if r.problem is None]
    before = sum(r.source_bytes for r in good)
    after = sum(o.bytes for r in good for o in r.outputs)
    failed = len(results) - len(good)
    return {
        "transcoded": fresh - failed,
        "reused": len(results) - fresh,
        "failed": failed,
        "files": sum(len(r.outputs) for r in good),
        "bytes_before": before,
        "bytes_after": after,
        "bytes_ratio": round(after / before, 4) if before else None,
    }


def _still_valid(hit: TranscodeResult, source: Path) -> bool:
    """A cached transcode is reused when its source is the one transcoded and every file it wrote is still there."""
    try:
        stat = source.stat()
        if (stat.st_size, stat.st_mtime_ns) != (hit.source_bytes, hit.source_mtime_ns):
            return False
        return all(os.stat(o.path).st_size == o.bytes for o in hit.outputs)
    except OSError:
        return False


def _remove_stale(entries: Iterable[TranscodeResult], keep: set[str]) -> None:
    """Delete the files of transcodes about to be redone or no longer listed (other settings, changed sources)."""
    for entry in entries:
        for output in entry.outputs:
            if output.path not in keep:
                Path(output.path).unlink(missing_ok=True)


def _load_transcodes(path: Path, settings: EncodeSettings) -> tuple[dict[str, TranscodeResult], bool]:
    """The cached transcodes by source, and whether they were made with `settings` (if not, none is reusable and
    their files are stale)."""
    try:
        data = json.loads(path.read_text())
        entries = {key: TranscodeResult.from_json(value) for key, value in data["entries"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return {}, False  # no cache, or a damaged one: transcoding again is always safe
    same = data.get("version") == _TRANSCODE_CACHE_VERSION and data.get("settings") == settings.key()
    return entries, same


def _save_transcodes(path: Path, settings: EncodeSettings, results: dict[str, TranscodeResult]) -> None:
    entries = {key: result.to_json() for key, result in results.items() if result.problem is None}
    write_json(path, {"version": _TRANSCODE_CACHE_VERSION, "settings": settings.key(), "entries": entries})


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
