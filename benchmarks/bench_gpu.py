"""One command for an accelerator: our models against HF transformers' VideoMAE on identical weights, in bf16.

Cases: ViT-S, ViT-B and ViT-L pretraining steps (16×224 clips, 90% tube masking) and a ViT-B fine-tuning step (400
classes), each side eager and under torch.compile. A step is forward + backward + fused AdamW under bf16 autocast,
as `videomae pretrain`/`finetune` take it at their default precision on a GPU. Each case runs in its own process
(benchmarks/harness.py); both sides start from the same seeded weights and read the same clips and masks.

Reported per case: clips/s (the batch over the median step), peak memory (CUDA: the allocator's peak; CPU: resident
memory over the post-import baseline), and MFU: model FLOPs per step (models/flops.py, the formulas in
docs/design.md, the same for both sides) over the step time and the device's peak bf16 rate (known GPUs by name,
else `--peak-tflops`). A table and a JSON report.

    python benchmarks/bench_gpu.py                         # on the GPU: every case, ~10 min on one H100-class GPU
    python benchmarks/bench_gpu.py --device cpu --tiny     # the smallest model, one round, compile traced only: CI
    python benchmarks/bench_gpu.py --cases pretrain-base --variants eager --json /tmp/gpu.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import bench_finetune
import bench_pretrain
import harness  # benchmarks/harness.py: scripts run from this folder
import machine
import torch
import torch.nn.functional as F

from videomae_cli.config.grid import TokenGrid
from videomae_cli.config.schema import ModelSpec
from videomae_cli.masking import MaskedTokens
from videomae_cli.models.flops import TRAIN_STEP_FORWARDS, classifier_flops, pretrain_flops

# Dense bf16 peak TFLOP/s (with fp32 accumulation) from the vendors' data sheets, by a piece of the device's name.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}


@dataclass(frozen=True)
class Case:
    """One benchmarked model and shape: a pretraining or fine-tuning step of a named size."""

    task: str  # pretrain | finetune
    size: str
    frames: int
    input_size: int
    batch: int

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(name=self.size)

    @property
    def grid(self) -> TokenGrid:
        return TokenGrid(self.frames, self.input_size, self.input_size, self.spec.patch_size, tubelet=2)

    @property
    def pretrain_config(self) -> bench_pretrain.BenchConfig:
        """The same shape as bench_pretrain describes it (its model builder, batch and weights take that)."""
        return bench_pretrain.BenchConfig(self.size, self.frames, self.input_size, self.batch)


CASES = {
    "pretrain-small": Case("pretrain", "small", 16, 224, 32),
    "pretrain-base": Case("pretrain", "base", 16, 224, 16),
    "pretrain-large": Case("pretrain", "large", 16, 224, 8),
    "finetune-base": Case("finetune", "base", 16, 224, 8),
}
TINY_CASES = {
    "pretrain-test": Case("pretrain", "test", 8, 64, 2),
    "finetune-test": Case("finetune", "test", 8, 64, 2),
}
SIDES = ("ours", "hf")
VARIANTS = ("eager", "compiled")


def all_cases(tiny: bool) -> dict[str, Case]:
    return TINY_CASES if tiny else CASES


def run_worker(case: dict[str, Any], args: argparse.Namespace) -> None:
    """One (case, side, variant): warm-up and timed steps; prints one JSON line."""
    device = torch.device(case["device"])
    shape = all_cases(case["tiny"])[case["case"]]
    if case["side"] == "hf":
        import transformers  # noqa: F401  (imported before the baseline, like torch, so it is not counted)
    baseline = harness.max_rss_mib()
    build = pretrain_step if shape.task == "pretrain" else finetune_step
    harness.finish_worker(case, build(case, shape, device, args), args, baseline)


def pretrain_step(case: dict[str, Any], shape: Case, device: torch.device, args: argparse.Namespace):
    config = shape.pretrain_config
    model = bench_pretrain.build_model(case["side"], config, Path(args.weights)).to(device)
    video, tokens, bool_mask = bench_pretrain.make_batch(config)
    video, bool_mask = video.to(device), bool_mask.to(device)
    tokens = MaskedTokens(*(None if t is None else t.to(device) for t in astuple(tokens)))
    hf_video = video.permute(0, 2, 1, 3, 4)  # HF takes [B, T, C, H, W]
    forward = compiled(model, case, args)

    def loss() -> torch.Tensor:
        if case["side"] == "ours":
            return forward(video, tokens).loss
        return forward(pixel_values=hf_video, bool_masked_pos=bool_mask).loss

    return train_step(model, loss, device)


def finetune_step(case: dict[str, Any], shape: Case, device: torch.device, args: argparse.Namespace):
    model = bench_finetune.build_model(case["side"], shape.spec, shape.grid, Path(args.weights)).to(device)
    video, labels = (t.to(device) for t in bench_finetune.make_batch(shape.grid, shape.batch))
    hf_video = video.permute(0, 2, 1, 3, 4)
    forward = compiled(model, case, args)

    def loss() -> torch.Tensor:
        logits = forward(video) if case["side"] == "ours" else forward(pixel_values=hf_video).logits
        return F.cross_entropy(logits.float(), labels)

    return train_step(model, loss, device)


def compiled(model: torch.nn.Module, case: dict[str, Any], args: argparse.Namespace):
    """The model as the case runs it: itself, or under torch.compile with the chosen backend."""
    return torch.compile(model, backend=args.compile_backend) if case["variant"] == "compiled" else model


def train_step(model: torch.nn.Module, loss, device: torch.device):
    """forward under bf16 autocast + backward + fused AdamW; returns the loss (a host sync, so steps time whole)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=True)

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            value = loss()
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(value.detach())

    return step


def flops_per_step(shape: Case) -> int:
    """Model FLOPs of one training step of the whole batch (the same for both sides)."""
    if shape.task == "finetune":
        return TRAIN_STEP_FORWARDS * shape.batch * classifier_flops(shape.spec, shape.grid, bench_finetune.NUM_CLASSES)
    config = shape.pretrain_config
    tokens = bench_pretrain.make_batch(config)[1]
    visible, decoded = tokens.visible.shape[1], tokens.decoded.shape[1]
    return TRAIN_STEP_FORWARDS * shape.batch * pretrain_flops(shape.spec, shape.grid, visible, decoded)


def peak_tflops(device: str, given: float | None) -> float | None:
    """The device's peak bf16 TFLOP/s: given, or a known GPU's; None when unknown (MFU is then not reported)."""
    if given is not None or device != "cuda":
        return given
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def save_weights(shape: Case, path: Path) -> None:
    if shape.task == "pretrain":
        bench_pretrain.save_initial_weights(shape.pretrain_config, path)
    else:
        bench_finetune.save_initial_weights(shape.spec, shape.grid, path)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cases = all_cases(args.tiny)
    chosen = args.cases or list(cases)
    peak = peak_tflops(device, args.peak_tflops)
    rows, summaries = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            shape = cases[name]
            weights = Path(tmp) / f"{name}.safetensors"
            save_weights(shape, weights)
            runs = [
                {"case": name, "side": side, "variant": variant, "device": device, "tiny": args.tiny}
                for side in args.sides
                for variant in args.variants
            ]
            extra = ["--weights", str(weights), "--steps", str(args.steps), "--warmup", str(args.warmup)]
            results = harness.run_rounds(
                runs, args.rounds, lambda run, extra=extra: harness.spawn(__file__, run, extra)
            )
            for key, result in results.items():
                summary = harness.summarize(result)
                if device == "cuda":
                    summary["peak_mib"] = statistics.median(r["cuda_peak_mib"] for r in result)
                summaries[key] = summary
                rows.append(row(key, shape, summary, peak))
    targets = ratios(rows)
    environment = machine.environment(torch=torch.__version__, transformers=__import__("transformers").__version__)
    if device == "cuda":
        environment["gpu"] = torch.cuda.get_device_name()
    print(format_rows(rows))
    print()
    return {
        "environment": environment,
        "device": device,
        "peak_tflops": peak,
        "args": vars(args),
        "rows": rows,
        "cases": summaries,
        "targets": [t.as_json() for t in targets],
        "_targets": targets,
    }


def row(key: str, shape: Case, summary: dict[str, Any], peak: float | None) -> dict[str, Any]:
    name, side, variant = key.split("/")[:3]
    seconds = summary["median_s"]
    flops = flops_per_step(shape)
    return {
        "case": name,
        "side": side,
        "variant": variant,
        "batch": shape.batch,
        "step_s": seconds,
        "clips_per_s": shape.batch / seconds,
        "peak_mib": summary["peak_mib"],
        "tflops_per_s": flops / seconds / 1e12,
        "mfu": None if peak is None else flops / seconds / (peak * 1e12),
        "first_loss": summary["first_loss"],
    }


def ratios(rows: list[dict[str, Any]]) -> list[harness.Target]:
    """Ours over HF, for each case and variant present on both sides (informational: the GPU has no target yet)."""
    by_key = {(r["case"], r["side"], r["variant"]): r for r in rows}
    found = []
    for (case, side, variant), ours in by_key.items():
        hf = by_key.get((case, "hf", variant))
        if side == "ours" and hf is not None:
            found.append(harness.Target(f"(info) {variant} step: hf / ours", case, hf["step_s"] / ours["step_s"], 1.0))
    return found


def format_rows(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'case':<16} {'side':<5} {'variant':<9} {'batch':>5} {'clips/s':>9} {'peak MiB':>9} {'TFLOP/s':>8} {'MFU':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        mfu = "n/a" if r["mfu"] is None else f"{r['mfu']:.1%}"
        lines.append(
            f"{r['case']:<16} {r['side']:<5} {r['variant']:<9} {r['batch']:>5} {r['clips_per_s']:>9.2f} "
            f"{r['peak_mib']:>9.0f} {r['tflops_per_s']:>8.2f} {mfu:>6}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_common_args(parser)
    parser.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when available")
    parser.add_argument("--tiny", action="store_true", help="the smallest model at 8×64, one round: a smoke run")
    parser.add_argument("--cases", nargs="+", help="some of the cases (default: all)")
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--peak-tflops", type=float, help="the device's peak bf16 TFLOP/s, for MFU")
    parser.add_argument("--compile-backend", help="torch.compile's backend (default inductor; --tiny: aot_eager)")
    args = parser.parse_args(argv)
    if args.tiny and args.worker is None:  # a smoke run: the compile path traced, not code-generated (minutes on a CPU)
        args.rounds, args.steps, args.warmup = 1, min(args.steps, 2), min(args.warmup, 1)
        args.compile_backend = args.compile_backend or "aot_eager"
    args.compile_backend = args.compile_backend or "inductor"
    return args


def main(argv: list[str] | None = None) -> None:
    harness.main(parse_args(argv), run_worker, run_benchmark)


if __name__ == "__main__":
    main()
