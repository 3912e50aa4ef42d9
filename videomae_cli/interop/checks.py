"""Every tensor of SRC checked against the resolved spec, under SRC's own names, before anything is built or dropped.

The model the spec describes is built on the meta device (shapes only, no memory), its state dict is mapped back
into SRC's layout (the same rename tables, run the other way: fused qkv split into query/key/value, MAE-ST's k bias
added, the fixed position table the official files may carry), and each SRC tensor is compared with its counterpart.
A mismatch is one line naming the SRC tensor, its shape and the shape the spec needs, so a damaged or mislabelled
file is refused before the converter concatenates or drops anything.
"""

from __future__ import annotations

import torch
from torch import Tensor

from videomae_cli.config.schema import FinetuneSpec, PretrainSpec, grid_of
from videomae_cli.errors import ConfigError
from videomae_cli.interop import hf, maest
from videomae_cli.interop.sources import Source
from videomae_cli.models.factory import build_model

Shapes = dict[str, tuple[int, ...]]

# Official files may carry the fixed sinusoid table (rebuilt from the spec, so dropped after a check).
OFFICIAL_TABLES = {"pretrain": "encoder.pos_embed", "classifier": "pos_embed"}


def our_shapes(spec: PretrainSpec | FinetuneSpec, classes: list[str] | None) -> dict[str, Tensor]:
    """The state dict of the model `spec` describes, as shape-only (meta) tensors."""
    with torch.device("meta"):
        return build_model(spec, classes).state_dict()


def expected_source_shapes(
    source: Source, spec: PretrainSpec | FinetuneSpec, ours: dict[str, Tensor], kind: str
) -> tuple[Shapes, set[str]]:
    """(SRC name → the shape `spec` needs, SRC names that may be absent) in `source`'s layout, from `ours`: the
    spec's model state dict (`our_shapes`)."""
    if source.layout == "maest":
        theirs = maest.to_maest_state_dict(ours, pretrain=kind == "pretrain")
        optional = {k for k in theirs if k.endswith(("attn.q.bias", "attn.k.bias", "attn.v.bias"))}  # no_qkv_bias
    elif source.layout == "hf":
        style = "v4" if any(k.endswith("attention.attention.q_bias") for k in source.state_dict) else "v5"
        to_hf = hf.to_hf_classification_state_dict if kind == "classifier" else hf.to_hf_pretraining_state_dict
        theirs, optional = to_hf(ours, qv_bias_style=style), set()
    else:
        enc = "encoder." if kind == "pretrain" else ""
        dim = ours[f"{enc}patch_embed.proj.weight"].shape[0]
        table = torch.empty(1, grid_of(spec).num_tokens, dim, device="meta")  # [1, N, C]
        theirs, optional = {**ours, OFFICIAL_TABLES[kind]: table}, {OFFICIAL_TABLES[kind]}
    return {name: tuple(t.shape) for name, t in theirs.items()}, optional


def check_tensors(state_dict: dict[str, Tensor], expected: Shapes, optional: set[str], where: str = "SRC") -> None:
    """Every tensor has the shape the spec needs, and nothing is missing or left over; else one line, `where:` first."""
    for name, value in state_dict.items():
        if not isinstance(value, Tensor):
            raise ConfigError(f"{where}: {name} is a {type(value).__name__}, not a tensor")
        if name in expected and tuple(value.shape) != expected[name]:
            raise ConfigError(
                f"{where}: {name} is {_shape(value.shape)}; the inferred spec needs {_shape(expected[name])} "
                "(a damaged file, or a spec field set wrong)"
            )
    unexpected = [name for name in state_dict if name not in expected]
    if unexpected:
        raise ConfigError(f"{where}: {len(unexpected)} tensors have no place in the inferred model: {_few(unexpected)}")
    missing = [name for name in expected if name not in state_dict and name not in optional]
    if missing:
        raise ConfigError(f"{where}: {len(missing)} tensors the inferred model needs are missing: {_few(missing)}")


def _shape(shape: tuple[int, ...] | torch.Size) -> str:
    return f"[{', '.join(str(n) for n in shape)}]"


def _few(names: list[str]) -> str:
    return ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
