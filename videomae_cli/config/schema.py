"""Typed run specs (pydantic v2, extra="forbid"): every field of every command, its default and its checks.

The specs are resolved from their layers in config/resolve.py and passed down; nothing below the CLI reads a flag.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from videomae_cli.config.grid import TokenGrid
from videomae_cli.config.mask_fit import check_mask_fits
from videomae_cli.config.sizes import SIZE_NAMES, SIZES
from videomae_cli.errors import ConfigError

SizeName = Literal["test", "tiny", "small", "base", "large", "huge", "giant"]
assert SizeName.__args__ == SIZE_NAMES  # the CLI help and the table must not drift apart

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
SyntheticScene = Literal["busy", "plain", "field"]  # the built-in synthetic videos' scenes (data/synthetic.py)


class Strict(BaseModel):
    """Base for every spec section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class ModelSpec(Strict):
    """Architecture. `name` picks a size; any shape field given explicitly overrides the size's value."""

    name: SizeName = "tiny"
    dim: PositiveInt
    depth: PositiveInt
    heads: PositiveInt
    mlp_dim: PositiveInt
    patch_size: PositiveInt
    tubelet_size: PositiveInt = 2
    decoder_dim: PositiveInt
    decoder_depth: PositiveInt
    decoder_heads: PositiveInt
    decoder_mlp_dim: PositiveInt
    layer_norm_eps: Annotated[float, Field(gt=0)] = 1e-6
    pos_embed: Literal["sincos", "separable"] = "sincos"
    cls_token: bool = False
    decoder_embed_bias: bool = False
    target: Literal["norm_pixel", "patch_norm", "pixel", "input", "hog", "teacher"] = "norm_pixel"
    hog_cell: PositiveInt = 8  # target hog: pixels per side of a HOG cell (MaskFeat: 8, so 2 × 2 cells per 16² patch)
    # target teacher (MVD, UMT): a frozen model's token features. `teacher` is a run, checkpoint or hub id;
    # `teacher_layer` the block whose output is the target (None: the last); `teacher_dim` its width, recorded when
    # the run starts so that a checkpoint builds without its teacher.
    teacher: str | None = None
    teacher_layer: PositiveInt | None = None
    teacher_loss: Literal["l2", "smooth_l1", "cosine"] = "l2"
    teacher_dim: PositiveInt | None = None
    # MAE-ST's pred_t_dim: the decoder predicts only these many frames of the clip, spread evenly (None = all).
    pred_frames: PositiveInt | None = None
    drop_path: Probability = 0.0

    @model_validator(mode="before")
    @classmethod
    def _fill_from_size(cls, data: Any) -> Any:
        if isinstance(data, dict):
            name = data.get("name", "tiny")
            if isinstance(name, str) and name in SIZES:  # anything else is refused by the `name` field itself
                data = {**SIZES[name], **data}
        return data

    @model_validator(mode="after")
    def _check_target(self) -> ModelSpec:
        if self.target == "hog":
            if self.patch_size % self.hog_cell:
                raise ValueError(
                    f"model.hog_cell: {self.hog_cell}-pixel cells do not tile model.patch_size {self.patch_size}"
                )
            if self.pred_frames is not None:
                raise ValueError("model.pred_frames: the HOG target reads each tubelet's first frame; leave it unset")
        if (self.target == "teacher") != (self.teacher is not None):
            if self.teacher is None:
                raise ValueError("model.teacher: the teacher target needs a teacher (a run, checkpoint or hub id)")
            raise ValueError(f"model.teacher: only the teacher target has a teacher (model.target is {self.target})")
        if self.target == "teacher" and self.pred_frames is not None:
            raise ValueError("model.pred_frames: the teacher's features cover every frame; leave it unset")
        return self

    @model_validator(mode="after")
    def _check_heads(self) -> ModelSpec:
        if self.dim % self.heads:
            raise ValueError(f"model.heads: {self.heads} heads do not divide model.dim {self.dim}")
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(
                f"model.decoder_heads: {self.decoder_heads} heads do not divide model.decoder_dim {self.decoder_dim}"
            )
        return self


MaskType = Literal["tube", "random", "frame", "motion"]


class MaskSpec(Strict):
    """Encoder masking (`type`, `ratio`) and V2 running-cell decoder masking (`decoder_ratio`, 0 = off).

    `motion`: the visible tokens are drawn with probability ∝ exp(relative motion energy / `motion_temperature`)
    (0 = greedy: the most moving; large = uniform), as one tube (`motion_tube`) or per time slice."""

    type: MaskType = "tube"
    ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9
    decoder_ratio: Literal[0.0, 0.25, 0.5, 0.75] = 0.0
    motion_temperature: Annotated[float, Field(ge=0.0)] = 1.0
    motion_tube: bool = True  # the same spatial cells visible in every time slice (False: chosen per slice)


class DataSpec(Strict):
    """What the model sees (clip length, size, frame sampling) and where clips come from."""

    # "synthetic", a manifest file, a `videomae prepare-data` output directory, or WebDataset shards: a shards folder
    # (OUT/shards), a brace pattern (`train-{000000..000127}.tar`), `::`-joined lists, `pipe:` or http(s) URLs
    source: str = "synthetic"
    shard_index: str | None = None  # the shards' index.json (path or URL), when not beside local shards
    shuffle_buffer: PositiveInt = 64  # samples each loader worker mixes when reading shards (held as bytes)
    root: Path | None = None  # base of relative paths in the manifest (default: the manifest's folder)
    decoder: Literal["auto", "decord", "pyav"] = "auto"
    # Crop and resize inside the PyAV decoder's scaler (pretraining multi-scale crop, pyav backend only; ~1-2 levels of
    # 255 from the torch path on average); False = decode full frames then crop+resize in torch, the exact V1 path.
    fused_crop: bool = True
    num_frames: PositiveInt = 16
    input_size: PositiveInt = 112
    sampling: Literal["dense", "segment"] = "dense"  # K400-style frames at a stride, or one per segment (SSv2)
    sampling_rate: PositiveInt = 4
    synthetic_videos: PositiveInt = 2048
    synthetic_scene: SyntheticScene = "busy"  # "plain": no texture or distractors; "field": a moving texture, no shape
    val_source: str | None = None  # fine-tuning validation manifest (default: val.csv beside the training manifest)
    synthetic_val_videos: PositiveInt = 256  # held-out synthetic videos (never in any synthetic training set)
    num_sample: PositiveInt = 1  # repeated sampling: clips (crops + masks) cut from each decoded video
    num_workers: NonNegativeInt = 1
    prefetch: PositiveInt = 4  # batches each loader worker prepares ahead of the step
    max_bad_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01


class OptimSpec(Strict):
    """AdamW and the per-step warmup + cosine schedule. Learning rates are per 256 clips, scaled by the global batch."""

    batch_size: PositiveInt = 8
    accum_steps: PositiveInt = 1
    lr: Annotated[float, Field(gt=0)] = 1.5e-4
    min_lr: Annotated[float, Field(ge=0)] = 1e-5
    warmup_steps: NonNegativeInt | None = None
    warmup_epochs: Annotated[float, Field(ge=0)] | None = None
    weight_decay: Annotated[float, Field(ge=0)] = 0.05
    betas: tuple[Probability, Probability] = (0.9, 0.95)
    eps: Annotated[float, Field(gt=0)] = 1e-8
    clip_grad: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _check_warmup(self) -> OptimSpec:
        if self.warmup_steps is not None and self.warmup_epochs is not None:
            raise ValueError("optim.warmup_steps: give warmup_steps or warmup_epochs, not both")
        return self


LoggerName = Literal["jsonl", "tensorboard", "wandb"]


class WandbOptions(Strict):
    """The Weights & Biases run a training run logs to (with `run.loggers: [wandb]`); WANDB_* variables apply too."""

    project: str = "videomae"
    entity: str | None = None  # team or user; None: the account's default
    name: str | None = None  # None: the run directory's name
    group: str | None = None
    tags: list[str] = Field(default_factory=list)


class RunOptions(Strict):
    """Where and how the run executes."""

    out: Path | None = None
    seed: NonNegativeInt = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bf16 autocast where the device has native bf16 (AVX512-BF16/AMX CPUs, Ampere+ GPUs), else fp32.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    steps: PositiveInt | None = None
    epochs: Annotated[float, Field(gt=0)] | None = None
    log_every: PositiveInt = 10
    save_every: NonNegativeInt = 100
    keep_last: PositiveInt = 2
    resume: str = "auto"
    progress: Literal["auto", "rich", "plain", "off"] = "auto"
    # Several processes: replicate the model (DDP) or shard it block by block (FSDP2, for large models).
    strategy: Literal["ddp", "fsdp"] = "ddp"
    activation_checkpointing: bool = False  # recompute block activations in the backward pass: memory for compute
    compile: bool = False  # torch.compile the training step's model (minutes of compiling first; see README)
    # Where the numbers go besides metrics.jsonl (always written). None: TensorBoard where it is installed.
    loggers: list[LoggerName] | None = None
    wandb: WandbOptions = Field(default_factory=WandbOptions)

    @model_validator(mode="after")
    def _check_length(self) -> RunOptions:
        if self.steps is not None and self.epochs is not None:
            raise ValueError("run.steps: give `run.steps` or `run.epochs`, not both")
        return self


DEFAULT_PRETRAIN_STEPS = 300


class PretrainSpec(Strict):
    """Everything `videomae pretrain` needs, validated together."""

    kind: Literal["pretrain"] = "pretrain"
    model: ModelSpec = Field(default_factory=ModelSpec)
    mask: MaskSpec = Field(default_factory=MaskSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    run: RunOptions = Field(default_factory=RunOptions)

    @model_validator(mode="after")
    def _check_geometry(self) -> PretrainSpec:
        check_geometry(self.model, self.data, self.optim)
        check_mask_fits(self.mask, grid_of(self))
        check_pred_frames(self.model, self.data)
        return self


def check_pred_frames(model: ModelSpec, data: DataSpec) -> None:
    """The predicted frames must cut into the same number of time slices as the clip (MAE-ST's t_pred_patch_size)."""
    frames = model.pred_frames
    if frames is None:
        return
    per_token, rest = divmod(model.tubelet_size * frames, data.num_frames)
    if frames > data.num_frames or rest or not per_token:
        raise ValueError(
            f"model.pred_frames: {frames} frames do not split into the clip's {data.num_frames // model.tubelet_size} "
            f"time slices evenly (data.num_frames {data.num_frames}, model.tubelet_size {model.tubelet_size})"
        )


class ClassifierModelSpec(ModelSpec):
    """The encoder of a classifier (same fields as pretraining, whose decoder fields are ignored) and its head."""

    drop_path: Probability = 0.1
    pool: Literal["mean", "cls"] = "mean"  # mean over patch tokens + fc_norm (V1), or the cls token (needs cls_token)
    head_init_scale: Annotated[float, Field(gt=0)] = 0.001

    @model_validator(mode="after")
    def _check_pool(self) -> ClassifierModelSpec:
        if self.pool == "cls" and not self.cls_token:
            raise ValueError("model.pool: cls pooling needs a model with a cls token (model.cls_token=true)")
        return self


class FinetuneDataSpec(DataSpec):
    """DataSpec with a smaller labelled synthetic training set by default, and how often to validate."""

    synthetic_videos: PositiveInt = 512
    val_every_epochs: PositiveInt = 1  # validate every N epochs (and after the last step): tiny sets have many epochs


class AugmentSpec(Strict):
    """Fine-tuning augmentation (official V1 defaults): RandAugment, random resized crop, flip, random erasing,
    Mixup/CutMix with label smoothing (timm)."""

    rand_augment: str | None = "rand-m7-n4-mstd0.5-inc1"  # a timm RandAugment config string; null = off
    crop_scale: tuple[Annotated[float, Field(gt=0, le=1)], Annotated[float, Field(gt=0, le=1)]] = (0.08, 1.0)
    flip: bool | None = None  # None = on, except for the synthetic data whose classes include left/right motion
    erase_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 0.25
    mixup: Annotated[float, Field(ge=0)] = 0.8  # Beta(α, α) for Mixup; 0 = off
    cutmix: Annotated[float, Field(ge=0)] = 1.0  # Beta(α, α) for CutMix; 0 = off
    mix_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0  # chance a batch is mixed at all
    switch_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5  # chance CutMix is used instead of Mixup
    label_smoothing: Probability = 0.1

    @property
    def mixing(self) -> bool:
        """Whether batches are mixed (then targets are soft and the batch size must be even)."""
        return (self.mixup > 0 or self.cutmix > 0) and self.mix_prob > 0


class FinetuneOptimSpec(OptimSpec):
    """Official V1 fine-tuning: AdamW (0.9, 0.999), lr 5e-4 per 256, layer-wise lr decay 0.75, optional weight EMA."""

    lr: Annotated[float, Field(gt=0)] = 5e-4
    min_lr: Annotated[float, Field(ge=0)] = 1e-6
    betas: tuple[Probability, Probability] = (0.9, 0.999)
    layer_decay: Annotated[float, Field(gt=0, le=1)] = 0.75  # 1 = no decay
    ema_decay: Annotated[float, Field(gt=0, lt=1)] | None = None  # e.g. 0.9999; None = no EMA


DEFAULT_FINETUNE_EPOCHS = 3


class FinetuneSpec(Strict):
    """Everything `videomae finetune` needs, validated together. `init` is a checkpoint path or "none"."""

    kind: Literal["finetune"] = "finetune"
    init: str | None = None
    model: ClassifierModelSpec = Field(default_factory=ClassifierModelSpec)
    data: FinetuneDataSpec = Field(default_factory=FinetuneDataSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    optim: FinetuneOptimSpec = Field(default_factory=FinetuneOptimSpec)
    run: RunOptions = Field(default_factory=RunOptions)

    @model_validator(mode="after")
    def _check(self) -> FinetuneSpec:
        check_geometry(self.model, self.data, self.optim)
        if self.run.strategy == "fsdp":
            raise ValueError("run.strategy: fsdp shards pretraining; fine-tune with ddp (validation runs on rank 0)")
        if self.augment.mixing and self.optim.batch_size % 2:
            raise ValueError(
                f"optim.batch_size: Mixup/CutMix pair up clips, so the batch size must be even, got "
                f"{self.optim.batch_size} (or set augment.mixup=0 and augment.cutmix=0)"
            )
        return self


def check_geometry(model: ModelSpec, data: DataSpec, optim: OptimSpec) -> None:
    """Clips must cut into whole tubelets, and a batch into whole videos."""
    if data.input_size % model.patch_size:
        raise ValueError(f"data.input_size: {data.input_size} is not divisible by model.patch_size {model.patch_size}")
    if data.num_frames % model.tubelet_size:
        raise ValueError(
            f"data.num_frames: {data.num_frames} is not divisible by model.tubelet_size {model.tubelet_size}"
        )
    if optim.batch_size % data.num_sample:
        raise ValueError(
            f"data.num_sample: {data.num_sample} clips per video must divide optim.batch_size {optim.batch_size}"
        )


VIEWS_PATTERN = re.compile(r"([1-9][0-9]{0,5})x([13])")  # whole text (fullmatch); at most 999999 clips


def check_views(views: str | None) -> None:
    """CLIPSxCROPS with 1 or 3 crops (None: the checkpoint's default)."""
    if views is not None and not VIEWS_PATTERN.fullmatch(views):
        raise ValueError(f"views: expected CLIPSxCROPS with 1 or 3 crops, e.g. 5x3 or 2x1, got {views!r}")


class InferenceOptions(Strict):
    """What evaluate, predict and embed share: the checkpoint they run, where and how they compute, how they report."""

    checkpoint: Path
    num_workers: NonNegativeInt = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    progress: Literal["auto", "rich", "plain", "off"] = "auto"


class MultiViewOptions(InferenceOptions):
    """What evaluate and predict share: test views per video and how they are batched."""

    views: str | None = None  # CLIPSxCROPS, e.g. 5x3; None = 5x3 for dense sampling, 2x3 for segment sampling
    batch_size: PositiveInt = 4  # videos per loader batch
    chunk_views: PositiveInt = 16  # views per forward pass: results depend on this, never on batch_size

    @model_validator(mode="after")
    def _check_views(self) -> MultiViewOptions:
        check_views(self.views)
        return self


class EvaluateSpec(MultiViewOptions):
    """What `videomae evaluate` measures and where it writes. Defaults for data and views come from the checkpoint."""

    data: str | None = None  # "synthetic", a manifest, or a prepare-data directory (its val.csv)
    report: Path | None = None  # JSON report; CSVs and the PNG go beside it
    knn_k: PositiveInt = 20


def _as_strings(value: Any) -> Any:
    """Paths as text: an input may be a URL (`https://…`, `pipe:…`), whose `//` a Path would fold."""
    return [str(item) if isinstance(item, Path) else item for item in value] if isinstance(value, list) else value


# Video files, folders, manifests, or shards (a shards folder, tar files, brace patterns, URLs).
InputList = Annotated[list[str], BeforeValidator(_as_strings), Field(min_length=1)]


class PredictSpec(MultiViewOptions):
    """What `videomae predict` runs: a classifier checkpoint on the given videos, multi-view as evaluate."""

    inputs: InputList
    top_k: PositiveInt = 5
    json_path: Path | None = None  # JSON lines: one object per video


class EmbedSpec(InferenceOptions):
    """What `videomae embed` extracts: encoder features of every input video (one clip each, or sliding windows)."""

    inputs: InputList
    out: Path  # .safetensors (features + index) or .npy (features; the index as JSON lines beside it)
    pool: Literal["mean", "tokens"] = "mean"
    window_frames: PositiveInt | None = None  # sliding windows of this many source frames (None: one clip per video)
    window_stride: PositiveInt | None = None  # frames between window starts (None: window_frames, no overlap)
    shard_size: PositiveInt = 256  # videos per shard: the unit of resumption
    batch_size: PositiveInt = 16  # clips decoded per loader item (memory); features never depend on it
    chunk_clips: PositiveInt = 16  # clips per forward pass: features depend on this, never on batch_size
    overwrite: bool = False

    @model_validator(mode="after")
    def _check_windows(self) -> EmbedSpec:
        if self.window_stride is not None and self.window_frames is None:
            raise ValueError("window_stride: needs `window_frames` (the window length)")
        if self.out.suffix not in (".safetensors", ".npy"):
            raise ValueError(f"out: {self.out} must end in .safetensors or .npy")
        return self


def default_views(data: DataSpec) -> str:
    """The official test views: 5 clips × 3 crops for dense (Kinetics) sampling, 2 × 3 for segment (SSv2)."""
    return "2x3" if data.sampling == "segment" else "5x3"


def parse_views(text: str) -> tuple[int, int]:
    """ "5x3" → (5 clips, 3 crops)."""
    match = VIEWS_PATTERN.fullmatch(text)
    if match is None:
        raise ConfigError(f"views: expected CLIPSxCROPS with 1 or 3 crops, e.g. 5x3 or 2x1, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def grid_of(spec: PretrainSpec | FinetuneSpec) -> TokenGrid:
    """The token grid the spec's model sees."""
    return TokenGrid(
        frames=spec.data.num_frames,
        height=spec.data.input_size,
        width=spec.data.input_size,
        patch=spec.model.patch_size,
        tubelet=spec.model.tubelet_size,
    )
