"""Where a run's numbers go: TensorBoard event files and a Weights & Biases run that hold what metrics.jsonl holds,
a logger that fails or is missing never failing the run, and the pictures: RUN/curves.png and `videomae plot`."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from videomae_cli.cli import app
from videomae_cli.config.resolve import resolve_spec
from videomae_cli.config.schema import FinetuneSpec, PretrainSpec
from videomae_cli.train import loggers
from videomae_cli.train.loggers import RunLog, TensorBoardLogger, chosen_loggers, scalars
from videomae_cli.train.loop import train
from videomae_cli.train.pretrain import setup
from videomae_cli.ui.progress import SilentReporter

TINY = ["model.name=test", "data.input_size=64", "data.num_frames=4", "data.sampling_rate=2", "data.num_workers=0"]
TINY += ["data.synthetic_videos=16", "optim.batch_size=2", "run.steps=6", "run.log_every=2", "run.save_every=0"]


class Notices(SilentReporter):
    def __init__(self) -> None:
        self.notices: list[str] = []

    def notice(self, text: str) -> None:
        self.notices.append(text)


def pretrain(out: Path, *sets: str) -> list[str]:
    """A tiny pretraining run on the built-in data, in this process; the notices it gave."""
    spec = resolve_spec(PretrainSpec, sets=[*TINY, *sets, f"run.out={out}"])
    reporter = Notices()
    train(setup(spec), reporter)
    return reporter.notices


def metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series TensorBoard's own reader finds under `folder`: {tag: [(step, value)]}."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    reader = EventMultiplexer().AddRunsFromDirectory(str(folder))
    reader.Reload()
    series: dict[str, list[tuple[int, float]]] = {}
    for run in reader.Runs():
        for tag in reader.GetAccumulator(run).Tags()["scalars"]:
            events = reader.Scalars(run, tag)
            series.setdefault(tag, []).extend((e.step, e.value) for e in events)
    return series


# --------------------------------------------------------------------------------------------------- TensorBoard


def test_a_default_run_writes_tensorboard_events_with_the_logged_values(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert not [
        n for n in pretrain(run) if "logging to" in n
    ]  # the default run is as quiet as ever: RUN/tb, as documented
    logged = metrics(run)
    series = tensorboard_scalars(run / "tb")
    assert [step for step, _ in series["train/loss"]] == [r["step"] for r in logged] == [2, 4, 6]
    for tag in ("loss", "lr", "clips_per_s", "data_wait", "clips"):
        values = [value for _, value in series[f"train/{tag}"]]
        np.testing.assert_allclose(values, [r[tag] for r in logged], rtol=1e-6)  # float32 in the event file
    assert "train/step" not in series and "train/epoch" not in series


def test_an_explicitly_requested_logger_says_where_it_writes(tmp_path: Path) -> None:
    notices = pretrain(tmp_path / "run", "run.loggers=[jsonl,tensorboard]")
    assert f"logging to tensorboard (tensorboard --logdir {tmp_path / 'run' / 'tb'})" in notices


def test_a_resumed_run_replaces_the_steps_it_redoes(tmp_path: Path) -> None:
    for start, values in ((0, [1.0, 2.0, 3.0, 4.0]), (2, [30.0, 40.0])):
        # TensorBoard reads a folder's event files in name order: the whole-second time the file was made, then the
        # writer's process and a per-process counter (as text: "10" before "9"). A real resume is later and in
        # another process; within this one, each attempt starts in a second of its own so that it sorts after.
        time.sleep(1 - time.time() % 1)
        logger = TensorBoardLogger(tmp_path, start_step=start)
        for offset, value in enumerate(values):
            logger.write({"step": start + offset + 1, "loss": value})
        logger.close()
    assert tensorboard_scalars(tmp_path / "tb")["train/loss"] == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]


def test_validation_values_go_under_val() -> None:
    record = {"step": 10, "epoch": 2.0, "val_top1": 0.5, "val_ema_top1": 0.4, "best_top1": 0.5, "loss": 1.2}
    assert scalars(record) == {"val/top1": 0.5, "val/ema_top1": 0.4, "val/best_top1": 0.5, "train/loss": 1.2}


# ---------------------------------------------------------------------------------------------------------- W&B


def wandb_records(run_folder: Path) -> list[Any]:
    """The records of an offline W&B run's .wandb file: the LevelDB log format (32 KiB blocks of records with a
    7-byte header: checksum, length, type FULL/FIRST/MIDDLE/LAST) holding wandb's own protobuf `Record`s."""
    from wandb.proto import wandb_internal_pb2

    [file] = run_folder.glob("run-*.wandb")
    data, block, header = file.read_bytes(), 32768, 7
    assert data[:4] == b":W&B"
    records, parts, position = [], [], header
    while position + header <= len(data):
        left = block - position % block
        if left < header:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + header])
        if length == 0 and kind == 0:  # zero padding at a block's end
            position += left
            continue
        parts.append(data[position + header : position + header + length])
        position += header + length
        if kind in (1, 4):  # FULL or LAST: a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            records.append(record)
            parts = []
    return records


def test_an_offline_wandb_run_holds_the_logged_values_and_the_spec(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))  # the run directory wins: the spec says where
    run = tmp_path / "run"
    sets = ["run.loggers=[wandb]", "run.wandb.project=tests", "run.wandb.group=g1", "run.wandb.tags=[a,b]"]
    notices = pretrain(run, *sets)
    assert any(n.startswith("logging to wandb (tests/run: offline") for n in notices), notices
    assert not (run / "tb").exists()  # only what was asked for (metrics.jsonl is always written)
    [folder] = (run / "wandb").glob("offline-run-*")
    records = wandb_records(folder)
    [header] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (header.project, header.display_name, header.run_group, list(header.tags)) == (
        "tests",
        "run",
        "g1",
        ["a", "b"],
    )
    assert header.run_id == (run / "wandb" / "run_id").read_text().strip()
    config = {item.key: json.loads(item.value_json) for item in header.config.update}
    assert config["model"]["name"] == "test" and config["optim"]["batch_size"] == 2
    history = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    logged = metrics(run)
    assert [h["_step"] for h in history] == [r["step"] for r in logged]
    assert [h["train/loss"] for h in history] == [r["loss"] for r in logged]
    assert [h["train/lr"] for h in history] == [r["lr"] for r in logged]


# ------------------------------------------------------------------------------------------ failing and missing


def test_a_logger_that_fails_is_dropped_with_one_warning(tmp_path: Path, monkeypatch) -> None:
    def broken(self: TensorBoardLogger, record: dict[str, Any]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TensorBoardLogger, "write", broken)
    run = tmp_path / "run"
    notices = pretrain(run)
    failures = [n for n in notices if "failed" in n]
    assert failures == [
        "warning: the tensorboard logger failed ([Errno 28] No space left on device); the run goes on without it"
    ]
    assert [r["step"] for r in metrics(run)] == [2, 4, 6]  # the record of the run is complete
    assert (run / "model.safetensors").is_file() and (run / "curves.png").is_file()


def test_a_requested_logger_that_is_not_installed_is_one_notice(monkeypatch) -> None:
    monkeypatch.setattr(loggers, "installed", lambda name: name != "wandb")
    names, notices = chosen_loggers(["jsonl", "tensorboard", "wandb"])
    assert names == ["tensorboard"]
    assert notices == [
        'run.loggers: wandb is not installed, so the run logs without it (pip install "videomae-cli[wandb]")'
    ]


def test_by_default_tensorboard_only_where_installed_and_silently(monkeypatch) -> None:
    monkeypatch.setattr(loggers, "installed", lambda name: False)
    assert chosen_loggers(None) == ([], [])
    monkeypatch.setattr(loggers, "installed", lambda name: True)
    assert chosen_loggers(None) == (["tensorboard"], [])
    assert chosen_loggers(["jsonl"]) == ([], [])  # metrics.jsonl alone


def test_an_unknown_logger_names_the_field() -> None:
    with pytest.raises(Exception, match=r"run\.loggers"):
        resolve_spec(FinetuneSpec, sets=["run.loggers=[mlflow]"])


def test_jsonl_alone_says_nothing_and_writes_the_log(tmp_path: Path) -> None:
    spec = resolve_spec(PretrainSpec, sets=[*TINY, "run.loggers=[jsonl]", f"run.out={tmp_path}"])
    said: list[str] = []
    log = RunLog(spec, tmp_path, 0, said.append)
    log.write({"step": 1, "loss": 1.0})
    log.close()
    assert said == [] and metrics(tmp_path) == [{"step": 1, "loss": 1.0}]


# ------------------------------------------------------------------------------------------------------ pictures


def colours(png: Path) -> int:
    image = Image.open(png).convert("RGB")
    return len(np.unique(np.asarray(image).reshape(-1, 3), axis=0))


def test_a_run_draws_its_curves(tmp_path: Path) -> None:
    run = tmp_path / "run"
    pretrain(run, "run.loggers=[jsonl]")
    image = Image.open(run / "curves.png")
    assert image.format == "PNG" and image.width > 600 and image.height > 400
    assert colours(run / "curves.png") > 50  # lines, text and antialiasing, not a blank canvas


def test_plot_overlays_runs_by_step_or_by_clips(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    pretrain(first, "run.loggers=[jsonl]")
    pretrain(second, "run.loggers=[jsonl]", "optim.batch_size=4", "run.steps=4")
    for axis in ("step", "clips"):
        out = tmp_path / f"by_{axis}.png"
        result = CliRunner().invoke(app, ["plot", str(first), str(second), "--out", str(out), "--x", axis])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"wrote {out}: a (6 steps), b (4 steps)"
        assert colours(out) > 50
    assert metrics(second)[-1]["clips"] == 16 and metrics(first)[-1]["clips"] == 12


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["{missing}", "--out", "{tmp}/x.png"],
            "error: RUN: no metrics.jsonl in {missing} (not a training run directory, or it logged nothing yet)",
        ),
        (["{run}", "--out", "{tmp}/x.jpg"], "error: --out: {tmp}/x.jpg must end in .png"),
        (["{run}"], "error: --out: required (videomae plot RUN... --out FILE.png)"),
        (["{run}", "--out", "{tmp}/x.png", "--x", "time"], "error: --x: 'time' is not one of step, clips"),
        (["{garbage}", "--out", "{tmp}/x.png"], "error: RUN: {garbage} line 1 is not JSON: not a metrics log"),
    ],
)
def test_plot_refuses_in_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 2, "loss": 1.0, "lr": 0.1}\n')
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n{}\n")
    names = {"tmp": tmp_path, "run": run, "missing": tmp_path / "missing", "garbage": garbage}
    result = CliRunner().invoke(app, ["plot", *(a.format(**names) for a in args)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [expected.format(**names)]
    assert not (tmp_path / "x.png").exists()


def test_a_line_cut_short_by_a_kill_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"step": 2, "loss": 1.0, "lr": 0.1}\n{"step": 4, "lo')
    out = tmp_path / "x.png"
    result = CliRunner().invoke(app, ["plot", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_validation_gets_its_own_panel_and_clips_need_clip_counts() -> None:
    from videomae_cli.errors import ConfigError
    from videomae_cli.viz.curves import RunCurves, curves_figure

    training = [{"step": s, "loss": 2.0 / s, "lr": 1e-3, "clips_per_s": 10.0, "data_wait": 0.1} for s in (5, 10)]
    finetune = RunCurves("ft", training, [{"step": 10, "val_top1": 0.25}])
    titles = [ax.get_title() for ax in curves_figure([finetune]).axes if ax.axison]
    assert titles == ["training loss", "learning rate", "throughput", "waiting for data", "validation top-1"]
    [panel] = [ax for ax in curves_figure([finetune]).axes if ax.get_title() == "validation top-1"]
    assert list(panel.lines[0].get_ydata()) == [25.0]  # percent
    with pytest.raises(ConfigError, match=r"^x: ft logged no clip counts; compare by step$"):
        curves_figure([finetune], x="clips")


def test_wandb_without_a_login_on_a_terminal_never_prompts(tmp_path: Path) -> None:
    """On a terminal with no W&B login, wandb itself would show its account menu and wait; the run must instead go
    on without the logger. A pseudo-terminal (pty) makes stdin and stderr terminals, as in an interactive shell."""
    pytest.importorskip("wandb")
    pty = pytest.importorskip("pty")
    import contextlib
    import os
    import select
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= {"HOME": str(tmp_path), "WANDB_CONFIG_DIR": str(tmp_path / "config"), "NETRC": str(tmp_path / "netrc")}
    env["WANDB_BASE_URL"] = "http://127.0.0.1:9"  # never the network
    args = [
        "--model",
        "test",
        "--steps",
        "2",
        "--num-workers",
        "0",
        "--out",
        str(tmp_path / "run"),
        "--progress",
        "off",
    ]
    args += ["--set", "data.input_size=64", "--set", "data.num_frames=4", "--set", "run.loggers=[wandb]"]
    leader, follower = pty.openpty()
    command = [sys.executable, "-m", "videomae_cli", "pretrain", *args]
    with subprocess.Popen(command, stdin=follower, stdout=subprocess.PIPE, stderr=follower, env=env) as process:
        os.close(follower)
        output, deadline = b"", time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:  # a prompt would wait forever: give up
            if select.select([leader], [], [], 0.5)[0]:
                with contextlib.suppress(OSError):  # the child closed the terminal
                    output += os.read(leader, 4096)
        process.kill()
        code = process.wait()
    os.close(leader)
    text = output.decode(errors="replace")
    assert code == 0, text
    assert "Enter your choice" not in text
    assert "warning: the wandb logger failed (" in text and "the run goes on without it" in text
    assert (tmp_path / "run" / "model.safetensors").is_file()
