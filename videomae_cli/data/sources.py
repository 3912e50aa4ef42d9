"""Which videos each command reads, from the sections of its spec:

- pretrain: the clips of spec.data (`pretrain_clips`);
- finetune: the labelled training clips, validation videos and class names of spec.data (`labelled_data`);
- evaluate: the videos to score (`query_source`: the spec's `data`, else the checkpoint's validation set) and the
  labelled reference bank of the k-NN and the linear probe (`bank_source`);
- predict and embed: video files, folders of videos, and manifests (`collect_inputs`). Inputs that do not exist are
  not fatal: they come back as failures, reported per file like videos that fail to decode.

The built-in synthetic videos need no files; real videos load their decoders only when used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videomae_cli.config.schema import AugmentSpec, DataSpec, EvaluateSpec
from videomae_cli.data.loader import BadClip, ClipSource, SampledClips, SyntheticSource, synthetic_validation
from videomae_cli.data.manifest import (
    VAL_MANIFEST,
    ManifestEntry,
    class_names,
    read_manifest,
    resolve_manifest,
    validation_manifest,
)
from videomae_cli.data.prepare.readers import walk_videos
from videomae_cli.data.shards.locate import is_shard_source, locate_shards, shards_in_order
from videomae_cli.data.synthetic import MOTION_CLASSES, SyntheticVideos
from videomae_cli.data.transforms import FinetuneTrainTransform
from videomae_cli.data.views import VideoViews, ViewPlan, ViewSource
from videomae_cli.errors import ConfigError, DataError
from videomae_cli.masking import MaskGenerator

if TYPE_CHECKING:
    from videomae_cli.data.shards.index import Shard
    from videomae_cli.data.shards.stream import ShardStream
    from videomae_cli.data.shards.views import ShardViews, ShardViewSource

MANIFEST_SUFFIXES = (".csv", ".txt", ".lst")


@dataclass
class Inputs:
    """The videos to run on, in the order given (folders sorted), and the inputs that could not be used; or the
    shards to read in order (never both)."""

    entries: list[ManifestEntry] = field(default_factory=list)
    missing: list[BadClip] = field(default_factory=list)
    shards: list[Shard] = field(default_factory=list)


def collect_inputs(sources: list[str]) -> Inputs:
    """Expand files, folders (recursively, by video extension) and manifests (`PATH LABEL` or `PATH START TOTAL`),
    or shards: a shards folder (all its splits), tar files, brace patterns or URLs, each sample once."""
    shard_inputs = [source for source in sources if is_shard_source(source)]
    if shard_inputs:
        if len(shard_inputs) < len(sources):
            raise ConfigError("inputs: shards cannot be mixed with video files, folders or manifests; run them apart")
        return Inputs(shards=shards_in_order(shard_inputs, "inputs"))
    found = Inputs()
    for path in map(Path, sources):
        if not path.exists():
            found.missing.append(BadClip(str(path), f"{path}: no such file or directory"))
        elif path.is_dir():
            found.entries += [ManifestEntry(video) for video in walk_videos(path)]
        elif path.suffix.lower() in MANIFEST_SUFFIXES:
            found.entries += read_manifest(path)
        else:
            found.entries.append(ManifestEntry(path))  # a file that does not decode is reported when it is read
    if not found.entries and not found.missing:
        raise ConfigError("inputs: no videos found in " + ", ".join(sources))
    return found


def pretrain_dataset(data: DataSpec, seed: int, masks: MaskGenerator) -> tuple[SampledClips | ShardStream, str]:
    """The pretraining samples of data.source, keyed or streamed, and the decoder backend that reads them."""
    if data.source != "synthetic" and is_shard_source(data.source):
        from videomae_cli.data.shards.training import training_stream  # webdataset loads only for shards

        stream = training_stream(data, seed, masks)
        return stream, stream.decode.clips.backend
    clips = pretrain_clips(data, seed)
    return SampledClips(clips, masks, seed, data.num_sample), getattr(clips, "backend", "synthetic")


def pretrain_clips(data: DataSpec, seed: int) -> ClipSource:
    """The clip source named by data.source: the built-in synthetic videos, or the videos of a manifest."""
    if data.source == "synthetic":
        return SyntheticSource(SyntheticVideos.from_spec(data, seed))
    from videomae_cli.data.clips import VideoClips  # decoders load only when real videos are used

    entries = read_manifest(resolve_manifest(Path(data.source)), data.root)
    return VideoClips(entries, data, seed)


@dataclass
class LabelledData:
    """The training clips, the validation videos (if any) and the class names of a fine-tuning dataset."""

    train: ClipSource | ShardStream  # keyed clips, or a stream from shards
    val: ViewSource | ShardViewSource | None
    classes: list[str]
    backend: str

    def train_dataset(self, seed: int, num_sample: int) -> SampledClips | ShardStream:
        """The training samples: keyed by (epoch, index) over a clip source, or the stream itself."""
        if hasattr(self.train, "load"):  # a ClipSource: random access by index
            return SampledClips(self.train, None, seed, num_sample)
        return self.train

    def val_views(self, plan: ViewPlan) -> VideoViews | ShardViews | None:
        """The validation videos cut into `plan`'s views (None without a validation set)."""
        return None if self.val is None else cut_views(self.val, plan)


def cut_views(source: ViewSource | ShardViewSource, plan: ViewPlan) -> VideoViews | ShardViews:
    """Every video of `source` as `plan`'s views: by index, or read in order from shards."""
    return source.views(plan) if hasattr(source, "views") else VideoViews(source, plan)


def labelled_data(data: DataSpec, augment: AugmentSpec, seed: int) -> LabelledData:
    """Training and validation sources for spec.data: the built-in synthetic motion classes, or manifests."""
    if data.source == "synthetic":
        videos = SyntheticVideos.from_spec(data, seed)
        train = SyntheticSource(videos, train_transform(data, augment, flip_default=False), seed)
        return LabelledData(train, synthetic_validation(data, seed), list(MOTION_CLASSES), "synthetic")
    if is_shard_source(data.source):
        return labelled_shards(data, train_transform(data, augment, flip_default=True), seed)
    from videomae_cli.data.clips import VideoClips  # decoders load only when real videos are used

    manifest = resolve_manifest(Path(data.source))
    entries = read_manifest(manifest, data.root)
    classes = class_names(manifest.parent, max(e.label for e in entries) + 1)
    if len(classes) < 2:
        raise DataError(f"data.source: {manifest} has one class; fine-tuning needs labelled videos of 2 or more")
    train = VideoClips(entries, data, seed, train_transform(data, augment, flip_default=True), purpose="finetune")
    val_manifest = validation_manifest(Path(data.source), data.val_source)
    val = VideoClips(read_manifest(val_manifest, data.root), data, seed) if val_manifest else None
    return LabelledData(train, val, classes, train.backend)


def labelled_shards(data: DataSpec, transform: FinetuneTrainTransform, seed: int) -> LabelledData:
    """Fine-tuning from shards: the training split streamed, the classes from the index, the validation split
    (`data.val_source` shards, else the index's val split where the source is a shards folder) read in order."""
    from videomae_cli.data.shards.training import training_stream

    train = training_stream(data, seed, None, transform, purpose="finetune")
    _, index = locate_shards(data.source, "train", data.shard_index)
    if len(index.classes) < 2:
        raise DataError(f"data.source: the shards have {len(index.classes)} class; fine-tuning needs 2 or more")
    has_val = data.val_source or (Path(data.source).is_dir() and index.samples("val"))
    val = shard_source(data.val_source or data.source, "val", data, seed) if has_val else None
    return LabelledData(train, val, index.classes, train.decode.clips.backend)


def train_transform(data: DataSpec, augment: AugmentSpec, flip_default: bool) -> FinetuneTrainTransform:
    """The official fine-tune clip augmentation at the spec's input size."""
    return FinetuneTrainTransform(
        size=data.input_size,
        scale=augment.crop_scale,
        horizontal_flip=flip_default if augment.flip is None else augment.flip,
        auto_augment=augment.rand_augment,
        erase_prob=augment.erase_prob,
    )


def query_source(spec: EvaluateSpec, data: DataSpec, seed: int) -> tuple[ViewSource, str]:
    """The videos to evaluate on, and how to name them: `data`, else the checkpoint's validation set."""
    choice = spec.data
    if choice == "synthetic" or (choice is None and data.source == "synthetic"):
        return synthetic_validation(data, seed), "synthetic validation videos"
    if choice is not None and is_shard_source(choice):
        return shard_source(choice, "val", data, seed), choice
    if choice is None and is_shard_source(data.source):
        return shard_source(data.val_source or data.source, "val", data, seed), data.val_source or data.source
    if choice is None:
        manifest = validation_manifest(Path(data.source), data.val_source)
        if manifest is None:
            raise ConfigError(
                f"data: the checkpoint's training data {data.source} has no validation manifest; pass `data=MANIFEST`"
            )
        return manifest_source(manifest, data, seed, data.root), str(manifest)
    path = Path(choice)
    manifest = path / VAL_MANIFEST if path.is_dir() else path
    if not manifest.is_file():
        raise ConfigError(f"data: no such manifest: {manifest}")
    return manifest_source(manifest, data, seed, None), str(manifest)


def input_source(inputs: Inputs, data: DataSpec, seed: int) -> ViewSource | ShardViewSource:
    """The inputs of `predict` as views' source: the listed videos, or the shards read in order."""
    if inputs.shards:
        return shards_read_in_order(inputs.shards, data, seed)
    from videomae_cli.data.clips import VideoClips  # decoders load only when real videos are used

    return VideoClips(inputs.entries, data, seed)


def shard_source(source: str, split: str, data: DataSpec, seed: int) -> ShardViewSource:
    """The shards `source` names (a shards folder: its `split`), to be read in order."""
    shards, _ = locate_shards(source, split, data.shard_index)
    return shards_read_in_order(shards, data, seed)


def shards_read_in_order(shards: list[Shard], data: DataSpec, seed: int) -> ShardViewSource:
    """`shards` with the decoder settings of `data` to read them, every sample once."""
    from videomae_cli.data.clips import VideoClips
    from videomae_cli.data.shards.views import ShardViewSource

    return ShardViewSource(shards, VideoClips([], data, seed))


def manifest_source(manifest: Path, data: DataSpec, seed: int, root: Path | None) -> ViewSource:
    from videomae_cli.data.clips import VideoClips  # decoders load only when real videos are used

    return VideoClips(read_manifest(manifest, root), data, seed)


def bank_source(spec: EvaluateSpec, data: DataSpec, seed: int) -> tuple[Any, str]:
    """The labelled training videos whose features the k-NN and the probe learn from (None when unknown)."""
    if data.source == "synthetic" and spec.data in (None, "synthetic"):
        videos = SyntheticVideos.from_spec(data, seed)
        return SyntheticSource(videos), "synthetic training videos"
    shards = spec.data if spec.data is not None and is_shard_source(spec.data) else None
    if shards is None and spec.data is None and is_shard_source(data.source):
        shards = data.source
    if shards is not None:
        return (shard_source(shards, "train", data, seed), shards) if Path(shards).is_dir() else (None, "")
    if spec.data is not None and Path(spec.data).is_dir():
        manifest = resolve_manifest(Path(spec.data))
        return manifest_source(manifest, data, seed, None), str(manifest)
    if data.source == "synthetic":
        return None, ""
    manifest = resolve_manifest(Path(data.source))
    return manifest_source(manifest, data, seed, data.root), str(manifest)
