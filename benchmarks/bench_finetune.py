"""Fine-tuning benchmark: our VideoClassifier against HF transformers' VideoMAEForVideoClassification (sdpa), CPU.

Both sides get the same config (ViT-S/16 on 16×224² clips, 400 classes, mean pooling + fc_norm), initial weights
(one safetensors file, converted for HF with videomae_cli.interop.hf; HF's hard-coded fc_norm eps 1e-5 set to our
1e-6), clips and labels. A step is forward + cross-entropy + backward + AdamW(fused=True).step(), fp32 and bf16
autocast, and ours in bf16 under torch.compile too (`--no-compile` skips it). Each case runs in its own subprocess,
the order rotating from round to round (benchmarks/harness.py); the first-step losses must agree (fp32: 1e-4
relative) before the timings are reported.

    python benchmarks/bench_finetune.py                 # the full run (~6 min on 2 cores)
    python benchmarks/bench_finetune.py --quick         # a tiny smoke run
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import harness  # benchmarks/harness.py: scripts run from this folder
import machine
import torch
import torch.nn.functional as F

from videomae_cli.config.schema import ModelSpec
from videomae_cli.models.classifier import VideoClassifier
from videomae_cli.models.pretrain import IMAGENET_MEAN, IMAGENET_STD
from videomae_cli.models.vit import TokenGrid
from videomae_cli.runtime import resolve_precision

NUM_CLASSES = 400
FP32_LOSS_RTOL = 1e-4
SEED = 0
CONFIGS = {
    "small-16x224-b2": ("small", 16, 224, 2),
    "test-8x64-b2": ("test", 8, 64, 2),  # --quick
}
PRECISIONS = ("fp32", "bf16")


def shape(config: str) -> tuple[ModelSpec, TokenGrid, int]:
    size, frames, side, batch = CONFIGS[config]
    spec = ModelSpec(name=size)
    return spec, TokenGrid(frames, side, side, spec.patch_size, tubelet=2), batch


def make_batch(grid: TokenGrid, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised random clips [B, 3, T, H, W] and labels [B], the same on both sides."""
    gen = torch.Generator().manual_seed(SEED)
    pixels = torch.rand(batch, 3, grid.frames, grid.height, grid.width, generator=gen)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None, None], torch.tensor(IMAGENET_STD)[:, None, None, None]
    return (pixels - mean) / std, torch.randint(0, NUM_CLASSES, (batch,), generator=gen)


def build_model(side: str, spec: ModelSpec, grid: TokenGrid, weights: Path) -> torch.nn.Module:
    """Our classifier or HF's, in train mode, holding the initial weights saved in `weights` (our layout)."""
    from safetensors.torch import load_file

    state = load_file(weights)
    if side == "ours":
        model = VideoClassifier(spec, grid, NUM_CLASSES)
        model.load_state_dict(state, strict=True)
        return model.train()
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    from videomae_cli.interop.hf import hf_config_kwargs, to_hf_classification_state_dict

    kwargs = hf_config_kwargs(spec, grid, classifier=True)
    hf_config = VideoMAEConfig(**kwargs, num_labels=NUM_CLASSES, attn_implementation="sdpa")
    model = VideoMAEForVideoClassification(hf_config)
    model.load_state_dict(to_hf_classification_state_dict(state), strict=True)
    model.fc_norm.eps = spec.layer_norm_eps  # HF hard-codes 1e-5; align so the losses are comparable
    return model.train()


def run_worker(case: dict[str, Any], args: argparse.Namespace) -> None:
    """One case: warm-up and timed steps; prints one JSON line."""
    if case["side"] == "hf":
        import transformers  # noqa: F401  (imported before the baseline, like torch, so it is not counted)
    baseline = harness.max_rss_mib()
    spec, grid, batch = shape(case["config"])
    model = build_model(case["side"], spec, grid, Path(args.weights))
    video, labels = make_batch(grid, batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.999), weight_decay=0.05, fused=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=case["precision"] == "bf16")
    hf_video = video.permute(0, 2, 1, 3, 4)  # HF takes [B, T, C, H, W]

    forward = torch.compile(model) if case["variant"] == "compiled" else model

    def step() -> float:
        with autocast:
            logits = forward(video) if case["side"] == "ours" else forward(pixel_values=hf_video).logits
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    harness.finish_worker(case, step, args, baseline)


def save_initial_weights(spec: ModelSpec, grid: TokenGrid, path: Path) -> None:
    """The official fine-tune initialisation, seeded, saved once so both sides start from identical weights."""
    harness.save_seeded(lambda: VideoClassifier(spec, grid, NUM_CLASSES), path, SEED)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    config = "test-8x64-b2" if args.quick else "small-16x224-b2"
    cases = [
        {"side": s, "config": config, "precision": p, "variant": "eager"} for p in PRECISIONS for s in ("ours", "hf")
    ]
    if args.compile:
        cases.append({"side": "ours", "config": config, "precision": "bf16", "variant": "compiled"})
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "init.safetensors"
        save_initial_weights(*shape(config)[:2], weights)
        extra = ["--weights", str(weights), "--steps", str(args.steps), "--warmup", str(args.warmup)]
        runs = harness.run_rounds(cases, args.rounds, lambda case: harness.spawn(__file__, case, extra))
    s = {name: harness.summarize(r) for name, r in runs.items()}
    losses = {}
    for p in PRECISIONS:
        ours, hf = s[f"ours/{config}/{p}/eager"]["first_loss"], s[f"hf/{config}/{p}/eager"]["first_loss"]
        losses[p] = abs(ours - hf) / abs(hf)
        if p == "fp32" and losses[p] > FP32_LOSS_RTOL:
            raise SystemExit(f"fp32 first-step losses disagree: ours {ours:.7g}, hf {hf:.7g}")
    targets = targets_for(config, s)
    environment = machine.environment(torch=torch.__version__, transformers=__import__("transformers").__version__)
    return {
        "environment": environment,
        "args": vars(args),
        "cases": s,
        "first_loss_rel_diff": losses,
        "targets": [target.as_json() for target in targets],
        "_targets": targets,
    }


def targets_for(config: str, s: dict[str, dict[str, Any]]) -> list[harness.Target]:
    """The targets of issues 8 and 29, from the case summaries (medians)."""

    def t(side: str, precision: str, variant: str = "eager") -> float:
        return s[f"{side}/{config}/{precision}/{variant}"]["median_s"]

    default = resolve_precision("auto", torch.device("cpu"))[0]  # what `videomae finetune` trains in here
    peak = s[f"ours/{config}/{default}/eager"]["peak_mib"] / s[f"hf/{config}/fp32/eager"]["peak_mib"]
    targets = [
        harness.Target("fine-tune step fp32: hf / ours", config, t("hf", "fp32") / t("ours", "fp32"), 1.2),
        harness.Target(f"default ({default}) vs hf fp32: hf / ours", config, t("hf", "fp32") / t("ours", default), 1.8),
        harness.Target("bf16: hf bf16 / ours bf16", config, t("hf", "bf16") / t("ours", "bf16"), 1.5),
        harness.Target(f"peak memory default ({default}): ours / hf fp32", config, peak, 0.7, at_most=True),
    ]
    if f"ours/{config}/bf16/compiled" in s:
        ratio = t("hf", "fp32") / t("ours", "bf16", "compiled")
        targets.append(harness.Target("(info) bf16 + compile vs hf fp32: hf / ours", config, ratio, 1.8))
    return targets


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile case")
    harness.add_common_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    harness.main(parse_args(argv), run_worker, run_benchmark)


if __name__ == "__main__":
    main()
