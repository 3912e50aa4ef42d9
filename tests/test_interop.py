"""`videomae export` and `videomae convert` against HF transformers, the official layout, and onnxruntime.

Every round trip goes through the real CLI and is checked against the receiving library's own loader and forward:
no missing or unexpected keys, the same outputs to 1e-4, and non-zero attention biases after loading.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import PARITY_GRID, parity_spec, randomize, run_cli
from safetensors.torch import load_file, save_file
from torch import nn
from videogen import write_video

import videomae_cli
from videomae_cli.checkpoint import model_metadata, save_weights
from videomae_cli.config.schema import FinetuneSpec, PretrainSpec
from videomae_cli.interop.hf import hf_config_kwargs
from videomae_cli.masking import tube_mask
from videomae_cli.models.classifier import VideoClassifier
from videomae_cli.models.pretrain import IMAGENET_MEAN, IMAGENET_STD, PretrainVideoMAE

transformers = pytest.importorskip("transformers")  # the `dev` extra

ATOL = 1e-4
GRID = PARITY_GRID  # 4 frames × 64², 32 tokens
CLASSES = ["walk", "run", "jump"]
GEOMETRY = {"num_frames": GRID.frames, "input_size": GRID.height}
GEOMETRY_SETS = ("--set", f"data.num_frames={GRID.frames}", "--set", f"data.input_size={GRID.height}")


def pretrain_spec() -> PretrainSpec:
    return PretrainSpec(model=parity_spec(), data=GEOMETRY)


def classifier_spec() -> FinetuneSpec:
    return FinetuneSpec(model=parity_spec().model_dump(), data=GEOMETRY)


def save_ours(path: Path, model: nn.Module, spec: PretrainSpec | FinetuneSpec, classes: list[str] | None) -> Path:
    kind = "classifier" if classes else "pretrain"
    extra = {"classes": json.dumps(classes)} if classes else {}
    save_weights(path, model.state_dict(), model_metadata(kind, spec.model_dump_json(), **extra))
    return path


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A randomised tiny pretrain checkpoint and classifier checkpoint of ours."""
    root = tmp_path_factory.mktemp("ours")
    pretrain = PretrainVideoMAE(pretrain_spec().model, GRID)
    randomize(pretrain, seed=1)
    classifier = VideoClassifier(classifier_spec().model, GRID, len(CLASSES))
    randomize(classifier, seed=2)
    return {
        "pretrain": save_ours(root / "pretrain.safetensors", pretrain, pretrain_spec(), None),
        "classifier": save_ours(root / "classifier.safetensors", classifier, classifier_spec(), CLASSES),
    }


def clip(batch: int = 2, seed: int = 0) -> torch.Tensor:
    """[B, 3, T, H, W] of [0, 1] pixels normalised with ImageNet mean/std."""
    pixels = torch.rand(batch, 3, GRID.frames, GRID.height, GRID.width, generator=torch.Generator().manual_seed(seed))
    return (pixels - torch.tensor(IMAGENET_MEAN)[:, None, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None, None]


def tube(batch: int = 2) -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.from_numpy(np.stack([tube_mask(GRID, 0.75, rng) for _ in range(batch)]))


def cli_ok(*args: str) -> str:
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def cli_error(*args: str, code: int = 2) -> str:
    done = run_cli(*args)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


def hf_loaded(cls: type, path: Path) -> nn.Module:
    """`cls.from_pretrained(path)` in eval mode, asserting that no key was missing or unexpected."""
    model, info = cls.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return model.eval()


def assert_nonzero_qv_biases(layers: nn.ModuleList) -> None:
    for layer in layers:
        attention = layer.attention.attention
        assert bool((attention.query.bias != 0).all()) and bool((attention.value.bias != 0).all())


# ---------------------------------------------------------------------------------------------------- export hf


@pytest.fixture(scope="module")
def hf_exports(ours: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    for kind, path in ours.items():
        cli_ok("export", str(path), "--format", "hf", "--out", str(root / kind))
    return {kind: root / kind for kind in ours}


def test_export_hf_pretrain_loads_in_transformers_with_the_same_loss_and_predictions(
    ours: dict[str, Path], hf_exports: dict[str, Path]
) -> None:
    hf = hf_loaded(transformers.VideoMAEForPreTraining, hf_exports["pretrain"])
    assert_nonzero_qv_biases(hf.videomae.encoder.layer)
    assert_nonzero_qv_biases(hf.decoder.decoder_layers)
    model, video, mask = videomae_cli.load(ours["pretrain"]), clip(), tube()
    with torch.no_grad():
        out = model(video, mask)
        theirs = hf(pixel_values=video.permute(0, 2, 1, 3, 4), bool_masked_pos=mask)
    torch.testing.assert_close(theirs.logits, out.pred, atol=ATOL, rtol=0)
    torch.testing.assert_close(theirs.loss, out.loss, atol=ATOL, rtol=0)


def test_export_hf_classifier_gives_the_same_logits_and_class_names(
    ours: dict[str, Path], hf_exports: dict[str, Path]
) -> None:
    hf = hf_loaded(transformers.VideoMAEForVideoClassification, hf_exports["classifier"])
    assert_nonzero_qv_biases(hf.videomae.encoder.layer)
    assert [hf.config.id2label[i] for i in range(len(CLASSES))] == CLASSES
    assert hf.config.label2id == {name: i for i, name in enumerate(CLASSES)}
    model, video = videomae_cli.load(ours["classifier"]), clip()
    with torch.no_grad():
        torch.testing.assert_close(
            hf(pixel_values=video.permute(0, 2, 1, 3, 4)).logits, model(video), atol=ATOL, rtol=0
        )


def test_export_hf_pretrain_encoder_loads_as_videomae_model(ours: dict[str, Path], hf_exports: dict[str, Path]) -> None:
    encoder, info = transformers.VideoMAEModel.from_pretrained(hf_exports["pretrain"], output_loading_info=True)
    assert not info["missing_keys"], info
    model, video = videomae_cli.load(ours["pretrain"]), clip()
    with torch.no_grad():
        hidden = encoder.eval()(pixel_values=video.permute(0, 2, 1, 3, 4)).last_hidden_state
        torch.testing.assert_close(hidden, model.encoder.encode_all(video), atol=ATOL, rtol=0)


def test_export_hf_config_carries_every_field_and_imagenet_normalisation(hf_exports: dict[str, Path]) -> None:
    config = json.loads((hf_exports["classifier"] / "config.json").read_text())
    fields = ("layer_norm_eps", "qv_bias", "use_mean_pooling", "norm_pix_loss", "id2label", "label2id", "num_frames")
    assert set(fields) <= set(config)
    assert (config["model_type"], config["layer_norm_eps"], config["use_mean_pooling"]) == ("videomae", 1e-6, True)
    processor = json.loads((hf_exports["classifier"] / "preprocessor_config.json").read_text())
    assert processor["image_mean"] == list(IMAGENET_MEAN) and processor["image_std"] == list(IMAGENET_STD)


def test_export_hf_classifier_runs_in_the_transformers_video_classification_pipeline(
    ours: dict[str, Path], hf_exports: dict[str, Path], tmp_path: Path
) -> None:
    pipe = transformers.pipeline("video-classification", model=str(hf_exports["classifier"]))
    with av.open(str(write_video(tmp_path / "v.mp4", 20, width=96, height=80))) as container:
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])  # [T, H, W, 3]
    answer = pipe(frames, top_k=len(CLASSES))
    pixels = pipe.preprocess(frames)["pixel_values"]  # what the pipeline fed the model: [1, T, 3, H, W]
    assert pixels.shape == (1, GRID.frames, 3, GRID.height, GRID.width)
    with torch.no_grad():
        probabilities = videomae_cli.load(ours["classifier"])(pixels.permute(0, 2, 1, 3, 4)).softmax(-1)[0]
    expected = sorted(zip(probabilities.tolist(), CLASSES, strict=True), reverse=True)
    assert [a["label"] for a in answer] == [name for _, name in expected]
    np.testing.assert_allclose([a["score"] for a in answer], [p for p, _ in expected], atol=1e-5)


def test_export_hf_says_what_transformers_needs(ours: dict[str, Path], tmp_path: Path) -> None:
    stdout = cli_ok("export", str(ours["pretrain"]), "--format", "hf", "--out", str(tmp_path / "hf"))
    assert "[B, T, C, H, W]" in stdout and "ImageNet" in stdout


def test_export_hf_of_a_hog_model_is_its_encoder_as_videomae_model(tmp_path: Path) -> None:
    spec = PretrainSpec(model={**parity_spec().model_dump(), "target": "hog", "hog_cell": 8}, data=GEOMETRY)
    model = PretrainVideoMAE(spec.model, GRID)
    randomize(model, seed=6)
    path = save_ours(tmp_path / "hog.safetensors", model, spec, None)
    stdout = cli_ok("export", str(path), "--format", "hf", "--out", str(tmp_path / "hf"))
    assert "decoder predicts its hog target (108 values per token)" in stdout
    encoder, info = transformers.VideoMAEModel.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info.values()), info
    video = clip()
    with torch.no_grad():
        hidden = encoder.eval()(pixel_values=video.permute(0, 2, 1, 3, 4)).last_hidden_state
        torch.testing.assert_close(hidden, model.encoder.encode_all(video), atol=ATOL, rtol=0)


def test_export_hf_refuses_a_layout_transformers_cannot_hold(tmp_path: Path) -> None:
    spec = PretrainSpec(
        model={**parity_spec().model_dump(), "pos_embed": "separable", "cls_token": True}, data=GEOMETRY
    )
    path = save_ours(tmp_path / "maest.safetensors", PretrainVideoMAE(spec.model, GRID), spec, None)
    stderr = cli_error("export", str(path), "--format", "hf", "--out", str(tmp_path / "hf"))
    assert "model.pos_embed" in stderr and "model.cls_token" in stderr


# ---------------------------------------------------------------------------------------------------- convert hf


def hf_pretraining(seed: int) -> nn.Module:
    config = transformers.VideoMAEConfig(**hf_config_kwargs(parity_spec(), GRID))
    model = transformers.VideoMAEForPreTraining(config).eval()
    randomize(model, seed)
    return model


def hf_classification(seed: int) -> nn.Module:
    kwargs = hf_config_kwargs(parity_spec(), GRID, classifier=True)
    labels = {"id2label": dict(enumerate(CLASSES)), "label2id": {n: i for i, n in enumerate(CLASSES)}}
    model = transformers.VideoMAEForVideoClassification(transformers.VideoMAEConfig(**kwargs, **labels)).eval()
    randomize(model, seed)
    return model


def save_hf(model: nn.Module, directory: Path, names: str) -> None:
    """Save an HF model as `save_pretrained` does, or with the in-memory 5.x names (query.bias/value.bias), or with
    the 4.x names (q_bias/v_bias and the 4.x `qkv_bias` config flag)."""
    model.save_pretrained(directory)
    if names == "save_pretrained":
        return
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert any(k.endswith("attention.query.bias") for k in weights)  # the installed 5.x names
    if names == "4.x":
        weights = {k.replace(".query.bias", ".q_bias").replace(".value.bias", ".v_bias"): v for k, v in weights.items()}
        config = json.loads((directory / "config.json").read_text())
        config["qkv_bias"] = config.pop("qv_bias")
        (directory / "config.json").write_text(json.dumps(config))
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("names", ["save_pretrained", "5.x", "4.x"])
def test_convert_hf_pretraining_gives_the_same_loss_and_predictions(names: str, tmp_path: Path) -> None:
    hf = hf_pretraining(seed=3)
    save_hf(hf, tmp_path / "hf", names)
    cli_ok("convert", str(tmp_path / "hf"), "--out", str(tmp_path / "ours.safetensors"))
    model, video, mask = videomae_cli.load(tmp_path / "ours.safetensors"), clip(), tube()
    for block in (*model.encoder.blocks, *model.decoder.blocks):
        assert bool((block.attn.q_bias != 0).all()) and bool((block.attn.v_bias != 0).all())
    assert model.spec.model.layer_norm_eps == hf.config.layer_norm_eps
    with torch.no_grad():
        out = model(video, mask)
        theirs = hf(pixel_values=video.permute(0, 2, 1, 3, 4), bool_masked_pos=mask)
    torch.testing.assert_close(out.pred, theirs.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.loss, theirs.loss, atol=ATOL, rtol=0)


@pytest.mark.parametrize("weights", ["directory", "model.safetensors"])
def test_convert_hf_classifier_gives_the_same_logits_and_class_names(weights: str, tmp_path: Path) -> None:
    hf = hf_classification(seed=4)
    save_hf(hf, tmp_path / "hf", "5.x")
    src = tmp_path / "hf" if weights == "directory" else tmp_path / "hf" / "model.safetensors"
    cli_ok("convert", str(src), "--out", str(tmp_path / "ours.safetensors"))
    model, video = videomae_cli.load(tmp_path / "ours.safetensors"), clip()
    assert model.classes == CLASSES
    assert all(bool((block.attn.q_bias != 0).all()) for block in model.blocks)
    with torch.no_grad():
        torch.testing.assert_close(
            model(video), hf(pixel_values=video.permute(0, 2, 1, 3, 4)).logits, atol=ATOL, rtol=0
        )


def test_convert_hf_then_export_hf_round_trips_exactly(tmp_path: Path) -> None:
    hf_classification(seed=5).save_pretrained(tmp_path / "hf")
    cli_ok("convert", str(tmp_path / "hf"), "--out", str(tmp_path / "ours.safetensors"))
    cli_ok("export", str(tmp_path / "ours.safetensors"), "--format", "hf", "--out", str(tmp_path / "back"))
    before, after = (
        load_file(str(tmp_path / "hf" / "model.safetensors")),
        load_file(str(tmp_path / "back" / "model.safetensors")),
    )
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---------------------------------------------------------------------------------------------- official layout


def official_keys(prefix: str, depth: int) -> set[str]:
    """One block's official names (design.md: weight names), for `depth` blocks under `prefix`."""
    names = (
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.q_bias", "attn.v_bias", "attn.proj.weight",
        "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
        "mlp.fc2.bias",
    )  # fmt: skip
    return {f"{prefix}{i}.{name}" for i in range(depth) for name in names}


OFFICIAL_PRETRAIN_KEYS = {
    "encoder.patch_embed.proj.weight", "encoder.patch_embed.proj.bias", "encoder.norm.weight", "encoder.norm.bias",
    "encoder_to_decoder.weight", "mask_token", "decoder.norm.weight", "decoder.norm.bias", "decoder.head.weight",
    "decoder.head.bias",
} | official_keys("encoder.blocks.", 2) | official_keys("decoder.blocks.", 2)  # fmt: skip
OFFICIAL_CLASSIFIER_KEYS = {
    "patch_embed.proj.weight", "patch_embed.proj.bias", "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias",
} | official_keys("blocks.", 2)  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "expected"), [("pretrain", OFFICIAL_PRETRAIN_KEYS), ("classifier", OFFICIAL_CLASSIFIER_KEYS)]
)
def test_export_official_writes_exactly_the_official_keys(
    ours: dict[str, Path], kind: str, expected: set[str], tmp_path: Path
) -> None:
    cli_ok("export", str(ours[kind]), "--format", "official", "--out", str(tmp_path / "official.pth"))
    saved = torch.load(tmp_path / "official.pth", weights_only=True)
    assert list(saved) == ["model", "args"]  # args: plain values, as the official scripts save beside the weights
    assert set(saved["model"]) == expected
    assert saved["args"]["num_heads"] == 4 and saved["args"]["num_frames"] == 4


ENCODER_FIELDS = {"dim", "depth", "heads", "mlp_dim", "patch_size", "tubelet_size", "layer_norm_eps", "pos_embed"}
DECODER_FIELDS = {"decoder_dim", "decoder_depth", "decoder_heads", "decoder_mlp_dim", "target"}


@pytest.mark.parametrize("kind", ["pretrain", "classifier"])
def test_export_official_then_convert_gives_identical_weights(ours: dict[str, Path], kind: str, tmp_path: Path) -> None:
    cli_ok("export", str(ours[kind]), "--format", "official", "--out", str(tmp_path / "official.pth"))
    cli_ok("convert", str(tmp_path / "official.pth"), "--out", str(tmp_path / "back.safetensors"), *GEOMETRY_SETS)
    before, after = load_file(str(ours[kind])), load_file(str(tmp_path / "back.safetensors"))
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    fields = ENCODER_FIELDS if kind == "classifier" else ENCODER_FIELDS | DECODER_FIELDS  # drop path: training only
    back, original = (
        videomae_cli.load(path).spec.model.model_dump() for path in (tmp_path / "back.safetensors", ours[kind])
    )
    assert {f: back[f] for f in fields} == {f: original[f] for f in fields}


def test_convert_official_pth_strips_wrapper_prefixes_and_reads_the_training_args(
    ours: dict[str, Path], tmp_path: Path
) -> None:
    import argparse

    weights = load_file(str(ours["pretrain"]))
    args = argparse.Namespace(num_frames=4, input_size=64, mask_type="tube", mask_ratio=0.75, normlize_target=False)
    args.num_heads, args.decoder_num_heads = 4, 2  # a fork's args: the official factories fix heads by name
    wrapped = {f"module._orig_mod.{k}": v for k, v in weights.items()}
    torch.save({"model": wrapped, "epoch": 7, "args": args}, tmp_path / "checkpoint-799.pth")
    stdout = cli_ok("convert", str(tmp_path / "checkpoint-799.pth"), "--out", str(tmp_path / "ours.safetensors"))
    assert "module." in stdout and "_orig_mod." in stdout and "checkpoint args (num_heads)" in stdout
    spec = videomae_cli.load(tmp_path / "ours.safetensors").spec
    assert (spec.data.num_frames, spec.data.input_size, spec.mask.ratio, spec.model.target) == (4, 64, 0.75, "pixel")
    converted = load_file(str(tmp_path / "ours.safetensors"))
    assert all(torch.equal(converted[k], weights[k]) for k in weights)


def test_convert_says_where_each_inferred_field_came_from(ours: dict[str, Path], tmp_path: Path) -> None:
    torch.save({"model": load_file(str(ours["classifier"]))}, tmp_path / "ft.pth")
    sets = (*GEOMETRY_SETS, "--set", "model.heads=4")  # no args and no released width: heads must be given
    stdout = cli_ok("convert", str(tmp_path / "ft.pth"), "--out", str(tmp_path / "ours.safetensors"), *sets)
    rows = {line.split()[1]: line for line in stdout.splitlines() if line.startswith("│ model.")}
    assert "weights" in rows["model.dim"] and "--set" in rows["model.heads"]
    assert videomae_cli.load(tmp_path / "ours.safetensors").classes == ["0", "1", "2"]


# ------------------------------------------------------------------------------------------------------- safety


class Payload:
    """Unpickling this runs `exec`: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_a_pth_with_a_pickled_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    torch.save({"model": {"w": torch.ones(1)}, "extra": Payload(marker)}, tmp_path / "evil.pth")
    stderr = cli_error("convert", str(tmp_path / "evil.pth"), "--out", str(tmp_path / "out.safetensors"))
    assert "weights_only" in stderr and "exec" in stderr
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("exists", "exists"),
        ("suffix", ".safetensors"),
        ("ours", "already a videomae-cli checkpoint"),
        ("garbage", "not a readable PyTorch checkpoint"),
        ("missing", "no such file"),
    ],
)
def test_convert_refuses_bad_requests_with_one_line(
    ours: dict[str, Path], tmp_path: Path, setup: str, message: str
) -> None:
    src, out = tmp_path / "src.pth", tmp_path / "out.safetensors"
    torch.save({"model": load_file(str(ours["classifier"]))}, src)
    if setup == "exists":
        out.write_text("precious")
    elif setup == "suffix":
        out = tmp_path / "out.pt"
    elif setup == "ours":
        src = ours["classifier"]
    elif setup == "garbage":
        src.write_bytes(b"not a checkpoint")
    elif setup == "missing":
        src = tmp_path / "nope.pth"
    assert message in cli_error("convert", str(src), "--out", str(out), *GEOMETRY_SETS)
    if setup == "exists":
        assert out.read_text() == "precious"


# --------------------------------------------------------------------------------------------------------- onnx


def onnx_outputs(path: Path, video: torch.Tensor) -> np.ndarray:
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"video": video.numpy()})[0]


def test_onnx_classifier_matches_pytorch_logits_at_any_batch_size(ours: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    stdout = cli_ok("export", str(ours["classifier"]), "--format", "onnx", "--out", str(tmp_path / "model.onnx"))
    assert "onnxruntime matches PyTorch" in stdout
    model = videomae_cli.load(ours["classifier"])
    for batch in (1, 4):
        video = clip(batch, seed=batch)
        with torch.no_grad():
            want = model(video).numpy()
        np.testing.assert_allclose(onnx_outputs(tmp_path / "model.onnx", video), want, atol=ATOL, rtol=0)


def test_onnx_pretrain_export_gives_the_encoder_features(ours: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    cli_ok("export", str(ours["pretrain"]), "--format", "onnx", "--out", str(tmp_path / "encoder.onnx"))
    model, video = videomae_cli.load(ours["pretrain"]), clip(2)
    with torch.no_grad():
        want = model.features(video).numpy()
    np.testing.assert_allclose(onnx_outputs(tmp_path / "encoder.onnx", video), want, atol=ATOL, rtol=0)
