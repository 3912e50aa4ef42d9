"""Memory of pretraining per model size (tiny → giant) at batch 1, 16×224² clips (giant: 14-pixel patches), CPU.

For every size: parameter counts (encoder, decoder, and the fine-tune classifier with 400 classes) from a model built
on the meta device (no memory used), and the bytes of weights + gradients + AdamW state (16 bytes per parameter in
fp32). For the sizes given to `--measure` (default tiny, small, base), one measured train step in its own subprocess —
forward, backward, fused AdamW step — fp32 and bf16 autocast, with and without activation checkpointing: the peak
resident memory over the post-import baseline (ru_maxrss) and the step time.

    python benchmarks/memory_by_size.py                                # ~3 min on 2 cores
    python benchmarks/memory_by_size.py --measure tiny small base large
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness  # benchmarks/harness.py: scripts run from this folder
import torch

from videomae_cli.config.schema import MaskSpec, ModelSpec
from videomae_cli.config.sizes import SIZE_NAMES
from videomae_cli.masking import MaskGenerator, collate_masks
from videomae_cli.models.classifier import VideoClassifier
from videomae_cli.models.pretrain import PretrainVideoMAE
from videomae_cli.models.vit import TokenGrid, set_activation_checkpointing

FRAMES, SIDE, BATCH = 16, 224, 1
BYTES_PER_TRAINED_PARAM = 4 + 4 + 8  # fp32 weight, gradient, AdamW exp_avg + exp_avg_sq


def grid_for(spec: ModelSpec) -> TokenGrid:
    side = SIDE // spec.patch_size * spec.patch_size  # 224 for 16-pixel patches, 224 for 14 as well
    return TokenGrid(FRAMES, side, side, spec.patch_size, tubelet=2)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(size: str) -> dict[str, Any]:
    """Parameter counts of the pretrain model's parts and of the classifier, built on the meta device."""
    spec = ModelSpec(name=size)
    with torch.device("meta"):
        model = PretrainVideoMAE(spec, grid_for(spec))
        classifier = VideoClassifier(spec, grid_for(spec), 400)
    total = count(model)
    return {
        "size": size,
        "encoder_params": count(model.encoder),
        "decoder_params": total - count(model.encoder),
        "classifier_params": count(classifier),
        "tokens": grid_for(spec).num_tokens,
        "weights_grads_adamw_gib": total * BYTES_PER_TRAINED_PARAM / 2**30,
    }


def run_worker(case: dict[str, Any]) -> None:
    """One measured train step (after one warm-up step) of one size/precision/checkpointing case."""
    baseline = harness.max_rss_mib()
    spec = ModelSpec(name=case["size"])
    grid = grid_for(spec)
    model = PretrainVideoMAE(spec, grid).train()
    set_activation_checkpointing(model, case["checkpointing"])
    video = torch.randn(BATCH, 3, grid.frames, grid.height, grid.width)
    tokens = collate_masks([MaskGenerator(MaskSpec(), grid, seed=0)(0, i) for i in range(BATCH)])
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=case["precision"] == "bf16")
    times = []
    for _ in range(2):
        start = time.perf_counter()
        with autocast:
            loss = model(video, tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    sys.stdout.write(json.dumps({**case, "peak_mib": harness.max_rss_mib() - baseline, "step_s": times[-1]}) + "\n")


def measure(size: str) -> list[dict[str, Any]]:
    rows = []
    for precision in ("fp32", "bf16"):
        for checkpointing in (False, True):
            case = {"size": size, "precision": precision, "checkpointing": checkpointing}
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", json.dumps(case)], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                rows.append({**case, "error": proc.stderr.strip().splitlines()[-1]})
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            sys.stderr.write(f"{size} {precision} checkpointing={checkpointing}: {rows[-1]['peak_mib']:.0f} MiB\n")
    return rows


def format_tables(counts: list[dict[str, Any]], measured: list[dict[str, Any]]) -> str:
    header = f"{'size':<6} {'tokens':>6} {'encoder M':>10} {'decoder M':>10} {'classifier M':>13}"
    lines = [header + f" {'weights+grads+AdamW GiB':>24}"]
    for c in counts:
        lines.append(
            f"{c['size']:<6} {c['tokens']:>6} {c['encoder_params'] / 1e6:>10.1f} {c['decoder_params'] / 1e6:>10.1f} "
            f"{c['classifier_params'] / 1e6:>13.1f} {c['weights_grads_adamw_gib']:>24.2f}"
        )
    lines += ["", f"{'size':<6} {'precision':<9} {'checkpointing':<13} {'peak MiB':>9} {'step s':>7}"]
    for m in measured:
        peak = f"{m['peak_mib']:>9.0f}" if "peak_mib" in m else f"{'failed':>9}"
        step = f"{m['step_s']:>7.2f}" if "step_s" in m else ""
        lines.append(f"{m['size']:<6} {m['precision']:<9} {m['checkpointing']!s:<13} {peak} {step}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", nargs="*", choices=SIZE_NAMES, default=["tiny", "small", "base"])
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        run_worker(json.loads(args.worker))
        return
    counts = [parameter_counts(size) for size in SIZE_NAMES if size != "test"]
    measured = [row for size in args.measure for row in measure(size)]
    print(format_tables(counts, measured))
    harness.write_report(
        {"clip": [FRAMES, SIDE, SIDE], "batch": BATCH, "counts": counts, "measured": measured}, args.json
    )


if __name__ == "__main__":
    main()
