"""Pretraining benchmark: our PretrainVideoMAE against HF transformers' VideoMAEForPreTraining (sdpa), on the CPU.

Both sides get the same config, initial weights (one safetensors file, converted for HF with videomae_cli.interop.hf),
clip and tube mask (ratio 0.9). A train step is forward + backward + AdamW(fused=True).step(); a forward step is the
loss under torch.no_grad(). Each case runs in its own subprocess (benchmarks/harness.py), the order rotating from
round to round. Cases per config:

- train and forward, fp32, both sides (the fp32 targets and the memory target);
- train, bf16 autocast, both sides; ours is also timed under torch.compile (`--no-compile` skips it) and with
  activation checkpointing (what the memory would be: `run.activation_checkpointing`);
- ours with V2 running-cell decoder masking 0.5 (fp32 and bf16), against ours with tube masking alone.

Before timing counts, the first-step losses of the two sides must agree (fp32: 1e-4 relative); bf16 differences are
reported. Then it prints the cases (min/median/max seconds per step, peak MiB over the post-import baseline) and the
ratios against the targets (issues 8 and 29), and the JSON report.

    python benchmarks/bench_pretrain.py                          # the full run (~25 min on 2 cores)
    python benchmarks/bench_pretrain.py --quick                  # a tiny smoke run (~2 min)
    python benchmarks/bench_pretrain.py --configs small-16x112-b4 --rounds 5 --no-compile
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness  # benchmarks/harness.py: scripts run from this folder
import machine
import torch

from videomae_cli.config.schema import MaskSpec, ModelSpec
from videomae_cli.masking import MaskedTokens, MaskGenerator, collate_masks
from videomae_cli.models.pretrain import IMAGENET_MEAN, IMAGENET_STD, PretrainVideoMAE
from videomae_cli.models.vit import TokenGrid, set_activation_checkpointing
from videomae_cli.runtime import resolve_precision

MASK_RATIO = 0.9
FP32_LOSS_RTOL = 1e-4
SEED = 0


@dataclass(frozen=True)
class BenchConfig:
    """One benchmarked shape: a named model size, clip length and size, and batch."""

    size: str
    frames: int
    input_size: int
    batch: int

    @property
    def grid(self) -> TokenGrid:
        patch = ModelSpec(name=self.size).patch_size
        return TokenGrid(self.frames, self.input_size, self.input_size, patch, tubelet=2)

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(name=self.size)


CONFIGS = {
    "small-16x224-b2": BenchConfig("small", 16, 224, 2),
    "small-16x112-b4": BenchConfig("small", 16, 112, 4),
    "test-8x64-b2": BenchConfig("test", 8, 64, 2),  # --quick
}
DEFAULT_CONFIGS = ("small-16x224-b2", "small-16x112-b4")
PRECISIONS = ("fp32", "bf16")


def make_batch(config: BenchConfig, decoder_ratio: float = 0.0) -> tuple[torch.Tensor, MaskedTokens, torch.Tensor]:
    """The same clip and masks on every side: normalised [0, 1] pixels, tube masks from the real generator.

    → video [B, 3, T, H, W], the index form our training loop passes, and the bool mask [B, N] HF takes.
    """
    grid = config.grid
    gen = torch.Generator().manual_seed(SEED)
    pixels = torch.rand(config.batch, 3, grid.frames, grid.height, grid.width, generator=gen)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None, None], torch.tensor(IMAGENET_STD)[:, None, None, None]
    video = (pixels - mean) / std
    masks = MaskGenerator(MaskSpec(type="tube", ratio=MASK_RATIO, decoder_ratio=decoder_ratio), grid, seed=SEED)
    tokens = collate_masks([masks(epoch=0, index=i) for i in range(config.batch)])
    bool_mask = torch.ones(config.batch, grid.num_tokens, dtype=torch.bool).scatter(1, tokens.visible, False)
    return video, tokens, bool_mask


def build_model(side: str, config: BenchConfig, weights: Path) -> torch.nn.Module:
    """Our model or HF's, in train mode, holding the initial weights saved in `weights` (our layout)."""
    from safetensors.torch import load_file

    state = load_file(weights)
    if side == "ours":
        model = PretrainVideoMAE(config.spec, config.grid)
        model.load_state_dict(state, strict=True)
        return model.train()
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    from videomae_cli.interop.hf import hf_config_kwargs, to_hf_pretraining_state_dict

    hf_config = VideoMAEConfig(**hf_config_kwargs(config.spec, config.grid), attn_implementation="sdpa")
    model = VideoMAEForPreTraining(hf_config)
    model.load_state_dict(to_hf_pretraining_state_dict(state), strict=True)
    model.decoder.norm.eps = config.spec.layer_norm_eps  # HF hard-codes 1e-5; align so the losses are comparable
    return model.train()


def run_worker(case: dict[str, Any], args: argparse.Namespace) -> None:
    """One case: warm-up and timed steps; prints one JSON line."""
    config = CONFIGS[case["config"]]
    if case["side"] == "hf":
        import transformers  # noqa: F401  (imported before the baseline, like torch, so it is not counted)
    baseline = harness.max_rss_mib()
    model = build_model(case["side"], config, Path(args.weights))
    set_activation_checkpointing(model, case["variant"] == "checkpointed")
    decoder_ratio = 0.5 if case["variant"] == "dec0.5" else 0.0
    video, tokens, bool_mask = make_batch(config, decoder_ratio)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05, fused=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=case["precision"] == "bf16")
    hf_video = video.permute(0, 2, 1, 3, 4)  # HF takes [B, T, C, H, W]; a view, as a user would pass it
    forward = torch.compile(model) if case["variant"] == "compiled" else model
    train = case["mode"] == "train"

    def loss() -> torch.Tensor:
        with autocast:
            if case["side"] == "ours":
                return forward(video, tokens).loss
            return forward(pixel_values=hf_video, bool_masked_pos=bool_mask).loss

    def step() -> float:
        if not train:
            with torch.no_grad():
                return float(loss())
        value = loss()
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(value.detach())

    harness.finish_worker(case, step, args, baseline)


def save_initial_weights(config: BenchConfig, path: Path) -> None:
    """The official V1 initialisation, seeded, saved once so both sides start from identical weights."""
    harness.save_seeded(lambda: PretrainVideoMAE(config.spec, config.grid), path, SEED)


def check_losses(ours: dict[str, Any], hf: dict[str, Any], precision: str) -> float:
    """Relative difference of the first-step losses; fp32 must agree to FP32_LOSS_RTOL."""
    rel = abs(ours["first_loss"] - hf["first_loss"]) / abs(hf["first_loss"])
    if precision == "fp32" and rel > FP32_LOSS_RTOL:
        raise SystemExit(
            f"fp32 first-step losses disagree: ours {ours['first_loss']:.7g}, hf {hf['first_loss']:.7g} "
            f"(relative {rel:.2e} > {FP32_LOSS_RTOL:g})"
        )
    return rel


def cases_for(config: str, compile_: bool) -> list[dict[str, Any]]:
    """Every case timed for one config (see the module docstring)."""

    def case(side: str, precision: str, mode: str = "train", variant: str = "eager") -> dict[str, Any]:
        return {"side": side, "config": config, "precision": precision, "mode": mode, "variant": variant}

    cases = [case(side, p, mode) for p in PRECISIONS for side in ("ours", "hf") for mode in ("train", "forward")]
    cases = [c for c in cases if c["mode"] == "train" or c["precision"] == "fp32"]
    grid = CONFIGS[config].grid
    if grid.h % 2 == 0 and grid.w % 2 == 0:  # the running cell tiles 2×2 patches: 112² (7×7) cannot have it
        cases += [case("ours", p, variant="dec0.5") for p in PRECISIONS]
    if compile_:
        cases.append(case("ours", "bf16", variant="compiled"))
    cases.append(case("ours", "bf16", variant="checkpointed"))
    return cases


def targets_for(config: str, s: dict[str, dict[str, Any]]) -> list[harness.Target]:
    """The issue's targets for one config, from the case summaries (medians)."""

    def t(side: str, precision: str, mode: str = "train", variant: str = "eager") -> float:
        return s[f"{side}/{config}/{precision}/{mode}/{variant}"]["median_s"]

    default = resolve_precision("auto", torch.device("cpu"))[0]  # what `videomae pretrain` trains in here
    found = [
        harness.Target("train step fp32: hf / ours", config, t("hf", "fp32") / t("ours", "fp32"), 1.3),
        harness.Target(
            "forward fp32: hf / ours", config, t("hf", "fp32", "forward") / t("ours", "fp32", "forward"), 1.4
        ),
        harness.Target(
            "peak memory fp32 train: ours / hf",
            config,
            s[f"ours/{config}/fp32/train/eager"]["peak_mib"] / s[f"hf/{config}/fp32/train/eager"]["peak_mib"],
            0.8,
            at_most=True,
        ),
        harness.Target(f"default ({default}) vs hf fp32: hf / ours", config, t("hf", "fp32") / t("ours", default), 1.8),
        harness.Target("bf16 train: hf bf16 / ours bf16", config, t("hf", "bf16") / t("ours", "bf16"), 1.5),
        harness.Target(
            f"peak memory default ({default}) train: ours / hf fp32",
            config,
            s[f"ours/{config}/{default}/train/eager"]["peak_mib"] / s[f"hf/{config}/fp32/train/eager"]["peak_mib"],
            0.7,
            at_most=True,
        ),
    ]
    extra: list[harness.Target] = []
    if f"ours/{config}/fp32/train/dec0.5" in s:
        cell = [t("ours", p) / t("ours", p, variant="dec0.5") for p in PRECISIONS]
        found.append(harness.Target("running cell 0.5 vs tube, fp32: ours / ours", config, cell[0], 1.5))
        extra.append(harness.Target("(info) running cell 0.5 vs tube, bf16", config, cell[1], 1.5))
    if f"ours/{config}/bf16/train/compiled" in s:
        ratio = t("hf", "fp32") / t("ours", "bf16", variant="compiled")
        extra.append(harness.Target("(info) bf16 + compile vs hf fp32: hf / ours", config, ratio, 1.8))
    hf_peak = s[f"hf/{config}/fp32/train/eager"]["peak_mib"]
    checkpointed = s[f"ours/{config}/bf16/train/checkpointed"]
    ratio = checkpointed["peak_mib"] / hf_peak
    extra.append(harness.Target("(info) peak memory bf16 checkpointed: ours / hf fp32", config, ratio, 0.7, True))
    ratio = t("hf", "fp32") / checkpointed["median_s"]
    extra.append(harness.Target("(info) bf16 checkpointed vs hf fp32: hf / ours", config, ratio, 1.8))
    return found + extra


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """All cases of all configs over the rounds; the losses checked, the targets computed."""
    configs = ["test-8x64-b2"] if args.quick else args.configs
    summaries, losses, targets = {}, {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            weights = Path(tmp) / f"{config}.safetensors"
            save_initial_weights(CONFIGS[config], weights)
            extra = ["--weights", str(weights), "--steps", str(args.steps), "--warmup", str(args.warmup)]
            runs = harness.run_rounds(
                cases_for(config, args.compile),
                args.rounds,
                lambda case, extra=extra: harness.spawn(__file__, case, extra),
            )
            found = {name: harness.summarize(r) for name, r in runs.items()}
            for precision in PRECISIONS:  # the losses must agree before any timing is worth reporting
                pair = (found[f"{side}/{config}/{precision}/train/eager"] for side in ("ours", "hf"))
                losses[f"{config}/{precision}"] = check_losses(*pair, precision)
            summaries.update(found)
            targets += targets_for(config, found)
    return {
        "environment": environment(),
        "args": vars(args),
        "cases": summaries,
        "first_loss_rel_diff": losses,
        "targets": [t.as_json() for t in targets],
        "_targets": targets,
    }


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    import transformers

    return machine.environment(torch=torch.__version__, transformers=transformers.__version__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(DEFAULT_CONFIGS))
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile case")
    harness.add_common_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    harness.main(parse_args(argv), run_worker, run_benchmark)


if __name__ == "__main__":
    main()
