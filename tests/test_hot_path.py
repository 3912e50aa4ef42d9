"""The training step's hot path: no host-device synchronisation per step, and the precision `auto` picks."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import TOY_SETS
from torch.utils._python_dispatch import TorchDispatchMode

from videomae_cli import runtime
from videomae_cli.config.resolve import resolve_spec
from videomae_cli.config.schema import PretrainSpec
from videomae_cli.runtime import resolve_precision
from videomae_cli.train import loop
from videomae_cli.train.loop import train
from videomae_cli.train.pretrain import setup
from videomae_cli.train.state import save_run_checkpoint
from videomae_cli.ui.progress import SilentReporter

# Ops whose result the host must wait for: a scalar read (.item(), bool(), float()) or a data-dependent shape.
SYNCING_OPS = {
    "aten._local_scalar_dense",
    "aten.item",
    "aten.is_nonzero",
    "aten.nonzero",
    "aten.masked_select",
    "aten._unique2",
    "aten.unique_consecutive",
    "aten.unique_dim",
    "aten.equal",
}


class SyncCounter(TorchDispatchMode):
    """Counts the syncing ops dispatched in the main process (the loader runs in a worker process)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.replace("::", ".")
        if name in SYNCING_OPS:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def syncs_of_a_run(out: Path, steps: int, *sets: str) -> Counter[str]:
    spec = resolve_spec(
        PretrainSpec,
        sets=[
            *TOY_SETS,
            "model.name=test",
            "data.num_workers=1",  # the loader's own work stays out of the counted process
            "data.synthetic_videos=64",  # no epoch boundary (which checks the loss once) within 6 steps
            f"run.steps={steps}",
            "run.log_every=1000",  # one log (and one checkpoint) at the end, whatever the length
            "run.save_every=0",
            "run.precision=fp32",
            f"run.out={out}",
            *sets,
        ],
    )
    run = setup(spec)
    with SyncCounter() as counter:
        train(run, SilentReporter())
    return counter.counts


@pytest.mark.parametrize("sets", [(), ("mask.decoder_ratio=0.5",), ("optim.accum_steps=2",)])
def test_the_training_step_makes_no_host_sync(tmp_path: Path, sets: tuple[str, ...]) -> None:
    """Syncs happen at log steps and saves only: a run of 2 steps and one of 6 make exactly as many."""
    short = syncs_of_a_run(tmp_path / "short", 2, *sets)
    long = syncs_of_a_run(tmp_path / "long", 6, *sets)
    assert long == short, f"per-step syncs: {long - short}"


def test_the_counter_sees_a_sync_in_the_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard itself: an .item() per step (as the official code does) is caught."""
    from videomae_cli.train import pretrain

    original = pretrain.PretrainTask.loss

    def loss_with_item(self, model, batch, video, step, micro):
        value = original(self, model, batch, video, step, micro)
        value.item()
        return value

    monkeypatch.setattr(pretrain.PretrainTask, "loss", loss_with_item)
    short = syncs_of_a_run(tmp_path / "short", 2)
    long = syncs_of_a_run(tmp_path / "long", 6)
    assert (long - short)["aten._local_scalar_dense"] == 4


def cuda_syncs_of_a_run(out: Path, steps: int, monkeypatch) -> int:
    """Synchronising CUDA calls that torch's sync debug mode reports during a run of `steps` steps, the final
    checkpoint's device-to-host copies (one per tensor, once per save) left out."""
    spec = resolve_spec(
        PretrainSpec,
        sets=[*TOY_SETS, "model.name=test", f"run.steps={steps}", "run.log_every=1000", "run.save_every=0",
              "run.device=cuda", f"run.out={out}"],
    )  # fmt: skip
    run = setup(spec)

    def save_quietly(*args, **kwargs):
        torch.cuda.set_sync_debug_mode(0)
        try:
            return save_run_checkpoint(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("warn")

    monkeypatch.setattr(loop, "save_run_checkpoint", save_quietly)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            train(run, SilentReporter())
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in warned)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_cuda_training_step_raises_no_sync_error(tmp_path: Path, monkeypatch) -> None:
    # Set-up, the one log window's loss read and the finite checks sync a fixed number of times; a step never does.
    short = cuda_syncs_of_a_run(tmp_path / "short", 2, monkeypatch)
    assert cuda_syncs_of_a_run(tmp_path / "long", 6, monkeypatch) == short
    assert short <= 8


def test_auto_precision_is_bf16_where_the_device_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "native_bf16", lambda device: True)
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16", None)


def test_auto_precision_falls_back_to_fp32_with_one_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)
    precision, notice = resolve_precision("auto", torch.device("cpu"))
    assert precision == "fp32" and notice is not None and "fp32" in notice and "\n" not in notice


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_an_explicit_precision_is_kept(precision: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)
    assert resolve_precision(precision, torch.device("cpu")) == (precision, None)


def test_the_resolved_precision_is_what_the_run_records(tmp_path: Path) -> None:
    spec = resolve_spec(PretrainSpec, sets=[*TOY_SETS, "model.name=test", "run.steps=1", f"run.out={tmp_path}"])
    assert spec.run.precision == "auto"
    run = setup(spec)
    expected = "bf16" if runtime.native_bf16(torch.device("cpu")) else "fp32"
    assert run.spec.run.precision == expected
    train(run, SilentReporter())
    assert f"precision: {expected}" in (tmp_path / "spec.yaml").read_text()


def test_a_compiled_step_trains_like_the_eager_one(tmp_path: Path) -> None:
    base = [*TOY_SETS, "model.name=test", "run.steps=3", "run.log_every=1", "run.precision=fp32"]
    losses = {}
    for compiled in (False, True):
        out = tmp_path / str(compiled)
        spec = resolve_spec(PretrainSpec, sets=[*base, f"run.compile={compiled}", f"run.out={out}"])
        run = setup(spec)
        assert (run.train_model is not run.model) == compiled
        train(run, SilentReporter())
        losses[compiled] = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
