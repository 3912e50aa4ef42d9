"""Sharing this machine's CPU cores between processes that run at once."""

from __future__ import annotations

import os


def cores_per_process(processes: int) -> int:
    """This machine's CPU count split evenly between `processes` processes (at least one core each).

    Processes that each run one thread per core (torch's OpenMP default) slow each other down far more than their
    share: their threads spin while waiting for each other. Two 150-step pretraining runs side by side on two cores
    took 161 s each with two threads apiece and 27 s each with one; alone, one took 19 s.
    """
    return max(1, (os.cpu_count() or 1) // max(1, processes))
