"""The pretraining engine: exact resume, non-finite losses, and checkpoints that survive an interrupted save."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TOY_SETS
from safetensors.torch import load_file

from videomae_cli import checkpoint as ckpt
from videomae_cli.config.resolve import resolve_spec
from videomae_cli.config.schema import PretrainSpec
from videomae_cli.errors import NonFiniteLossError
from videomae_cli.runtime import resolve_precision
from videomae_cli.train.loop import train
from videomae_cli.train.pretrain import setup
from videomae_cli.ui.progress import SilentReporter


def toy_spec(out: Path, *sets: str) -> PretrainSpec:
    base = [*TOY_SETS, "model.name=test", "run.log_every=2", "run.save_every=4", "run.keep_last=5"]
    return resolve_spec(PretrainSpec, sets=[*base, f"run.out={out}", *sets])


def run_to_end(out: Path, *sets: str) -> None:
    train(setup(toy_spec(out, *sets)), SilentReporter())


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("objective", [(), ("model.target=hog",), ("mask.type=motion", "mask.ratio=0.75")])
def test_resuming_from_a_checkpoint_continues_the_same_run_exactly(objective: tuple[str, ...], tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_to_end(straight, "run.steps=8", *objective)
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-00000008")  # as if the run had stopped after step 4
    run = setup(toy_spec(resumed, "run.steps=8", *objective))
    assert run.start_step == 4
    train(run, SilentReporter())
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["lr"] for r in records(straight)] == [r["lr"] for r in records(resumed)]
    assert [r["loss"] for r in records(straight)] == [r["loss"] for r in records(resumed)]


def test_the_schedule_warms_up_then_decays_per_step(tmp_path: Path) -> None:
    run_to_end(tmp_path, "run.steps=20", "optim.warmup_steps=6", "run.log_every=1")
    lrs = [r["lr"] for r in records(tmp_path)]
    peak = 1.5e-4 * 2 / 256
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(peak * 5 / 6)
    assert lrs[6] == pytest.approx(peak) and all(x > y for x, y in itertools.pairwise(lrs[6:]))
    floor = 1e-5 * 2 / 256  # the last step (19) is 13/14 of the way down the half-cosine from step 6
    assert lrs[-1] == pytest.approx(floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * 13 / 14)))


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    run = setup(toy_spec(tmp_path, "run.steps=12"))
    forward, calls = run.model.forward, []

    def poisoned(*args, **kwargs):
        out = forward(*args, **kwargs)
        calls.append(1)
        if len(calls) > 5:
            out.loss = out.loss * float("nan")
        return out

    run.model.forward = poisoned
    with pytest.raises(NonFiniteLossError, match=r"by step 6; stopped, the last good checkpoint is .*step-00000004"):
        train(run, SilentReporter())
    assert [step for step, _ in ckpt.list_checkpoints(tmp_path)] == [4]
    good = load_file(tmp_path / "checkpoints" / "step-00000004" / "model.safetensors")
    latest = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(good[k], latest[k]) and torch.isfinite(latest[k]).all() for k in good)


def test_an_interrupted_checkpoint_save_leaves_the_previous_one_intact(tmp_path: Path, monkeypatch) -> None:
    weights = {"w": torch.ones(3)}
    ckpt.save_checkpoint(tmp_path, 1, weights, {"format": "pt"}, {"step": 1})

    def dies_midway(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, 2, {"w": torch.zeros(3)}, {"format": "pt"}, {"step": 2})
    monkeypatch.undo()
    assert [step for step, _ in ckpt.list_checkpoints(tmp_path)] == [1]
    assert torch.equal(load_file(tmp_path / "model.safetensors")["w"], torch.ones(3))
    assert ckpt.load_train_state(tmp_path / "checkpoints" / "step-00000001") == {"step": 1}


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path) -> None:
    run_to_end(tmp_path, "run.steps=12", "run.keep_last=2")
    assert [step for step, _ in ckpt.list_checkpoints(tmp_path)] == [8, 12]


def test_weights_files_describe_themselves(tmp_path: Path) -> None:
    run_to_end(tmp_path, "run.steps=4")
    kind, spec = ckpt.read_spec_json(tmp_path / "model.safetensors")
    meta = ckpt.read_metadata(tmp_path / "model.safetensors")
    assert kind == "pretrain" and meta["format"] == "pt" and meta["videomae.version"]
    expected = toy_spec(tmp_path, "run.steps=4")
    expected.run.precision = resolve_precision("auto", torch.device("cpu"))[0]  # the run records what it trained in
    assert PretrainSpec.model_validate(spec) == expected


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_train_with_finite_loss(tmp_path: Path, precision: str) -> None:
    run_to_end(tmp_path, "run.steps=2", f"run.precision={precision}")
    assert all(math.isfinite(r["loss"]) for r in records(tmp_path))
    state = ckpt.load_train_state(tmp_path / "checkpoints" / "step-00000002")
    assert bool(state["scaler"]) == (precision == "fp16")  # the grad scaler is only live for fp16
