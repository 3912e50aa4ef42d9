"""`videomae convert`: a checkpoint from another codebase → one of our self-describing checkpoints.

Sources: official VideoMAE V1/V2 `.pth` (our native names, DESIGN §5), MAE-ST `.pth`, and HF transformers
directories (or `model.safetensors` + `config.json`). Weights are first mapped onto our names; the model spec is
then inferred from the tensor shapes, refined by what the file carries (HF config.json, the training `args` the
official scripts save), and the rest is the official default, always saying which. `--set` overrides any of it.
The result is verified by loading it into our model with strict=True before anything is written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.table import Table
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from videomae_cli.api import KIND_SPECS, build_model
from videomae_cli.engine.checkpoint import model_metadata, read_metadata, save_weights
from videomae_cli.errors import ConfigError
from videomae_cli.interop import hf, maest
from videomae_cli.interop.names import count_blocks
from videomae_cli.interop.pth import read_pth, strip_wrappers, unwrap_weights
from videomae_cli.models.sizes import SIZES
from videomae_cli.specs import FinetuneSpec, PretrainSpec, resolve_spec

LAYOUTS = {
    "official": "official VideoMAE V1/V2",
    "maest": "MAE-ST",
    "hf": "HF transformers VideoMAE",
}
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HF_SHARD_INDEX = "model.safetensors.index.json"
# Official defaults for what the weights do not record (V1 K400 pretraining; MAE-ST's own defaults).
OFFICIAL_DEFAULTS = {"data.num_frames": 16, "data.input_size": 224}
PRETRAIN_DEFAULTS = {
    "official": {"mask.type": "tube", "mask.ratio": 0.9, "model.target": "norm_pixel"},
    "maest": {"mask.type": "random", "mask.ratio": 0.9, "model.target": "patch_norm"},
    "hf": {"mask.type": "tube", "mask.ratio": 0.9},
}


@dataclass
class Source:
    """Weights read from SRC, before any renaming."""

    path: Path
    layout: str
    state_dict: dict[str, Tensor]
    args: dict[str, Any] = field(default_factory=dict)  # the training args saved beside official weights
    config: dict[str, Any] | None = None  # HF config.json
    steps: list[str] = field(default_factory=list)  # how the weights were reached ("under ['model']", ...)


@dataclass
class Setting:
    """One inferred spec field and where its value came from."""

    value: Any
    origin: str


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
    """Read SRC, map and infer, validate (with `sets` applied over the inferred spec), and load-check the result."""
    source = read_source(path)
    state_dict, kind, dropped, notes = to_our_names(source)
    settings = infer_settings(source, state_dict, kind)
    spec = resolve_spec(KIND_SPECS[kind], sets=sets, base=(_nested(settings), f"inferred from {path.name}"))
    for item in sets or []:
        key = item.partition("=")[0].strip()
        settings[key] = Setting(_lookup(spec, key), "--set")
    classes = _classes(source, state_dict) if kind == "classifier" else None
    check_loads(spec, classes, state_dict)
    return Conversion(source, kind, spec, state_dict, classes, settings, dropped, notes)


def save_conversion(conversion: Conversion, out: Path) -> None:
    """Write the converted weights as one of our checkpoints (atomically)."""
    extra: dict[str, Any] = {"converted_from": f"{conversion.source.path} ({LAYOUTS[conversion.source.layout]})"}
    if conversion.classes is not None:
        extra["classes"] = json.dumps(conversion.classes)
    metadata = model_metadata(conversion.kind, conversion.spec.model_dump_json(), **extra)
    save_weights(out, conversion.state_dict, metadata)


# ---------------------------------------------------------------------------------------------------------------------
# Reading


def read_source(path: Path) -> Source:
    """The weights behind SRC (file or HF directory), with the layout they are in."""
    if not path.exists():
        raise ConfigError(f"SRC: no such file or directory: {path}")
    if path.is_dir():
        return _read_hf_dir(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    obj = read_pth(path)
    state_dict, args, where = unwrap_weights(obj, path)
    state_dict, stripped = strip_wrappers(state_dict)
    steps = [f"weights under {where}", *(f"stripped the '{p}' prefix" for p in stripped)]
    config = _config_beside(path) if _layout_of(state_dict, path) == "hf" else None
    return Source(path, _layout_of(state_dict, path), state_dict, args, config, steps)


def _read_hf_dir(path: Path) -> Source:
    config = _config_beside(path / "config.json")
    if config is None:
        raise ConfigError(f"SRC: {path} has no config.json (expected an HF transformers model directory)")
    if (path / HF_SHARD_INDEX).is_file():
        index = json.loads((path / HF_SHARD_INDEX).read_text())
        state_dict: dict[str, Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state_dict.update(_load_safetensors(path / shard))
        return Source(path, "hf", state_dict, config=config, steps=[f"{HF_SHARD_INDEX} shards"])
    for name in HF_WEIGHT_FILES:
        if (path / name).is_file():
            weights = path / name
            loaded = _load_safetensors(weights) if name.endswith(".safetensors") else read_pth(weights)
            state_dict, _, _ = unwrap_weights(loaded, weights)
            return Source(path, "hf", state_dict, config=config, steps=[f"weights from {name}"])
    raise ConfigError(f"SRC: {path} has none of {', '.join(HF_WEIGHT_FILES)}")


def _read_safetensors(path: Path) -> Source:
    try:
        ours = "videomae.spec" in read_metadata(path)
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"SRC: {path} is not a readable safetensors file ({e})") from None
    if ours:
        raise ConfigError(f"SRC: {path} is already a videomae-cli checkpoint; nothing to convert")
    state_dict, stripped = strip_wrappers(_load_safetensors(path))
    layout = _layout_of(state_dict, path)
    config = _config_beside(path) if layout == "hf" else None
    return Source(path, layout, state_dict, config=config, steps=[f"stripped the '{p}' prefix" for p in stripped])


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"SRC: {path} is not a readable safetensors file ({e})") from None


def _config_beside(path: Path) -> dict[str, Any] | None:
    """config.json at `path` (or beside a weights file), or None."""
    file = path if path.name == "config.json" else path.parent / "config.json"
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except ValueError as e:
        raise ConfigError(f"SRC: {file} is not valid JSON ({e})") from None


def _layout_of(state_dict: dict[str, Tensor], path: Path) -> str:
    if any(k.startswith(("videomae.", "embeddings.patch_embeddings.")) for k in state_dict):
        return "hf"
    if maest.is_maest(state_dict):
        return "maest"
    if any(k.endswith("attn.qkv.weight") for k in state_dict):
        return "official"
    shown = ", ".join(list(state_dict)[:4])
    raise ConfigError(f"SRC: {path}: not a VideoMAE, MAE-ST or HF VideoMAE checkpoint (keys: {shown}, ...)")


# ---------------------------------------------------------------------------------------------------------------------
# Mapping onto our names


def to_our_names(source: Source) -> tuple[dict[str, Tensor], str, list[tuple[str, str]], list[str]]:
    """(our state dict, kind, [(dropped key, why)], notes)."""
    try:
        if source.layout == "maest":
            state_dict, dropped = maest.from_maest_state_dict(source.state_dict)
            return state_dict, maest.maest_kind(source.state_dict), dropped, _maest_notes(source)
        if source.layout == "hf":
            return _from_hf(source)
    except ValueError as e:
        raise ConfigError(f"SRC: {source.path}: {e}") from None
    return _from_official(source)


def _from_official(source: Source) -> tuple[dict[str, Tensor], str, list[tuple[str, str]], list[str]]:
    state_dict = dict(source.state_dict)
    kind = "pretrain" if "encoder.patch_embed.proj.weight" in state_dict else "classifier"
    dropped = []
    for key in [k for k in ("pos_embed", "encoder.pos_embed") if k in state_dict]:
        _check_fixed_table(key, state_dict.pop(key))
        dropped.append((key, "the fixed sinusoid table, rebuilt from the spec"))
    if kind == "classifier" and "fc_norm.weight" not in state_dict and "norm.weight" in state_dict:
        raise ConfigError(
            f"SRC: {source.path}: a use_mean_pooling=False classifier (norm, no fc_norm); only mean pooling works"
        )
    return state_dict, kind, dropped, []


def _check_fixed_table(key: str, table: Tensor) -> None:
    """Official code never learns `pos_embed` by default; a learned 1-D table is a layout we do not have."""
    from videomae_cli.models.vit import sinusoid_table

    rows = table.reshape(-1, table.shape[-1])
    if not torch.allclose(rows.float(), sinusoid_table(*rows.shape), atol=1e-4):
        raise ConfigError(f"SRC: {key} is a learned 1-D position table (use_learnable_pos_emb); not supported")


def _from_hf(source: Source) -> tuple[dict[str, Tensor], str, list[tuple[str, str]], list[str]]:
    state_dict = hf.add_base_prefix(source.state_dict)
    if hf.is_hf_classification(state_dict):
        return hf.from_hf_classification_state_dict(state_dict), "classifier", [], []
    if "decoder.head.weight" not in state_dict:
        raise ValueError("a bare VideoMAEModel (no decoder, no classifier) has no videomae-cli equivalent")
    return hf.from_hf_pretraining_state_dict(state_dict), "pretrain", [], []


def _maest_notes(source: Source) -> list[str]:
    notes = []
    if maest.maest_kind(source.state_dict) == "classifier" and "cls_token" not in source.state_dict:
        notes.append("MAE-ST without a cls token pools tokens 1..N (skipping the first patch); ours pools all N")
    if source.args.get("norm_pix_loss") is False:
        notes.append("it was trained on un-normalised targets (norm_pix_loss=False); model.target is patch_norm")
    return notes


# ---------------------------------------------------------------------------------------------------------------------
# Inferring the spec


def infer_settings(source: Source, state_dict: dict[str, Tensor], kind: str) -> dict[str, Setting]:
    """Spec fields, each with its origin: the weights, config.json, the saved args, a standard size, a default."""
    settings = {key: Setting(value, "weights") for key, value in shapes_of(state_dict, kind).items()}
    if source.config is not None:
        try:
            found = hf.settings_from_hf_config(source.config, classifier=kind == "classifier")
        except ValueError as e:
            raise ConfigError(f"SRC: {source.path}: {e}") from None
        settings.update((k, Setting(v, "config.json")) for k, v in found.items())
    settings.update((k, Setting(v, "checkpoint args")) for k, v in settings_from_args(source.args, kind).items())
    _fill_heads(settings)
    defaults = dict(OFFICIAL_DEFAULTS)
    if kind == "pretrain":
        defaults.update(PRETRAIN_DEFAULTS[source.layout])
    for key, value in defaults.items():
        settings.setdefault(key, Setting(value, "default (not recorded in the file)"))
    settings["model.name"] = Setting(_size_name(settings), "closest named size")
    per_token = settings.pop(_PRED_PER_TOKEN, None)
    if per_token is not None and "model.pred_frames" not in settings:
        slices = settings["data.num_frames"].value // settings["model.tubelet_size"].value
        settings["model.pred_frames"] = Setting(per_token.value * slices, "weights (decoder head) and data.num_frames")
    return settings


def shapes_of(state_dict: dict[str, Tensor], kind: str) -> dict[str, Any]:
    """Model fields read off the tensor shapes of our state dict (and the clip geometry, from learned tables)."""
    enc = "encoder." if kind == "pretrain" else ""
    embed = state_dict.get(f"{enc}patch_embed.proj.weight")
    if embed is None or embed.ndim != 5 or embed.shape[1] != 3 or embed.shape[3] != embed.shape[4]:
        raise ConfigError("SRC: no 3-channel tubelet embedding (patch_embed.proj.weight [C, 3, t, p, p])")
    dim, _, tubelet, patch, _ = embed.shape
    found: dict[str, Any] = {
        "model.dim": dim,
        "model.tubelet_size": tubelet,
        "model.patch_size": patch,
        "model.depth": count_blocks(state_dict, f"{enc}blocks."),
        "model.mlp_dim": state_dict[f"{enc}blocks.0.mlp.fc1.weight"].shape[0],
        "model.pos_embed": "separable" if f"{enc}pos_embed.spatial" in state_dict else "sincos",
        "model.cls_token": f"{enc}cls_token" in state_dict,
    }
    if found["model.pos_embed"] == "separable":
        found.update(_geometry_from_tables(state_dict, enc, tubelet, patch))
    if kind == "pretrain":
        found.update(_decoder_shapes(state_dict, tubelet, patch))
    return found


_PRED_PER_TOKEN = "_pred_frames_per_token"  # not a spec field: resolved into model.pred_frames once frames are known


def _geometry_from_tables(state_dict: dict[str, Tensor], enc: str, tubelet: int, patch: int) -> dict[str, int]:
    spatial = state_dict[f"{enc}pos_embed.spatial"].shape[1]
    side = math.isqrt(spatial)
    if side * side != spatial:
        raise ConfigError(f"SRC: the spatial position table has {spatial} rows, not a square grid")
    return {
        "data.num_frames": state_dict[f"{enc}pos_embed.temporal"].shape[1] * tubelet,
        "data.input_size": side * patch,
    }


def _decoder_shapes(state_dict: dict[str, Tensor], tubelet: int, patch: int) -> dict[str, Any]:
    per_token, rest = divmod(state_dict["decoder.head.weight"].shape[0], 3 * patch * patch)
    if rest or per_token > tubelet:
        raise ConfigError(f"SRC: the decoder head does not predict whole {patch}×{patch} RGB frames of a tubelet")
    found: dict[str, Any] = {} if per_token == tubelet else {_PRED_PER_TOKEN: per_token}
    found |= {
        "model.decoder_dim": state_dict["encoder_to_decoder.weight"].shape[0],
        "model.decoder_depth": count_blocks(state_dict, "decoder.blocks."),
        "model.decoder_embed_bias": "encoder_to_decoder.bias" in state_dict,
    }
    if found["model.decoder_depth"]:
        found["model.decoder_mlp_dim"] = state_dict["decoder.blocks.0.mlp.fc1.weight"].shape[0]
    return found


# Training args of the official V1/V2 and MAE-ST scripts → spec fields.
_ARG_FIELDS = (
    ("num_frames", "data.num_frames"),
    ("input_size", "data.input_size"),
    ("sampling_rate", "data.sampling_rate"),
)
_PRETRAIN_ARG_FIELDS = (("mask_ratio", "mask.ratio"),)


def settings_from_args(args: dict[str, Any], kind: str) -> dict[str, Any]:
    """What the saved training args tell about the clip geometry, masking and target."""
    found = {path: args[name] for name, path in _ARG_FIELDS if isinstance(args.get(name), int)}
    if args.get("data_set") == "SSV2":
        found["data.sampling"] = "segment"
    if kind != "pretrain":
        return found
    found.update((path, float(args[name])) for name, path in _PRETRAIN_ARG_FIELDS if name in args)
    if args.get("mask_type") in ("tube", "random", "frame"):
        found["mask.type"] = args["mask_type"]
    if args.get("decoder_mask_type") == "run_cell" and "decoder_mask_ratio" in args:
        found["mask.decoder_ratio"] = float(args["decoder_mask_ratio"])
    if isinstance(args.get("normlize_target"), bool):  # sic: the official V1 spelling
        found["model.target"] = "norm_pixel" if args["normlize_target"] else "pixel"
    if isinstance(args.get("pred_t_dim"), int) and args["pred_t_dim"] != args.get("num_frames"):
        found["model.pred_frames"] = args["pred_t_dim"]
    if args.get("norm_pix_loss") is True:
        found["model.target"] = "patch_norm"
    return found


def _fill_heads(settings: dict[str, Setting]) -> None:
    """Head counts are not in the shapes: take the standard size's, else assume 64-dim heads."""
    for heads, dim, size_key in (
        ("model.heads", "model.dim", "dim"),
        ("model.decoder_heads", "model.decoder_dim", "decoder_dim"),
    ):
        if heads in settings or dim not in settings:
            continue
        width = settings[dim].value
        named = [(name, size) for name, size in SIZES.items() if size[size_key] == width]
        named.sort(key=lambda item: item[0] != _size_name(settings))  # the encoder's size first
        if named:
            name, size = named[0]
            settings[heads] = Setting(size[heads.removeprefix("model.")], f"standard {name} size")
        else:
            settings[heads] = Setting(max(1, width // 64), "assumed 64-dim heads (override with --set)")


def _size_name(settings: dict[str, Setting]) -> str:
    dim = settings["model.dim"].value
    same = [name for name, size in SIZES.items() if size["dim"] == dim]
    return same[0] if same else "base"


def _nested(settings: dict[str, Setting]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, setting in settings.items():
        section, name = key.split(".", 1)
        tree.setdefault(section, {})[name] = setting.value
    return tree


def _lookup(spec: PretrainSpec | FinetuneSpec, key: str) -> Any:
    value: Any = spec
    for part in key.split("."):
        value = getattr(value, part, None)
    return value


def _classes(source: Source, state_dict: dict[str, Tensor]) -> list[str]:
    num_classes = state_dict["head.weight"].shape[0]
    if source.config is not None:
        return hf.classes_from_hf_config(source.config, num_classes)
    return [str(i) for i in range(num_classes)]


def check_loads(spec: PretrainSpec | FinetuneSpec, classes: list[str] | None, state_dict: dict[str, Tensor]) -> None:
    """The converted weights must fill our model exactly: no missing, unexpected or mis-shaped tensors."""
    model = build_model(spec, classes)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [k for k in expected if k in state_dict and expected[k].shape != state_dict[k].shape]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:4])}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:4])}")
    if wrong:
        problems.append(
            f"{wrong[0]} is {tuple(state_dict[wrong[0]].shape)}, the spec needs {tuple(expected[wrong[0]].shape)}"
        )
    if problems:
        raise ConfigError(f"SRC: the weights do not fit the inferred spec: {'; '.join(problems)} (check --set values)")


_MAPPING = {
    "official": "names unchanged (the official layout is ours)",
    "maest": "q/k/v fused into attn.qkv, pos_embed_* → pos_embed.*, decoder_* → decoder.*",
    "hf": "HF names → official names, query/key/value fused into attn.qkv",
}


def summary_table(conversion: Conversion, out: Path) -> Table:
    """What was mapped, inferred (and from where), and dropped."""
    table = Table(title=f"convert: {conversion.description} → {out}", show_lines=False, title_justify="left")
    table.add_column("what")
    table.add_column("value")
    table.add_column("from / why")
    source = conversion.source
    read = "; ".join(source.steps) or "as stored"
    table.add_row("source", str(source.path), read)
    mapped = f"{len(source.state_dict)} → {len(conversion.state_dict)} tensors"
    table.add_row("mapped", mapped, _MAPPING[source.layout])
    for key, setting in sorted(conversion.settings.items()):
        table.add_row(key, str(_lookup(conversion.spec, key)), setting.origin)
    if conversion.classes is not None:
        shown = ", ".join(conversion.classes[:5]) + (", ..." if len(conversion.classes) > 5 else "")
        origin = "config.json id2label" if source.config and source.config.get("id2label") else "numbers (no names)"
        table.add_row("classes", f"{len(conversion.classes)}: {shown}", origin)
    for key, why in conversion.dropped:
        table.add_row("dropped", key, why)
    for note in conversion.notes:
        table.add_row("note", note, "")
    return table
