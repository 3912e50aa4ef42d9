"""The one way every command's work reports progress: the Reporter protocol that the lower layers call.

Commands run in stages (a training run, an evaluation pass, prepare-data's probe and transcode). A stage starts with
its size, advances as units finish, may log metrics, and finishes; notices are one-line remarks at any time. The CLI
picks the implementation (ui/progress.py: a rich bar, plain lines, or nothing); nothing below the CLI prints.
"""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    """What a command reports to."""

    def start(self, task: str, total: int, done: int = 0, header: str | None = None) -> None:
        """A stage named `task` of `total` units begins, `done` of them finished before (a resumed run); `header` is
        a line saying what runs."""

    def advance(self, count: int = 1) -> None:
        """`count` more units of the stage are done."""

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Metrics at `step` of a training stage (loss, lr, clips/s, validation accuracies)."""

    def status(self, text: str) -> None:
        """A one-line account of what is happening ("13 videos listed"), shown only while progress is shown."""

    def notice(self, text: str) -> None:
        """A one-line remark worth seeing even with progress off (a skipped video, a fallback, a resumed run)."""

    def finish(self) -> None:
        """The stage is done."""

    def close(self) -> None:
        """The command is done (or failed): release the display."""


def format_duration(seconds: float) -> str:
    """1h02m03s / 4m05s / 12s."""
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
