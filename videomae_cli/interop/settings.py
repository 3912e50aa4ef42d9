"""What a converted model's spec is, and where each number came from.

The weights fix every width, depth and layout flag. What they do not record comes, in this order, from: HF's
config.json, the training args the official scripts save (`args.num_heads`, `args.decoder_num_heads`, geometry,
masking, target), the official factory named by `args.model`, the released architecture the weights match exactly,
and otherwise an official default for the data and masking fields. Head counts get no default: a model whose heads
none of these sources give is refused (`MissingSettings`), because a wrong head count converts silently into a
model that computes something else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from videomae_cli.config.sizes import SIZES
from videomae_cli.errors import ConfigError
from videomae_cli.interop import hf
from videomae_cli.interop.names import count_blocks
from videomae_cli.interop.official import FACTORIES, released_architecture
from videomae_cli.interop.sources import LAYOUTS, Source

# Official defaults for what the weights do not record (V1 K400 pretraining; MAE-ST's own defaults).
OFFICIAL_DEFAULTS = {"data.num_frames": 16, "data.input_size": 224}
PRETRAIN_DEFAULTS = {
    "official": {"mask.type": "tube", "mask.ratio": 0.9, "model.target": "norm_pixel"},
    "maest": {"mask.type": "random", "mask.ratio": 0.9, "model.target": "patch_norm"},
    "hf": {"mask.type": "tube", "mask.ratio": 0.9},
}
HEAD_FIELDS = {"pretrain": ("model.heads", "model.decoder_heads"), "classifier": ("model.heads",)}


@dataclass
class Setting:
    """One inferred spec field and where its value came from."""

    value: Any
    origin: str


class MissingSettings(ConfigError):
    """Spec fields that nothing in SRC records and that must not be guessed (exit 2). `fields` names them."""

    def __init__(self, message: str, fields: list[str]) -> None:
        super().__init__(message)
        self.fields = fields


def infer_settings(source: Source, state_dict: dict[str, Tensor], kind: str) -> dict[str, Setting]:
    """Spec fields of the converted model, each with its origin. `state_dict` holds SRC's tensors under our names
    (the fused attention weights may be absent: nothing is read from them)."""
    settings = {key: Setting(value, "weights") for key, value in shapes_of(state_dict, kind).items()}
    if source.config is not None:
        try:
            found = hf.settings_from_hf_config(source.config, classifier=kind == "classifier")
        except ValueError as e:
            raise ConfigError(f"SRC: {source.path}: {e}") from None
        settings.update((k, Setting(v, "config.json")) for k, v in found.items())
    settings.update(settings_from_args(source.args, kind, source.layout))
    _fill_heads(settings, source, kind)
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


def missing_heads(settings: dict[str, Setting], kind: str, given: set[str], source: Source) -> None:
    """Refuse when a head count is neither inferred nor `given` (the fields the user set): one line naming them."""
    missing = [name for name in HEAD_FIELDS[kind] if name not in settings and name not in given]
    if not missing:
        return
    where = "no saved training args" if not source.args else "the saved args name no heads and no official model"
    dim, depth, mlp = (settings[f"model.{k}"].value for k in ("dim", "depth", "mlp_dim"))
    raise MissingSettings(
        f"SRC: {source.path.name} does not record {' or '.join(missing)} ({where}, and width {dim}, depth {depth}, "
        f"MLP {mlp} is no released {LAYOUTS[source.layout]} model); a guessed head count would convert silently wrong",
        missing,
    )


# ---------------------------------------------------------------------------------------------------------------------
# From the weights


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
        "model.mlp_dim": required_tensor(state_dict, f"{enc}blocks.0.mlp.fc1.weight", 2).shape[0],
        "model.pos_embed": "separable" if f"{enc}pos_embed.spatial" in state_dict else "sincos",
        "model.cls_token": f"{enc}cls_token" in state_dict,
    }
    if found["model.pos_embed"] == "separable":
        found.update(_geometry_from_tables(state_dict, enc, tubelet, patch))
    if kind == "pretrain":
        found.update(_decoder_shapes(state_dict, tubelet, patch))
    return found


def required_tensor(state_dict: dict[str, Tensor], name: str, ndim: int) -> Tensor:
    """A tensor the spec is read from; missing or of another rank is a damaged file, not an internal error."""
    tensor = state_dict.get(name)
    if not isinstance(tensor, Tensor) or tensor.ndim != ndim:
        shape = "missing" if tensor is None else f"shaped {tuple(getattr(tensor, 'shape', ()))}"
        raise ConfigError(f"SRC: {name} is {shape}; expected a {ndim}-D tensor")
    return tensor


_PRED_PER_TOKEN = "_pred_frames_per_token"  # not a spec field: resolved into model.pred_frames once frames are known


def _geometry_from_tables(state_dict: dict[str, Tensor], enc: str, tubelet: int, patch: int) -> dict[str, int]:
    spatial = required_tensor(state_dict, f"{enc}pos_embed.spatial", 3).shape[1]
    side = math.isqrt(spatial)
    if side * side != spatial:
        raise ConfigError(f"SRC: the spatial position table has {spatial} rows, not a square grid")
    return {
        "data.num_frames": required_tensor(state_dict, f"{enc}pos_embed.temporal", 3).shape[1] * tubelet,
        "data.input_size": side * patch,
    }


def _decoder_shapes(state_dict: dict[str, Tensor], tubelet: int, patch: int) -> dict[str, Any]:
    per_token, rest = divmod(required_tensor(state_dict, "decoder.head.weight", 2).shape[0], 3 * patch * patch)
    if rest or not 0 < per_token <= tubelet:
        raise ConfigError(f"SRC: the decoder head does not predict whole {patch}×{patch} RGB frames of a tubelet")
    found: dict[str, Any] = {} if per_token == tubelet else {_PRED_PER_TOKEN: per_token}
    found |= {
        "model.decoder_dim": required_tensor(state_dict, "encoder_to_decoder.weight", 2).shape[0],
        "model.decoder_depth": count_blocks(state_dict, "decoder.blocks."),
        "model.decoder_embed_bias": "encoder_to_decoder.bias" in state_dict,
    }
    if found["model.decoder_depth"]:
        found["model.decoder_mlp_dim"] = required_tensor(state_dict, "decoder.blocks.0.mlp.fc1.weight", 2).shape[0]
    return found


# ---------------------------------------------------------------------------------------------------------------------
# From the saved training args

# Training args of the official V1/V2 and MAE-ST scripts → spec fields.
_ARG_FIELDS = (
    ("num_frames", "data.num_frames"),
    ("input_size", "data.input_size"),
    ("sampling_rate", "data.sampling_rate"),
    ("num_heads", "model.heads"),  # not an official flag (the factory fixes it), but forks add it
    ("encoder_num_heads", "model.heads"),
)
_PRETRAIN_ARG_FIELDS = (("decoder_num_heads", "model.decoder_heads"),)  # MAE-ST's flag


def settings_from_args(args: dict[str, Any], kind: str, layout: str) -> dict[str, Setting]:
    """What the saved training args tell about the clip geometry, heads, masking and target."""
    fields = _ARG_FIELDS + (_PRETRAIN_ARG_FIELDS if kind == "pretrain" else ())
    found = {path: Setting(args[name], f"checkpoint args ({name})") for name, path in fields if _is_int(args.get(name))}
    if args.get("data_set") == "SSV2":
        found["data.sampling"] = Setting("segment", "checkpoint args (data_set SSV2)")
    if kind == "pretrain":
        found.update((k, Setting(v, f"checkpoint args ({name})")) for k, (name, v) in _pretrain_args(args, layout))
    return found


def _pretrain_args(args: dict[str, Any], layout: str) -> list[tuple[str, tuple[str, Any]]]:
    """(spec field, (arg name, value)) for the masking and target args of a pretraining run."""
    found: list[tuple[str, tuple[str, Any]]] = []
    if isinstance(args.get("mask_ratio"), int | float):
        found.append(("mask.ratio", ("mask_ratio", float(args["mask_ratio"]))))
    if args.get("mask_type") in ("tube", "random", "frame"):
        found.append(("mask.type", ("mask_type", args["mask_type"])))
    if args.get("decoder_mask_type") == "run_cell" and "decoder_mask_ratio" in args:
        found.append(("mask.decoder_ratio", ("decoder_mask_ratio", float(args["decoder_mask_ratio"]))))
    if isinstance(args.get("normlize_target"), bool):  # sic: the official V1 spelling
        found.append(("model.target", ("normlize_target", "norm_pixel" if args["normlize_target"] else "pixel")))
    if _is_int(args.get("pred_t_dim")) and args["pred_t_dim"] != args.get("num_frames"):
        found.append(("model.pred_frames", ("pred_t_dim", args["pred_t_dim"])))
    if layout == "maest" and isinstance(args.get("norm_pix_loss"), bool):
        # MAE-ST's target: the patch standardised, or (its default) the normalised input patch itself.
        found.append(("model.target", ("norm_pix_loss", "patch_norm" if args["norm_pix_loss"] else "input")))
    return found


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------------------------------
# Heads: the factory named in the args, then the released architecture the weights match


def _fill_heads(settings: dict[str, Setting], source: Source, kind: str) -> None:
    """Head counts the weights cannot tell: from `args.model`'s factory, else from the released architecture of
    this layout that the weights match exactly. Left unset otherwise (`missing_heads` refuses)."""
    if all(name in settings for name in HEAD_FIELDS[kind]):
        return
    dim, depth, mlp = (settings[f"model.{k}"].value for k in ("dim", "depth", "mlp_dim"))
    name = source.args.get("model")
    arch = FACTORIES.get(source.layout, {}).get(name) if isinstance(name, str) else None
    if arch is not None:
        if arch.dim != dim:
            raise ConfigError(f"SRC: args.model {name} builds width {arch.dim}, but the weights are {dim} wide")
        origin = f"checkpoint args (model {name})"
    else:
        arch = released_architecture(source.layout, dim, depth, mlp)
        origin = f"released {arch.name} (width {dim}, depth {depth}, MLP {mlp})" if arch else ""
    if arch is None:
        return
    settings.setdefault("model.heads", Setting(arch.heads, origin))
    if kind == "pretrain" and settings["model.decoder_dim"].value in arch.decoder_heads:
        width = settings["model.decoder_dim"].value
        settings.setdefault("model.decoder_heads", Setting(arch.decoder_heads[width], f"{origin}, decoder {width}"))


def _size_name(settings: dict[str, Setting]) -> str:
    dim = settings["model.dim"].value
    same = [name for name, size in SIZES.items() if size["dim"] == dim]
    return same[0] if same else "base"


def nested(settings: dict[str, Setting]) -> dict[str, Any]:
    """{"model.dim": Setting(...)} → {"model": {"dim": ...}}: the base layer a spec resolves over."""
    tree: dict[str, Any] = {}
    for key, setting in settings.items():
        section, name = key.split(".", 1)
        tree.setdefault(section, {})[name] = setting.value
    return tree
