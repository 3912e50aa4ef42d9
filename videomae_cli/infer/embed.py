"""Encoder features of videos: one pooled vector (or every token) per clip, per video or per sliding window.

Work is cut into parts of `shard_size` input videos (inputs in tar shards: one part per tar shard); each finished part
is written atomically to OUT.parts/, so an interrupted run resumes at the first unfinished part, and the output is
assembled from the parts at the end. The model always sees chunks of exactly `chunk_clips` clips (the last padded),
so a clip's features do not depend on the batch size, the worker count, or which clips share its chunk (see
infer/predict.py).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from videomae_cli.checkpoint import atomic_write, weights_file
from videomae_cli.config.schema import DataSpec, EmbedSpec
from videomae_cli.data.clips import window_length
from videomae_cli.data.loader import BadClip, ClipNormalizer, batches_from
from videomae_cli.data.manifest import ManifestEntry
from videomae_cli.data.sampling import sliding_window_starts, window_indices
from videomae_cli.data.shards.index import Shard
from videomae_cli.data.shards.stream import read_shard
from videomae_cli.data.shards.training import entry_of
from videomae_cli.data.sources import Inputs, collect_inputs
from videomae_cli.data.video import VideoError, open_video, resolve_backend
from videomae_cli.data.views import ViewPlan
from videomae_cli.errors import ConfigError
from videomae_cli.infer.predict import run_in_chunks
from videomae_cli.progress import Reporter
from videomae_cli.runtime import autocast_for, pick_device
from videomae_cli.version import __version__

METADATA_KEY = "videomae.embed"  # the only metadata key: safetensors writes several keys in random order
PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class ClipChooser:
    """Which clips a video (window) of `length` frames gives: rows of (first frame, end frame, sampled frames)."""

    plan: ViewPlan
    window_frames: int | None = None
    window_stride: int | None = None

    def __call__(self, length: int) -> list[tuple[int, int, np.ndarray]]:
        if self.window_frames is None:  # one clip: the centred test clip of the checkpoint's sampling
            (frames,) = self.plan.frame_indices(length)
            return [(int(frames.min()), int(frames.max()) + 1, frames)]
        window, stride = self.window_frames, self.window_stride or self.window_frames
        return [
            (
                int(start),
                min(int(start) + window, length),
                window_indices(length, int(start), window, self.plan.num_frames),
            )
            for start in sliding_window_starts(length, window, stride)
        ]


@dataclass
class ClipChunk:
    """Some clips of one video, in window order; `last` marks the video's final chunk. A failure replaces them."""

    part: int  # the part of the job the video belongs to
    video: int
    windows: np.ndarray | None = None  # int64 [k, 2]: first frame, end frame (exclusive)
    frames: np.ndarray | None = None  # int64 [k, T]
    clips: torch.Tensor | None = None  # uint8 [k, T, S, S, 3]
    last: bool = False
    failure: BadClip | None = None  # of video `video`; of no one video (a damaged tar shard) when video is -1
    name: str | None = None  # the video's name where the input does not list it (a sample in a tar shard)


class VideoClipChunks(IterableDataset):
    """Every clip of the listed (part, input position, entry) videos, `per_chunk` clips at a time, each video read by
    one worker with one open."""

    def __init__(
        self, videos: list[tuple[int, int, ManifestEntry]], choose: ClipChooser, backend: str, per_chunk: int
    ) -> None:
        self.videos, self.choose, self.backend, self.per_chunk = videos, choose, backend, per_chunk

    def __iter__(self) -> Iterator[ClipChunk]:
        worker = get_worker_info()
        mine = self.videos if worker is None else self.videos[worker.id :: worker.num_workers]
        for part, index, entry in mine:
            yield from self.chunks(part, index, entry)

    def chunks(self, part: int, index: int, entry: ManifestEntry, name: str | None = None) -> Iterator[ClipChunk]:
        try:
            with open_video(entry.path, self.backend) as reader:
                rows = self.choose(window_length(entry, reader))
                for first in range(0, len(rows), self.per_chunk):
                    piece = rows[first : first + self.per_chunk]
                    frames = np.stack([f for _, _, f in piece]) + entry.start  # [k, T]
                    wanted = np.unique(frames)
                    decoded = torch.from_numpy(reader.get_frames(wanted.tolist()))  # [F, H, W, 3]
                    clips = [self.choose.plan.spatial_views(decoded[np.searchsorted(wanted, f)])[0] for f in frames]
                    windows = np.asarray([(s, e) for s, e, _ in piece], dtype=np.int64) + entry.start
                    last = first + self.per_chunk >= len(rows)
                    yield ClipChunk(part, index, windows, frames, torch.stack(clips), last, name=name)
        except (VideoError, ValueError) as e:  # ValueError: frames smaller than the crop after a bad resize
            yield ClipChunk(part, index, failure=BadClip(name or str(entry.path), str(e)), name=name)


class ShardClipChunks(VideoClipChunks):
    """Every clip of every sample of the listed (part, tar shard) pairs, each shard read front to back by one
    worker."""

    def __init__(self, shards: list[tuple[int, Shard]], choose: ClipChooser, backend: str, per_chunk: int) -> None:
        super().__init__([], choose, backend, per_chunk)
        self.shards = shards

    def __iter__(self) -> Iterator[ClipChunk]:
        worker = get_worker_info()
        mine = self.shards if worker is None else self.shards[worker.id :: worker.num_workers]
        for part, shard in mine:
            failures: list[BadClip] = []
            for raw in read_shard(shard, failures):
                yield from self.chunks(part, raw.id, entry_of(raw), raw.name)
            yield from (ClipChunk(part, -1, failure=bad) for bad in failures)  # a damaged shard, a sample without video


@dataclass
class Embedding:
    """Features and their index: row i is clip `frames[i]` of input video `video[i]`, window `window[i]`."""

    features: torch.Tensor  # float32 [M, C] (pool mean) or [M, N, C] (pool tokens)
    video: torch.Tensor  # int64 [M]: position in the input list
    window: torch.Tensor  # int64 [M, 2]: first frame and end frame (exclusive) of the clip's window
    frames: torch.Tensor  # int64 [M, T]: the frames the clip was sampled from
    errors: list[BadClip] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # input position → name, for samples of tar shards

    @classmethod
    def concat(cls, parts: list[Embedding]) -> Embedding:
        return cls(
            torch.cat([p.features for p in parts]),
            torch.cat([p.video for p in parts]),
            torch.cat([p.window for p in parts]),
            torch.cat([p.frames for p in parts]),
            [e for p in parts for e in p.errors],
            {v: name for p in parts for v, name in p.names.items()},
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"features": self.features, "video": self.video, "window": self.window, "frames": self.frames}


class ChunkedForward:
    """Feeds clips to `forward` in chunks of exactly `chunk` as they arrive; `finish` pads and runs the rest."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], chunk: int) -> None:
        self.forward, self.chunk = forward, chunk
        self.pending: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []

    def add(self, clips: torch.Tensor) -> None:
        self.pending.append(clips)
        waiting = torch.cat(self.pending)
        full = len(waiting) - len(waiting) % self.chunk
        if full:
            self.outputs.append(run_in_chunks(self.forward, waiting[:full], self.chunk).cpu())
        self.pending = [waiting[full:]]

    def finish(self, width: tuple[int, ...]) -> torch.Tensor:
        rest = torch.cat(self.pending) if self.pending else torch.zeros(0)
        if len(rest):
            self.outputs.append(run_in_chunks(self.forward, rest, self.chunk).cpu())
        return torch.cat(self.outputs) if self.outputs else torch.zeros((0, *width))


def feature_function(model: nn.Module, pool: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's pooled features [B, C] (pretrain: final norm then mean; classifier: mean then fc_norm) or every
    patch token's [B, N, C]."""
    return model.features if pool == "mean" else model.token_features


class PartFeatures:
    """One part's features, gathered as its videos' chunks arrive in whatever order the loader's workers deliver
    them; `remaining` counts the part's videos not yet finished."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], chunk_clips: int, videos: int) -> None:
        self.runner, self.remaining = ChunkedForward(forward, chunk_clips), videos
        self.owners: list[int] = []
        self.windows: list[np.ndarray] = []
        self.frames: list[np.ndarray] = []
        self.failed: dict[int, BadClip] = {}
        self.lost: list[BadClip] = []  # failures of no one video: a damaged tar shard
        self.names: dict[int, str] = {}

    def add(self, chunk: ClipChunk) -> int:
        """Take one chunk; returns how many videos it finished."""
        if chunk.name is not None:
            self.names[chunk.video] = chunk.name
        if chunk.failure is not None:
            if chunk.video < 0:
                self.lost.append(chunk.failure)
            else:
                self.failed[chunk.video] = chunk.failure
            finished = chunk.failure.count
        else:
            self.runner.add(chunk.clips)
            self.owners += [chunk.video] * len(chunk.clips)
            self.windows.append(chunk.windows)
            self.frames.append(chunk.frames)
            finished = int(chunk.last)
        self.remaining -= finished
        return finished

    def embedding(self, choose: ClipChooser, width: tuple[int, ...]) -> Embedding:
        """The part's rows in input order; a video that failed is left out whole."""
        features = self.runner.finish(width)
        errors = [self.failed[v] for v in sorted(self.failed)] + self.lost
        # Workers interleave videos: put rows back in input order (a stable sort keeps each video's windows in order).
        keep = sorted((i for i, v in enumerate(self.owners) if v not in self.failed), key=lambda i: self.owners[i])
        if not keep:
            return empty_embedding(choose, width, errors, self.names)
        order = torch.tensor(keep, dtype=torch.int64)
        return Embedding(
            features[order],
            torch.tensor(self.owners, dtype=torch.int64)[order],
            torch.from_numpy(np.concatenate(self.windows))[order],
            torch.from_numpy(np.concatenate(self.frames))[order],
            errors,
            self.names,
        )


def embed_parts(
    model: nn.Module,
    work: VideoClipChunks,
    sizes: dict[int, int],
    choose: ClipChooser,
    spec: EmbedSpec,
    device: torch.device,
    on_video: Callable[[int], None],
    on_part: Callable[[int, Embedding], None],
) -> None:
    """Features of every clip of `work`, handed to `on_part` part by part (`sizes`: each part's videos) as each
    part's last video is done: one loader for the whole job keeps every worker busy."""
    normalize, features_of = ClipNormalizer(device), feature_function(model, spec.pool)

    def forward(clips: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), autocast_for(device, spec.precision):
            return features_of(normalize(clips)).float()

    pending = {number: PartFeatures(forward, spec.chunk_clips, videos) for number, videos in sizes.items()}
    with batches_from(DataLoader(work, batch_size=None, num_workers=spec.num_workers)) as chunks:
        for chunk in chunks:
            part = pending[chunk.part]
            on_video(part.add(chunk))
            if part.remaining <= 0:
                on_part(chunk.part, pending.pop(chunk.part).embedding(choose, width_of(model, spec)))
    for number in sorted(pending):  # parts with nothing to read (empty), or tar shards shorter than their index says
        on_part(number, pending.pop(number).embedding(choose, width_of(model, spec)))


def width_of(model: nn.Module, spec: EmbedSpec) -> tuple[int, ...]:
    """The shape of one row of features: [C] pooled, [N, C] tokens."""
    return (model.config.dim,) if spec.pool == "mean" else (model.grid.num_tokens, model.config.dim)


def empty_embedding(
    choose: ClipChooser,
    width: tuple[int, ...],
    errors: list[BadClip] | None = None,
    names: dict[int, str] | None = None,
) -> Embedding:
    """No rows (every video of a part failed), with the shapes a full one would have."""
    return Embedding(
        torch.zeros((0, *width)),
        torch.zeros(0, dtype=torch.int64),
        torch.zeros((0, 2), dtype=torch.int64),
        torch.zeros((0, choose.plan.num_frames), dtype=torch.int64),
        errors or [],
        names or {},
    )


# --------------------------------------------------------------------------------------------------- files


def errors_json(errors: list[BadClip]) -> list[dict[str, str]]:
    return [{"video": e.path, "error": e.reason} for e in errors]


def write_safetensors(path: Path, part: Embedding, info: dict[str, object]) -> None:
    """Tensors and description (with the errors, and a part's sample names) in one file, atomically: an interrupted
    write leaves no file."""
    named = {"names": sorted(part.names.items())} if part.names and "paths" not in info else {}
    meta = {METADATA_KEY: json.dumps({**info, **named, "errors": errors_json(part.errors)})}
    atomic_write(path, lambda tmp: save_file(part.tensors(), str(tmp), metadata=meta))


def read_embedding(path: Path) -> tuple[Embedding, dict[str, object]]:
    """A safetensors output (or shard) of `videomae embed` and its description (paths, settings, errors)."""
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        info = json.loads(f.metadata()[METADATA_KEY])
    errors = [BadClip(e["video"], e["error"]) for e in info["errors"]]
    names = {int(v): str(name) for v, name in info.get("names", [])}
    return Embedding(tensors["features"], tensors["video"], tensors["window"], tensors["frames"], errors, names), info


def index_path(out: Path) -> Path:
    """Where a .npy output's index goes: features.npy → features.index.jsonl."""
    return out.with_suffix(".index.jsonl")


def write_output(out: Path, result: Embedding, info: dict[str, object]) -> None:
    """The features and their index: one safetensors file, or a .npy with a JSON-lines index beside it."""
    paths: list[str] = info["paths"]  # type: ignore[assignment]
    if out.suffix == ".safetensors":
        write_safetensors(out, result, info)
        return
    rows = [
        {"row": i, "video": paths[v], "start": int(w[0]), "end": int(w[1]), "frames": f.tolist()}
        for i, (v, w, f) in enumerate(zip(result.video.tolist(), result.window, result.frames, strict=True))
    ]
    lines = [json.dumps(r) for r in rows] + [json.dumps(e) for e in errors_json(result.errors)]
    atomic_write(index_path(out), lambda tmp: tmp.write_text("".join(line + "\n" for line in lines)))

    def save_npy(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object: given a name without .npy, np.save would append one
            np.save(f, result.features.numpy())

    atomic_write(out, save_npy)


# --------------------------------------------------------------------------------------------------- the job


def job_description(spec: EmbedSpec, inputs: Inputs, data: DataSpec) -> dict[str, object]:
    """Everything the output depends on; a resumed run must match it exactly. (Samples of tar shards are named
    only once read: their `paths` are filled in at the end.)"""
    file = weights_file(spec.checkpoint).resolve()
    stat = file.stat()
    return {
        "checkpoint": str(file),
        "checkpoint_fingerprint": [stat.st_size, stat.st_mtime_ns],
        "paths": [str(e.path) for e in inputs.entries],
        "windows_in_manifest": [[e.start, e.total] for e in inputs.entries],
        "tar_shards": [[shard.url, shard.samples] for shard in inputs.shards],
        "pool": spec.pool,
        "num_frames": data.num_frames,
        "input_size": data.input_size,
        "sampling": data.sampling,
        "sampling_rate": data.sampling_rate,
        "window_frames": spec.window_frames,
        "window_stride": spec.window_stride or spec.window_frames,
        "shard_size": spec.shard_size,
        "chunk_clips": spec.chunk_clips,
        "precision": spec.precision,
        "version": __version__,
    }


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def prepare_parts(spec: EmbedSpec, job: dict[str, object]) -> Path:
    """OUT.parts/ with this job's plan: new, or the one an interrupted run of the same job left (resume)."""
    parts = parts_dir(spec.out)
    if spec.overwrite:
        shutil.rmtree(parts, ignore_errors=True)
    elif spec.out.exists():
        raise ConfigError(f"out: {spec.out} exists (pass `overwrite=true` to replace it)")
    plan = parts / PLAN_FILE
    if plan.exists():
        if json.loads(plan.read_text()) != job:
            raise ConfigError(
                f"out: {parts} holds an unfinished run with other inputs or settings; "
                "rerun it as it was, or pass `overwrite=true` to start again"
            )
        return parts
    parts.mkdir(parents=True, exist_ok=True)
    atomic_write(plan, lambda tmp: tmp.write_text(json.dumps(job)))
    return parts


@dataclass
class EmbedResult:
    embedding: Embedding
    resumed_shards: int  # shards an interrupted run had finished


def embed(spec: EmbedSpec, reporter: Reporter, after_shard: Callable[[int], None] | None = None) -> EmbedResult:
    """Extract features of every input video into spec.out, resuming an interrupted run of the same job.
    `after_shard(i)` is called once shard i is safely on disk."""
    from videomae_cli.checkpoint import load_checkpoint

    loaded = load_checkpoint(spec.checkpoint)
    inputs = collect_inputs(spec.inputs)
    model, trained = loaded.model, loaded.spec
    try:
        backend = resolve_backend(trained.data.decoder)
    except VideoError as e:
        raise ConfigError(f"data.decoder: {e}") from None
    job = job_description(spec, inputs, trained.data)
    parts = prepare_parts(spec, job)
    choose = ClipChooser(ViewPlan.for_data(trained.data), spec.window_frames, spec.window_stride)
    device = pick_device(spec.device, field="device")
    model = model.to(device)

    sizes = part_sizes(inputs, spec.shard_size)
    files = [parts / f"shard-{i:05d}.safetensors" for i in range(len(sizes))]
    todo = {i: size for i, size in enumerate(sizes) if not files[i].exists()}
    total, done = sum(sizes), len(sizes) - len(todo)
    what = "one clip" if spec.window_frames is None else f"windows of {spec.window_frames} frames"
    header = f"embed with {spec.checkpoint} | {total} videos | {what} | {spec.pool} | {device}"
    reporter.start("embed", total, total - sum(todo.values()), header)
    if done:
        reporter.notice(f"resuming {parts}: {done} of {len(sizes)} shards already done")

    def write_part(number: int, part: Embedding) -> None:
        write_safetensors(files[number], part, {})
        if after_shard is not None:
            after_shard(number)

    work = remaining_work(inputs, todo, spec.shard_size, choose, backend, spec.batch_size)
    embed_parts(model, work, todo, choose, spec, device, reporter.advance, write_part)
    result = (
        Embedding.concat([read_embedding(f)[0] for f in files])
        if files
        else empty_embedding(choose, width_of(model, spec))
    )
    result.errors = inputs.missing + result.errors
    if inputs.shards:
        job = {**job, "paths": sample_names(inputs.shards, result.names)}
    if len(result.video):  # nothing readable: no output file (the caller reports the errors and exits 3)
        write_output(spec.out, result, job)
    shutil.rmtree(parts, ignore_errors=True)
    return EmbedResult(result, done)


def part_sizes(inputs: Inputs, shard_size: int) -> list[int]:
    """Videos in each part of the job, each part written as one file: `shard_size` listed videos, or one tar shard."""
    if inputs.shards:
        return [shard.samples for shard in inputs.shards]
    return [min(shard_size, len(inputs.entries) - i) for i in range(0, len(inputs.entries), shard_size)]


def remaining_work(
    inputs: Inputs, todo: dict[int, int], shard_size: int, choose: ClipChooser, backend: str, per_chunk: int
) -> VideoClipChunks:
    """The videos of the parts in `todo`, each tagged with its part."""
    if inputs.shards:
        return ShardClipChunks([(i, inputs.shards[i]) for i in todo], choose, backend, per_chunk)
    videos = [(i // shard_size, i, entry) for i, entry in enumerate(inputs.entries) if i // shard_size in todo]
    return VideoClipChunks(videos, choose, backend, per_chunk)


def sample_names(shards: list[Shard], names: dict[int, str]) -> list[str]:
    """Every sample's name by input position (`SHARD:KEY.EXT`); samples a damaged shard lost: `SHARD#POSITION`."""
    return [names.get(shard.first + i, f"{shard.url}#{i}") for shard in shards for i in range(shard.samples)]
