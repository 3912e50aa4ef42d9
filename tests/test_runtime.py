"""Processes that run at once split the CPU cores between them."""

from __future__ import annotations

from videomae_cli import runtime
from videomae_cli.runtime import cores_per_process


def test_one_process_gets_every_core(monkeypatch) -> None:
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 8)
    assert cores_per_process(1) == 8


def test_cores_are_split_evenly_rounding_down(monkeypatch) -> None:
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 8)
    assert cores_per_process(3) == 2


def test_every_process_gets_at_least_one_core(monkeypatch) -> None:
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
    assert cores_per_process(5) == 1


def test_an_unknown_cpu_count_counts_as_one(monkeypatch) -> None:
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: None)
    assert cores_per_process(2) == 1
