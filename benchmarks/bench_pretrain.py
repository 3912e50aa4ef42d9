"""Train-step benchmark: our PretrainVideoMAE against HF transformers' VideoMAEForPreTraining (sdpa), on the CPU.

Both sides get the same config, initial weights (one safetensors file, converted for HF with videomae_cli.interop.hf),
clip and tube mask (ratio 0.9). A step is forward + backward + AdamW(fused=True).step(). Each measurement runs in its
own subprocess (`--worker ours|hf`) so neither side inherits the other's allocator state or caches, and the sides
alternate which goes first from round to round, because other processes share the CPU.

Before timing, the first-step losses of the two sides must agree (fp32: 1e-4 relative); bf16 differences are reported.

    python benchmarks/bench_pretrain.py                      # the full run (tens of minutes on 2 cores)
    python benchmarks/bench_pretrain.py --quick              # a tiny smoke run
    python benchmarks/bench_pretrain.py --configs small-16x112-b4 --precisions bf16 --rounds 5 --steps 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import machine  # benchmarks/machine.py: scripts run from this folder
import torch

from videomae_cli.masking import MaskGenerator, collate_masks
from videomae_cli.models.pretrain import IMAGENET_MEAN, IMAGENET_STD, MaskedTokens, PretrainVideoMAE
from videomae_cli.models.vit import TokenGrid
from videomae_cli.specs import MaskSpec, ModelSpec

MASK = MaskSpec(type="tube", ratio=0.9)
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


def max_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024




def make_batch(config: BenchConfig) -> tuple[torch.Tensor, MaskedTokens, torch.Tensor]:
    """The same clip and masks on every side: normalised [0, 1] pixels, tube masks from the real generator.

    → video [B, 3, T, H, W], the index form our training loop passes, and the bool mask [B, N] HF takes.
    """
    grid = config.grid
    gen = torch.Generator().manual_seed(SEED)
    pixels = torch.rand(config.batch, 3, grid.frames, grid.height, grid.width, generator=gen)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None, None], torch.tensor(IMAGENET_STD)[:, None, None, None]
    video = (pixels - mean) / std
    masks = MaskGenerator(MASK, grid, seed=SEED)
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


def run_worker(args: argparse.Namespace) -> None:
    """One side, one config, one precision: warm-up and timed steps; prints one JSON line."""
    config = CONFIGS[args.config]
    if args.side == "hf":
        import transformers  # noqa: F401  (imported before the baseline, like torch, so it is not counted)
    baseline = max_rss_mib()
    model = build_model(args.side, config, Path(args.weights))
    video, tokens, bool_mask = make_batch(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05, fused=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()
    hf_video = video.permute(0, 2, 1, 3, 4)  # HF takes [B, T, C, H, W]; a view, as a user would pass it

    def step() -> float:
        with autocast:
            if args.side == "ours":
                loss = model(video, tokens).loss
            else:
                loss = model(pixel_values=hf_video, bool_masked_pos=bool_mask).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    times, cpu_times, losses = [], [], []
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            busy_start, own_start, wall_start = machine.busy_cpu_seconds(), time.process_time(), time.perf_counter()
        start, cpu_start = time.perf_counter(), time.process_time()
        losses.append(step())
        times.append(time.perf_counter() - start)
        # CPU seconds of all this process's threads: less sensitive than wall time to other processes on the CPU.
        cpu_times.append(time.process_time() - cpu_start)
    busy_end, own_cpu = machine.busy_cpu_seconds(), time.process_time() - own_start
    wall = time.perf_counter() - wall_start
    result = {
        # The share of all CPUs that other processes used during the timed steps: the benchmark's noise floor.
        "others_cpu": None if busy_end is None else (busy_end - busy_start - own_cpu) / (wall * os.cpu_count()),
        "side": args.side,
        "config": args.config,
        "precision": args.precision,
        "step_s": times[args.warmup :],
        "warmup_s": times[: args.warmup],
        "cpu_s": cpu_times[args.warmup :],
        "first_loss": losses[0],  # before any update: comparable across sides
        "last_loss": losses[-1],
        "peak_mib": max_rss_mib() - baseline,
        "threads": torch.get_num_threads(),
    }
    sys.stdout.write(json.dumps(result) + "\n")


def spawn(side: str, config: str, precision: str, weights: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one worker subprocess and parse its JSON line."""
    cmd = [sys.executable, __file__, "--worker", side, "--config", config, "--precision", precision]
    cmd += ["--weights", str(weights), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker {side} {config} {precision} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def save_initial_weights(config: BenchConfig, path: Path) -> None:
    """The official V1 initialisation, seeded, saved once so both sides start from identical weights."""
    from safetensors.torch import save_file

    torch.manual_seed(SEED)
    model = PretrainVideoMAE(config.spec, config.grid)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)


def check_losses(ours: dict[str, Any], hf: dict[str, Any]) -> float:
    """Relative difference of the first-step losses; fp32 must agree to FP32_LOSS_RTOL."""
    rel = abs(ours["first_loss"] - hf["first_loss"]) / abs(hf["first_loss"])
    if ours["precision"] == "fp32" and rel > FP32_LOSS_RTOL:
        raise SystemExit(
            f"{ours['config']} fp32: first-step losses disagree: ours {ours['first_loss']:.7g}, "
            f"hf {hf['first_loss']:.7g} (relative {rel:.2e} > {FP32_LOSS_RTOL:g})"
        )
    return rel


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """All timed steps of one side over all rounds → min/median/max seconds and the median peak memory."""
    steps = [t for run in runs for t in run["step_s"]]
    return {
        "min_s": min(steps),
        "median_s": statistics.median(steps),
        "max_s": max(steps),
        "cpu_median_s": statistics.median(t for run in runs for t in run["cpu_s"]),
        "peak_mib": statistics.median(run["peak_mib"] for run in runs),
        "max_others_cpu": max((run["others_cpu"] or 0.0) for run in runs),
        "first_loss": runs[0]["first_loss"],
        "last_loss": runs[0]["last_loss"],
        "steps_timed": len(steps),
    }


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Alternating ours/hf rounds over every (config, precision); returns the JSON-able results."""
    configs = ["test-8x64-b2"] if args.quick else args.configs
    cases = [(c, p) for c in configs for p in args.precisions]
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    loss_rel: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = {c: Path(tmp) / f"{c}.safetensors" for c in configs}
        for c in configs:
            save_initial_weights(CONFIGS[c], weights[c])
        for round_index in range(args.rounds):
            order = ("ours", "hf") if round_index % 2 == 0 else ("hf", "ours")
            for config, precision in cases:
                for side in order:
                    result = spawn(side, config, precision, weights[config], args)
                    runs.setdefault((config, precision, side), []).append(result)
                    sys.stderr.write(
                        f"round {round_index + 1}/{args.rounds} {config} {precision} {side}: "
                        f"median {statistics.median(result['step_s']):.3f}s\n"
                    )
                if round_index == 0:  # the losses must agree before any timing is worth reporting
                    pair = runs[(config, precision, "ours")][0], runs[(config, precision, "hf")][0]
                    loss_rel[(config, precision)] = check_losses(*pair)
    results = []
    for config, precision in cases:
        ours = summarize(runs[(config, precision, "ours")])
        hf = summarize(runs[(config, precision, "hf")])
        results.append(
            {
                "config": config,
                **asdict(CONFIGS[config]),
                "precision": precision,
                "ours": ours,
                "hf": hf,
                "hf_over_ours": hf["median_s"] / ours["median_s"],
                # The fastest step is the least disturbed by other processes on a shared CPU.
                "hf_over_ours_min": hf["min_s"] / ours["min_s"],
                "first_loss_rel_diff": loss_rel[(config, precision)],
            }
        )
    return {"environment": environment(), "args": vars(args), "results": results}


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    import transformers

    return machine.environment(
        torch=torch.__version__,
        transformers=transformers.__version__,
    )


# (header, width, format) of the table's columns; the last three are filled on the hf row only.
COLUMNS = (
    ("config", -16, "s"),
    ("prec", -4, "s"),
    ("side", -4, "s"),
    ("min s", 7, ".3f"),
    ("median s", 9, ".3f"),
    ("max s", 7, ".3f"),
    ("peak MiB", 9, ".0f"),
    ("others CPU", 10, ".0%"),
    ("first loss", 11, ".6f"),
    ("hf/ours med", 11, ".2f"),
    ("hf/ours min", 11, ".2f"),
    ("loss rel diff", 13, ".2e"),
)


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width text table of the results (seconds per step, MiB over the post-import baseline)."""

    def row(values: list[Any], header: bool = False) -> str:
        cells = []
        for (_, width, fmt), value in zip(COLUMNS, values, strict=False):
            text = value if header or fmt == "s" else format(value, fmt)
            cells.append(f"{text:<{-width}}" if width < 0 else f"{text:>{width}}")
        return " ".join(cells)

    lines = [row([name for name, _, _ in COLUMNS], header=True)]
    lines.append("-" * len(lines[0]))
    for r in report["results"]:
        for side in ("ours", "hf"):
            s = r[side]
            values = [r["config"], r["precision"], side, s["min_s"], s["median_s"], s["max_s"], s["peak_mib"]]
            values += [s["max_others_cpu"], s["first_loss"]]
            if side == "hf":
                values += [r["hf_over_ours"], r["hf_over_ours_min"], r["first_loss_rel_diff"]]
            lines.append(row(values))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(DEFAULT_CONFIGS))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--rounds", type=int, default=3, help="alternating ours/hf rounds per case")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per worker")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per worker")
    parser.add_argument("--quick", action="store_true", help="the tiny test-8x64-b2 config only (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    # Worker mode (internal): one side, one case.
    parser.add_argument("--worker", choices=("ours", "hf"), dest="side", help=argparse.SUPPRESS)
    parser.add_argument("--config", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.side is not None:
        run_worker(args)
        return
    report = run_benchmark(args)
    report["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in report["args"].items()}
    blob = json.dumps(report, indent=2)
    print(format_table(report))
    print(blob)
    if args.json is not None:
        args.json.write_text(blob + "\n")


if __name__ == "__main__":
    main()
