"""Classification metrics and report writers for `videomae evaluate`.

Everything here works on plain numpy arrays of per-video class probabilities (after the test views of each video
have been merged), so it is testable without a model. Rankings use a stable argsort of the negated probabilities:
ties go to the lowest class index, and the same inputs always give the same report.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videomae_cli.errors import naming

# Beyond this many classes the class names no longer fit next to the heat map; beyond CELL_COUNT_MAX the counts
# no longer fit inside the cells.
TICK_LABEL_MAX = 40
CELL_COUNT_MAX = 20


def average_view_probabilities(logits: torch.Tensor, num_views: int) -> torch.Tensor:
    """Merge the test views of each video: logits [B*V, K] (the V views of one video contiguous) → [B, K].

    Official VideoMAE V1 averages the per-view softmax (not the logits); done in float64 so that a few hundred
    views of bf16 logits do not lose the ranking to rounding.
    """
    if num_views < 1:
        raise ValueError(f"num_views must be at least 1, got {num_views}")
    if logits.ndim != 2:
        raise ValueError(f"logits must be [videos*views, classes], got shape {tuple(logits.shape)}")
    rows, num_classes = logits.shape
    if rows % num_views:
        raise ValueError(f"{rows} logit rows are not a whole number of videos with {num_views} views each")
    probs = torch.softmax(logits.detach().to(torch.float64), dim=-1)  # [B*V, K]
    return probs.reshape(rows // num_views, num_views, num_classes).mean(dim=1)  # [B, K]


def _check_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Labels as a 1-D int64 array; a clear error for an empty evaluation or a label outside [0, K)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError("no videos to evaluate (0 labels): metrics are undefined on an empty set")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        row = int(bad[0])
        raise ValueError(
            f"label {int(labels[row])} (video {row}) is outside [0, {num_classes}): "
            f"the model has {num_classes} classes ({bad.size} bad label(s) in total)"
        )
    return labels.astype(np.int64, copy=False)


def _check_probs(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """probs [N, K] and labels [N], validated together."""
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be [videos, classes], got shape {probs.shape}")
    if probs.shape[1] == 0:
        raise ValueError("probs has 0 classes")
    labels = _check_labels(labels, probs.shape[1])
    if probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs has {probs.shape[0]} rows but there are {labels.shape[0]} labels")
    return probs, labels


def _ranking(probs: np.ndarray) -> np.ndarray:
    """Class indices of each row from most to least probable; [N, K]. Stable, so ties rank the lower index first."""
    return np.argsort(-probs, axis=1, kind="stable")


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of videos whose label is among their k most probable classes (k clamped to the number of classes).

    Ties are ranked by `np.argsort(-probs, kind='stable')`, i.e. the lower class index wins.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    probs, labels = _check_probs(probs, labels)
    k = min(k, probs.shape[1])
    hits = (_ranking(probs)[:, :k] == labels[:, None]).any(axis=1)
    return float(hits.mean())


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """[K, K] int64 counts: rows are the true class, columns the predicted class."""
    labels = _check_labels(labels, num_classes)
    predicted = np.asarray(predicted)
    if predicted.shape != labels.shape:
        raise ValueError(f"predicted has shape {predicted.shape} but labels have shape {labels.shape}")
    if predicted.min() < 0 or predicted.max() >= num_classes:
        raise ValueError(f"predicted classes must lie in [0, {num_classes}), got {predicted.min()}..{predicted.max()}")
    # One bincount over flattened (true, predicted) pairs instead of a Python loop over videos.
    flat = labels * num_classes + predicted.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_report(probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """The numbers of the evaluate report, JSON-ready (plain Python floats, ints, lists and None).

    Keys: num_videos, num_classes, top1, top5 (k clamped to the number of classes), mean_class_accuracy (over the
    classes that have at least one video), per_class (index, name, support, correct, accuracy — None without
    support) and confusion_matrix (rows true, columns predicted). The top-1 prediction is the first index of the
    stable ranking.
    """
    probs, labels = _check_probs(probs, labels)
    num_videos, num_classes = probs.shape
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    predicted = _ranking(probs)[:, 0]
    matrix = confusion_matrix(predicted, labels, num_classes)
    support = matrix.sum(axis=1)
    correct = np.diag(matrix)
    per_class = [
        {
            "index": i,
            "name": class_names[i],
            "support": int(support[i]),
            "correct": int(correct[i]),
            "accuracy": float(correct[i] / support[i]) if support[i] else None,
        }
        for i in range(num_classes)
    ]
    # A class absent from the test set has no accuracy; counting it as 0 would punish the model for the split.
    seen = support > 0
    return {
        "num_videos": int(num_videos),
        "num_classes": int(num_classes),
        "top1": topk_accuracy(probs, labels, 1),
        "top5": topk_accuracy(probs, labels, 5),
        "mean_class_accuracy": float((correct[seen] / support[seen]).mean()),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def _check_matrix(matrix: np.ndarray, class_names: list[str]) -> np.ndarray:
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(class_names):
        raise ValueError(f"confusion matrix of shape {matrix.shape} does not match {len(class_names)} class names")
    return matrix


def write_confusion_csv(path: Path, matrix: np.ndarray, class_names: list[str]) -> None:
    """Confusion matrix as CSV: header `true\\predicted,<name0>,...`, then one `<name>,<counts...>` row per true
    class. The csv module quotes names that contain commas or quotes."""
    matrix = _check_matrix(matrix, class_names)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with naming(path), open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["true\\predicted", *class_names])
        for name, row in zip(class_names, matrix.tolist(), strict=True):
            writer.writerow([name, *row])


def plot_confusion(path: Path, matrix: np.ndarray, class_names: list[str]) -> None:
    """Confusion matrix as a PNG heat map, each row normalised to that class's recall (rows without videos stay 0).

    Class names label both axes up to about 40 classes (smaller font as K grows; beyond that, index ticks only);
    raw counts are written in the cells when K <= 20. Raises ImportError (with an install hint) without matplotlib.
    """
    # Imported here so that `import videomae_cli` stays fast and never touches a display: the Figure/Agg object API
    # needs no pyplot and no global backend switch, and the figure is not registered anywhere, so it cannot leak.
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        # matplotlib is only needed for this one picture; the caller may catch this and still write the numbers.
        raise ImportError("plotting the confusion matrix needs matplotlib: pip install matplotlib") from err

    matrix = _check_matrix(matrix, class_names).astype(np.float64)
    num_classes = matrix.shape[0]
    support = matrix.sum(axis=1, keepdims=True)  # [K, 1]
    recall = np.divide(matrix, support, out=np.zeros_like(matrix), where=support > 0)  # [K, K]

    side = float(np.clip(3.0 + 0.3 * num_classes, 5.0, 20.0))
    fig = Figure(figsize=(side + 1.5, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title("Confusion matrix (row-normalised)")
    named = num_classes <= TICK_LABEL_MAX
    ax.set_xlabel("predicted class" if named else "predicted class (index)")
    ax.set_ylabel("true class" if named else "true class (index)")

    if named:
        fontsize = 9 if num_classes <= CELL_COUNT_MAX else 6
        ticks = np.arange(num_classes)
        ax.set_xticks(ticks, labels=class_names, rotation=90, fontsize=fontsize)
        ax.set_yticks(ticks, labels=class_names, fontsize=fontsize)
    if num_classes <= CELL_COUNT_MAX:
        for i in range(num_classes):
            for j in range(num_classes):
                # White on dark cells, black on light ones, so every count stays readable.
                colour = "white" if recall[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=colour, fontsize=8)

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    fig.clear()


def write_predictions_csv(
    path: Path,
    videos: list[str],
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: list[str],
    top_k: int = 5,
) -> None:
    """Per-video predictions as CSV.

    Header `video,label,label_name,predicted,predicted_name,correct,confidence,top5` (the last column is named
    `top{top_k}`); `correct` is 1 or 0, `confidence` the probability of the predicted class with 6 decimals, and
    the last column the top-k class indices (k clamped to the number of classes) joined by spaces.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    probs, labels = _check_probs(probs, labels)
    if len(videos) != probs.shape[0]:
        raise ValueError(f"{len(videos)} video names for {probs.shape[0]} rows of probabilities")
    if len(class_names) != probs.shape[1]:
        raise ValueError(f"{len(class_names)} class names for {probs.shape[1]} classes")
    ranking = _ranking(probs)[:, : min(top_k, probs.shape[1])]  # [N, k]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with naming(path), open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["video", "label", "label_name", "predicted", "predicted_name", "correct", "confidence", f"top{top_k}"]
        )
        for video, label, row_probs, top in zip(videos, labels.tolist(), probs, ranking.tolist(), strict=True):
            predicted = top[0]
            writer.writerow(
                [
                    video,
                    label,
                    class_names[label],
                    predicted,
                    class_names[predicted],
                    int(predicted == label),
                    f"{float(row_probs[predicted]):.6f}",
                    " ".join(str(i) for i in top),
                ]
            )
