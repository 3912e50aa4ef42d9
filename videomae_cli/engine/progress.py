"""Progress and metrics reporting: the only way the engine talks to the user.

The engine calls a Reporter; the CLI picks which one: a rich progress bar on a terminal, plain flushed lines for
SLURM logs and pipes, or nothing. Metrics always go to RUN/metrics.jsonl.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Reporter(Protocol):
    """What the engine reports to: run start, every step, every log step, notices, and the end."""

    def start(self, total_steps: int, start_step: int, header: str) -> None: ...

    def step(self, step: int) -> None: ...

    def log(self, step: int, metrics: dict[str, Any]) -> None: ...

    def notice(self, text: str) -> None: ...

    def close(self) -> None: ...


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


def format_duration(seconds: float) -> str:
    """1h02m03s / 4m05s / 12s."""
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class PlainReporter:
    """One flushed line per log step — readable in SLURM logs and when piped."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.total = 0
        self.t0 = time.perf_counter()
        self.first_step = 0

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def start(self, total_steps: int, start_step: int, header: str) -> None:
        self.total, self.first_step, self.t0 = total_steps, start_step, time.perf_counter()
        self._write(header)

    def step(self, step: int) -> None:
        pass

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        elapsed = time.perf_counter() - self.t0
        done = step - self.first_step
        eta = elapsed / done * (self.total - step) if done else 0.0
        epoch = f" | epoch {metrics['epoch']:.2f}" if "epoch" in metrics else ""
        if is_validation(metrics):
            self._write(f"step {step}/{self.total}{epoch} | {format_metrics(metrics)}")
            return
        self._write(f"step {step}/{self.total}{epoch} | {format_metrics(metrics)} | eta {format_duration(eta)}")

    def notice(self, text: str) -> None:
        self._write(text)

    def close(self) -> None:
        pass


class RichReporter:
    """A live progress bar: step, loss, lr, clips/s, elapsed and ETA."""

    def __init__(self, console: Console | None = None, label: str = "train") -> None:
        self.console = console or Console()
        self.progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[summary]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task = None

    def start(self, total_steps: int, start_step: int, header: str) -> None:
        self.console.print(header)
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step, summary="")

    def step(self, step: int) -> None:
        self.progress.update(self.task, completed=step)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if is_validation(metrics):
            self.progress.console.print(f"step {step} | {format_metrics(metrics)}")
        else:
            self.progress.update(self.task, completed=step, summary=format_metrics(metrics))

    def notice(self, text: str) -> None:
        self.progress.console.print(text)

    def close(self) -> None:
        self.progress.stop()


class SilentReporter:
    """Reports nothing (`--progress off`); metrics.jsonl is still written."""

    def start(self, total_steps: int, start_step: int, header: str) -> None:
        pass

    def step(self, step: int) -> None:
        pass

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        pass

    def notice(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)  # "off" silences progress, never warnings

    def close(self) -> None:
        pass


class OtherRankReporter(SilentReporter):
    """Ranks above 0 of a distributed run: rank 0 reports for everyone (failures still raise on their own rank)."""

    def notice(self, text: str) -> None:
        pass


def make_reporter(mode: str, label: str = "train", rank: int = 0) -> Reporter:
    """auto → a rich bar (named `label`) on a terminal, plain lines otherwise; nothing on ranks above 0."""
    if rank:
        return OtherRankReporter()
    if mode == "auto":
        mode = "rich" if sys.stdout.isatty() else "plain"
    if mode == "rich":
        return RichReporter(label=label)
    return PlainReporter() if mode == "plain" else SilentReporter()


def step_counter(reporter: Reporter, start: int = 0) -> Callable[[int], None]:
    """A callback that adds its argument to a running count (from `start`) and shows it as the reporter's step."""
    done = [start]

    def advance(count: int) -> None:
        done[0] += count
        reporter.step(done[0])

    return advance


class MetricsLog:
    """Appends one JSON object per log step to metrics.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (a resumed run rewrites them)."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in keep))
