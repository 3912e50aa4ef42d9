"""Evaluate metrics and report writers: hand-checked numbers on tiny inputs, no model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from videomae_cli.infer.metrics import (
    average_view_probabilities,
    classification_report,
    confusion_matrix,
    plot_confusion,
    topk_accuracy,
    write_confusion_csv,
    write_predictions_csv,
)
from videomae_cli.ui.tables import per_class_table, report_table

# 4 classes; class 3 never occurs in the labels.
#   video 0: label 0, predicted 0          video 3: label 1, predicted 1
#   video 1: label 0, predicted 1 (2nd: 0) video 4: label 2, predicted 0 (2nd: 2)
#   video 2: label 1, predicted 1
PROBS = np.array(
    [
        [0.70, 0.10, 0.10, 0.10],
        [0.30, 0.40, 0.20, 0.10],
        [0.10, 0.60, 0.20, 0.10],
        [0.05, 0.80, 0.10, 0.05],
        [0.50, 0.05, 0.40, 0.05],
    ]
)
LABELS = np.array([0, 0, 1, 1, 2])
NAMES = ["walk", "run, fast", "jump", "swim"]


def render(table) -> str:
    console = Console(record=True, width=120)
    console.print(table)
    return console.export_text()


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_view_averaging_is_the_mean_of_per_view_softmax():
    logits = torch.tensor(
        [
            [1.0, 2.0, 0.5],
            [0.0, -1.0, 3.0],
            [2.0, 2.0, 2.0],
            [5.0, 0.0, -5.0],
            [0.1, 0.2, 0.3],
            [-2.0, 4.0, 1.0],
        ]
    )  # 2 videos × 3 views, views of one video contiguous
    raw = logits.numpy().astype(np.float64)
    softmax = np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
    expected = np.stack([softmax[0:3].mean(axis=0), softmax[3:6].mean(axis=0)])

    merged = average_view_probabilities(logits, num_views=3)

    assert merged.shape == (2, 3)
    assert merged.dtype == torch.float64
    np.testing.assert_allclose(merged.numpy(), expected, rtol=1e-12)


def test_view_averaging_differs_from_softmax_of_mean_logits():
    logits = torch.tensor([[10.0, 0.0], [0.0, 1.0]])  # one video, two disagreeing views
    merged = average_view_probabilities(logits, num_views=2)
    of_mean = torch.softmax(logits.double().mean(dim=0), dim=-1)
    assert not torch.allclose(merged[0], of_mean)


def test_view_averaging_rejects_a_partial_video():
    with pytest.raises(ValueError, match="3 views"):
        average_view_probabilities(torch.zeros(4, 5), num_views=3)


def test_topk_accuracy_on_a_hand_example():
    assert topk_accuracy(PROBS, LABELS, 1) == pytest.approx(3 / 5)
    assert topk_accuracy(PROBS, LABELS, 2) == pytest.approx(5 / 5)


def test_topk_ties_go_to_the_lower_class_index():
    probs = np.array([[0.25, 0.25, 0.25, 0.25]])
    assert topk_accuracy(probs, np.array([0]), 1) == 1.0
    assert topk_accuracy(probs, np.array([1]), 1) == 0.0
    assert topk_accuracy(probs, np.array([1]), 2) == 1.0


def test_top5_clamps_to_three_classes():
    probs = np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    labels = np.array([2, 0])
    assert topk_accuracy(probs, labels, 5) == 1.0
    assert classification_report(probs, labels, ["a", "b", "c"])["top5"] == 1.0


def test_confusion_matrix_counts_rows_true_columns_predicted():
    predicted = np.array([0, 1, 1, 1, 0])
    matrix = confusion_matrix(predicted, LABELS, 4)
    expected = np.array(
        [
            [1, 1, 0, 0],
            [0, 2, 0, 0],
            [1, 0, 0, 0],
            [0, 0, 0, 0],
        ]
    )
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, expected)


def test_report_per_class_accuracy_and_mean_skip_classes_without_videos():
    report = classification_report(PROBS, LABELS, NAMES)

    assert report["num_videos"] == 5
    assert report["num_classes"] == 4
    assert report["top1"] == pytest.approx(0.6)
    assert report["top5"] == pytest.approx(1.0)
    assert report["per_class"] == [
        {"index": 0, "name": "walk", "support": 2, "correct": 1, "accuracy": 0.5},
        {"index": 1, "name": "run, fast", "support": 2, "correct": 2, "accuracy": 1.0},
        {"index": 2, "name": "jump", "support": 1, "correct": 0, "accuracy": 0.0},
        {"index": 3, "name": "swim", "support": 0, "correct": 0, "accuracy": None},
    ]
    assert report["mean_class_accuracy"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert report["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


def test_report_is_json_ready():
    report = classification_report(PROBS, LABELS, NAMES)
    assert json.loads(json.dumps(report)) == report


def test_empty_evaluation_is_an_error():
    with pytest.raises(ValueError, match="no videos"):
        classification_report(np.zeros((0, 4)), np.zeros(0, dtype=np.int64), NAMES)


@pytest.mark.parametrize("bad", [4, -1])
def test_label_outside_the_classes_is_named(bad: int):
    labels = np.array([0, bad, 1, 1, 2])
    with pytest.raises(ValueError, match=rf"label {bad} \(video 1\) is outside \[0, 4\)"):
        classification_report(PROBS, labels, NAMES)


def test_confusion_csv_reads_back_with_quoted_names(tmp_path: Path):
    path = tmp_path / "confusion.csv"
    write_confusion_csv(path, np.array(classification_report(PROBS, LABELS, NAMES)["confusion_matrix"]), NAMES)

    rows = read_csv(path)
    assert rows[0] == ["true\\predicted", "walk", "run, fast", "jump", "swim"]
    assert rows[2] == ["run, fast", "0", "2", "0", "0"]
    assert len(rows) == 5


def test_confusion_png_is_a_valid_image(tmp_path: Path):
    matplotlib_image = pytest.importorskip("matplotlib.image")

    path = tmp_path / "confusion.png"
    plot_confusion(path, np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]), NAMES)

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib_image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_confusion_png_with_many_classes_omits_names(tmp_path: Path):
    pytest.importorskip("matplotlib")
    num_classes = 60
    matrix = np.diag(np.arange(num_classes)) + 1
    path = tmp_path / "big.png"
    plot_confusion(path, matrix, [f"class {i}" for i in range(num_classes)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predictions_csv_rows(tmp_path: Path):
    path = tmp_path / "predictions.csv"
    videos = [f"v{i}.mp4" for i in range(5)]
    write_predictions_csv(path, videos, LABELS, PROBS, NAMES)

    rows = read_csv(path)
    assert rows[0] == ["video", "label", "label_name", "predicted", "predicted_name", "correct", "confidence", "top5"]
    assert rows[1] == ["v0.mp4", "0", "walk", "0", "walk", "1", "0.700000", "0 1 2 3"]
    assert rows[2] == ["v1.mp4", "0", "walk", "1", "run, fast", "0", "0.400000", "1 0 2 3"]
    assert len(rows) == 6


def test_report_table_shows_percentages_and_video_count():
    text = render(report_table(classification_report(PROBS, LABELS, NAMES), title="UCF101 split 1"))
    assert "UCF101 split 1" in text
    assert "60.00%" in text
    assert "100.00%" in text
    assert "50.00%" in text  # mean class accuracy (0.5 + 1 + 0) / 3
    assert "Videos" in text and "5" in text


def test_per_class_table_lists_classes_and_marks_missing_support():
    text = render(per_class_table(classification_report(PROBS, LABELS, NAMES)))
    assert "run, fast" in text
    assert "swim" in text and "—" in text


def test_per_class_table_limit_adds_a_more_row():
    text = render(per_class_table(classification_report(PROBS, LABELS, NAMES), limit=2))
    assert "walk" in text and "run, fast" in text
    assert "jump" not in text
    assert "… 2 more" in text
