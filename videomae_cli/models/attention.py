"""Scaled dot-product attention, softmax(q kᵀ / √d) v, by the kernel measured fastest for the device, dtype and length.

Everywhere but bf16 on a CPU this is `F.scaled_dot_product_attention` (the fused flash/efficient kernels on GPUs, the
flash kernel in fp32 on CPUs). In bf16 on a CPU, SDPA's flash kernel uses the matrix units (AMX) far less than bf16
matmuls do: its backward runs at a few percent of their peak, and for short sequences its per-call cost loses to a
plain matmul, softmax, matmul. The kernels there:

- `math`: q kᵀ, softmax, · v as three ops; autograd keeps the probabilities [B, H, N, N] for the backward. For the
  short sequences an encoder sees under 90% masking, where that is little memory.
- `sdpa_matmul_backward` (`SdpaMatmulBackward`): SDPA's flash forward; the backward recomputes the probabilities a
  block of query rows at a time, as `math` forms them, and forms the gradients with bf16 matmuls (the softmax
  backward: dS = P ⊙ (dP − rowsum(P ⊙ dP)), dP = dO vᵀ): `math`'s gradients without keeping [B, H, N, N]. Keeps only
  q, k and v (less than SDPA's own backward, which also keeps the output and the log-sum-exp). Measured slower than
  SDPA at every length so far, so only a measured `MATMUL_BACKWARD_MIN_TOKENS` switches it on.

`choose_kernel` picks by thresholds measured on a 2-core Sapphire Rapids (AMX) machine; `benchmarks/bench_attention.py`
measures them again on any machine, and docs/performance.md holds the numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from videomae_cli.runtime import native_bf16

SDPA, MATH, SDPA_MATMUL_BACKWARD = "sdpa", "math", "sdpa_matmul_backward"
# bf16 on a CPU with AMX (2 cores, torch 2.14), one layer's attention, ms per forward + backward / per forward alone
# (benchmarks/bench_attention.py, docs/performance.md):
#   [4, 6, 40]:  SDPA 2.50 / 0.15, math 0.71 / 0.16      [2, 6, 157]: SDPA 5.52 / 1.04, math 3.08 / 0.71
#   [4, 3, 392]: SDPA 9.49 / 1.46, math 12.4 / 6.84      [2, 3, 1568]: SDPA 39.5 / 6.65, math 80.3 / 28.5,
#   SDPA's forward + the matmul backward 70.1. Math wins up to the encoder's lengths and loses from 256 tokens on
# (the crossover lies between 157 and 256); the matmul backward loses at every length measured (its fp32 softmax
# backward over [B, H, n, N] costs more than SDPA's own backward), so it is never chosen: it stays for machines where
# bench_attention.py finds otherwise.
MATH_MAX_TOKENS = 160
MATMUL_BACKWARD_MIN_TOKENS: int | None = None
# Whether this CPU has bf16 matmul units (AMX, AVX512-BF16). Without them bf16 is emulated, every kernel is slow, and
# nothing was measured: SDPA stays. Asked once, at import: a constant is what torch.compile can trace through.
CPU_COMPUTES_BF16 = native_bf16(torch.device("cpu"))
BACKWARD_BLOCK_ELEMENTS = 1 << 23  # probabilities recomputed per block of query rows: 8 Mi elements, 32 MiB in fp32


def choose_kernel(device: str, dtype: torch.dtype, tokens: int, training: bool) -> str:
    """The attention kernel for q, k, v on `device` in `dtype` with `tokens` per sequence; `training`: gradients
    will flow through it."""
    if device != "cpu" or dtype != torch.bfloat16 or not CPU_COMPUTES_BF16:
        return SDPA
    if tokens <= MATH_MAX_TOKENS:
        return MATH
    if training and MATMUL_BACKWARD_MIN_TOKENS is not None and tokens >= MATMUL_BACKWARD_MIN_TOKENS:
        return SDPA_MATMUL_BACKWARD
    return SDPA


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d) v for q, k, v [B, heads, N, d], by `choose_kernel`'s kernel → [B, heads, N, d]."""
    training = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    kernel = choose_kernel(q.device.type, q.dtype, q.shape[-2], training)
    if kernel == MATH:
        return math_attention(q, k, v)
    if kernel == SDPA_MATMUL_BACKWARD:
        return SdpaMatmulBackward.apply(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention as three ops; the probabilities cast back to v's dtype for the second matmul."""
    return probabilities(q, k).to(v.dtype) @ v


def probabilities(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d) in fp32 (as SDPA accumulates it) from scores in q's dtype → [B, H, N_q, N_k]. The one
    place both `math_attention` and `SdpaMatmulBackward` form them, so that their gradients are the same."""
    return ((q @ k.transpose(-2, -1)).float() * q.shape[-1] ** -0.5).softmax(-1)


class SdpaMatmulBackward(torch.autograd.Function):
    """SDPA's CPU flash forward; a backward of matmuls in the inputs' dtype, recomputing the probabilities."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(q, k, v)
        return F.scaled_dot_product_attention(q, k, v)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        q, k, v = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        scale = q.shape[-1] ** -0.5
        grad_q = torch.empty_like(q)
        grad_k, grad_v = torch.zeros_like(k, dtype=torch.float32), torch.zeros_like(v, dtype=torch.float32)
        v_t = v.transpose(-2, -1)
        rows = max(1, BACKWARD_BLOCK_ELEMENTS // (q.shape[0] * q.shape[1] * k.shape[-2]))
        for start in range(0, q.shape[-2], rows):
            block = slice(start, start + rows)
            q_b, grad_out_b = q[:, :, block], grad_out[:, :, block]
            # P [B, H, n, N] as `math_attention` forms it (recomputing it from the forward's log-sum-exp instead gives
            # rows that do not sum to one once the scores are rounded).
            probs = probabilities(q_b, k)
            grad_probs = (grad_out_b @ v_t).float()  # dP = dO vᵀ, rounded to bf16 by the matmul
            # The softmax backward, P ⊙ (dP − rowsum(P ⊙ dP)), with the rounded dP on both sides: each row of dS then
            # sums to zero as it must (rowsum(dO ⊙ O) is the same in exact arithmetic, but cancels against the rounded
            # dP: a single token's gradient, exactly zero, came out at 1% of dP).
            grad_scores = probs * (grad_probs - (probs * grad_probs).sum(-1, keepdim=True))
            grad_scores = (grad_scores * scale).to(q.dtype)  # dS [B, H, n, N]
            grad_q[:, :, block] = grad_scores @ k
            grad_k += grad_scores.transpose(-2, -1) @ q_b
            grad_v += probs.to(v.dtype).transpose(-2, -1) @ grad_out_b
        return grad_q, grad_k.to(k.dtype), grad_v.to(v.dtype)
