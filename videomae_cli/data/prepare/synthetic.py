"""The synthetic source of prepare-data: the built-in synthetic videos (data/synthetic.py) rendered to H.264 files
and listed like a real dataset, so the rest of the pipeline (probe, split, manifests) treats them alike."""

from __future__ import annotations

import json
from pathlib import Path, PurePath

from videomae_cli.config.prepare import PrepareSpec
from videomae_cli.data.prepare.jobs import run_jobs
from videomae_cli.data.prepare.outputs import VIDEOS_DIR, write_json
from videomae_cli.data.prepare.source import Source, SourceItem
from videomae_cli.progress import Reporter

SYNTHETIC_FPS = 16  # a 16-frame synthetic clip lasts one second
_SYNTHETIC_MARKER = ".synthetic.json"


def synthetic_source(spec: PrepareSpec, out: Path, reporter: Reporter) -> Source:
    """Render the built-in synthetic dataset to out/videos/<class>/<i:06d>.mp4 (H.264) and list it like real data.

    Labels are the synthetic motion classes in MOTION_CLASSES order (so labels equal `synthetic_label`). Files from an
    earlier run with the same settings are kept; different settings re-render everything.
    """
    from videomae_cli.data.synthetic import MOTION_CLASSES, synthetic_label
    from videomae_cli.data.transcode import write_synthetic_video

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
    write_json(marker, settings)
    return Source("synthetic", f"synthetic:{spec.synthetic}", list(MOTION_CLASSES), True, items)
