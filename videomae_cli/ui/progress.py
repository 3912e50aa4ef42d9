"""The reporters every command's progress goes to (the Reporter protocol: videomae_cli/progress.py).

The CLI picks one by `--progress`: a rich progress bar on a terminal, plain flushed lines for SLURM logs and pipes,
or nothing. Metrics always go to RUN/metrics.jsonl as well (train/).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from videomae_cli.progress import Reporter, format_duration

_ACCURACIES = {
    "val_top1": "val top-1",
    "val_top5": "val top-5",
    "val_ema_top1": "EMA val top-1",
    "best_top1": "best top-1",
}


def format_metrics(metrics: dict[str, Any]) -> str:
    """`loss 0.8123 | lr 3.1e-06 | 41.2 clips/s`-style summary of the usual metrics (accuracies in %)."""
    parts = []
    if "loss" in metrics:
        parts.append(f"loss {metrics['loss']:.4f}")
    if "lr" in metrics:
        parts.append(f"lr {metrics['lr']:.2e}")
    if "clips_per_s" in metrics:
        parts.append(f"{metrics['clips_per_s']:.1f} clips/s")
    parts += [f"{name} {100 * metrics[key]:.2f}%" for key, name in _ACCURACIES.items() if key in metrics]
    return " | ".join(parts)


def is_validation(metrics: dict[str, Any]) -> bool:
    """Validation records are printed as lines of their own, not folded into the progress bar."""
    return any(key.startswith("val_") for key in metrics)


class PlainReporter:
    """Flushed lines for SLURM logs and pipes: the header of each stage, one line per log step, a heartbeat line
    (`task: done/total`) when nothing was written for `every` seconds, and a line when a stage finishes."""

    def __init__(self, stream: TextIO | None = None, every: float = 10.0) -> None:
        self.stream = stream or sys.stdout
        self.every = every
        self.task, self.total, self.first, self.done = "", 0, 0, 0
        self.t0 = self.last = time.perf_counter()

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
        self.last = time.perf_counter()

    def start(self, task: str, total: int, done: int = 0, header: str | None = None) -> None:
        self.task, self.total, self.first, self.done = task, total, done, done
        self.t0 = self.last = time.perf_counter()
        if header is not None:
            self._write(header)

    def advance(self, count: int = 1) -> None:
        self.done += count
        if time.perf_counter() - self.last >= self.every:
            self._write(f"{self.task}: {self.done}/{self.total}")

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        elapsed = time.perf_counter() - self.t0
        done = step - self.first
        eta = elapsed / done * (self.total - step) if done else 0.0
        epoch = f" | epoch {metrics['epoch']:.2f}" if "epoch" in metrics else ""
        if is_validation(metrics):
            self._write(f"step {step}/{self.total}{epoch} | {format_metrics(metrics)}")
            return
        self._write(f"step {step}/{self.total}{epoch} | {format_metrics(metrics)} | eta {format_duration(eta)}")

    def status(self, text: str) -> None:
        self._write(text)

    def notice(self, text: str) -> None:
        self._write(text)

    def finish(self) -> None:
        self._write(f"{self.task}: {self.done}/{self.total} done in {time.perf_counter() - self.t0:.1f}s")

    def close(self) -> None:
        """Nothing to release."""


class RichReporter:
    """A live progress bar per stage: the task, done/total, the latest metrics, elapsed time and ETA."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[summary]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task: Any = None

    def start(self, task: str, total: int, done: int = 0, header: str | None = None) -> None:
        if header is not None:
            self.console.print(header, markup=False, highlight=False)
        self.progress.start()
        self.task = self.progress.add_task(task, total=total, completed=done, summary="")

    def advance(self, count: int = 1) -> None:
        self.progress.advance(self.task, count)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if is_validation(metrics):
            self.progress.console.print(f"step {step} | {format_metrics(metrics)}")
        else:
            self.progress.update(self.task, completed=step, summary=format_metrics(metrics))

    def status(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

    def notice(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

    def finish(self) -> None:
        self.progress.stop()

    def close(self) -> None:
        self.progress.stop()


class SilentReporter:
    """Reports no progress (`--progress off`); notices still go to stderr, since "off" never silences warnings.
    metrics.jsonl is still written."""

    def start(self, task: str, total: int, done: int = 0, header: str | None = None) -> None:
        pass

    def advance(self, count: int = 1) -> None:
        pass

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def notice(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


class OtherRankReporter(SilentReporter):
    """Ranks above 0 of a distributed run: rank 0 reports for everyone (failures still raise on their own rank)."""

    def notice(self, text: str) -> None:
        pass


def make_reporter(mode: str, rank: int = 0) -> Reporter:
    """auto → a rich bar on a terminal, plain lines otherwise; nothing on ranks above 0."""
    if rank:
        return OtherRankReporter()
    if mode == "auto":
        mode = "rich" if sys.stdout.isatty() else "plain"
    if mode == "rich":
        return RichReporter()
    return PlainReporter() if mode == "plain" else SilentReporter()
