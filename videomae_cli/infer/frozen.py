"""Quick judges of a pretrained encoder from frozen features: weighted k-NN and a linear probe.

Both run on features already extracted by the encoder, in seconds on a CPU, and are deterministic, so two
pretraining runs can be compared without fine-tuning either. k-NN follows DINO's / InstDisc's evaluation; the linear
probe follows MAE's (standardise features, then a linear head), fitted full-batch with L-BFGS instead of SGD.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# MAE's linear probe normalises with BatchNorm1d(affine=False, eps=1e-6); the same eps keeps constant dims finite.
_STANDARDISE_EPS = 1e-6


@dataclass(frozen=True)
class LinearProbe:
    """A fitted probe: standardise with the training set's statistics, then apply `linear` (float64)."""

    mean: torch.Tensor  # [C]
    std: torch.Tensor  # [C]
    linear: nn.Linear  # C → K

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits [N, K] for features [N, C]."""
        x = (features.to(self.mean) - self.mean) / self.std
        with torch.no_grad():
            return self.linear(x)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted class per row [N] for features [N, C]."""
        return self.logits(features).argmax(dim=1)


def _check_split(name: str, features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
    if features.ndim != 2:
        raise ValueError(f"{name}_features must be 2-D [N, C], got shape {tuple(features.shape)}")
    if labels.ndim != 1:
        raise ValueError(f"{name}_labels must be 1-D [N], got shape {tuple(labels.shape)}")
    if features.shape[0] == 0:
        raise ValueError(f"{name} set is empty")
    if features.shape[0] != labels.shape[0]:
        raise ValueError(f"{name}_features has {features.shape[0]} rows but {name}_labels has {labels.shape[0]}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name}_labels must be an integer tensor, got {labels.dtype}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{name}_labels must lie in [0, {num_classes}), got values in [{lo}, {hi}]")


def _check_inputs(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
) -> None:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    _check_split("train", train_features, train_labels, num_classes)
    _check_split("test", test_features, test_labels, num_classes)
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train and test features differ in dimension: {train_features.shape[1]} vs {test_features.shape[1]}"
        )


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    *,
    chunk_size: int = 1024,
) -> float:
    """Top-1 accuracy of a weighted k-NN classifier on L2-normalised features (cosine similarity).

    As in DINO's / InstDisc's k-NN evaluation, each of the k most similar training features votes for its label
    with weight exp(sim / temperature); the class with the largest summed vote wins, ties going to the lowest class
    index. k is clamped to the number of training features. Test features are processed `chunk_size` rows at a time
    so memory stays O(chunk_size · N_train). Computed in float32.
    """
    _check_inputs(train_features, train_labels, test_features, test_labels, num_classes)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    device = train_features.device
    train = F.normalize(train_features.float(), dim=1)  # [N_train, C]
    test = F.normalize(test_features.float().to(device), dim=1)  # [N_test, C]
    train_labels = train_labels.long().to(device)
    test_labels = test_labels.long().to(device)
    k = min(k, train.shape[0])

    correct = 0
    for start in range(0, test.shape[0], chunk_size):
        chunk = test[start : start + chunk_size]  # [B, C]
        sim, idx = (chunk @ train.T).topk(k, dim=1)  # [B, k]
        # Shifting by each row's best similarity rescales that row's weights by one constant, which leaves the vote
        # unchanged but keeps exp() finite for small temperatures.
        weights = ((sim - sim[:, :1]) / temperature).exp()  # [B, k]
        votes = torch.zeros(chunk.shape[0], num_classes, device=device)  # [B, K]
        votes.scatter_add_(1, train_labels[idx], weights)
        # argmax returns the first maximal index, which is the documented lowest-class tie-break.
        pred = votes.argmax(dim=1)  # [B]
        correct += int((pred == test_labels[start : start + chunk_size]).sum())
    return correct / test.shape[0]


def fit_linear_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    weight_decay: float = 1e-4,
    max_iter: int = 200,
) -> LinearProbe:
    """Fit a multinomial logistic-regression probe on frozen features [N, C] with labels [N] in [0, num_classes).

    Features are standardised with their per-dimension mean/std (MAE puts a BatchNorm without affine before its
    linear head), then Linear(C, K) is fit full-batch by L-BFGS (strong Wolfe line search) on mean cross-entropy +
    weight_decay·||W||² (bias not decayed). Float64 and zero init: the problem is convex, so the fit is deterministic
    and independent of any seed.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    _check_split("train", features, labels, num_classes)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")

    # Callers extract features under no_grad or inference_mode; the fit needs autograd, and copying the inputs
    # outside inference mode turns inference tensors into ordinary ones that autograd may save.
    with torch.inference_mode(False), torch.enable_grad():
        x = features.detach().to(torch.float64, copy=True)  # [N, C]
        y = labels.detach().to(x.device, torch.long, copy=True)  # [N]
        mean = x.mean(dim=0)  # [C]
        std = (x.var(dim=0, unbiased=False) + _STANDARDISE_EPS).sqrt()  # [C]
        x = (x - mean) / std

        linear = nn.Linear(x.shape[1], num_classes, dtype=torch.float64, device=x.device)
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)
        optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(linear(x), y) + weight_decay * linear.weight.square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)
    linear.requires_grad_(False)
    return LinearProbe(mean=mean, std=std, linear=linear)


def linear_probe_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    *,
    weight_decay: float = 1e-4,
    max_iter: int = 200,
    seed: int = 0,
) -> float:
    """Top-1 accuracy on the test features of a logistic-regression probe fit on the training features.

    See `fit_linear_probe` for the fit. `seed` is accepted for a future stochastic (SGD) path and currently has no
    effect: the L-BFGS fit is convex from a zero init, hence already deterministic.
    """
    del seed
    _check_inputs(train_features, train_labels, test_features, test_labels, num_classes)
    probe = fit_linear_probe(train_features, train_labels, num_classes, weight_decay=weight_decay, max_iter=max_iter)
    pred = probe.predict(test_features)  # [N_test]
    return (pred == test_labels.long().to(pred.device)).double().mean().item()
