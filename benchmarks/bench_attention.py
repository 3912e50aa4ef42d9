"""The attention kernels of `videomae_cli/models/attention.py` side by side, one layer's attention at the shapes the
models use: milliseconds of forward + backward (training) and of forward alone under no_grad (inference), bf16 on
this CPU, with fp32 SDPA for reference; and which kernel `choose_kernel` picks. These are the measurements the
chooser's thresholds come from.

Kernels: `sdpa` (F.scaled_dot_product_attention), `math` (matmul, fp32 softmax, matmul), `sdpa_matmul_backward`
(SDPA's forward, the backward as bf16 matmuls). Each timing is the median of `--repeats` runs of `--number` calls,
the kernels interleaved within every repeat (so a busy spell of the machine hits them alike).

    python benchmarks/bench_attention.py [--repeats 7] [--number 3] [--max-tokens N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from videomae_cli.models.attention import SdpaMatmulBackward, choose_kernel, math_attention

# (name, batch, heads, tokens): ViT-S/16 (6 heads, decoder 3) at 16×224 batch 2 and 16×112 batch 4 with 90% tube
# masking, its fine-tuning, ViT-B (12 heads, decoder 6) at 16×224 batch 2, and lengths between them.
SHAPES = [
    ("S 16x112 b4 encoder (40 visible)", 4, 6, 40),
    ("S 16x224 b2 encoder (157 visible)", 2, 6, 157),
    ("length 256", 2, 6, 256),
    ("S 16x112 b4 decoder", 4, 3, 392),
    ("S 16x112 b4 fine-tune", 4, 6, 392),
    ("length 512", 2, 6, 512),
    ("length 784", 2, 6, 784),
    ("S 16x224 b2 decoder", 2, 3, 1568),
    ("S 16x224 b2 fine-tune", 2, 6, 1568),
    ("B 16x224 b2 decoder", 2, 6, 1568),
    ("B 16x224 b2 fine-tune", 2, 12, 1568),
]
KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "sdpa": F.scaled_dot_product_attention,
    "math": math_attention,
    "sdpa_matmul_backward": SdpaMatmulBackward.apply,
}


def inputs(batch: int, heads: int, tokens: int, dtype: torch.dtype) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    shape = (batch, heads, tokens, 64)
    return [torch.randn(shape, generator=generator).to(dtype).requires_grad_() for _ in range(3)]


def train_call(kernel: Callable[..., torch.Tensor], qkv: list[torch.Tensor], grad: torch.Tensor) -> Callable[[], None]:
    def call() -> None:
        kernel(*qkv).backward(grad)

    return call


def infer_call(kernel: Callable[..., torch.Tensor], qkv: list[torch.Tensor]) -> Callable[[], None]:
    def call() -> None:
        with torch.no_grad():
            kernel(*qkv)

    return call


def timed(calls: dict[str, Callable[[], None]], repeats: int, number: int) -> dict[str, float]:
    """Median milliseconds per call of each entry, interleaved."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(number):
                call()
            times[name].append((time.perf_counter() - start) / number * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def measure_shape(batch: int, heads: int, tokens: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    bf16, fp32 = inputs(batch, heads, tokens, torch.bfloat16), inputs(batch, heads, tokens, torch.float32)
    grad16, grad32 = torch.ones_like(bf16[0]), torch.ones_like(fp32[0])
    train = {name: train_call(kernel, bf16, grad16) for name, kernel in KERNELS.items()}
    train["sdpa fp32"] = train_call(F.scaled_dot_product_attention, fp32, grad32)
    infer = {name: infer_call(KERNELS[name], bf16) for name in ("sdpa", "math")}
    infer["sdpa fp32"] = infer_call(F.scaled_dot_product_attention, fp32)
    return {"train": timed(train, args.repeats, args.number), "infer": timed(infer, args.repeats, args.number)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--number", type=int, default=3)
    parser.add_argument("--json", help="also write the measurements here")
    parser.add_argument("--max-tokens", type=int, help="only the shapes up to this many tokens")
    args = parser.parse_args()
    rows = []
    print(
        "| shape [B, H, N, 64] | mode | sdpa fp32 | sdpa bf16 | math bf16 | sdpa + matmul backward | fastest | chosen |"
    )
    print("|---|---|---:|---:|---:|---:|---|---|")
    for name, batch, heads, tokens in SHAPES:
        if args.max_tokens is not None and tokens > args.max_tokens:
            continue
        result = measure_shape(batch, heads, tokens, args)
        for mode, times in result.items():
            bf16 = {k: v for k, v in times.items() if k != "sdpa fp32"}
            fastest = min(bf16, key=bf16.__getitem__)
            chosen = choose_kernel("cpu", torch.bfloat16, tokens, training=mode == "train")
            cells = [f"{times[k]:.2f}" if k in times else "" for k in ("sdpa fp32", *KERNELS)]
            print(f"| {name} [{batch}, {heads}, {tokens}] | {mode} | {' | '.join(cells)} | {fastest} | {chosen} |")
            rows.append({"shape": name, "batch": batch, "heads": heads, "tokens": tokens, "mode": mode, "ms": times})
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}, out, indent=1)


if __name__ == "__main__":
    main()
