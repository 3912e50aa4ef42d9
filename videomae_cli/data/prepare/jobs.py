"""Parallel per-file work for prepare-data: probing every video (with a cache, so a re-run probes only changed files)
and transcoding to a smaller short side (resumable: a finished copy newer than its source is kept)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from videomae_cli.config.prepare import PrepareSpec
from videomae_cli.data.prepare.outputs import write_json
from videomae_cli.data.prepare.source import Problem, SourceItem
from videomae_cli.data.probe import ProbeResult, probe_video, transcode_video
from videomae_cli.progress import Reporter
from videomae_cli.runtime import cores_per_process

_CACHE_VERSION = 2  # bump when probe_video learns to catch more problems, so old verdicts are not trusted


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
