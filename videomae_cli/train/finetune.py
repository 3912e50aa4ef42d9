"""Fine-tuning: `setup()` builds a classification run from a FinetuneSpec; the shared loop trains it.

The official V1 recipe (design.md: math) from timm parts: layer-wise lr decay (`param_groups_layer_decay` through the
model's `group_matcher()`), Mixup/CutMix with label smoothing, RandAugment and random erasing in the clip transform,
DropPath in the blocks, an optional EMA of the weights. Every epoch ends with single-view validation; the best
weights so far are kept as RUN/best.safetensors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch import nn

from videomae_cli.checkpoint import model_metadata, save_weights
from videomae_cli.config.resolve import collect_settings, resolve_spec
from videomae_cli.config.schema import DEFAULT_FINETUNE_EPOCHS, AugmentSpec, FinetuneSpec, grid_of
from videomae_cli.data.loader import ClipBatch
from videomae_cli.data.sources import labelled_data
from videomae_cli.data.views import VideoViews, ViewPlan

if TYPE_CHECKING:
    from videomae_cli.data.shards.views import ShardViews
from videomae_cli.errors import DataError
from videomae_cli.infer.metrics import topk_accuracy
from videomae_cli.infer.predict import predict_views
from videomae_cli.models.classifier import VideoClassifier
from videomae_cli.progress import Reporter
from videomae_cli.seeding import Stream, sample_rng
from videomae_cli.train.init import load_init, read_init_spec
from videomae_cli.train.launch import make_run, seed_rank_streams, start_processes
from videomae_cli.train.run import Run
from videomae_cli.train.state import find_resume_checkpoint

BEST_FILE = "best.safetensors"
EMA_FILE = "ema.safetensors"


@contextmanager
def numpy_seeded(rng: np.random.Generator) -> Iterator[None]:
    """Run a block with numpy's global RNG seeded from `rng`, restoring it afterwards: timm's Mixup draws from the
    global RNG, and seeding it per step keeps mixing a pure function of (seed, step) — exact on resume."""
    state = np.random.get_state()
    np.random.seed(int(rng.integers(2**32)))
    try:
        yield
    finally:
        np.random.set_state(state)


class VideoMixup:
    """timm's Mixup/CutMix (batch mode) + label smoothing on clips [B, 3, T, H, W]: one box or λ per batch, the same
    on every frame. (The official code passed 5-D clips to timm directly, which cut the CutMix box over (T, H).)"""

    def __init__(self, augment: AugmentSpec, num_classes: int, seed: int) -> None:
        self.seed = seed
        self.mixup = Mixup(
            mixup_alpha=augment.mixup,
            cutmix_alpha=augment.cutmix,
            prob=augment.mix_prob,
            switch_prob=augment.switch_prob,
            mode="batch",
            label_smoothing=augment.label_smoothing,
            num_classes=num_classes,
        )

    def __call__(
        self, video: torch.Tensor, labels: torch.Tensor, step: int, micro: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed clips, soft targets [B, K]) for micro-batch `micro` of optimizer step `step`. Mixes `video` in
        place (timm does), which the loop allows: its normalised clips are a fresh tensor per micro-batch."""
        b, c, t, h, w = video.shape
        frames = video.reshape(b, c * t, h, w)  # timm boxes the last two dims: fold time into channels
        with numpy_seeded(sample_rng(self.seed, step, micro, Stream.MIX)):
            mixed, targets = self.mixup(frames, labels)
        return mixed.reshape(b, c, t, h, w), targets


class FinetuneTask:
    """Classification with the official recipe; validates every epoch and keeps the best weights."""

    kind = "classifier"

    def __init__(
        self, spec: FinetuneSpec, classes: list[str], val: VideoViews | ShardViews | None, device: torch.device
    ) -> None:
        self.spec, self.classes, self.val, self.device = spec, classes, val, device
        augment = spec.augment
        self.mix = VideoMixup(augment, len(classes), spec.run.seed) if augment.mixing else None
        if self.mix is not None:
            self.criterion: nn.Module = SoftTargetCrossEntropy()
        elif augment.label_smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(augment.label_smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()
        self.ema: ModelEmaV3 | None = None
        self.best_top1: float | None = None
        self.best_step: int | None = None
        self.reported_bad: set[str] = set()

    def attach(self, model: nn.Module) -> None:
        """Start the EMA copy of the weights (when asked for) from the model's initial weights."""
        if self.spec.optim.ema_decay is not None:
            self.ema = ModelEmaV3(model, decay=self.spec.optim.ema_decay)

    def loss(self, model: nn.Module, batch: ClipBatch, video: torch.Tensor, step: int, micro: int) -> torch.Tensor:
        labels = batch.labels.to(video.device)
        if self.mix is not None:
            video, labels = self.mix(video, labels, step, micro)
        return self.criterion(model(video).float(), labels)

    def after_step(self, run: Run, done: int) -> None:
        if self.ema is not None:
            self.ema.update(run.model, step=done)

    def after_epoch(self, run: Run, done: int, reporter: Reporter) -> dict[str, Any] | None:
        """Single-view validation every data.val_every_epochs epochs and after the last step (rank 0; the others
        wait at their next gradient exchange); a new best top-1 rewrites RUN/best.safetensors."""
        if not run.dist.is_main:
            return None
        epoch = round(run.epoch_at(done))
        if done < run.total_steps and epoch % self.spec.data.val_every_epochs:
            return None
        if self.ema is not None:
            self._save(run, EMA_FILE, self.ema.module, done)
        if self.val is None:
            return None
        record = self._validate(run.model, reporter, "val")
        if self.ema is not None:
            record |= self._validate(self.ema.module, reporter, "val_ema")
        if self.best_top1 is None or record["val_top1"] > self.best_top1:
            self.best_top1, self.best_step = record["val_top1"], done
            self._save(run, BEST_FILE, run.model, done, val_top1=record["val_top1"])
        return {**record, "best_top1": self.best_top1, "best_step": self.best_step}

    def _validate(self, model: nn.Module, reporter: Reporter, prefix: str) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        spec = self.spec
        result = predict_views(
            model, self.val, spec.optim.batch_size, spec.data.num_workers, self.device, spec.run.precision
        )
        model.train(was_training)
        for bad in result.failures:
            if bad.path not in self.reported_bad:
                self.reported_bad.add(bad.path)
                reporter.notice(f"warning: skipped a validation video that failed to decode: {bad.message}")
        if not len(result.labels):
            raise DataError("no validation video could be decoded")
        return {
            f"{prefix}_top1": topk_accuracy(result.probs, result.labels, 1),
            f"{prefix}_top5": topk_accuracy(result.probs, result.labels, 5),
            f"{prefix}_videos": len(result.labels),
        }

    def _save(self, run: Run, name: str, model: nn.Module, step: int, **extra: Any) -> None:
        meta = model_metadata(self.kind, run.spec.model_dump_json(), step=step, **self.metadata(), **extra)
        save_weights(run.out / name, model.state_dict(), meta)

    def describe(self) -> str:
        init = self.spec.init if self.spec.init and self.spec.init != "none" else "scratch"
        return f"{len(self.classes)} classes | init {init}"

    def metadata(self) -> dict[str, str]:
        return {"classes": json.dumps(self.classes)}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"best_top1": self.best_top1, "best_step": self.best_step}
        if self.ema is not None:
            state["ema"] = self.ema.module.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_top1, self.best_step = state.get("best_top1"), state.get("best_step")
        if self.ema is not None and "ema" in state:
            self.ema.module.load_state_dict(state["ema"])


INHERITED_DATA = ("num_frames", "input_size", "synthetic_scene")  # the clips a checkpoint was trained on


def resolve_finetune_spec(
    configs: list[Path] | None, sets: list[str] | None, flags: dict[str, tuple[str, Any]]
) -> FinetuneSpec:
    """The fine-tune spec, whose model and clip geometry default to those of the `init` checkpoint (drop path
    excepted: fine-tuning has its own)."""
    init = collect_settings(configs, sets, flags).data.get("init")  # before validating: the base changes the model
    if init is None or init == "none":
        return resolve_spec(FinetuneSpec, configs, sets, flags)
    _, saved = read_init_spec(str(init))
    model = {k: v for k, v in saved.get("model", {}).items() if k != "drop_path"}
    data = {k: v for k, v in saved.get("data", {}).items() if k in INHERITED_DATA}
    source = f"config {init} (`init`)"  # a "config" source: a later model.name replaces its size fields
    return resolve_spec(FinetuneSpec, configs, sets, flags, base=({"model": model, "data": data}, source))


def setup(spec: FinetuneSpec, reporter: Reporter, argv: list[str] | None = None) -> Run:
    """Resolve the device, data, classifier (initialised from spec.init), optimizer and resume point of `spec`."""
    dist_env, device = start_processes(spec)
    data = labelled_data(spec.data, spec.augment, spec.run.seed)
    model = VideoClassifier(
        spec.model, grid_of(spec), len(data.classes), spec.model.head_init_scale, pool=spec.model.pool
    )
    if spec.run.out is not None and find_resume_checkpoint(spec, Path(spec.run.out)) is not None:
        init_report = {"checkpoint": spec.init, "resumed": True}  # the checkpoint's weights replace any init
    else:
        init_report = load_init(model, spec, reporter)
    model.to(device)
    seed_rank_streams(spec, dist_env)
    val = data.val_views(ViewPlan.for_data(spec.data))
    if val is None:
        reporter.notice("note: no validation set (data.val_source, or val.csv beside the training manifest)")
    task = FinetuneTask(spec, data.classes, val, device)
    task.attach(model)
    dataset = data.train_dataset(spec.run.seed, spec.data.num_sample)
    run = make_run(
        spec,
        task,
        model,
        dataset,
        device,
        default_epochs=DEFAULT_FINETUNE_EPOCHS,
        argv=argv,
        backend=data.backend,
        dist_env=dist_env,
    )
    run.meta["init"] = init_report
    return run
