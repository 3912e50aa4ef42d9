"""Where a run's numbers go: `metrics.jsonl` always, and the loggers `run.loggers` asks for.

- `tensorboard`: event files in RUN/tb (`torch.utils.tensorboard`), training values under `train/`, validation under
  `val/`; a resumed run purges what its previous attempt logged past the checkpoint, as metrics.jsonl does.
- `wandb`: one Weights & Biases run per run directory (its id kept in RUN/wandb/run_id, so a resumed run continues the
  same one), the resolved spec as its config; `WANDB_MODE=offline` and every other WANDB_* variable work as usual.

Values go out once per log window and after validation (never per step). Only rank 0 logs. A logger that fails is
dropped with one warning and the run goes on: metrics.jsonl, which every reader of a run directory relies on (resume,
curves.png, `videomae plot`), is the one record that must not be lost.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from videomae_cli.checkpoint import CURVES_FILE, METRICS_FILE
from videomae_cli.train.run import TrainSpec
from videomae_cli.train.state import MetricsLog
from videomae_cli.viz.curves import read_curves, write_curves

TENSORBOARD_DIR = "tb"
WANDB_DIR = "wandb"
WANDB_ID_FILE = "run_id"
# Python packages each optional logger needs, and the extra that installs them
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
NOT_PLOTTED = frozenset({"step", "epoch"})
# curves.png is redrawn at checkpoints at most this often (drawing costs about a second of CPU); always at the end
DRAW_EVERY_S = 60.0


class Logger(Protocol):
    name: str
    description: str  # where it writes, said once when the run starts

    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def installed(name: str) -> bool:
    """Whether the package an optional logger needs can be imported here."""
    return importlib.util.find_spec(PACKAGES[name]) is not None


def chosen_loggers(requested: list[str] | None) -> tuple[list[str], list[str]]:
    """(the optional loggers to open, notices): `None` means tensorboard where installed; a requested logger that is
    not installed is left out with a notice naming the field and what to install."""
    if requested is None:
        return (["tensorboard"] if installed("tensorboard") else []), []
    names, notices = [], []
    for name in dict.fromkeys(requested):  # in order, once each
        if name == "jsonl":
            continue  # always written
        if installed(name):
            names.append(name)
        else:
            notices.append(
                f'run.loggers: {name} is not installed, so the run logs without it (pip install "videomae-cli[{name}]")'
            )
    return names, notices


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's numbers under logger tags: `val_top1` → `val/top1`, `best_top1` → `val/best_top1`, the rest
    `train/...` (step and epoch are the axis, not values)."""
    tags = {}
    for key, value in record.items():
        if key in NOT_PLOTTED or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if key.startswith("val_"):
            tags[f"val/{key[4:]}"] = float(value)
        elif key.startswith("best_"):
            tags[f"val/{key}"] = float(value)
        else:
            tags[f"train/{key}"] = float(value)
    return tags


class TensorBoardLogger:
    """Event files in RUN/tb, flushed every log window (a killed run keeps what it logged)."""

    name = "tensorboard"

    def __init__(self, out: Path, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard hides what an earlier attempt logged at or after it (the steps being redone)
        self.writer = SummaryWriter(str(out / TENSORBOARD_DIR), purge_step=start_step + 1 if start_step else None)
        self.description = f"tensorboard (tensorboard --logdir {out / TENSORBOARD_DIR})"

    def write(self, record: dict[str, Any]) -> None:
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def new_run_id() -> str:
    """A W&B run id: 8 random lowercase letters and digits, as wandb makes them."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class WandbLogger:
    """One W&B run per run directory, continued on resume; the resolved spec is its config."""

    name = "wandb"

    def __init__(self, spec: TrainSpec, out: Path) -> None:
        # Silent, wandb never prompts: without it, a run on a terminal with no W&B login stops at wandb's account
        # menu (nothing here prompts); instead wandb.init raises and the run goes on without this logger.
        os.environ["WANDB_SILENT"] = "true"
        import wandb

        folder = out / WANDB_DIR
        folder.mkdir(parents=True, exist_ok=True)
        id_file = folder / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else new_run_id()
        id_file.write_text(run_id + "\n")
        options = spec.run.wandb
        self.run = wandb.init(
            project=options.project,
            entity=options.entity,
            name=options.name or out.name,
            group=options.group,
            tags=options.tags or None,
            config=spec.model_dump(mode="json"),
            dir=str(out),
            id=run_id,
            resume="allow",
            job_type=spec.kind,
            settings=wandb.Settings(silent=True, console="off"),  # our progress owns the terminal; we say where
        )
        where = "offline, `wandb sync` uploads it" if self.run.settings.mode == "offline" else self.run.url
        self.description = f"wandb ({self.run.project}/{self.run.name}: {where})"

    def write(self, record: dict[str, Any]) -> None:
        self.run.log(scalars(record), step=record["step"])

    def close(self) -> None:
        self.run.finish()


def _open(name: str, spec: TrainSpec, out: Path, start_step: int) -> Logger:
    if name == "tensorboard":
        return TensorBoardLogger(out, start_step)
    return WandbLogger(spec, out)


class RunLog:
    """metrics.jsonl plus the optional loggers: `write` each record, `close` at the end. An optional logger that raises
    (anything: a full disk, a network hiccup, a bug in a logging library) is dropped with one warning."""

    def __init__(self, spec: TrainSpec, out: Path, start_step: int, say: Callable[[str], None]) -> None:
        self.out, self.picture, self.drawing, self.drawn_at = out, out / CURVES_FILE, True, -float("inf")
        self.metrics = MetricsLog(out / METRICS_FILE)
        self.say = say
        names, notices = chosen_loggers(spec.run.loggers)
        for notice in notices:
            say(notice)
        self.loggers: list[Logger] = []
        for name in names:
            self._attempt(
                f"the {name} logger", lambda name=name: self.loggers.append(_open(name, spec, out, start_step))
            )
        if self.loggers and spec.run.loggers is not None:  # the default run stays as quiet as it always was
            say("logging to " + ", ".join(logger.description for logger in self.loggers))

    def write(self, record: dict[str, Any]) -> None:
        self.metrics.write(record)
        for logger in list(self.loggers):
            if not self._attempt(f"the {logger.name} logger", lambda logger=logger: logger.write(record)):
                self.loggers.remove(logger)

    def draw(self, title: str, final: bool) -> None:
        """Redraw RUN/curves.png from metrics.jsonl at a checkpoint: at most every DRAW_EVERY_S seconds, and always
        when the run ends or stops. A failure is one warning per run (the picture is a view of the log, not part of
        the record)."""
        if not self.drawing or (not final and time.monotonic() - self.drawn_at < DRAW_EVERY_S):
            return
        self.drawn_at = time.monotonic()
        if not self._attempt(
            "drawing curves.png", lambda: write_curves([read_curves(self.out)], self.picture, title=title)
        ):
            self.drawing = False

    def close(self) -> None:
        for logger in self.loggers:
            self._attempt(f"the {logger.name} logger", logger.close)
        self.loggers = []

    def _attempt(self, name: str, action: Callable[[], Any]) -> bool:
        """Run one logger's action; False (after a warning) when it raised."""
        try:
            action()
        except Exception as e:  # a logger must never stop training: whatever it raises, say so and go on without it
            reason = " ".join(str(e).split())[:300] or type(e).__name__
            self.say(f"warning: {name} failed ({reason}); the run goes on without it")
            return False
        return True
