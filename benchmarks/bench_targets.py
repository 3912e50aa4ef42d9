"""What the newer objectives cost, side by side in one run: the HOG target against the pixel target in a ViT-S
pretraining step, and the motion mask against the tube mask in the loader.

- target: one training step (forward, backward, AdamW) of the same model, clip and mask with `model.target` =
  norm_pixel and = hog, alternating over rounds; and `hog_target` alone on the step's decoded tokens. The issue's
  goal: the HOG target costs at most 5% of a ViT-S step.
- mask: per clip, `motion_energy` + `motion_mask` (what a loader worker adds for `mask.type: motion`) against the
  tube mask, on uint8 clips of the same size.

    python benchmarks/bench_targets.py [--size small] [--frames 16] [--input 224] [--batch 2] [--steps 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from videomae_cli.config.schema import PretrainSpec, grid_of
from videomae_cli.masking import MaskGenerator, collate_masks
from videomae_cli.models.hog import hog_target
from videomae_cli.models.pretrain import PretrainVideoMAE


def spec_for(args: argparse.Namespace, target: str) -> PretrainSpec:
    return PretrainSpec(
        model={"name": args.size, "target": target}, data={"num_frames": args.frames, "input_size": args.input}
    )


def step_timer(args: argparse.Namespace, target: str, video: torch.Tensor, masks: list) -> Callable[[], float]:
    """A function that runs one training step of a fresh seeded model with `target` and returns its seconds."""
    torch.manual_seed(0)
    spec = spec_for(args, target)
    model = PretrainVideoMAE(spec.model, grid_of(spec)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = collate_masks(masks)

    def step() -> float:
        start = time.perf_counter()
        loss = model(video, tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    return step


def time_target(args: argparse.Namespace) -> dict[str, float]:
    spec = spec_for(args, "hog")
    grid = grid_of(spec)
    video = torch.randn(args.batch, 3, args.frames, args.input, args.input)
    masks = [MaskGenerator(spec.mask, grid, 0)(0, i) for i in range(args.batch)]
    steps = {target: step_timer(args, target, video, masks) for target in ("norm_pixel", "hog")}
    decoded = collate_masks(masks).decoded
    times: dict[str, list[float]] = {"norm_pixel": [], "hog": [], "hog target alone": []}
    for target in steps:
        steps[target]()  # warm-up
    for round_ in range(args.rounds):
        order = list(steps) if round_ % 2 == 0 else list(reversed(steps))
        for target in order:
            times[target] += [steps[target]() for _ in range(args.steps)]
        start = time.perf_counter()
        for _ in range(args.steps):
            with torch.no_grad():
                hog_target(video, grid, decoded, spec.model.hog_cell)
        times["hog target alone"].append((time.perf_counter() - start) / args.steps)
    return {name: statistics.median(values) for name, values in times.items()}


def time_masks(args: argparse.Namespace, clips: int = 64) -> dict[str, float]:
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (clips, args.frames, args.input, args.input, 3), dtype=np.uint8)
    out = {}
    for kind in ("tube", "motion"):
        spec = PretrainSpec(
            model={"name": args.size}, data={"num_frames": args.frames, "input_size": args.input}, mask={"type": kind}
        )
        make = MaskGenerator(spec.mask, grid_of(spec), 0)
        start = time.perf_counter()
        for i in range(clips):
            make(0, i, clip=video[i])
        out[kind] = (time.perf_counter() - start) / clips
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--input", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    print(f"ViT-{args.size} {args.frames}×{args.input}², batch {args.batch}, tube 0.9, {threads} threads")
    step = time_target(args)
    print(f"  step, norm_pixel target: {step['norm_pixel']:.3f} s (median)")
    print(f"  step, hog target:        {step['hog']:.3f} s  = {step['hog'] / step['norm_pixel']:.3f}× the pixel step")
    share = step["hog target alone"] / step["norm_pixel"]
    verdict = "met" if share <= 0.05 else "missed"
    alone = step["hog target alone"] * 1000
    print(f"  hog_target alone:        {alone:.1f} ms = {share:.1%} of a step (≤ 5%: {verdict})")
    masks = time_masks(args)
    print(f"mask per clip: tube {masks['tube'] * 1000:.2f} ms, motion {masks['motion'] * 1000:.2f} ms (energy + draw)")


if __name__ == "__main__":
    main()
