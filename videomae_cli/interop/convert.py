"""`videomae convert`: a checkpoint from another codebase → one of our self-describing checkpoints.

The steps, each refusing with one line rather than converting wrong: read SRC (`sources`), infer the model spec and
where each number came from (`settings`; head counts are never guessed), check every SRC tensor against that spec
under SRC's own names (`checks`), and only then map the weights onto our names (fusing q/k/v, dropping what is
exactly redundant). `--set` overrides any inferred field; `verify` can then compare the result with the source's
own math.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from videomae_cli.checkpoint import KIND_SPECS, model_metadata, save_weights
from videomae_cli.config.resolve import resolve_spec
from videomae_cli.config.schema import FinetuneSpec, PretrainSpec
from videomae_cli.errors import ConfigError
from videomae_cli.interop import hf, maest
from videomae_cli.interop.checks import check_tensors, expected_source_shapes, our_shapes
from videomae_cli.interop.settings import Setting, infer_settings, missing_heads, nested, required_tensor
from videomae_cli.interop.sources import LAYOUTS, Source, read_source


@dataclass
class Conversion:
    """The converted checkpoint and the account of how it was made."""

    source: Source
    kind: str
    spec: PretrainSpec | FinetuneSpec
    state_dict: dict[str, Tensor]
    classes: list[str] | None
    settings: dict[str, Setting]
    dropped: list[tuple[str, str]]
    notes: list[str]

    @property
    def description(self) -> str:
        return f"{LAYOUTS[self.source.layout]} {self.kind}"


def convert(path: Path, sets: list[str] | None = None) -> Conversion:
    """Read SRC, infer the spec (with `sets` applied over it), check every SRC tensor against it, then map."""
    source = read_source(path)
    kind = kind_of(source)
    renamed = renamed_view(source, kind)
    settings = infer_settings(source, renamed, kind)
    given = {item.partition("=")[0].strip() for item in sets or []}
    missing_heads(settings, kind, given, source)
    spec = resolve_spec(KIND_SPECS[kind], sets=sets, base=(nested(settings), f"inferred from {path.name}"))
    settings.update((key, Setting(lookup(spec, key), "--set")) for key in given)
    classes = _classes(source, renamed) if kind == "classifier" else None
    ours = our_shapes(spec, classes)
    expected, optional = expected_source_shapes(source, spec, ours, kind)
    check_tensors(source_names(source), expected, optional)
    state_dict, dropped = to_our_names(source, kind)
    check_loads(ours, state_dict)
    return Conversion(source, kind, spec, state_dict, classes, settings, dropped, _notes(source))


def save_conversion(conversion: Conversion, out: Path, origin: str | None = None) -> None:
    """Write the converted weights as one of our checkpoints (atomically); `origin` names the source in the metadata
    where its path does not (a hub id)."""
    where = origin or conversion.source.path
    extra: dict[str, Any] = {"converted_from": f"{where} ({LAYOUTS[conversion.source.layout]})"}
    if conversion.classes is not None:
        extra["classes"] = json.dumps(conversion.classes)
    metadata = model_metadata(conversion.kind, conversion.spec.model_dump_json(), **extra)
    save_weights(out, conversion.state_dict, metadata)


# ---------------------------------------------------------------------------------------------------------------------
# Mapping onto our names


def kind_of(source: Source) -> str:
    """ "pretrain" (an encoder and a decoder) or "classifier" (an encoder and a head)."""
    sd = source.state_dict
    if source.layout == "maest":
        return maest.maest_kind(sd)
    if source.layout == "hf":
        sd = hf.add_base_prefix(sd)
        if hf.is_hf_classification(sd):
            return "classifier"
        if "decoder.head.weight" not in sd:
            raise ConfigError(f"SRC: {source.path}: a bare VideoMAEModel (no decoder, no classifier) has no equivalent")
        return "pretrain"
    return "pretrain" if "encoder.patch_embed.proj.weight" in sd else "classifier"


def source_names(source: Source) -> dict[str, Tensor]:
    """SRC's tensors under the names its own code uses (HF's `videomae.` prefix added to a bare encoder)."""
    return hf.add_base_prefix(source.state_dict) if source.layout == "hf" else source.state_dict


def renamed_view(source: Source, kind: str) -> dict[str, Tensor]:
    """SRC's tensors that map by renaming alone, under our names: what the spec is read from. Nothing is fused or
    dropped yet, so tensors of any shape pass; layouts we cannot hold are refused here, before any shape check."""
    sd = source.state_dict
    try:
        if source.layout == "maest":
            if kind == "classifier" and "cls_token" not in sd:
                raise ValueError(
                    "an MAE-ST classifier without a cls token (cls_embed=False) pools tokens 1..N, skipping the "
                    "first patch; our classifiers pool every patch, so it cannot be converted exactly"
                )
            return maest.rename_maest(sd)[0]
        if source.layout == "hf":
            return hf.renamed_from_hf(source_names(source))
    except ValueError as e:
        raise ConfigError(f"SRC: {source.path}: {e}") from None
    if kind == "classifier" and "fc_norm.weight" not in sd and "norm.weight" in sd:
        raise ConfigError(
            f"SRC: {source.path}: a use_mean_pooling=False classifier (norm, no fc_norm); only mean pooling works"
        )
    return sd


def to_our_names(source: Source, kind: str) -> tuple[dict[str, Tensor], list[tuple[str, str]]]:
    """(our state dict, [(dropped SRC key, why)]). Every SRC tensor's shape has been checked already."""
    try:
        if source.layout == "maest":
            return maest.from_maest_state_dict(source.state_dict)
        if source.layout == "hf":
            sd = source_names(source)
            if kind == "classifier":
                return hf.from_hf_classification_state_dict(sd), []
            return hf.from_hf_pretraining_state_dict(sd), []
    except ValueError as e:
        raise ConfigError(f"SRC: {source.path}: {e}") from None
    return _from_official(source)


def _from_official(source: Source) -> tuple[dict[str, Tensor], list[tuple[str, str]]]:
    state_dict = dict(source.state_dict)
    dropped = []
    for key in [k for k in ("pos_embed", "encoder.pos_embed") if k in state_dict]:
        _check_fixed_table(key, state_dict.pop(key))
        dropped.append((key, "the fixed sinusoid table, rebuilt from the spec"))
    return state_dict, dropped


def _notes(source: Source) -> list[str]:
    if source.layout == "hf":
        return ["HF fixes eps 1e-5 in decoder.norm and fc_norm (ours: model.layer_norm_eps): last digits differ"]
    return []


def _check_fixed_table(key: str, table: Tensor) -> None:
    """Official code never learns `pos_embed` by default; a learned 1-D table is a layout we do not have."""
    from videomae_cli.models.vit import sinusoid_table

    rows = table.reshape(-1, table.shape[-1])
    if not torch.allclose(rows.float(), sinusoid_table(*rows.shape), atol=1e-4):
        raise ConfigError(f"SRC: {key} is a learned 1-D position table (use_learnable_pos_emb); not supported")


def lookup(spec: PretrainSpec | FinetuneSpec, key: str) -> Any:
    """The value of a dotted spec field ("model.heads"), or None."""
    value: Any = spec
    for part in key.split("."):
        value = getattr(value, part, None)
    return value


def _classes(source: Source, state_dict: dict[str, Tensor]) -> list[str]:
    """Class names: config.json's id2label for HF sources, else the numbers 0..K-1."""
    num_classes = required_tensor(state_dict, "head.weight", 2).shape[0]
    if source.config is not None:
        return hf.classes_from_hf_config(source.config, num_classes)
    return [str(i) for i in range(num_classes)]


def check_loads(ours: dict[str, Tensor], state_dict: dict[str, Tensor]) -> None:
    """The mapped weights fill our model (`ours`, shapes only) exactly, as load_state_dict(strict=True) needs: a
    guard on the mapping itself (SRC's own shapes were checked before it)."""
    expected = {name: tuple(t.shape) for name, t in ours.items()}
    check_tensors(state_dict, expected, set(), "SRC mapped onto our names")
