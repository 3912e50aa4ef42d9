"""Checkpoint integrity (design.md: Run directory and checkpoints): every checkpoint records the size and sha256 of its
files; resuming passes over a damaged checkpoint (or refuses a named one), every reader says "damaged or not a
checkpoint: PATH (reason)" instead of a library's error, and a save that fails mid-write stops with exit 74 naming
the checkpoint to resume from."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TOY_ARGS, TOY_SETS, run_cli
from safetensors.torch import load_file, save

import videomae_cli
from videomae_cli import checkpoint as ckpt
from videomae_cli.config.resolve import resolve_spec
from videomae_cli.config.schema import PretrainSpec
from videomae_cli.errors import ConfigError, StorageError
from videomae_cli.interop.sources import read_source
from videomae_cli.train.loop import train
from videomae_cli.train.pretrain import setup
from videomae_cli.train.state import checkpoint_problem
from videomae_cli.ui.progress import SilentReporter

RUN_SETS = ["run.log_every=2", "run.save_every=4", "run.keep_last=5", "run.precision=fp32"]
CLI_RUN = [*TOY_ARGS, *(arg for item in RUN_SETS for arg in ("--set", item)), "--progress", "off"]


def toy_spec(out: Path, *sets: str) -> PretrainSpec:
    return resolve_spec(PretrainSpec, sets=[*TOY_SETS, "model.name=test", *RUN_SETS, f"run.out={out}", *sets])


def step_dir(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step:08d}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy pretraining run of 8 steps with checkpoints at steps 4 and 8 (tests damage copies of it)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    train(setup(toy_spec(out, "run.steps=8")), SilentReporter())
    return out


def copy_run(source: Path, target: Path) -> Path:
    """A copy of a run directory in which RUN/model.safetensors is again a hard link to the newest checkpoint's."""
    shutil.copytree(source, target)
    (target / ckpt.MODEL_FILE).unlink()
    os.link(step_dir(target, 8) / ckpt.MODEL_FILE, target / ckpt.MODEL_FILE)
    return target


def truncate_to_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


# ---------------------------------------------------------------------------------------------------------------------
# The manifest


def test_a_checkpoint_records_the_size_and_sha256_of_each_of_its_files(trained: Path) -> None:
    manifest = json.loads((step_dir(trained, 8) / ckpt.MANIFEST_FILE).read_text())
    assert manifest["checksum"] == "sha256"
    assert set(manifest["files"]) == {ckpt.MODEL_FILE, ckpt.STATE_FILE}
    for name, entry in manifest["files"].items():
        data = (step_dir(trained, 8) / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_a_checkpoint_written_before_manifests_still_loads_and_resumes(trained: Path, tmp_path: Path) -> None:
    run = shutil.copytree(trained, tmp_path / "run")
    for step in (4, 8):
        (step_dir(run, step) / ckpt.MANIFEST_FILE).unlink()
    assert videomae_cli.load(step_dir(run, 8)).spec.model.name == "test"
    resumed = setup(toy_spec(run, "run.steps=12", "run.resume=auto"))
    assert resumed.start_step == 8 and not resumed.notices


# ---------------------------------------------------------------------------------------------------------------------
# Readers: one line naming the file and the reason


def rewritten(trained: Path, edit=None, **metadata: str | None) -> bytes:
    """`trained`'s weights file written again, its tensors changed by `edit` and its metadata by `metadata` (None
    removes an item)."""
    source = trained / ckpt.MODEL_FILE
    tensors = load_file(str(source))
    if edit is not None:
        edit(tensors)
    meta = {**ckpt.read_metadata(source), **{k.replace("_", "."): v for k, v in metadata.items()}}
    return save(tensors, metadata={k: v for k, v in meta.items() if v is not None})


def without_head(tensors: dict) -> None:
    del tensors["decoder.head.weight"]


def shorter_head(tensors: dict) -> None:
    tensors["decoder.head.weight"] = tensors["decoder.head.weight"][:-1].clone()


def integer_head(tensors: dict) -> None:
    tensors["decoder.head.weight"] = tensors["decoder.head.weight"].to(torch.int32)


DAMAGES = {  # what a file holds → the reason it is refused with
    "truncated": (lambda run, data: data[: len(data) // 2], r"truncated: .* of the .* its header describes"),
    "header cut": (lambda run, data: data[:200], r"header length \d+ bytes is larger than the file \(200 bytes\)"),
    "another format": (lambda run, data: b"PK\x03\x04 a zip, say" + data, r"not a safetensors file"),
    "empty": (lambda run, data: b"", r"an empty file"),
    "no spec": (lambda run, data: rewritten(run, videomae_spec=None), r"no videomae.spec metadata"),
    "spec not JSON": (lambda run, data: rewritten(run, videomae_spec="{not"), r"videomae.spec is not valid JSON"),
    "spec invalid": (
        lambda run, data: rewritten(run, videomae_spec='{"model": {"depth": "deep"}}'),
        r"videomae.spec is not a valid pretrain spec \(model.depth: ",
    ),
    "tensor missing": (
        lambda run, data: rewritten(run, without_head),
        r"missing tensors for its spec: decoder.head.weight",
    ),
    "wrong shape": (
        lambda run, data: rewritten(run, shorter_head),
        r"decoder.head.weight is \(\d+, \d+\), its spec needs \(\d+, \d+\)",
    ),
    "wrong dtype": (
        lambda run, data: rewritten(run, integer_head),
        r"decoder.head.weight is I32, its spec needs float32",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_loading_a_damaged_weights_file_names_it_and_the_reason(trained: Path, tmp_path: Path, damage: str) -> None:
    make, reason = DAMAGES[damage]
    path = tmp_path / "model.safetensors"
    path.write_bytes(make(trained, (trained / ckpt.MODEL_FILE).read_bytes()))
    with pytest.raises(ConfigError) as error:
        videomae_cli.load(path)
    message = str(error.value)
    assert message.startswith(f"damaged or not a checkpoint: {path} (") and "\n" not in message
    assert re.search(reason, message), message


def test_a_checkpoint_whose_bytes_changed_is_refused_by_its_recorded_checksum(trained: Path, tmp_path: Path) -> None:
    run = copy_run(trained, tmp_path / "run")
    flip_last_byte(step_dir(run, 4) / ckpt.MODEL_FILE)  # same size, still a valid safetensors file
    with pytest.raises(ConfigError, match=r"model.safetensors does not match its recorded sha256"):
        videomae_cli.load_checkpoint(step_dir(run, 4))


def test_loading_a_run_whose_newest_weights_are_damaged_names_the_link_and_the_checkpoint_before(
    trained: Path, tmp_path: Path
) -> None:
    run = copy_run(trained, tmp_path / "run")
    truncate_to_half(step_dir(run, 8) / ckpt.MODEL_FILE)  # RUN/model.safetensors is the same file
    with pytest.raises(ConfigError) as error:
        videomae_cli.load(run)
    message = str(error.value)
    assert f"damaged or not a checkpoint: {run / ckpt.MODEL_FILE} (model.safetensors is " in message
    assert f"the same file as {step_dir(run, 8) / ckpt.MODEL_FILE}" in message
    assert message.endswith(f"the checkpoint before it: {step_dir(run, 4)}")


def test_convert_refuses_a_damaged_safetensors_source_with_the_reason(trained: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    shutil.copyfile(trained / ckpt.MODEL_FILE, path)
    truncate_to_half(path)
    with pytest.raises(ConfigError, match=r"^SRC: damaged or not a safetensors file: .*\(truncated: "):
        read_source(path)


def test_evaluate_refuses_a_damaged_checkpoint_with_one_line_and_exit_2(trained: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes((trained / ckpt.MODEL_FILE).read_bytes()[:-1000])
    result = run_cli("evaluate", str(path), "--progress", "off")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert re.fullmatch(rf"error: damaged or not a checkpoint: {re.escape(str(path))} \(truncated: .*\)", line), line


def test_finetune_init_from_a_damaged_checkpoint_is_refused_with_one_line_and_exit_2(
    trained: Path, tmp_path: Path
) -> None:
    run = copy_run(trained, tmp_path / "run")
    truncate_to_half(step_dir(run, 8) / ckpt.MODEL_FILE)
    result = run_cli("finetune", "--init", str(step_dir(run, 8)), "--steps", "1", "--out", str(tmp_path / "ft"))
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: init: damaged or not a checkpoint: {step_dir(run, 8) / ckpt.MODEL_FILE} (")
    assert "model.safetensors is" in line and line.endswith("(set by --init)")
    assert not (tmp_path / "ft").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Resuming


def test_resume_auto_passes_over_a_damaged_newest_checkpoint_with_one_notice(trained: Path, tmp_path: Path) -> None:
    run = copy_run(trained, tmp_path / "run")
    flip_last_byte(step_dir(run, 8) / ckpt.STATE_FILE)
    resumed = setup(toy_spec(run, "run.steps=12", "run.resume=auto"))
    assert resumed.start_step == 4 and resumed.resumed_from == step_dir(run, 4)
    [notice] = [line for line in resumed.notices if "damaged" in line]
    assert notice.startswith(f"warning: checkpoint {step_dir(run, 8)} is damaged (train_state.pt does not match")
    assert notice.endswith(f"resuming from {step_dir(run, 4)}")


def test_resume_auto_says_when_the_damaged_weights_are_also_the_runs_latest(trained: Path, tmp_path: Path) -> None:
    run = copy_run(trained, tmp_path / "run")
    full = (run / ckpt.MODEL_FILE).stat().st_size
    truncate_to_half(step_dir(run, 8) / ckpt.MODEL_FILE)
    [notice] = setup(toy_spec(run, "run.steps=12", "run.resume=auto")).notices
    size, recorded = ckpt.describe_sizes(full // 2, full)
    assert f"(model.safetensors is {size}, recorded {recorded}), and so is {run / ckpt.MODEL_FILE} (the same " in notice


def test_a_damaged_checkpoint_written_before_manifests_is_passed_over_too(trained: Path, tmp_path: Path) -> None:
    run = copy_run(trained, tmp_path / "run")
    for step in (4, 8):
        (step_dir(run, step) / ckpt.MANIFEST_FILE).unlink()
    truncate_to_half(step_dir(run, 8) / ckpt.STATE_FILE)
    resumed = setup(toy_spec(run, "run.steps=12", "run.resume=auto"))
    assert resumed.start_step == 4
    assert "(train_state.pt does not load (" in resumed.notices[0]


def test_resuming_a_named_damaged_checkpoint_is_refused_with_one_line(trained: Path, tmp_path: Path) -> None:
    run = copy_run(trained, tmp_path / "run")
    truncate_to_half(step_dir(run, 8) / ckpt.STATE_FILE)
    with pytest.raises(ConfigError) as error:
        setup(toy_spec(tmp_path / "new", "run.steps=12", f"run.resume={step_dir(run, 8)}"))
    message = str(error.value)
    assert message.startswith(f"run.resume: damaged or not a checkpoint: {step_dir(run, 8)} (train_state.pt is ")
    assert "`run.resume=auto`" in message and "\n" not in message


def test_a_run_whose_checkpoints_are_all_damaged_is_refused_not_restarted(trained: Path, tmp_path: Path) -> None:
    run = copy_run(trained, tmp_path / "run")
    for step in (4, 8):
        truncate_to_half(step_dir(run, step) / ckpt.STATE_FILE)
    with pytest.raises(ConfigError, match=rf"^run.resume: every checkpoint of {re.escape(str(run))} is damaged \("):
        setup(toy_spec(run, "run.steps=12", "run.resume=auto"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000004", "step-00000008"]


def test_pretrain_resume_auto_over_a_truncated_newest_checkpoint_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    # The fault 1, through the real CLI.
    straight = tmp_path / "straight"
    first = run_cli("pretrain", *CLI_RUN, "--steps", "8", "--out", str(straight))
    assert first.returncode == 0, first.stderr
    run = copy_run(straight, tmp_path / "run")
    truncate_to_half(step_dir(run, 8) / ckpt.MODEL_FILE)  # and RUN/model.safetensors with it: the same file
    result = run_cli("pretrain", *CLI_RUN, "--steps", "8", "--out", str(run), "--resume", "auto")
    assert result.returncode == 0, result.stderr
    [warning] = [line for line in (result.stdout + result.stderr).splitlines() if "damaged" in line]
    assert warning.startswith(f"warning: checkpoint {step_dir(run, 8)} is damaged (model.safetensors is ")
    assert warning.endswith(f"resuming from {step_dir(run, 4)}")
    assert same_weights(run / ckpt.MODEL_FILE, straight / ckpt.MODEL_FILE)
    assert checkpoint_problem(step_dir(run, 8)) is None  # the damaged one was written again, whole


# ---------------------------------------------------------------------------------------------------------------------
# Saving: a write that fails


def test_a_save_that_fails_names_the_checkpoint_to_resume_from_and_leaves_the_run_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt.save_checkpoint(tmp_path, 1, {"w": torch.ones(3)}, {"format": "pt"}, {"step": 1})
    latest = (tmp_path / ckpt.MODEL_FILE).read_bytes()

    def no_space(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(StorageError) as error:
        ckpt.save_checkpoint(tmp_path, 2, {"w": torch.zeros(3)}, {"format": "pt"}, {"step": 2})
    monkeypatch.undo()
    assert str(error.value) == (
        f"cannot write checkpoint {step_dir(tmp_path, 2) / ckpt.STATE_FILE}: No space left on device; the last "
        f"checkpoint, {step_dir(tmp_path, 1)}, is intact: fix the cause, then continue with `run.resume=auto`"
    )
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000001"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert (tmp_path / ckpt.MODEL_FILE).read_bytes() == latest


def _file_size_limit(limit: int):
    resource = pytest.importorskip("resource")  # POSIX only

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_checkpoint_save_that_hits_the_file_size_limit_exits_74_and_resumes_afterwards(tmp_path: Path) -> None:
    # Every checkpoint of a run has files of the same sizes, so no one limit lets a run write its first and not its
    # second: the first comes from a run without one, and a run resuming it under the limit fails at its first save,
    # after its weights (smaller than the limit) and before its train_state.pt (larger) are written.
    run = tmp_path / "run"
    train(setup(toy_spec(run, "run.steps=4")), SilentReporter())
    weights, state = (step_dir(run, 4) / ckpt.MODEL_FILE), (step_dir(run, 4) / ckpt.STATE_FILE)
    before = {p: p.read_bytes() for p in (weights, state, run / ckpt.MODEL_FILE)}
    limit = (weights.stat().st_size + state.stat().st_size) // 2
    args = [sys.executable, "-m", "videomae_cli", "pretrain", *CLI_RUN, "--steps", "8", "--out", str(run)]
    limited = subprocess.run(
        [*args, "--resume", "auto"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        preexec_fn=_file_size_limit(limit),
    )
    assert limited.returncode == 74, limited.stderr
    assert limited.stderr.splitlines() == [
        f"error: cannot write checkpoint {step_dir(run, 8) / ckpt.STATE_FILE}: File too large; the last checkpoint, "
        f"{step_dir(run, 4)}, is intact: fix the cause, then continue with --resume auto"
    ]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000004"]  # no .partial folder
    assert not [p for p in run.rglob("*.tmp")]
    assert {p: p.read_bytes() for p in before} == before
    finished = run_cli("pretrain", *CLI_RUN, "--steps", "8", "--out", str(run), "--resume", "auto")
    assert finished.returncode == 0, finished.stderr
    assert [step for step, _ in ckpt.list_checkpoints(run)] == [4, 8]
