"""Property-based fuzzing of checkpoint files (design.md: run directory and checkpoints): random bytes, truncations,
header lengths, edited safetensors headers and metadata that lies, all starting from one small valid checkpoint of
each kind written once per module.

Whatever a file holds, `load_checkpoint` returns a model or raises ConfigError on one line that says "damaged or not
a checkpoint" (or names the file); never another exception, a crash or a hang. The examples are derandomized and
sized so that the whole file takes well under a minute on one core.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from videomae_cli.checkpoint import LoadedCheckpoint, load_checkpoint, model_metadata, save_weights
from videomae_cli.config.schema import FinetuneSpec, PretrainSpec
from videomae_cli.errors import ConfigError
from videomae_cli.models.factory import build_model

CLASSES = ["walk", "run", "jump"]
KINDS = ("pretrain", "classifier")
DATA = {"num_frames": 4, "input_size": 64}


def fuzz(examples: int) -> settings:
    """Reproducible settings: the same examples on every run, no example database, no per-example deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no explain phase: it writes patch files
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )


def spec_of(kind: str, size: str = "test") -> PretrainSpec | FinetuneSpec:
    return (PretrainSpec if kind == "pretrain" else FinetuneSpec)(model={"name": size}, data=DATA)


class Valid(dict):
    """{kind: bytes}, shown by its keys alone (hypothesis prints the fixtures of a falsifying example)."""

    def __repr__(self) -> str:
        return f"<valid checkpoints: {', '.join(self)}>"


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The bytes of one small valid checkpoint of each kind (a `test`-size model, a 4-frame 64-pixel clip)."""
    folder = tmp_path_factory.mktemp("valid")
    found = Valid()
    for kind in KINDS:
        spec = spec_of(kind)
        classes = CLASSES if kind == "classifier" else None
        extra = {"classes": json.dumps(CLASSES)} if classes else {}
        path = folder / f"{kind}.safetensors"
        save_weights(
            path, build_model(spec, classes).state_dict(), model_metadata(kind, spec.model_dump_json(), **extra)
        )
        found[kind] = path.read_bytes()
        assert isinstance(load_checkpoint(path), LoadedCheckpoint)
    return found


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each example writes its file (not named model.safetensors, so no run's manifest is looked up)."""
    return tmp_path_factory.mktemp("fuzz") / "fuzzed.safetensors"


def outcome(path: Path, data: bytes) -> str:
    """Load `data` written at `path`: "loaded", or the reason of the one-line ConfigError; any other exception
    propagates, so hypothesis reports it with its smallest example."""
    path.write_bytes(data)
    try:
        loaded = load_checkpoint(path)
    except ConfigError as e:
        message = str(e)
        assert message and "\n" not in message and "\r" not in message, f"not one line: {message!r}"
        assert "damaged or not a checkpoint" in message or str(path) in message, message
        if currently_in_test_context():
            event(message.split("(", 1)[-1][:30])  # pytest --hypothesis-show-statistics
        return message
    assert isinstance(loaded, LoadedCheckpoint)
    if currently_in_test_context():
        event("loaded")
    return "loaded"


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def join(header: Any, body: bytes, length_delta: int = 0) -> bytes:
    raw = json.dumps(header).encode()
    return (len(raw) + length_delta).to_bytes(8, "little", signed=False) + raw + body


# ---------------------------------------------------------------------------------------------------------------------
# Bytes


@fuzz(120)
@given(kind=st.sampled_from(KINDS), data=st.binary(max_size=600), keep=st.integers(0, 64))
def test_random_bytes_and_random_bytes_after_a_valid_start_are_refused(
    valid: dict[str, bytes], work: Path, kind: str, data: bytes, keep: int
) -> None:
    assert outcome(work, data) != "loaded"
    assert outcome(work, valid[kind][:keep] + data) != "loaded"


@fuzz(80)
@given(kind=st.sampled_from(KINDS), cut=st.floats(0, 1, exclude_max=True), extra=st.binary(max_size=16))
def test_a_truncated_or_lengthened_checkpoint_is_refused(
    valid: dict[str, bytes], work: Path, kind: str, cut: float, extra: bytes
) -> None:
    data = valid[kind]
    assert outcome(work, data[: int(cut * len(data))]) != "loaded"
    if extra:
        assert outcome(work, data + extra) != "loaded"


@fuzz(80)
@given(
    kind=st.sampled_from(KINDS),
    length=st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 20_000), st.sampled_from([2**63, 2**64 - 1, 2**32])),
)
def test_any_8_byte_header_length_is_refused_unless_it_is_the_true_one(
    valid: dict[str, bytes], work: Path, kind: str, length: int
) -> None:
    data = valid[kind]
    result = outcome(work, length.to_bytes(8, "little") + data[8:])
    assert (result == "loaded") == (length == int.from_bytes(data[:8], "little"))


# ---------------------------------------------------------------------------------------------------------------------
# Headers

JSON_ANY = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**65), 2**65) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
DTYPES = st.sampled_from(
    ["F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL", "C64", "F8_E4M3", "f32", "float32", "", "F3"]
)
SIZES = st.one_of(st.integers(0, 300), st.integers(0, 300), st.integers(-3, 2**64 + 5))
SHAPES = st.lists(SIZES, max_size=5)
OFFSETS = st.lists(SIZES, min_size=2, max_size=2)
NAMES = st.integers(0, 999)  # a tensor of the header, by its place in name order
EDITS = st.one_of(  # each well-formed edit several times over: a malformed one stops at the first check
    *[st.tuples(st.just("dtype"), NAMES, DTYPES)] * 3,
    *[st.tuples(st.just("shape"), NAMES, SHAPES)] * 3,
    *[st.tuples(st.just("data_offsets"), NAMES, OFFSETS)] * 3,
    *[st.tuples(st.just("overlap"), NAMES, NAMES)] * 2,
    *[st.tuples(st.just("delete"), NAMES, st.none())] * 2,
    *[st.tuples(st.just("extra tensor"), st.text(max_size=12), st.tuples(DTYPES, SHAPES, SIZES))] * 2,
    st.tuples(st.just("field"), NAMES, st.tuples(st.sampled_from(["dtype", "shape", "data_offsets"]), JSON_ANY)),
    st.tuples(st.just("drop field"), NAMES, st.sampled_from(["dtype", "shape", "data_offsets"])),
    st.tuples(st.just("entry"), NAMES, JSON_ANY),
    st.tuples(st.just("extra"), st.text(max_size=12), JSON_ANY),
    st.tuples(st.just("metadata"), st.none(), JSON_ANY),
    st.tuples(
        st.just("metadata item"), st.sampled_from(["videomae.spec", "videomae.kind", "videomae.classes"]), JSON_ANY
    ),
    st.tuples(st.just("header"), st.none(), JSON_ANY),
)


def edit_header(header: Any, op: str, where: Any, value: Any) -> Any:
    names = sorted(name for name in header if name != "__metadata__") if isinstance(header, dict) else []
    if not names:
        return header if op != "header" else value
    name = names[where % len(names)] if isinstance(where, int) else where
    entry = header.get(name)
    if op in ("dtype", "shape", "data_offsets") and isinstance(entry, dict):
        entry[op] = value
    elif op == "overlap" and isinstance(entry, dict) and isinstance(header.get(names[value % len(names)]), dict):
        entry["data_offsets"] = list(header[names[value % len(names)]].get("data_offsets", []))
    elif op == "delete":
        header.pop(name, None)
    elif op == "field" and isinstance(entry, dict):
        entry[value[0]] = value[1]
    elif op == "drop field" and isinstance(entry, dict):
        entry.pop(value, None)
    elif op in ("entry", "extra"):
        header[name] = value
    elif op == "extra tensor":
        dtype, shape, end = value
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [0, end]}
    elif op == "metadata":
        header["__metadata__"] = value
    elif op == "metadata item" and isinstance(header.get("__metadata__"), dict):
        header["__metadata__"][where] = value
    elif op == "header":
        return value
    return header


@fuzz(300)
@given(
    kind=st.sampled_from(KINDS),
    edits=st.lists(EDITS, min_size=1, max_size=4),
    length_delta=st.sampled_from([0, 0, 0, -1, 1]),
    body_cut=st.sampled_from([0, 0, 0, 1, 4, 1000]),
)
def test_an_edited_header_is_refused_or_describes_a_loadable_model(
    valid: dict[str, bytes], work: Path, kind: str, edits: list[tuple[str, Any, Any]], length_delta: int, body_cut: int
) -> None:
    header, body = split(valid[kind])
    for op, where, value in edits:
        header = edit_header(header, op, where, value)
    outcome(work, join(header, body[: len(body) - body_cut], length_delta))


FOUND = {  # edits the fuzzing found escaping as KeyError, TypeError, AttributeError or RecursionError (now refused)
    "a dtype dropped": ("drop field", 0, "dtype"),
    "a shape dropped": ("drop field", 0, "shape"),
    "a shape that is a number": ("shape", 0, 5),
    "a dtype that is a list": ("dtype", 0, ["F32"]),
    "data offsets of strings": ("data_offsets", 0, ["a", "b"]),
    "metadata that is a list": ("metadata", None, ["videomae.spec"]),
    "metadata that is a string": ("metadata", None, "videomae.spec"),
    "a spec that is a number": ("metadata item", "videomae.spec", 5),
    "a kind that is a list": ("metadata item", "videomae.kind", ["x"]),
    "a spec nested too deep": ("metadata item", "videomae.spec", "[" * 100_000),
    "a header nested too deep": ("header", None, {"a": [[[[[[[[[[]]]]]]]]]]}),
}


@pytest.mark.parametrize("found", list(FOUND))
def test_the_headers_the_fuzzing_found_escaping_are_refused(valid: dict[str, bytes], work: Path, found: str) -> None:
    header, body = split(valid["pretrain"])
    data = join(edit_header(header, *FOUND[found]), body)
    if found == "a header nested too deep":  # deeper than json.dumps can write
        nested = b'{"a":' + b"[" * 100_000
        data = len(nested).to_bytes(8, "little") + nested
    assert "damaged or not a checkpoint" in outcome(work, data)


# ---------------------------------------------------------------------------------------------------------------------
# Metadata that lies


def other_spec(kind: str, size: str, field: tuple[tuple[str, str], Any] | None) -> str:
    spec = json.loads(spec_of(kind, size).model_dump_json())
    if field is not None:
        (section, name), value = field
        spec[section][name] = value
    return json.dumps(spec)


FIELDS = st.sampled_from(
    [
        *(("model", name) for name in ("name", "dim", "depth", "heads", "patch_size", "tubelet_size", "decoder_dim")),
        *(("model", name) for name in ("pos_embed", "cls_token", "pool", "head_init_scale", "unknown")),
        *(("data", name) for name in ("num_frames", "input_size")),
        *(("mask", name) for name in ("ratio", "type")),
    ]
)
OTHER_SPECS = st.builds(  # a spec of either kind and another size, or with one field changed (to anything)
    other_spec,
    st.sampled_from(KINDS),
    st.sampled_from(["test", "test", "tiny", "small"]),
    st.none() | st.tuples(FIELDS, JSON_ANY | st.integers(-2, 300) | st.sampled_from(["test", "tiny", "mean", "cls"])),
)
SPECS = st.one_of(
    *[OTHER_SPECS] * 4,
    st.sampled_from(["", "{not", "null", "[]", "{}", "1", '"pretrain"', "NaN", "{" * 5000, "[" * 100_000]),
    st.text(max_size=20),
)
CLASS_LISTS = st.one_of(
    st.none(),
    st.just(json.dumps(CLASSES)),
    st.lists(st.text(max_size=4), max_size=6).map(json.dumps),
    st.lists(st.text(max_size=4), max_size=6).map(json.dumps),
    st.lists(JSON_ANY, max_size=4).map(json.dumps),
    JSON_ANY.map(json.dumps),
    st.sampled_from(["", "[", "walk,run,jump", "null", '"walk"', "[" * 100_000]),
    st.text(max_size=12),
)


@fuzz(150)
@given(
    stored=st.sampled_from(KINDS),
    kind=st.sampled_from([None, *KINDS, *KINDS, "", "Pretrain", "finetune", "classifier ", "x"]),
    spec=st.one_of(st.none(), *[SPECS] * 5),
    classes=CLASS_LISTS,
)
def test_metadata_that_lies_about_the_model_is_refused_or_describes_it(
    valid: dict[str, bytes], work: Path, stored: str, kind: str | None, spec: str | None, classes: str | None
) -> None:
    header, body = split(valid[stored])
    meta = header["__metadata__"]
    for key, value in (("videomae.kind", kind), ("videomae.spec", spec), ("videomae.classes", classes)):
        meta.pop(key, None)
        if value is not None:
            meta[key] = value
    outcome(work, join(header, body))
