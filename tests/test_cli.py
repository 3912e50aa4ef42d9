"""The real `videomae` command, end to end: help, errors and exit codes, and a shortened default pretraining run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TOY_ARGS, run_cli

import videomae_cli


def test_help_lists_the_working_subcommands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    commands = ("pretrain", "prepare-data", "finetune", "evaluate", "visualize-mask", "export", "convert", "predict")
    for command in (*commands, "embed", "doctor"):
        assert re.search(rf"^\s+{command}\s", result.stdout, flags=re.M), command


# Runs the CLI in a fresh interpreter and says, last on stderr, whether torch was imported.
TORCH_PROBE = """import sys
from videomae_cli.cli import main
sys.argv = ["videomae", *sys.argv[1:]]
try:
    main()
finally:
    print("torch imported:", "torch" in sys.modules, file=sys.stderr)
"""


def run_probed(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI with `argv`, in a fresh interpreter whose last stderr line says whether torch was imported."""
    return subprocess.run(
        [sys.executable, "-c", TORCH_PROBE, *argv], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["pretrain", "--set", "optim.lr=abc"],
        ["pretrain", "--mask-ratio", "1.0"],
        ["prepare-data", ".", "--out", "prepared", "--val-fraction", "1.5"],
        ["evaluate", "ckpt.safetensors", "--views", "abc"],
        ["predict", "ckpt.safetensors", "clip.mp4", "--top-k", "0"],
        ["embed", "ckpt.safetensors", "clip.mp4", "--out", "features.safetensors", "--pool", "max"],
        ["visualize-mask", "--video", "clip.mp4", "--out", "x.png", "--seed", "-1"],
    ],
    ids=lambda argv: " ".join(argv[:3]),
)
def test_a_bad_request_is_refused_before_torch_is_loaded(argv: list[str], tmp_path: Path) -> None:
    # torch and timm take seconds to import; a typo should not cost that.
    result = run_probed(argv, tmp_path)
    assert result.returncode == 2, result.stderr
    error, probe = result.stderr.strip().splitlines()
    assert error.startswith("error: ") and probe == "torch imported: False"


def test_print_config_does_not_load_torch(tmp_path: Path) -> None:
    result = run_probed(["pretrain", "--print-config"], tmp_path)
    assert result.returncode == 0 and yaml.safe_load(result.stdout)["kind"] == "pretrain"
    assert result.stderr.strip() == "torch imported: False"


PRETRAIN_FLAGS = (
    "--config", "--set", "--data", "--model", "--mask-type", "--mask-ratio", "--decoder-mask-ratio", "--steps",
    "--epochs", "--batch-size", "--lr", "--precision", "--device", "--num-workers", "--seed", "--out", "--resume",
    "--print-config", "--progress", "--compile", "--prefetch", "--strategy",
)  # fmt: skip
PREPARE_FLAGS = (
    "--out", "--format", "--root", "--val-fraction", "--seed", "--min-frames", "--workers", "--resize-short",
    "--decoder", "--progress", "--synthetic", "--num-frames", "--size",
)  # fmt: skip

FINETUNE_FLAGS = (
    "--init", "--config", "--set", "--data", "--model", "--steps", "--epochs", "--batch-size", "--lr", "--precision",
    "--device", "--num-workers", "--seed", "--out", "--resume", "--print-config", "--progress", "--compile",
    "--prefetch",
)  # fmt: skip
EVALUATE_FLAGS = (
    "--data", "--views", "--report", "--batch-size", "--precision", "--device", "--num-workers", "--progress",
)  # fmt: skip
CONVERT_FLAGS = ("--out", "--set", "--overwrite")
EXPORT_FLAGS = ("--format", "--out", "--overwrite")
PREDICT_FLAGS = (
    "--top-k", "--views", "--json", "--batch-size", "--precision", "--device", "--num-workers", "--progress",
)  # fmt: skip
EMBED_FLAGS = (
    "--out", "--pool", "--window-frames", "--window-stride", "--shard-size", "--batch-size", "--precision", "--device",
    "--num-workers", "--overwrite", "--progress",
)  # fmt: skip


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("pretrain", PRETRAIN_FLAGS),
        ("prepare-data", PREPARE_FLAGS),
        ("finetune", FINETUNE_FLAGS),
        ("evaluate", EVALUATE_FLAGS),
        ("convert", CONVERT_FLAGS),
        ("export", EXPORT_FLAGS),
        ("predict", PREDICT_FLAGS),
        ("embed", EMBED_FLAGS),
    ],
)
def test_every_option_is_documented(command: str, flags: tuple[str, ...]) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    options = re.findall(r"^\s+(--[a-z-]+)(?:\s+\S+)?\s{2,}(\S.*)$", result.stdout, flags=re.M)
    documented = {name for name, text in options if text.strip()}
    assert set(flags) <= documented, set(flags) - documented


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--mask-ratio", "1.5"], "mask.ratio"),
        (["--set", "model.depth=abc"], "model.depth"),
        (["--set", "nosuch.key=1"], "nosuch"),
        (["--model", "enormous"], "model.name"),
        (["--set", "data.input_size=100"], "data.input_size"),
    ],
)
def test_config_errors_exit_2_with_one_line_naming_the_field(args: list[str], field: str, tmp_path: Path) -> None:
    result = run_cli("pretrain", *args, "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "run").exists()


def test_print_config_prints_the_resolved_spec_and_exits_0() -> None:
    result = run_cli("pretrain", "--model", "small", "--mask-type", "random", "--print-config")
    assert result.returncode == 0
    spec = yaml.safe_load(result.stdout)
    assert spec["model"]["dim"] == 384 and spec["mask"]["type"] == "random"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One short pretraining run through the real command (the default run, shortened and shrunk with flags)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = run_cli(
        "pretrain",
        *TOY_ARGS,
        "--steps",
        "12",
        "--set",
        "run.log_every=3",
        "--set",
        "run.save_every=6",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_a_run_writes_the_run_directory(finished_run: tuple[Path, str]) -> None:
    out, _ = finished_run
    assert (out / "spec.yaml").is_file() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000006", "step-00000012"]
    for checkpoint in (out / "checkpoints").iterdir():
        assert {p.name for p in checkpoint.iterdir()} == {"model.safetensors", "train_state.pt", "manifest.json"}
    meta = yaml.safe_load((out / "spec.yaml").read_text())["meta"]
    assert meta["argv"][:2] == ["videomae", "pretrain"] and "torch" in meta["versions"]


def test_metrics_have_one_record_per_log_step(finished_run: tuple[Path, str]) -> None:
    out, _ = finished_run
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6, 9, 12]
    assert {"step", "epoch", "loss", "lr", "clips_per_s", "data_wait"} <= set(records[0])
    assert all(0 <= r["data_wait"] <= 1 for r in records)


def test_progress_is_plain_lines_when_stdout_is_not_a_terminal(finished_run: tuple[Path, str]) -> None:
    _, stdout = finished_run
    assert re.search(r"^step 12/12 \| epoch [\d.]+ \| loss [\d.]+ \| lr ", stdout, flags=re.M)
    assert "\x1b[" not in stdout  # no terminal control codes in logs


def test_the_weights_load_with_the_python_api(finished_run: tuple[Path, str]) -> None:
    out, _ = finished_run
    model = videomae_cli.load(out / "model.safetensors")
    assert not model.training and model.spec.model.name == "test"
    grid = model.grid
    mask = torch.zeros(2, grid.num_tokens, dtype=torch.bool)
    mask[:, : grid.num_tokens // 2] = True
    output = model(torch.randn(2, 3, 4, 64, 64), mask)
    assert output.loss.ndim == 0 and output.pred.shape == (2, grid.num_tokens // 2, grid.patch_dim)


def test_resume_none_refuses_a_run_directory_that_has_checkpoints(finished_run: tuple[Path, str]) -> None:
    out, _ = finished_run
    result = run_cli("pretrain", *TOY_ARGS, "--steps", "12", "--out", str(out), "--resume", "none")
    assert result.returncode == 2 and "--resume auto" in result.stderr


def test_resume_auto_on_a_finished_run_changes_nothing(finished_run: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(finished_run[0], out)
    before = (out / "model.safetensors").read_bytes()
    result = run_cli("pretrain", *TOY_ARGS, "--steps", "12", "--out", str(out))
    assert result.returncode == 0 and "already complete" in result.stdout
    assert (out / "model.safetensors").read_bytes() == before


def test_a_checkpoint_of_another_model_is_not_resumed(finished_run: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(finished_run[0], out)
    result = run_cli("pretrain", *TOY_ARGS, "--set", "model.depth=3", "--steps", "20", "--out", str(out))
    assert result.returncode == 2 and "model.depth" in result.stderr


def test_a_diverging_run_exits_4(tmp_path: Path) -> None:
    result = run_cli(
        "pretrain",
        *TOY_ARGS,
        "--steps",
        "4",
        "--lr",
        "1e30",
        "--set",
        "run.log_every=1",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 4
    assert result.stderr.startswith("error: loss became non-finite")


def test_python_dash_m_and_the_console_script_are_the_same_program() -> None:
    script = shutil.which("videomae")
    assert script is not None
    console = subprocess.run([script, "pretrain", "--help"], capture_output=True, text=True, timeout=120)
    assert console.returncode == 0 and console.stdout == run_cli("pretrain", "--help").stdout
