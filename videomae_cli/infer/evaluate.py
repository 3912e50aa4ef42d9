"""`videomae evaluate`: the numbers papers report for a classifier, and quick judges of a pretrained encoder.

Classifier checkpoint: multi-view testing (C clips × S crops, softmax averaged), top-1/top-5/mean class accuracy,
per-class table, confusion matrix (CSV + PNG) and per-video predictions (CSV).
Pretrain checkpoint: masked reconstruction loss on the validation videos and, when labels exist, frozen-feature
k-NN (cosine, k=20) and linear-probe top-1 — a few minutes to compare pretraining runs before fine-tuning one.

Data defaults to the validation set the checkpoint's spec names; every output goes into one JSON report (its schema
is in the README) with the CSVs and the PNG beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from videomae_cli.checkpoint import LoadedCheckpoint, atomic_write, load_checkpoint
from videomae_cli.config.schema import EvaluateSpec, default_views, parse_views
from videomae_cli.data.loader import BadClip, ClipNormalizer, batches_from
from videomae_cli.data.sources import bank_source, cut_views, query_source
from videomae_cli.data.views import VideoViews, ViewPlan, ViewSource, view_loader
from videomae_cli.errors import DataError
from videomae_cli.infer import metrics
from videomae_cli.infer.predict import ViewPredictions, predict_views, run_in_chunks
from videomae_cli.masking import MaskGenerator, collate_masks
from videomae_cli.models.pretrain import per_video_loss
from videomae_cli.models.teacher import with_teacher
from videomae_cli.progress import Reporter
from videomae_cli.runtime import autocast_for, pick_device

REPORT_NAME = "report.json"


@dataclass
class Evaluation:
    """The report (JSON-ready) and the files written beside it."""

    report: dict[str, Any]
    path: Path
    files: dict[str, str] = field(default_factory=dict)


def default_report_path(checkpoint: Path) -> Path:
    """RUN/eval/report.json for RUN/model.safetensors (or a checkpoint directory)."""
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    return folder / "eval" / REPORT_NAME


def evaluate(spec: EvaluateSpec, reporter: Reporter) -> Evaluation:
    """Evaluate spec.checkpoint (classifier or pretrain) and write the report."""
    loaded = load_checkpoint(spec.checkpoint)
    device = pick_device(spec.device, field="device")
    loaded.model.to(device)
    with_teacher(loaded, device)  # a teacher-target model's loss needs its teacher
    report_path = spec.report or default_report_path(spec.checkpoint)
    if loaded.kind == "classifier":
        evaluation = evaluate_classifier(loaded, spec, report_path, device, reporter)
    else:
        evaluation = evaluate_pretrain(loaded, spec, report_path, device, reporter)
    evaluation.report["checkpoint"] = str(spec.checkpoint)
    write_json(report_path, evaluation.report)
    return evaluation


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write the report atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))


def evaluate_classifier(
    loaded: LoadedCheckpoint, spec: EvaluateSpec, report_path: Path, device: torch.device, reporter: Reporter
) -> Evaluation:
    """Multi-view top-1/top-5/per-class accuracy, the confusion matrix and per-video predictions."""
    model, trained, classes = loaded.model, loaded.spec, loaded.classes
    clips, crops = parse_views(spec.views or default_views(trained.data))
    source, name = query_source(spec, trained.data, trained.run.seed)
    views = cut_views(source, ViewPlan.for_data(trained.data, clips, crops))
    reporter.start(
        "evaluate", len(views), 0, f"evaluate {spec.checkpoint} on {name} | {clips}x{crops} views | {device}"
    )
    result = predict_views(
        model,
        views,
        spec.batch_size,
        spec.num_workers,
        device,
        spec.precision,
        spec.chunk_views,
        on_batch=reporter.advance,
    )
    report_skipped(result.failures, reporter)
    if not len(result.labels):
        raise DataError(f"none of the {len(views)} videos of {name} could be decoded")
    try:
        numbers = metrics.classification_report(result.probs, result.labels, classes)
    except ValueError as e:
        raise DataError(f"{name}: {e}") from None
    report = {"kind": "classifier", "data": name, "views": f"{clips}x{crops}", "num_views": clips * crops}
    report |= numbers | {"skipped": skipped(result.failures)}
    files = write_classifier_files(report_path, numbers, result, source, classes)
    report["files"] = files
    return Evaluation(report, report_path, files)


def write_classifier_files(
    report_path: Path, numbers: dict[str, Any], result: ViewPredictions, source: ViewSource, classes: list[str]
) -> dict[str, str]:
    """confusion CSV + PNG and the per-video predictions CSV, named after the report."""
    stem = report_path.with_suffix("")
    files = {
        "confusion_csv": f"{stem}-confusion.csv",
        "confusion_png": f"{stem}-confusion.png",
        "predictions_csv": f"{stem}-predictions.csv",
    }
    matrix = np.asarray(numbers["confusion_matrix"])
    metrics.write_confusion_csv(Path(files["confusion_csv"]), matrix, classes)
    metrics.plot_confusion(Path(files["confusion_png"]), matrix, classes)
    videos = [result.video(row, source) for row in range(len(result.indices))]
    metrics.write_predictions_csv(Path(files["predictions_csv"]), videos, result.labels, result.probs, classes)
    return files


def report_skipped(failures: list[BadClip], reporter: Reporter) -> None:
    for bad in failures:
        reporter.notice(f"warning: skipped a video that failed to decode: {bad.message}")


def skipped(failures: list[BadClip]) -> list[dict[str, str]]:
    return [{"video": bad.path, "reason": bad.reason} for bad in failures]


@dataclass
class FrozenPass:
    """Per-video outputs of a pretrained model on single-view clips."""

    features: list[torch.Tensor] = field(default_factory=list)
    losses: list[torch.Tensor] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    failures: list[BadClip] = field(default_factory=list)


def frozen_pass(
    model: nn.Module,
    views: VideoViews,
    spec: EvaluateSpec,
    device: torch.device,
    masks: MaskGenerator | None,
    reporter: Reporter,
) -> FrozenPass:
    """Pooled encoder features of every video, and (with `masks`) its masked reconstruction loss."""
    normalize, out = ClipNormalizer(device), FrozenPass()
    with torch.no_grad(), batches_from(view_loader(views, spec.batch_size, spec.num_workers)) as batches:
        for batch in batches:
            out.failures += [s.failure for s in batch if s.failure is not None]
            good = [s for s in batch if s.views is not None]
            if good:
                clips = torch.cat([s.views for s in good])  # one view per video: [B, T, S, S, 3]
                video = normalize(clips)
                with autocast_for(device, spec.precision):
                    out.features.append(run_in_chunks(lambda x: model.features(x).float(), video, spec.chunk_views))
                    if masks is not None:
                        tokens = collate_masks([masks(0, s.index, clip=s.views[0].numpy()) for s in good]).to(device)
                        output = model(video, tokens)
                        out.losses.append(per_video_loss(output.pred, output.target, tokens.weight, model.loss_kind))
                out.labels += [s.label for s in good]
            reporter.advance(len(batch))
    return out


def evaluate_pretrain(
    loaded: LoadedCheckpoint, spec: EvaluateSpec, report_path: Path, device: torch.device, reporter: Reporter
) -> Evaluation:
    """Reconstruction loss on the validation videos; k-NN and linear probe when the training videos are labelled."""
    from videomae_cli.infer.frozen import knn_accuracy, linear_probe_accuracy

    model, trained = loaded.model, loaded.spec
    plan = ViewPlan.for_data(trained.data)
    source, name = query_source(spec, trained.data, trained.run.seed)
    bank, bank_name = bank_source(spec, trained.data, trained.run.seed)
    queries = cut_views(source, plan)
    total = len(queries) + (len(bank) if bank is not None else 0)
    reporter.start("evaluate", total, 0, f"evaluate {spec.checkpoint} (pretrain) on {name} | {device}")
    masks = MaskGenerator(trained.mask, model.grid, trained.run.seed)
    query = frozen_pass(model, queries, spec, device, masks, reporter)
    report_skipped(query.failures, reporter)
    if not query.labels:
        raise DataError(f"none of the {len(queries)} videos of {name} could be decoded")
    report: dict[str, Any] = {
        "kind": "pretrain",
        "data": name,
        "num_videos": len(query.labels),
        "mask": trained.mask.model_dump(),
        "target": trained.model.target,  # what the loss compares: the run's own target
        "reconstruction_loss": float(torch.cat(query.losses).mean()),
        "knn": None,
        "linear_probe": None,
        "notes": [],
    }
    labelled = bank is not None and len(set(bank.labels())) > 1
    if not labelled:
        report["notes"].append("no labelled training videos: k-NN and linear probe skipped")
        report["skipped"] = skipped(query.failures)
        return Evaluation(report, report_path)
    reference = frozen_pass(model, cut_views(bank, plan), spec, device, None, reporter)
    report_skipped(reference.failures, reporter)
    num_classes = max(max(reference.labels), max(query.labels)) + 1
    train_x, test_x = torch.cat(reference.features), torch.cat(query.features)
    train_y, test_y = torch.tensor(reference.labels), torch.tensor(query.labels)
    k = spec.knn_k
    report["knn"] = {"k": k, "top1": knn_accuracy(train_x, train_y, test_x, test_y, num_classes, k=k)}
    report["knn"]["train_videos"] = len(reference.labels)
    report["knn"]["train_data"] = bank_name
    report["linear_probe"] = {"top1": linear_probe_accuracy(train_x, train_y, test_x, test_y, num_classes)}
    report["skipped"] = skipped(query.failures + reference.failures)
    return Evaluation(report, report_path)
