"""The train/val split of prepare-data: the source's own splits are kept; where it has no validation split, one is
drawn from the rest, stratified by label and seeded, so the same items and seed always give the same manifests."""

from __future__ import annotations

import math
import random

from videomae_cli.data.prepare.outputs import SPLITS
from videomae_cli.data.prepare.source import SourceItem


def assign_splits(items: list[SourceItem], val_fraction: float, seed: int) -> dict[str, list[SourceItem]]:
    """Keep the source's splits; where it has no validation split, draw one (stratified, seeded) from the rest."""
    splits: dict[str, list[SourceItem]] = {name: [] for name in SPLITS}
    has_val = any(item.split == "val" for item in items)
    pool = []
    for item in items:
        if item.split in ("val", "test"):
            splits[item.split].append(item)
        elif has_val:
            splits["train"].append(item)  # the source's own train split, and any unsplit extras
        else:
            pool.append(item)
    val = stratified_val_indices([item.label for item in pool], [str(item.path) for item in pool], val_fraction, seed)
    for index, item in enumerate(pool):
        splits["val" if index in val else "train"].append(item)
    return splits


def stratified_val_indices(labels: list[int], keys: list[str], fraction: float, seed: int) -> set[int]:
    """Indices of a validation subset of about `fraction` of the items, spread over labels in proportion.

    Deterministic for a given (items, fraction, seed) whatever the input order (items are ordered by `keys` before the
    seeded shuffle). Every label keeps at least one training item, and a fraction > 0 takes at least one item when
    there are two or more.
    """
    if not labels or fraction <= 0:
        return set()
    groups: dict[int, list[int]] = {}
    for index in sorted(range(len(labels)), key=lambda i: keys[i]):
        groups.setdefault(labels[index], []).append(index)
    quotas = _quotas({label: len(members) for label, members in groups.items()}, fraction, seed)
    chosen: set[int] = set()
    for label, members in groups.items():
        random.Random(f"{seed}/{label}").shuffle(members)
        chosen.update(members[: quotas[label]])
    return chosen


def _quotas(sizes: dict[int, int], fraction: float, seed: int) -> dict[int, int]:
    """Validation count per label: largest-remainder apportionment of round(N × fraction), at most size - 1 each."""
    total = sum(sizes.values())
    room = {label: size - 1 for label, size in sizes.items()}
    target = min(max(math.floor(total * fraction + 0.5), 1 if total >= 2 else 0), sum(room.values()))
    exact = {label: size * target / total for label, size in sizes.items()}
    quotas = {label: min(math.floor(exact[label]), room[label]) for label in sizes}
    tiebreak = random.Random(f"{seed}/quotas")
    order = sorted(sizes, key=lambda label: (-(exact[label] - math.floor(exact[label])), tiebreak.random()))
    while sum(quotas.values()) < target:
        for label in order:
            if sum(quotas.values()) < target and quotas[label] < room[label]:
                quotas[label] += 1
    return quotas
