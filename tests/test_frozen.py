"""Frozen-feature judges of a pretrained encoder: weighted k-NN and the L-BFGS linear probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videomae_cli.infer.frozen import fit_linear_probe, knn_accuracy, linear_probe_accuracy


def _clusters(n_per_class: int, num_classes: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tight Gaussian blobs around orthogonal directions: separable by angle and by a linear map."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(num_classes, dim) * 5.0  # [K, C]
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)  # [N]
    features = centres[labels] + 0.1 * torch.randn(len(labels), dim, generator=g)  # [N, C]
    return features, labels


def _knn_reference(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, num_classes: int, k: int, temperature: float
) -> np.ndarray:
    """Brute force, one test point at a time, written independently of the implementation under test."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    preds = []
    for point in test:
        point = point / np.linalg.norm(point)
        sims = np.array([float(np.dot(point, row)) for row in train])
        order = np.argsort(-sims, kind="stable")[:k]
        votes = np.zeros(num_classes)
        for i in order:
            votes[train_labels[i]] += np.exp(sims[i] / temperature)
        preds.append(int(np.argmax(votes)))
    return np.array(preds)


def test_knn_separates_well_separated_clusters() -> None:
    train_x, train_y = _clusters(20, 4, 16, seed=0)
    test_x, test_y = _clusters(10, 4, 16, seed=1)
    assert knn_accuracy(train_x, train_y, test_x, test_y, num_classes=4) == 1.0


def test_knn_matches_brute_force_reference() -> None:
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(60, 8, generator=g), torch.randn(40, 8, generator=g)
    train_y, test_y = torch.randint(0, 3, (60,), generator=g), torch.randint(0, 3, (40,), generator=g)
    ref = _knn_reference(train_x.double().numpy(), train_y.numpy(), test_x.double().numpy(), 3, k=5, temperature=0.07)
    # Scoring against the reference's own predictions is 1.0 only if every single prediction agrees.
    assert knn_accuracy(train_x, train_y, test_x, torch.from_numpy(ref), num_classes=3, k=5) == 1.0
    expected = float(np.mean(ref == test_y.numpy()))
    assert knn_accuracy(train_x, train_y, test_x, test_y, num_classes=3, k=5) == pytest.approx(expected)


def test_knn_clamps_k_to_number_of_training_features() -> None:
    # One class-0 point is nearest, but two class-1 points outvote it once all three neighbours count equally
    # (a large temperature flattens the weights).
    train_x = torch.tensor([[1.0, 0.0], [0.7, 0.7], [0.7, -0.7]])
    train_y = torch.tensor([0, 1, 1])
    test_x, test_y = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    assert knn_accuracy(train_x, train_y, test_x, test_y, num_classes=2, k=1, temperature=1e3) == 0.0
    assert knn_accuracy(train_x, train_y, test_x, test_y, num_classes=2, k=20, temperature=1e3) == 1.0


def test_knn_tie_goes_to_lowest_class_index() -> None:
    # Both neighbours sit at cosine 0 from the test point, so their votes are exactly equal.
    train_x = torch.tensor([[0.0, 1.0], [0.0, -1.0]])
    test_x = torch.tensor([[1.0, 0.0]])
    assert knn_accuracy(train_x, torch.tensor([2, 1]), test_x, torch.tensor([1]), num_classes=3, k=2) == 1.0
    assert knn_accuracy(train_x, torch.tensor([1, 2]), test_x, torch.tensor([1]), num_classes=3, k=2) == 1.0


def test_knn_chunking_does_not_change_the_result() -> None:
    g = torch.Generator().manual_seed(1)
    train_x, test_x = torch.randn(50, 6, generator=g), torch.randn(37, 6, generator=g)
    train_y, test_y = torch.randint(0, 4, (50,), generator=g), torch.randint(0, 4, (37,), generator=g)
    whole = knn_accuracy(train_x, train_y, test_x, test_y, num_classes=4, k=7)
    for chunk_size in (1, 5, 36):
        assert knn_accuracy(train_x, train_y, test_x, test_y, num_classes=4, k=7, chunk_size=chunk_size) == whole


def test_knn_ignores_feature_scale() -> None:
    g = torch.Generator().manual_seed(2)
    train_x, test_x = torch.randn(50, 6, generator=g), torch.randn(30, 6, generator=g)
    train_y, test_y = torch.randint(0, 3, (50,), generator=g), torch.randint(0, 3, (30,), generator=g)
    base = knn_accuracy(train_x, train_y, test_x, test_y, num_classes=3, k=5)
    assert knn_accuracy(train_x, train_y, 10 * test_x, test_y, num_classes=3, k=5) == base


def test_linear_probe_fits_linearly_separable_data() -> None:
    train_x, train_y = _clusters(30, 5, 12, seed=0)
    test_x, test_y = _clusters(10, 5, 12, seed=1)
    assert linear_probe_accuracy(train_x, train_y, test_x, test_y, num_classes=5) == 1.0


def test_linear_probe_on_shuffled_labels_is_near_chance() -> None:
    train_x, train_y = _clusters(40, 4, 12, seed=0)
    test_x, test_y = _clusters(100, 4, 12, seed=1)
    g = torch.Generator().manual_seed(3)
    shuffled = train_y[torch.randperm(len(train_y), generator=g)]
    assert linear_probe_accuracy(train_x, shuffled, test_x, test_y, num_classes=4) < 0.5


def test_linear_probe_is_deterministic() -> None:
    g = torch.Generator().manual_seed(4)
    train_x, test_x = torch.randn(80, 10, generator=g), torch.randn(40, 10, generator=g)
    train_y, test_y = torch.randint(0, 3, (80,), generator=g), torch.randint(0, 3, (40,), generator=g)
    first = fit_linear_probe(train_x, train_y, num_classes=3)
    second = fit_linear_probe(train_x, train_y, num_classes=3)
    assert torch.equal(first.linear.weight, second.linear.weight)
    assert torch.equal(first.linear.bias, second.linear.bias)
    assert linear_probe_accuracy(train_x, train_y, test_x, test_y, 3) == linear_probe_accuracy(
        train_x, train_y, test_x, test_y, 3
    )


def test_linear_probe_works_under_inference_mode() -> None:
    train_x, train_y = _clusters(10, 3, 6, seed=0)
    with torch.inference_mode():
        assert linear_probe_accuracy(train_x.clone(), train_y.clone(), train_x, train_y, num_classes=3) == 1.0


_X, _Y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((_X, _Y[:3], _X, _Y, 2), "rows"),
        ((_X[0], _Y, _X, _Y, 2), "2-D"),
        ((_X, _Y, torch.randn(4, 5), _Y, 2), "dimension"),
        ((_X, torch.tensor([0, 1, 2, 0]), _X, _Y, 2), r"\[0, 2\)"),
        ((_X, torch.tensor([0, -1, 0, 1]), _X, _Y, 2), r"\[0, 2\)"),
        ((_X, _Y, _X, _Y.float(), 2), "integer"),
        ((_X[:0], _Y[:0], _X, _Y, 2), "empty"),
        ((_X, _Y, _X[:0], _Y[:0], 2), "empty"),
    ],
)
@pytest.mark.parametrize("judge", [knn_accuracy, linear_probe_accuracy])
def test_invalid_inputs_raise_value_error(judge, args, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        judge(*args)
