"""Run specs: layered resolution (defaults < --config < --set < flags) and one-line errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from videomae_cli.config.resolve import resolve_spec, spec_to_yaml
from videomae_cli.config.schema import FinetuneSpec, PretrainSpec
from videomae_cli.errors import ConfigError


def resolve(configs=None, sets=None, **flags) -> PretrainSpec:
    named = {key.replace("__", "."): (f"--{key}", value) for key, value in flags.items()}
    return resolve_spec(PretrainSpec, configs, sets, named)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_train_the_tiny_model_with_tube_masking_at_90_percent() -> None:
    spec = resolve()
    assert (spec.model.name, spec.model.dim, spec.model.depth) == ("tiny", 192, 12)
    assert (spec.mask.type, spec.mask.ratio, spec.mask.decoder_ratio) == ("tube", 0.9, 0.0)


def test_model_name_fills_the_size_and_explicit_fields_override_it() -> None:
    spec = resolve(sets=["model.depth=6"], model__name="base")
    assert (spec.model.dim, spec.model.heads, spec.model.decoder_dim, spec.model.depth) == (768, 12, 384, 6)


def test_later_config_files_win(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "mask: {ratio: 0.75, type: random}\n")
    b = write(tmp_path, "b.json", '{"mask": {"ratio": 0.8}}')
    spec = resolve([a, b])
    assert (spec.mask.ratio, spec.mask.type) == (0.8, "random")


def test_set_beats_config_and_flags_beat_set(tmp_path: Path) -> None:
    config = write(tmp_path, "c.yaml", "mask: {ratio: 0.75}\noptim: {lr: 0.001}\n")
    spec = resolve([config], ["mask.ratio=0.8", "optim.lr=0.002"], mask__ratio=0.85)
    assert spec.mask.ratio == 0.85
    assert spec.optim.lr == 0.002


def test_a_saved_spec_yaml_round_trips(tmp_path: Path) -> None:
    original = resolve(sets=["model.depth=3", "mask.type=frame", "mask.ratio=0.5"])
    saved = write(tmp_path, "spec.yaml", spec_to_yaml(original, {"argv": ["videomae"]}))
    assert resolve([saved]) == original


def test_a_size_flag_replaces_the_shape_fields_of_a_saved_spec(tmp_path: Path) -> None:
    saved = write(tmp_path, "spec.yaml", spec_to_yaml(resolve(model__name="small")))
    assert resolve([saved], model__name="base").model.dim == 768


@pytest.mark.parametrize(
    ("sets", "flags", "expected"),
    [
        ([], {"mask__ratio": 1.5}, "mask.ratio: Input should be less than 1, got 1.5 (set by --mask__ratio)"),
        (["model.depth=abc"], {}, "model.depth: Input should be a valid integer"),
        (["nosuch.key=1"], {}, "nosuch: unknown field (set by --set nosuch.key)"),
        (["model.heads=5"], {}, "model.heads: 5 heads do not divide model.dim 192"),
        (["data.input_size=100"], {}, "data.input_size: 100 is not divisible by model.patch_size 16"),
        (["data.num_frames=15"], {}, "data.num_frames: 15 is not divisible by model.tubelet_size 2"),
        (["mask.decoder_ratio=0.3"], {}, "mask.decoder_ratio: Input should be 0.0, 0.25, 0.5 or 0.75"),
        (
            ["data.input_size=48"],
            {"mask__decoder_ratio": 0.5},
            "mask.decoder_ratio: running-cell masking needs an even",
        ),
        (["run.steps=10", "run.epochs=1"], {}, "run.steps: give `run.steps` or `run.epochs`, not both"),
    ],
)
def test_bad_values_name_the_field(sets: list[str], flags: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(sets=sets, **flags)
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_the_error_names_the_source_of_the_value(tmp_path: Path) -> None:
    config = write(tmp_path, "c.yaml", "model: {depth: abc}\n")
    with pytest.raises(ConfigError, match=rf"model\.depth: .*\(set by config {config}\)"):
        resolve([config])


@pytest.mark.parametrize(
    ("item", "expected"),
    [("model.depth", "--set model.depth: expected key.path=value"), ("model..depth=2", "is not a key path")],
)
def test_malformed_set_items_are_config_errors(item: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        resolve(sets=[item])


def test_a_value_cannot_be_used_as_a_section() -> None:
    with pytest.raises(ConfigError, match=r"model\.depth: is a value, not a section"):
        resolve(sets=["model.depth=2", "model.depth.x=1"])


def test_unreadable_and_malformed_config_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        resolve([tmp_path / "missing.yaml"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve([write(tmp_path, "bad.yaml", "model: [unclosed\n")])
    with pytest.raises(ConfigError, match="must hold a mapping"):
        resolve([write(tmp_path, "list.yaml", "- 1\n- 2\n")])


@pytest.mark.parametrize(
    "example", sorted((Path(__file__).parents[1] / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_example_config_is_a_valid_spec(example: Path) -> None:
    kind = FinetuneSpec if example.name.startswith("finetune_") else PretrainSpec
    assert isinstance(resolve_spec(kind, [example]), kind)
