"""The attention kernels (models/attention.py) against SDPA: the same outputs and gradients within bf16's tolerance at
the lengths the models use (odd ones, one with a cls token), and a chooser that leaves fp32 and GPUs on SDPA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videomae_cli.models.attention import (
    MATH,
    SDPA,
    SDPA_MATMUL_BACKWARD,
    SdpaMatmulBackward,
    attention,
    choose_kernel,
    math_attention,
)

# bf16 keeps 8 significant bits: one rounding is a relative 2⁻⁹; attention's sums and the inputs' own rounding make a
# few of them. Measured against fp32 SDPA on the same (rounded) inputs, bf16 SDPA itself lands within these.
RTOL, ATOL = 2e-2, 2e-2
LENGTHS = [1, 40, 157, 197, 392, 1569]  # 197: ViT's 196 patches and a cls token; 1569: odd and above one block


def qkv(tokens: int, batch: int = 1, heads: int = 2, dim: int = 64, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    # Scores of a few units, as trained attention has: the softmax is neither flat nor one-hot.
    return [torch.randn(batch, heads, tokens, dim, generator=generator).bfloat16() for _ in range(3)]


def outputs_and_grads(kernel, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The kernel's output and the gradients of a fixed random projection of it, in fp32."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = kernel(*leaves)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.dtype)
    (out * weight).float().sum().backward()
    return [out.float(), *(leaf.grad.float() for leaf in leaves)]


def reference(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """SDPA in fp32 on the same bf16-rounded inputs."""
    return outputs_and_grads(F.scaled_dot_product_attention, [t.float() for t in tensors])


def assert_close_to_reference(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    for name, g, w in zip(("output", "grad q", "grad k", "grad v"), got, want, strict=True):
        scale = max(w.abs().max().item(), 1.0)  # gradients of one token are zero: compare them at unit scale
        torch.testing.assert_close(g / scale, w / scale, rtol=RTOL, atol=ATOL, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("tokens", LENGTHS)
def test_the_matmul_backward_matches_sdpa_in_output_and_gradients(tokens: int) -> None:
    tensors = qkv(tokens)
    assert_close_to_reference(outputs_and_grads(SdpaMatmulBackward.apply, tensors), reference(tensors))


@pytest.mark.parametrize("tokens", LENGTHS[:4])
def test_math_attention_matches_sdpa_in_output_and_gradients(tokens: int) -> None:
    tensors = qkv(tokens)
    assert_close_to_reference(outputs_and_grads(math_attention, tensors), reference(tensors))


@pytest.mark.parametrize("tokens", [157, 1569])
def test_the_matmul_backward_has_sdpas_output_and_the_plain_paths_gradients(tokens: int) -> None:
    tensors = qkv(tokens)
    ours = outputs_and_grads(SdpaMatmulBackward.apply, tensors)
    assert torch.equal(ours[0], outputs_and_grads(F.scaled_dot_product_attention, tensors)[0])
    for got, want in zip(ours[1:], outputs_and_grads(math_attention, tensors)[1:], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=4e-3)  # fp32 sums over blocks, in another order


def test_the_matmul_backward_in_blocks_equals_it_in_one_block(monkeypatch) -> None:
    tensors = qkv(300, batch=1, heads=2)
    whole = outputs_and_grads(SdpaMatmulBackward.apply, tensors)
    monkeypatch.setattr("videomae_cli.models.attention.BACKWARD_BLOCK_ELEMENTS", 2 * 300 * 7)  # 7 rows a block
    for a, b in zip(outputs_and_grads(SdpaMatmulBackward.apply, tensors), whole, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=4e-3)  # fp32 sums over blocks, in another order


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("tokens", [40, 157, 1568])
@pytest.mark.parametrize("training", [True, False])
def test_only_bf16_on_a_cpu_leaves_sdpa(dtype: torch.dtype, tokens: int, training: bool, monkeypatch) -> None:
    monkeypatch.setattr("videomae_cli.models.attention.CPU_COMPUTES_BF16", True)
    assert choose_kernel("cpu", dtype, tokens, training) == SDPA
    assert choose_kernel("cuda", torch.bfloat16, tokens, training) == SDPA
    assert choose_kernel("mps", torch.bfloat16, tokens, training) == SDPA


def test_bf16_on_a_cpu_with_bf16_units_takes_the_measured_kernels(monkeypatch) -> None:
    monkeypatch.setattr("videomae_cli.models.attention.CPU_COMPUTES_BF16", True)
    assert choose_kernel("cpu", torch.bfloat16, 157, training=True) == MATH
    assert choose_kernel("cpu", torch.bfloat16, 40, training=False) == MATH
    assert choose_kernel("cpu", torch.bfloat16, 1568, training=False) == SDPA
    monkeypatch.setattr("videomae_cli.models.attention.MATMUL_BACKWARD_MIN_TOKENS", 1000)
    assert choose_kernel("cpu", torch.bfloat16, 1568, training=True) == SDPA_MATMUL_BACKWARD
    assert choose_kernel("cpu", torch.bfloat16, 1568, training=False) == SDPA
    assert choose_kernel("cuda", torch.bfloat16, 1568, training=True) == SDPA


def test_bf16_on_a_cpu_without_bf16_units_stays_on_sdpa(monkeypatch) -> None:
    monkeypatch.setattr("videomae_cli.models.attention.CPU_COMPUTES_BF16", False)
    assert choose_kernel("cpu", torch.bfloat16, 157, training=True) == SDPA


def test_fp32_attention_is_sdpa_bit_for_bit() -> None:
    q, k, v = (t.float() for t in qkv(157))
    assert torch.equal(attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_attention_without_gradients_uses_no_autograd_function() -> None:
    q, k, v = (t.requires_grad_() for t in qkv(1568, batch=1, heads=1))
    with torch.no_grad():
        out = attention(q, k, v)
    assert out.grad_fn is None
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))


def test_the_matmul_backward_compiles_to_what_it_computes_eagerly() -> None:
    tensors = qkv(200, batch=1, heads=2)
    compiled = torch.compile(SdpaMatmulBackward.apply, backend="aot_eager", fullgraph=True)
    eager = outputs_and_grads(SdpaMatmulBackward.apply, tensors)
    for a, b in zip(outputs_and_grads(compiled, tensors), eager, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_vit_trains_in_bf16_with_the_cpu_kernels_as_with_sdpa(monkeypatch) -> None:
    from videomae_cli.config.grid import TokenGrid
    from videomae_cli.config.schema import ModelSpec
    from videomae_cli.models.classifier import VideoClassifier

    model = VideoClassifier(ModelSpec(name="test"), TokenGrid(4, 32, 32, 16, tubelet=2), num_classes=3)
    video = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))

    def grads() -> list[torch.Tensor]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(video).float().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    monkeypatch.setattr("videomae_cli.models.attention.CPU_COMPUTES_BF16", False)
    with_sdpa = grads()
    monkeypatch.setattr("videomae_cli.models.attention.CPU_COMPUTES_BF16", True)
    monkeypatch.setattr("videomae_cli.models.attention.MATMUL_BACKWARD_MIN_TOKENS", 1)
    for tokens, kernel in ((8, MATH), (8, SDPA_MATMUL_BACKWARD)):  # the test grid has 8 tokens
        monkeypatch.setattr("videomae_cli.models.attention.MATH_MAX_TOKENS", tokens if kernel == MATH else 0)
        assert choose_kernel("cpu", torch.bfloat16, tokens, training=True) == kernel
        for got, want in zip(grads(), with_sdpa, strict=True):
            scale = max(want.abs().max().item(), 1e-3)
            torch.testing.assert_close(got / scale, want / scale, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("units", [False, True])
def test_the_chooser_leaves_a_compiled_model_in_one_graph(units: bool, monkeypatch) -> None:
    from torch._dynamo import explain, reset

    from videomae_cli.config.grid import TokenGrid
    from videomae_cli.config.schema import ModelSpec
    from videomae_cli.models.classifier import VideoClassifier

    monkeypatch.setattr("videomae_cli.models.attention.CPU_COMPUTES_BF16", units)
    model = VideoClassifier(ModelSpec(name="test"), TokenGrid(4, 32, 32, 16, tubelet=2), num_classes=3)
    reset()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        explained = explain(model)(torch.randn(2, 3, 4, 32, 32))
    assert explained.graph_break_count == 0, explained.break_reasons
