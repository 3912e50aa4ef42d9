"""Rich tables for the screen: evaluation reports and the account of a conversion.

The layers below return numbers and records (`engine.metrics` reports, `interop.convert.Conversion`); how they look
on a terminal is decided here, so that no engine or converter module imports rich.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from videomae_cli.interop.convert import Conversion, lookup


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100.0 * value:.2f}%"


def report_table(report: dict[str, Any], title: str) -> Table:
    """Summary table for the screen: top-1, top-5, mean class accuracy (percent, 2 decimals) and the video count.

    Per-class rows are a separate table (`per_class_table`) so that the caller decides whether to show them.
    """
    table = Table(title=title)
    table.add_column("Metric")
    table.add_column("Value", justify="right")
    if report.get("kind") == "pretrain":
        return _pretrain_rows(table, report)
    num_classes = report.get("num_classes")
    top5_label = "Top-5"
    if isinstance(num_classes, int) and num_classes < 5:
        # With fewer than 5 classes top-5 is trivially 100%; say so rather than let it look like a result.
        top5_label = f"Top-5 (k clamped to {num_classes})"
    table.add_row("Top-1", _percent(report["top1"]))
    table.add_row(top5_label, _percent(report["top5"]))
    table.add_row("Mean class accuracy", _percent(report["mean_class_accuracy"]))
    table.add_row("Videos", str(report["num_videos"]))
    return table


def _pretrain_rows(table: Table, report: dict[str, Any]) -> Table:
    """The frozen-encoder numbers of a pretrain checkpoint."""
    mask = report["mask"]
    table.add_row(f"Reconstruction loss ({mask['type']} mask {mask['ratio']})", f"{report['reconstruction_loss']:.4f}")
    knn, probe = report.get("knn"), report.get("linear_probe")
    table.add_row(f"k-NN top-1 (k={knn['k']})" if knn else "k-NN top-1", _percent(knn and knn["top1"]))
    table.add_row("Linear probe top-1", _percent(probe and probe["top1"]))
    table.add_row("Videos", str(report["num_videos"]))
    return table


def per_class_table(report: dict[str, Any], limit: int | None = None) -> Table:
    """Per-class rows (index, name, support, accuracy %) in class-index order; with `limit`, only the first
    `limit` rows followed by a `… N more` row."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be non-negative, got {limit}")
    rows = sorted(report["per_class"], key=lambda row: row["index"])
    shown = rows if limit is None else rows[:limit]
    table = Table(title="Per-class accuracy")
    table.add_column("#", justify="right")
    table.add_column("Class")
    table.add_column("Support", justify="right")
    table.add_column("Accuracy", justify="right")
    for row in shown:
        # Text, not a str: a class name like "[bold]" must print literally rather than as rich markup.
        table.add_row(str(row["index"]), Text(row["name"]), str(row["support"]), _percent(row["accuracy"]))
    if len(rows) > len(shown):
        table.add_row("", f"… {len(rows) - len(shown)} more", "", "")
    return table


_MAPPING = {
    "official": "names unchanged (the official layout is ours)",
    "maest": "q/k/v fused into attn.qkv, pos_embed_* → pos_embed.*, decoder_* → decoder.*",
    "hf": "HF names → official names, query/key/value fused into attn.qkv",
}


def summary_table(conversion: Conversion, out: Path) -> Table:
    """What was mapped, inferred (and from where), and dropped."""
    table = Table(title=f"convert: {conversion.description} → {out}", show_lines=False, title_justify="left")
    table.add_column("what")
    table.add_column("value")
    table.add_column("from / why")
    source = conversion.source
    read = "; ".join(source.steps) or "as stored"
    table.add_row("source", str(source.path), read)
    mapped = f"{len(source.state_dict)} → {len(conversion.state_dict)} tensors"
    table.add_row("mapped", mapped, _MAPPING[source.layout])
    for key, setting in sorted(conversion.settings.items()):
        table.add_row(key, str(lookup(conversion.spec, key)), setting.origin)
    if conversion.classes is not None:
        shown = ", ".join(conversion.classes[:5]) + (", ..." if len(conversion.classes) > 5 else "")
        origin = "config.json id2label" if source.config and source.config.get("id2label") else "numbers (no names)"
        table.add_row("classes", f"{len(conversion.classes)}: {shown}", origin)
    for key, why in conversion.dropped:
        table.add_row("dropped", key, why)
    for note in conversion.notes:
        table.add_row("note", note, "")
    return table
