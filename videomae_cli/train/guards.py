"""What stops a training run cleanly, on every rank at the same step: a stop signal (cluster preemption: checkpoint,
then exit 75), too many videos that fail to decode (exit 3, naming them), a non-finite loss (exit 4, keeping the last
good checkpoint).
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Any

import torch

from videomae_cli.checkpoint import list_checkpoints
from videomae_cli.data.loader import STOP_SIGNALS, BadClip
from videomae_cli.errors import DataError, NonFiniteLossError, naming
from videomae_cli.progress import Reporter
from videomae_cli.train import distributed
from videomae_cli.train.run import Run


class StopRequest:
    """SIGTERM / SIGUSR1 (what clusters send before preempting a job) set a flag that the loop reads after each step,
    instead of killing the process mid-step."""

    SIGNALS = STOP_SIGNALS

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for name in self.SIGNALS:
            number = getattr(signal, name, None)
            if number is None:  # SIGUSR1 does not exist on Windows
                continue
            with contextlib.suppress(ValueError):  # only the main thread may install handlers
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        self.received = signal.Signals(number).name

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def stop_requested(stop: StopRequest, run: Run) -> bool:
    """Whether any rank received a stop signal (every rank must stop at the same step)."""
    if not run.dist.is_distributed:
        return stop.received is not None
    return bool(distributed.any_rank(torch.tensor(stop.received is not None, device=run.device)))


BAD_VIDEOS = "bad_videos.txt"


class BadClipLog:
    """Every video that failed to decode: a warning, a line in RUN/bad_videos.txt (path, tab, reason), and a count in
    metrics.jsonl. Past `max_fraction` of the dataset the run stops with exit 3 naming the files."""

    def __init__(self, path: Path, dataset_size: int, max_fraction: float, reporter: Reporter, main: bool = True):
        self.path, self.dataset_size, self.max_fraction, self.reporter = path, dataset_size, max_fraction, reporter
        self.main = main  # only rank 0 writes the file
        self.seen: dict[str, str] = {}
        self.lost: dict[str, int] = {}  # videos each failure lost: 1, or a damaged shard's samples
        self.unshared: list[BadClip] = []  # found on this rank since the last share()
        if path.exists():  # a resumed run keeps counting the videos it already found bad
            for line in path.read_text().splitlines():
                video, _, rest = line.partition("\t")
                reason, _, count = rest.partition("\t")
                self.seen[video], self.lost[video] = reason, int(count) if count.isdigit() else 1

    @property
    def count(self) -> int:
        """Videos lost so far."""
        return sum(self.lost.values())

    def record(self, failures: list[BadClip], batch_valid: bool) -> None:
        """Log new failures; raise DataError past the allowed fraction or when no replacement clip decoded."""
        self.unshared += failures
        self._add(failures)
        self._check(batch_valid)

    def share(self) -> None:
        """Tell every rank what the others found (at log steps), so all count the same and stop together."""
        found, self.unshared = distributed.gather(self.unshared), []
        self._add([bad for rank_found in found for bad in rank_found])
        self._check(True)

    def _add(self, failures: list[BadClip]) -> None:
        for bad in failures:
            if bad.path in self.seen:
                continue
            self.seen[bad.path], self.lost[bad.path] = bad.reason, bad.count
            if self.main:
                with naming(self.path), open(self.path, "a") as f:
                    f.write(f"{bad.path}\t{bad.reason}" + (f"\t{bad.count}\n" if bad.count > 1 else "\n"))
            what = f"{bad.count} videos of a damaged shard" if bad.count > 1 else "a video that failed to decode"
            self.reporter.notice(f"warning: skipped {what}: {bad.message}")

    def _check(self, batch_valid: bool) -> None:
        too_many = self.count > self.max_fraction * self.dataset_size
        if too_many or not batch_valid:
            names = ", ".join(list(self.seen)[:3]) + (", ..." if len(self.seen) > 3 else "")
            why = (
                f"{self.count} of {self.dataset_size} videos failed to decode "
                f"(more than data.max_bad_fraction {self.max_fraction})"
                if too_many
                else "no decodable replacement clip was found"
            )
            raise DataError(f"{why}: {names}; see {self.path}")


def ensure_finite(nonfinite: torch.Tensor, run: Run, step: int) -> None:
    """Stop with exit 4 when any loss so far was NaN/inf (on any rank); nothing after the last good checkpoint is
    saved."""
    if bool(distributed.any_rank(nonfinite.clone())):
        found = list_checkpoints(run.out)
        kept = f"the last good checkpoint is {found[-1][1]}" if found else "no checkpoint was written yet"
        raise NonFiniteLossError(f"loss became non-finite by step {step}; stopped, {kept}")
