"""Pictures of training runs, drawn from their metrics.jsonl: RUN/curves.png for one run, `videomae plot` for several.

Panels, each against the optimizer step or against clips seen (step × global batch, so runs with different batch
sizes line up by the data they consumed): training loss (log scale), learning rate, throughput, the share of time
spent waiting for data, and, when any run validated, validation top-1. Several runs share the panels, one colour
per run. The logs are read as they are on disk, so a picture can be drawn while a run is still going.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from videomae_cli.checkpoint import METRICS_FILE, atomic_write
from videomae_cli.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Axis = Literal["step", "clips"]
AXES: tuple[str, ...] = ("step", "clips")
LOG_SPAN = 3.0  # a log-scale panel goes linear when its values span less than this factor


@dataclass(frozen=True)
class Panel:
    """One plot: the metrics.jsonl field it shows, how to label it, and how to scale its values."""

    field: str
    title: str
    unit: str
    scale: float = 1.0
    log: bool = False


TRAINING_PANELS = (
    Panel("loss", "training loss", "loss", log=True),
    Panel("lr", "learning rate", "lr"),
    Panel("clips_per_s", "throughput", "clips / s"),
    Panel("data_wait", "waiting for data", "% of step time", scale=100.0),
)
VALIDATION_PANEL = Panel("val_top1", "validation top-1", "top-1 (%)", scale=100.0)


@dataclass(frozen=True)
class RunCurves:
    """A run's log: the log-window records and the validation records, in step order."""

    name: str
    training: list[dict[str, Any]]
    validation: list[dict[str, Any]]

    def clips_at(self, step: int) -> float | None:
        """Clips seen after `step` optimizer steps, from the training records' `clips` (None if they have none)."""
        per_step = next((r["clips"] / r["step"] for r in self.training if r.get("clips") and r["step"]), None)
        return None if per_step is None else step * per_step


def read_curves(run: Path, name: str | None = None) -> RunCurves:
    """The records of RUN/metrics.jsonl (RUN may also name the file). ConfigError naming RUN when there is none or
    it is not a metrics log; a line cut short by a kill mid-write (the last) is skipped."""
    file = run if run.is_file() else run / METRICS_FILE
    if not file.is_file():
        raise ConfigError(f"RUN: no {METRICS_FILE} in {run} (not a training run directory, or it logged nothing yet)")
    training, validation = [], []
    lines = file.read_text(errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                continue  # the last line of a run killed while writing it
            raise ConfigError(f"RUN: {file} line {number} is not JSON: not a metrics log") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise ConfigError(f"RUN: {file} line {number} has no step: not a metrics log")
        if "loss" in record:
            training.append(record)
        elif VALIDATION_PANEL.field in record:
            validation.append(record)
    if not training and not validation:
        raise ConfigError(f"RUN: {file} holds no logged step yet")
    return RunCurves(name or _run_name(run), training, validation)


def _run_name(run: Path) -> str:
    directory = run.parent if run.is_file() else run
    return directory.resolve().name


def curves_figure(runs: list[RunCurves], x: Axis = "step", title: str | None = None) -> Figure:
    """The panels for `runs` against `x` as a matplotlib Figure (no pyplot: nothing global)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if x == "clips":
        missing = [run.name for run in runs if run.clips_at(1) is None]
        if missing:
            raise ConfigError(f"x: {', '.join(missing)} logged no clip counts; compare by step")
    panels = [*TRAINING_PANELS, *([VALIDATION_PANEL] if any(run.validation for run in runs) else [])]
    columns = 3 if len(panels) > 4 else 2
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(4.6 * columns, 3.0 * rows + 0.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for ax, panel in zip(axes, panels, strict=False):
        for run, colour in zip(runs, colours, strict=True):
            records = run.validation if panel is VALIDATION_PANEL else run.training
            _draw(ax, run, records, panel, x, colour, marker=panel is VALIDATION_PANEL)
        _label(ax, panel, x)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    if len(runs) > 1:
        handles = [axes[0].plot([], [], color=c, label=run.name)[0] for run, c in zip(runs, colours, strict=True)]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(runs), 4), fontsize=9)
    fig.suptitle(title or (runs[0].name if len(runs) == 1 else f"{len(runs)} runs"), fontsize=12)
    return fig


def _draw(ax: Axes, run: RunCurves, records: list[dict[str, Any]], panel: Panel, x: Axis, colour: str, marker: bool):
    points = [(r["step"], r[panel.field]) for r in records if isinstance(r.get(panel.field), int | float)]
    if panel.log:
        points = [(step, value) for step, value in points if value > 0]
    if not points:
        return
    xs = [step if x == "step" else run.clips_at(step) for step, _ in points]
    ys = [value * panel.scale for _, value in points]
    ax.plot(xs, ys, color=colour, marker="o" if marker else None, markersize=3, linewidth=1.4)


def _label(ax: Axes, panel: Panel, x: Axis) -> None:
    ax.set_title(panel.title, fontsize=10)
    ax.set_ylabel(panel.unit, fontsize=9)
    ax.set_xlabel("optimizer step" if x == "step" else "clips seen", fontsize=9)
    values = [y for line in ax.lines for y in line.get_ydata()]
    if panel.log and values and max(values) > LOG_SPAN * min(values):  # a narrow range reads better on a linear axis
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)


def write_curves(runs: list[RunCurves], out: Path, x: Axis = "step", title: str | None = None) -> None:
    """Draw `runs` and write the PNG atomically (a reader never sees half a picture)."""
    fig = curves_figure(runs, x, title)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    fig.clear()
