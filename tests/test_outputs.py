"""Where a command writes: an output it could not write is refused before anything runs, as a usage error (exit 2)
with one line that names the path and the reason — a file where a folder is needed or the other way round, a path
under a file (`/dev/null/x`), a folder it may not write to. A write that fails mid-run is one line too, exit 74."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from conftest import randomize, run_cli
from typer.testing import CliRunner
from videogen import write_video  # av before decord (see videogen)

from videomae_cli.checkpoint import model_metadata, save_weights
from videomae_cli.cli import app
from videomae_cli.config.schema import FinetuneSpec, PretrainSpec, grid_of
from videomae_cli.models.classifier import VideoClassifier
from videomae_cli.models.pretrain import PretrainVideoMAE


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# (argv, the error line); {tmp} holds notes.txt (a file) and folder.pth, folder.jsonl, folder.png (folders).
REFUSED = [
    (["pretrain", "--out", "{tmp}/notes.txt"], "run.out: {tmp}/notes.txt is a file, not a directory (set by --out)"),
    (
        ["pretrain", "--out", "{tmp}/notes.txt/run"],
        "run.out: cannot create {tmp}/notes.txt/run: {tmp}/notes.txt is not a directory (set by --out)",
    ),
    (
        ["pretrain", "--out", "/dev/null/run"],
        "run.out: cannot create /dev/null/run: /dev/null is not a directory (set by --out)",
    ),
    (
        ["finetune", "--init", "none", "--out", "{tmp}/notes.txt"],
        "run.out: {tmp}/notes.txt is a file, not a directory (set by --out)",
    ),
    (
        ["prepare-data", "--synthetic", "2", "--out", "/dev/null/data"],
        "out: cannot create /dev/null/data: /dev/null is not a directory (set by --out)",
    ),
    (
        ["export", "{tmp}/ckpt.safetensors", "--format", "hf", "--out", "{tmp}/notes.txt", "--overwrite"],
        "--out: {tmp}/notes.txt is a file, not a directory",
    ),
    (
        ["export", "{tmp}/ckpt.safetensors", "--format", "official", "--out", "{tmp}/folder.pth", "--overwrite"],
        "--out: {tmp}/folder.pth is a directory, not a file",
    ),
    (
        ["convert", "{tmp}/official.pth", "--out", "{tmp}/notes.txt/ours.safetensors"],
        "--out: cannot create {tmp}/notes.txt/ours.safetensors: {tmp}/notes.txt is not a directory",
    ),
    (
        ["embed", "{tmp}/ckpt.safetensors", "{tmp}/clip.mp4", "--out", "{tmp}/notes.txt/features.npy"],
        "out: cannot create {tmp}/notes.txt/features.npy: {tmp}/notes.txt is not a directory (set by --out)",
    ),
    (
        ["predict", "{tmp}/ckpt.safetensors", "{tmp}/clip.mp4", "--json", "{tmp}/folder.jsonl"],
        "json_path: {tmp}/folder.jsonl is a directory, not a file (set by --json)",
    ),
    (
        ["evaluate", "{tmp}/ckpt.safetensors", "--report", "{tmp}/notes.txt/report.json"],
        "report: cannot create {tmp}/notes.txt/report.json: {tmp}/notes.txt is not a directory (set by --report)",
    ),
    (
        ["visualize-mask", "--video", "{tmp}/clip.mp4", "--out", "{tmp}/folder.png"],
        "out: {tmp}/folder.png is a directory, not a file (set by --out)",
    ),
]


@pytest.mark.parametrize(
    ("argv", "line"), REFUSED, ids=[" ".join(argv[:1] + argv[-2:]).replace("{tmp}/", "") for argv, _ in REFUSED]
)
def test_an_output_that_cannot_be_written_is_refused_up_front(argv: list[str], line: str, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a folder\n")
    for folder in ("folder.pth", "folder.jsonl", "folder.png"):
        (tmp_path / folder).mkdir()
    before = files_under(tmp_path)
    result = run_cli(*(arg.format(tmp=tmp_path) for arg in argv))
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"error: {line.format(tmp=tmp_path)}\n" and result.stdout == ""
    assert files_under(tmp_path) == before  # nothing written


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any folder")
@pytest.mark.parametrize("command", [["pretrain", "--out"], ["predict", "ckpt.safetensors", "clip.mp4", "--json"]])
def test_a_folder_that_may_not_be_written_to_is_refused_up_front(command: list[str], tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = run_cli(*command, str(locked / "out"), cwd=tmp_path)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert f"cannot write {locked / 'out'}: {locked}: Permission denied" in result.stderr
    assert list(locked.iterdir()) == []


# ------------------------------------------------------------------------------------------ a write fails mid-run


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny pretrain checkpoint, a tiny classifier checkpoint and a clip, in one folder."""
    root = tmp_path_factory.mktemp("inputs")
    data = {"num_frames": 4, "input_size": 64, "sampling_rate": 2}
    pretrain = PretrainSpec(model={"name": "test"}, data=data)
    model = PretrainVideoMAE(pretrain.model, grid_of(pretrain))
    randomize(model, seed=1)
    save_weights(
        root / "pretrain.safetensors", model.state_dict(), model_metadata("pretrain", pretrain.model_dump_json())
    )
    classes = ["a", "b"]
    spec = FinetuneSpec(model={"name": "test"}, data=data)
    classifier = VideoClassifier(spec.model, grid_of(spec), len(classes), run_spec=spec, classes=classes)
    randomize(classifier, seed=2)
    meta = model_metadata("classifier", spec.model_dump_json(), classes=json.dumps(classes))
    save_weights(root / "classifier.safetensors", classifier.state_dict(), meta)
    write_video(root / "clip.mp4", 12, width=80, height=64)
    return {
        "pretrain": root / "pretrain.safetensors",
        "classifier": root / "classifier.safetensors",
        "clip": root / "clip.mp4",
    }


QUIET = ("--progress", "off")
MID_RUN = {
    "predict --json": ["predict", "{classifier}", "{clip}", "--views", "1x1", "--json", "{out}/p.jsonl", *QUIET],
    "embed --out": ["embed", "{pretrain}", "{clip}", "--out", "{out}/features.npy", *QUIET],
    "visualize-mask --out": ["visualize-mask", "{pretrain}", "--video", "{clip}", "--out", "{out}/mask.png"],
    "export --format official": ["export", "{pretrain}", "--format", "official", "--out", "{out}/official.pth"],
}


@pytest.mark.parametrize("argv", MID_RUN.values(), ids=MID_RUN.keys())
def test_a_write_that_fails_mid_run_is_one_line_and_exit_74(
    argv: list[str], checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(os, "replace", disk_full)  # every output is written to a temporary name, then renamed
    result = CliRunner().invoke(app, [arg.format(out=tmp_path, **checkpoints) for arg in argv])
    assert result.exit_code == 74, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path}/") and line.endswith(": No space left on device")


def test_a_write_that_fails_mid_file_names_the_file(tmp_path: Path) -> None:
    # A full disk fails f.write() with an OSError that names no file; the one line the user sees must name it.
    from videomae_cli.errors import describe_os_error, naming

    target = tmp_path / "metrics.jsonl"
    with pytest.raises(OSError) as info, naming(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert describe_os_error(info.value) == f"{target}: No space left on device"
