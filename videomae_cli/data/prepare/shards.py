"""prepare-data's `shards`: the usable videos of each split (as the manifests list them: the copies where transcoded)
packed into WebDataset tar shards in OUT/shards/, with their index (data/shards/: the layout, the writer).

The training split is packed in a seeded shuffled order, so that every shard holds a mix of classes and a stream's
shuffle buffer need not be larger than a shard; validation and test keep the manifests' order (evaluation reads them
in order). Frames and fps come from the probe; transcoded copies are probed too (cached like every probe).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videomae_cli.config.prepare import PrepareSpec
from videomae_cli.data.prepare.jobs import probe_all
from videomae_cli.data.prepare.outputs import PROBE_CACHE
from videomae_cli.data.prepare.source import Source, SourceItem
from videomae_cli.data.probe import ProbeResult
from videomae_cli.data.shards.index import SHARDS_DIR, ShardIndex
from videomae_cli.data.shards.writer import ShardSample, plan_shards, write_shards
from videomae_cli.progress import Reporter


def pack_shards(
    spec: PrepareSpec, out: Path, source: Source, splits: dict[str, list[SourceItem]], reporter: Reporter
) -> ShardIndex:
    """Write OUT/shards/: every split's videos in shards of about `spec.shard_size` bytes, and index.json."""
    listed = [path for items in splits.values() for item in items for path in item.listed_paths]
    probes, _ = probe_all(listed, out / PROBE_CACHE, spec.workers, reporter, spec.decoder)
    samples = {split: _samples(split, items, source, probes) for split, items in splits.items() if items}
    if "train" in samples:
        order = np.random.default_rng(spec.seed).permutation(len(samples["train"]))
        samples["train"] = [samples["train"][i] for i in order]
    plans = {split: plan_shards(split, chosen, spec.shard_size) for split, chosen in samples.items()}
    reporter.start("writing shards", sum(len(shards) for shards in plans.values()))
    kept = []

    def on_shard(name: str, written: bool) -> None:
        if not written:
            kept.append(name)
        reporter.advance()

    index = ShardIndex(classes=source.classes, labelled=source.labelled, shard_size=spec.shard_size)
    index = write_shards(out / SHARDS_DIR, plans, index, on_shard)
    reporter.finish()
    if kept:
        reporter.notice(f"shards: kept {len(kept)} written by an earlier run (their videos unchanged)")
    return index


def _samples(split: str, items: list[SourceItem], source: Source, probes: dict[str, ProbeResult]) -> list[ShardSample]:
    """One sample per listed file of each item, keyed SPLIT-NNNNNNNN in the manifests' order."""
    samples = []
    for item in items:
        for file in item.listed_paths:
            info = probes[str(file)].info
            samples.append(
                ShardSample(
                    key=f"{split}-{len(samples):08d}",
                    file=file,
                    label=item.label,
                    class_name=source.classes[item.label] if source.labelled else None,
                    frames=info.frames if info else None,
                    fps=round(info.fps, 4) if info else None,
                    source=str(item.path),
                )
            )
    return samples
