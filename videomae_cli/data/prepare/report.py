"""The content of prepare-data's report.json: what was listed, what is usable, the spread of the streams, and the
videos left out with their reasons."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Any

from videomae_cli.config.prepare import PrepareSpec
from videomae_cli.data.prepare.outputs import SPLITS
from videomae_cli.data.prepare.source import Problem, Source, SourceItem
from videomae_cli.data.probe import ProbeResult


def build_report(
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
