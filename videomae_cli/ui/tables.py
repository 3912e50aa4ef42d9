"""Rich tables for the screen: evaluation reports, predictions, the account of a conversion, prepare-data's summary
and the doctor's checks and data pace.

The layers below return numbers and records (`infer.metrics` reports, `interop.convert.Conversion`, `PrepareResult`,
doctor `Check`s); how they look on a terminal is decided here, so that nothing below the UI imports rich.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from videomae_cli.data.manifest import CLASSES_FILE
from videomae_cli.data.prepare.outputs import REPORT_FILE, SPLITS
from videomae_cli.data.shards.index import INDEX_FILE, SHARDS_DIR
from videomae_cli.doctor import FAIL, OK, WARN, Check, DataPace
from videomae_cli.progress import format_duration

if TYPE_CHECKING:  # the converter and the inference layer import torch: only where they are used
    from videomae_cli.data.prepare.pipeline import PrepareResult
    from videomae_cli.infer.predict import Prediction
    from videomae_cli.interop.convert import Conversion


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
    loss = f"Reconstruction loss ({report['target']} target, {mask['type']} mask {mask['ratio']})"
    table.add_row(loss, f"{report['reconstruction_loss']:.4f}")
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


def predictions_table(predictions: Iterable[Prediction], checkpoint: str | Path) -> Table:
    """The top classes of each video, with their probabilities."""
    table = Table(title=f"predictions of {checkpoint}", title_justify="left")
    table.add_column("video")
    table.add_column("top classes (probability)")
    for p in predictions:
        table.add_row(p.video, ", ".join(f"{name} {prob:.1%}" for _, name, prob in p.top))
    return table


def summary_table(conversion: Conversion, out: Path) -> Table:
    """What was mapped, inferred (and from where), and dropped."""
    from videomae_cli.interop.convert import lookup

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


_MAX_CLASS_ROWS = 30
_MAX_PROBLEM_ROWS = 10


def prepare_summary(result: PrepareResult) -> Group:
    """prepare-data's summary: videos per class and split, the stream spread, the problems, and the files written."""
    report = result.report
    splits = [name for name in SPLITS if name != "test" or result.splits["test"]]
    per_class = Table(title="Videos per class", title_justify="left")
    for column in ("#", "class", *splits, "total"):
        per_class.add_column(column, justify="left" if column == "class" else "right")
    for number, (name, counts) in enumerate(report["classes"].items()):
        if number == _MAX_CLASS_ROWS:
            per_class.add_row("…", f"{len(report['classes']) - number} more in {REPORT_FILE}")
            break
        index = str(number) if result.labelled else "-"
        per_class.add_row(index, name, *(str(counts[s]) for s in splits), str(sum(counts.values())))
    parts: list[Any] = [per_class, _videos_table(report)]
    if result.problems:
        problems = Table(title=f"Left out: {len(result.problems)}", title_justify="left")
        problems.add_column("video", overflow="fold")
        problems.add_column("reason", overflow="fold")
        for problem in result.problems[:_MAX_PROBLEM_ROWS]:
            problems.add_row(problem.path, problem.reason)
        if len(result.problems) > _MAX_PROBLEM_ROWS:
            problems.add_row("…", f"{len(result.problems) - _MAX_PROBLEM_ROWS} more in {REPORT_FILE}")
        parts.append(problems)
    written = ", ".join(f"{name}.csv ({len(result.splits[name])})" for name in splits)
    parts.append(f"wrote {written}, {CLASSES_FILE}, {REPORT_FILE} in {result.out}")
    if result.shards is not None:
        counts = ", ".join(
            f"{split} {len(shards)} shard{'s' * (len(shards) != 1)} ({result.shards.samples(split)} videos, "
            f"{format_bytes(sum(shard.bytes for shard in shards))})"
            for split, shards in result.shards.splits.items()
        )
        parts.append(f"wrote shards: {counts} in {result.out / SHARDS_DIR}, with {INDEX_FILE}")
    return Group(*parts)


def format_bytes(count: float) -> str:
    """A byte count in the largest binary unit that keeps it at or above 1 (`512 B`, `3.4 MiB`, `1.2 TiB`)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def _videos_table(report: dict[str, Any]) -> Table:
    table = Table(title="Videos", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    counts, videos = report["counts"], report["videos"]
    table.add_row("usable", f"{counts['usable']} of {counts['listed']} listed")
    if videos:
        d, f, n = videos["duration_s"], videos["fps"], videos["frames"]
        table.add_row("duration", f"{d['min']:.1f} / {d['median']:.1f} / {d['max']:.1f} s (min/median/max)")
        table.add_row("total", format_duration(d["total"]))
        table.add_row("frames", f"{n['min']} / {n['median']:g} / {n['max']}")
        table.add_row("fps", f"{f['min']:g} / {f['median']:g} / {f['max']:g}")
        table.add_row("resolution", _top(videos["resolution"]))
        table.add_row("codec", _top(videos["codec"]))
    probe = report["probe"]
    table.add_row("probed", f"{probe['probed']} probed, {probe['cached']} cached")
    table.add_row("decoder", f"{report['settings']['decoder']} (checked on every video)")
    if report["transcode"]:
        t = report["transcode"]
        table.add_row("transcoded", f"{t['transcoded']} new, {t['reused']} reused, {t['failed']} failed")
        if t.get("bytes_before"):
            sizes = f"{format_bytes(t['bytes_before'])} → {format_bytes(t['bytes_after'])}"
            table.add_row("bytes", f"{sizes} in {t['files']} files ({t['bytes_ratio']:.2f}×)")
        speed = t.get("decode_speed")
        if speed:
            table.add_row(
                "reader",
                f"{speed['source_clips_per_second']:.1f} → {speed['prepared_clips_per_second']:.1f} clips/s per worker "
                f"({speed['backend']}, {speed['videos']} videos)",
            )
    return table


def _top(counts: dict[str, int], limit: int = 4) -> str:
    shown = ", ".join(f"{key} ({count})" for key, count in list(counts.items())[:limit])
    return shown + (f", … {len(counts) - limit} more" if len(counts) > limit else "")


_DOCTOR_STYLES = {OK: "green", WARN: "yellow", FAIL: "bold red"}


def doctor_table(checks: Iterable[Check]) -> Table:
    """`videomae doctor`'s report: check, status, detail, fix (details and fixes printed as written, not as markup)."""
    table = Table(title="videomae doctor", title_justify="left")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        status = f"[{_DOCTOR_STYLES.get(check.status, '')}]{check.status}[/]"
        table.add_row(check.name, status, Text(check.detail), Text(check.fix))
    return table


def pace_table(report: DataPace) -> Table:
    """`videomae doctor --data`: per backend, the clips one loader worker makes per second, the time per clip, and the
    workers the asked training speed needs (red where that is more than the machine's cores)."""
    videos = f"{report.sampled} of {report.listed} videos of {report.source}"
    title = f"data pace: {videos} (a worker is one process, one thread)"
    table = Table(title=Text(title), title_justify="left")
    speed = report.steps_per_second
    shown_speed = f"{speed:.1f}" if speed == round(speed, 1) else f"{speed:g}"  # 1.0, 0.25: as people write them
    need = f"workers for {shown_speed} steps/s at batch {report.batch_size}"
    for column in ("backend", "clips/s per worker", "ms per clip", need, "clips timed", "failed"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    for pace in report.paces:
        name = f"{pace.backend} (auto)" if pace.backend == report.auto else pace.backend
        workers = report.workers(pace)
        shown = "—" if workers is None else f"[bold red]{workers}[/]" if report.bottleneck(pace) else str(workers)
        ms = pace.ms_per_clip
        rate = f"{pace.clips_per_second:.1f}" if pace.clips else "—"
        failed = str(len(pace.failures)) if pace.failures else ""
        table.add_row(name, rate, "—" if ms is None else f"{ms:.1f}", shown, str(pace.clips), failed)
    return table
