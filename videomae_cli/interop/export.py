"""`videomae export`: one of our checkpoints → HF transformers, the official VideoMAE code, or ONNX.

Each export returns notes on what the receiving library needs to know (input layout, normalisation, known numeric
differences), because a model that loads is not yet a model that is used correctly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from videomae_cli.checkpoint import LoadedCheckpoint, atomic_write
from videomae_cli.config.schema import FinetuneSpec, PretrainSpec, grid_of
from videomae_cli.errors import ConfigError
from videomae_cli.interop import hf
from videomae_cli.models.pretrain import IMAGENET_MEAN, IMAGENET_STD

FORMATS = ("hf", "official", "onnx")
ONNX_TOLERANCE = 1e-4
ONNX_HINT = 'pip install "videomae-cli[onnx]" (onnx, onnxscript, onnxruntime)'
NORMALISATION = f"ImageNet mean {IMAGENET_MEAN} and std {IMAGENET_STD} on [0, 1] pixels"


@dataclass
class Exported:
    """Where the export went, and what its user needs to know."""

    path: Path
    target: str
    notes: list[str] = field(default_factory=list)


def export(loaded: LoadedCheckpoint, fmt: str, out: Path) -> Exported:
    """Export a loaded checkpoint in `fmt`."""
    if fmt not in FORMATS:
        raise ConfigError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    return {"hf": export_hf, "official": export_official, "onnx": export_onnx}[fmt](loaded, out)


def _clip_shape(loaded: LoadedCheckpoint) -> str:
    grid = grid_of(loaded.spec)
    return f"{grid.frames} frames of {grid.height}×{grid.width}"


# ---------------------------------------------------------------------------------------------------------------------
# HF transformers


def export_hf(loaded: LoadedCheckpoint, out: Path) -> Exported:
    """A transformers model directory: config.json, model.safetensors, preprocessor_config.json."""
    spec, classifier = loaded.spec, loaded.kind == "classifier"
    classes = loaded.classes if classifier else None
    # A decoder that predicts anything but pixels (hog, patch_norm, input) has no VideoMAEForPreTraining: the encoder
    # goes alone, as a VideoMAEModel.
    encoder_only = not classifier and spec.model.target not in hf.HF_TARGETS
    try:
        config = hf.hf_config(spec.model, grid_of(spec), classes, encoder_only=encoder_only)
    except ValueError as e:
        raise ConfigError(f"format: hf cannot hold this model: {e}") from None
    state = loaded.model.state_dict()
    # q_bias/v_bias: the names transformers 4.x loads and 5.x still writes on disk (it renames them on load).
    to_hf = hf.to_hf_classification_state_dict if classifier else hf.to_hf_pretraining_state_dict
    weights = to_hf(state, qv_bias_style="v4")
    if encoder_only:
        weights = {k.removeprefix("videomae."): v for k, v in weights.items() if k.startswith("videomae.")}
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    atomic_write(out / "model.safetensors", lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    _write_json(out / "config.json", config)
    _write_json(out / "preprocessor_config.json", _hf_preprocessor(spec.data.input_size))
    head = config["architectures"][0]
    eps_layers = "fc_norm" if classifier else "decoder.norm"
    notes = [
        f"load with transformers.{head}.from_pretrained({str(out)!r})"
        + ("" if encoder_only else " (or VideoMAEModel for the encoder alone)"),
        f"pixel_values are [B, T, C, H, W] (ours [B, C, T, H, W]: .permute(0, 2, 1, 3, 4)), {_clip_shape(loaded)}",
        f"normalise with {NORMALISATION}; preprocessor_config.json says so (the HF processor default is 0.5/0.5)",
        f"HF hard-codes eps 1e-5 in {eps_layers} (ours {spec.model.layer_norm_eps:g}): outputs differ by ~1e-5",
    ]
    if encoder_only:
        notes[-1] = (
            f"the encoder alone: this model's decoder predicts its {spec.model.target} target "
            f"({loaded.model.decoder.head.out_features} values per token), which VideoMAEForPreTraining cannot hold"
        )
    if classifier:
        notes.insert(
            1,
            f"or classify videos: transformers.pipeline('video-classification', model={str(out)!r}) on decoded "
            "frames [T, H, W, 3] (a file path needs torchcodec in transformers 5)",
        )
    return Exported(out, f"HF transformers {head}", notes)


def _hf_preprocessor(size: int) -> dict[str, object]:
    """The VideoMAEImageProcessor settings these weights were trained with (ImageNet statistics)."""
    return {
        "image_processor_type": "VideoMAEImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": size},
        "resample": 2,  # bilinear
        "do_center_crop": True,
        "crop_size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
    }


def _write_json(path: Path, data: dict[str, object]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


# ---------------------------------------------------------------------------------------------------------------------
# Official VideoMAE


def export_official(loaded: LoadedCheckpoint, out: Path) -> Exported:
    """A .pth holding {"model": state_dict} in the official V1 layout, loadable with strict=True."""
    spec = loaded.spec.model
    extras = {
        "model.pos_embed": spec.pos_embed != "sincos",
        "model.cls_token": spec.cls_token,
        "model.decoder_embed_bias": spec.decoder_embed_bias and loaded.kind != "classifier",
        "model.pred_frames": getattr(spec, "pred_frames", None) is not None and loaded.kind != "classifier",
    }
    bad = [name for name, is_extra in extras.items() if is_extra]
    if bad:
        raise ConfigError(f"format: official: the official VideoMAE models have no {', '.join(bad)} of this model")
    state: dict[str, Tensor] = {k: v.detach().cpu().clone() for k, v in loaded.model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    args = official_args(loaded.spec, loaded.kind == "classifier")
    atomic_write(out, lambda tmp: torch.save({"model": state, "args": args}, tmp))
    grid = grid_of(loaded.spec)
    clip = f"img_size={grid.height}, tubelet_size={grid.tubelet}"
    if loaded.kind == "classifier":
        official = (
            f"vit_{spec.name}_patch{grid.patch}_224({clip}, all_frames={grid.frames}, "
            f"num_classes={len(loaded.classes)}, use_mean_pooling=True)"
        )
    else:
        official = f"pretrain_videomae_{spec.name}_patch{grid.patch}_224({clip}, decoder_depth={spec.decoder_depth})"
    notes = [
        f"load with model.load_state_dict(torch.load(path)['model'], strict=True) into {official}",
        f"input [B, C, T, H, W], {_clip_shape(loaded)}, normalised with {NORMALISATION}",
    ]
    if loaded.kind != "classifier" and spec.target not in hf.HF_TARGETS:
        notes[0] = (
            f"its decoder head predicts the {spec.target} target ({loaded.model.decoder.head.out_features} values per "
            f"token), not the official pixels: {official} cannot load it strictly; the official fine-tuning "
            "(--finetune) takes its encoder"
        )
    return Exported(out, "official VideoMAE (MCG-NJU/VideoMAE, OpenGVLab/VideoMAEv2)", notes)


def official_args(spec: PretrainSpec | FinetuneSpec, classifier: bool) -> dict[str, Any]:
    """The training args the official scripts save beside their weights, as a plain dict (loadable with
    weights_only=True), plus the head counts, which the official factories fix by name: so that `convert` reads
    the model back exactly, whatever its size."""
    args: dict[str, Any] = {
        "num_frames": spec.data.num_frames,
        "input_size": spec.data.input_size,
        "tubelet_size": spec.model.tubelet_size,
        "sampling_rate": spec.data.sampling_rate,
        "num_heads": spec.model.heads,
    }
    if not classifier:
        args |= {"decoder_num_heads": spec.model.decoder_heads, "decoder_depth": spec.model.decoder_depth}
        args |= {"mask_type": spec.mask.type, "mask_ratio": spec.mask.ratio}
        if spec.mask.decoder_ratio:  # V2 dual masking
            args |= {"decoder_mask_type": "run_cell", "decoder_mask_ratio": spec.mask.decoder_ratio}
        if spec.model.target in ("norm_pixel", "pixel"):
            args["normlize_target"] = spec.model.target == "norm_pixel"  # sic: the official spelling
    return args


# ---------------------------------------------------------------------------------------------------------------------
# ONNX


class _Features(nn.Module):
    """The encoder of a pretrain model as a feature extractor: every token, final norm, mean-pooled → [B, C]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, video: Tensor) -> Tensor:
        return self.model.features(video)


def export_onnx(loaded: LoadedCheckpoint, out: Path) -> Exported:
    """The classifier (logits) or the pretrain encoder (pooled features), with a dynamic batch axis, verified
    against PyTorch in onnxruntime on a random clip of another batch size."""
    _check_onnx_packages()
    classifier = loaded.kind == "classifier"
    module = loaded.model if classifier else _Features(loaded.model)
    output = "logits" if classifier else "features"
    grid = grid_of(loaded.spec)
    shape = (3, grid.frames, grid.height, grid.width)
    example = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))  # batch 2: 1 would be specialised
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(
        module.eval(),
        (example,),
        input_names=["video"],
        output_names=[output],
        dynamic_shapes=({0: batch},),
        dynamo=True,
        verbose=False,
    )
    program.save(str(out))  # not via a temporary name: large models keep their weights in a file named after it
    error = _onnx_error(out, module, shape)
    if error > ONNX_TOLERANCE:
        raise ConfigError(f"format: onnx: onnxruntime differs from PyTorch by {error:.2e} (> {ONNX_TOLERANCE})")
    what = (
        f"logits [B, {len(loaded.classes)}]" if classifier else f"features [B, {loaded.spec.model.dim}] (mean-pooled)"
    )
    notes = [
        f"input 'video' float32 [B, 3, {grid.frames}, {grid.height}, {grid.width}] normalised with {NORMALISATION}",
        f"output '{output}': {what}; onnxruntime matches PyTorch to {error:.1e} at batch 3",
    ]
    return Exported(out, "ONNX", notes)


def _check_onnx_packages() -> None:
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401  (the torch.onnx exporter needs it)
    except ImportError:
        raise ConfigError(f"format: onnx needs the ONNX packages: {ONNX_HINT}") from None


def _onnx_error(path: Path, module: nn.Module, shape: tuple[int, ...]) -> float:
    """Max |onnxruntime - PyTorch| on a random batch of 3 clips (another batch size than the export's)."""
    import onnxruntime

    clip = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"video": clip.numpy()})
    with torch.no_grad():
        want = module(clip)
    return float((torch.from_numpy(got) - want).abs().max())
