"""Every SRC tensor is checked against the inferred spec before the converter fuses or drops anything, and
`convert --verify` compares the result with the source's own math.

A damaged file is refused with one line naming the SRC tensor, its shape and the shape the spec needs (exit 2): never
an internal error, never a conversion. The verification runs transformers' own model for HF sources and the official
formulas for V1/V2 and MAE-ST ones; a deliberately corrupted conversion must fail it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file, save_file
from test_convert_heads import GEOMETRY_SETS, TINY, official_source, save_pth
from test_convert_maest import DEPTH, DIM, MaskedAutoencoderViT, VisionTransformer, randomized
from test_interop import hf_classification, hf_pretraining, save_hf
from torch import Tensor
from typer.testing import CliRunner

from videomae_cli.cli import app
from videomae_cli.errors import ConfigError
from videomae_cli.interop import hf
from videomae_cli.interop.convert import Conversion, convert
from videomae_cli.interop.verify import verify

HEADS_SETS = ["model.heads=4", "model.decoder_heads=2"]  # the MAE-ST test model's, which its files do not record


def maest_file(path: Path, kind: str = "pretrain", **changes: Tensor) -> Path:
    model = MaskedAutoencoderViT() if kind == "pretrain" else VisionTransformer()
    state = {**randomized(model, seed=1).state_dict(), **changes}
    torch.save({"model_state": state}, path)
    return path


def convert_cli(src: Path, out: Path) -> list[str]:
    return ["convert", str(src), "--out", str(out), *(arg for item in HEADS_SETS for arg in ("--set", item))]


def one_line_error(*args: str) -> str:
    done = run_cli(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


# ------------------------------------------------------------------------------------------------ SRC tensor shapes


def test_maest_qkv_weight_of_the_wrong_input_width_is_refused_naming_it(tmp_path: Path) -> None:
    src = maest_file(tmp_path / "bad.pth", **{"blocks.1.attn.k.weight": torch.zeros(DIM, DIM - 16)})
    line = one_line_error(*convert_cli(src, tmp_path / "out.safetensors"))
    assert "blocks.1.attn.k.weight is [64, 48]" in line and "needs [64, 64]" in line
    assert not (tmp_path / "out.safetensors").exists()


def test_maest_key_bias_of_the_wrong_shape_is_refused_though_it_would_be_dropped(tmp_path: Path) -> None:
    src = maest_file(tmp_path / "bad.pth", **{"decoder_blocks.0.attn.k.bias": torch.zeros(5)})
    line = one_line_error(*convert_cli(src, tmp_path / "out.safetensors"))
    assert "decoder_blocks.0.attn.k.bias is [5]" in line and "needs [32]" in line


LAYOUTS = ["official-pretrain", "official-classifier", "maest-pretrain", "maest-classifier", "hf-pretrain"]


def layout_source(layout: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """One file of a layout and kind, and the --set items that make it convert."""
    heads = ["model.heads=4", "model.decoder_heads=4"]
    if layout == "hf-pretrain":
        save_hf(hf_pretraining(seed=1), tmp_path / "hf", "save_pretrained")
        return tmp_path / "hf", []
    if layout.startswith("maest"):
        kind = layout.removeprefix("maest-")
        return maest_file(tmp_path / "mae.pth", kind), HEADS_SETS if kind == "pretrain" else HEADS_SETS[:1]
    kind = layout.removeprefix("official-")
    src = save_pth(official_source(kind, TINY), tmp_path / "v1.pth")
    return src, GEOMETRY_SETS + (heads if kind == "pretrain" else heads[:1])


def read_weights(src: Path) -> dict[str, Tensor]:
    if src.is_dir():
        return load_file(str(src / "model.safetensors"))
    state = torch.load(src, weights_only=True)
    return state["model" if "model" in state else "model_state"]


def write_weights(src: Path, weights: dict[str, Tensor], dest: Path) -> Path:
    """A copy of SRC (file or HF directory) at `dest` holding `weights`."""
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True)
        save_file(weights, str(dest / "model.safetensors"), metadata={"format": "pt"})
        return dest
    state = torch.load(src, weights_only=True)
    torch.save({**state, "model" if "model" in state else "model_state": weights}, dest)
    return dest


def shorter(tensor: Tensor) -> Tensor:
    """One element shorter in the last dim (a [1]-sized last dim grows to 2 instead)."""
    return tensor[..., :-1].contiguous() if tensor.shape[-1] > 1 else torch.zeros(*tensor.shape[:-1], 2)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_any_one_tensor_of_the_wrong_shape_is_refused_as_a_config_error(layout: str, tmp_path: Path) -> None:
    src, sets = layout_source(layout, tmp_path)
    convert(src, sets)  # the undamaged file converts
    weights = read_weights(src)
    for name, tensor in weights.items():
        damaged = write_weights(src, {**weights, name: shorter(tensor)}, tmp_path / f"damaged{src.suffix}")
        with pytest.raises(ConfigError):
            convert(damaged, sets)


def test_hf_query_weight_of_the_wrong_shape_is_refused_naming_it(tmp_path: Path) -> None:
    src, _ = layout_source("hf-pretrain", tmp_path)
    name = "videomae.encoder.layer.1.attention.attention.query.weight"
    weights = read_weights(src)
    damaged = write_weights(src, {**weights, name: weights[name][:, :-8].contiguous()}, tmp_path / "damaged")
    with pytest.raises(ConfigError, match=re.escape(f"{name} is [64, 56]; the inferred spec needs [64, 64]")):
        convert(damaged, [])


def test_missing_and_unexpected_tensors_are_named(tmp_path: Path) -> None:
    src = maest_file(tmp_path / "extra.pth", **{"blocks.0.attn.extra": torch.zeros(3)})
    with pytest.raises(ConfigError, match=r"no place in the inferred model: blocks\.0\.attn\.extra"):
        convert(src, HEADS_SETS)
    state = torch.load(src, weights_only=True)["model_state"]
    del state["blocks.0.attn.extra"], state[f"blocks.{DEPTH - 1}.mlp.fc2.bias"]
    torch.save({"model_state": state}, tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match=rf"missing: blocks\.{DEPTH - 1}\.mlp\.fc2\.bias"):
        convert(tmp_path / "missing.pth", HEADS_SETS)


def test_a_maest_file_without_qkv_biases_converts(tmp_path: Path) -> None:
    """no_qkv_bias: MAE-ST stores no q/k/v biases at all; zeros are exact, so they may be absent."""
    model = randomized(MaskedAutoencoderViT(), seed=1)
    state = {k: v for k, v in model.state_dict().items() if not re.search(r"attn\.[qkv]\.bias$", k)}
    torch.save({"model_state": state}, tmp_path / "nobias.pth")
    conversion = convert(tmp_path / "nobias.pth", HEADS_SETS)
    assert not conversion.state_dict["encoder.blocks.0.attn.q_bias"].any()


# ---------------------------------------------------------------------------------------------------------- verify


def swap_query_and_key(conversion: Conversion, block: str = "encoder.blocks.0.") -> None:
    """A conversion bug that no shape check can see: one block's q and k rows exchanged."""
    qkv = conversion.state_dict[f"{block}attn.qkv.weight"]
    q, k, v = qkv.chunk(3)
    conversion.state_dict[f"{block}attn.qkv.weight"] = torch.cat([k, q, v])


@pytest.mark.parametrize("layout", LAYOUTS[:4])
def test_verify_agrees_with_the_official_formulas_and_catches_a_corrupted_conversion(
    layout: str, tmp_path: Path
) -> None:
    src, sets = layout_source(layout, tmp_path)
    conversion = convert(src, sets)
    result = verify(conversion)
    assert result.ok and result.max_diff < 1e-6  # float64 throughout, but for our loss, kept in float32 by design
    block = "encoder.blocks.0." if layout.endswith("pretrain") else "blocks.0."
    swap_query_and_key(conversion, block)
    corrupted = verify(conversion)
    assert not corrupted.ok and corrupted.max_diff > 100 * corrupted.tolerance


def test_cli_verify_on_an_hf_source_prints_the_agreement_and_writes(tmp_path: Path) -> None:
    save_hf(hf_classification(seed=2), tmp_path / "hf", "4.x")
    out = tmp_path / "ours.safetensors"
    done = run_cli("convert", str(tmp_path / "hf"), "--out", str(out), "--verify")
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("verify:"))
    assert "transformers" in line and "VideoMAEForVideoClassification" in line and "logits" in line
    assert float(re.search(r"largest difference (\S+)", line).group(1)) < 1e-9
    assert out.exists()


def test_cli_verify_fails_a_corrupted_hf_conversion_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_hf(hf_pretraining(seed=3), tmp_path / "hf", "save_pretrained")
    mapping = hf.from_hf_pretraining_state_dict

    def corrupted(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        ours = mapping(state_dict)
        q, k, v = ours["decoder.blocks.0.attn.qkv.weight"].chunk(3)
        return {**ours, "decoder.blocks.0.attn.qkv.weight": torch.cat([k, q, v])}

    monkeypatch.setattr(hf, "from_hf_pretraining_state_dict", corrupted)
    out = tmp_path / "ours.safetensors"
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "hf"), "--out", str(out), "--verify"])
    assert result.exit_code == 2
    assert "--verify: the converted model does not compute what its source does" in result.output
    assert "VideoMAEForPreTraining" in result.output
    assert not out.exists()
