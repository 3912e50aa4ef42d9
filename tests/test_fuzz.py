"""Property-based fuzzing of every user-facing parser (issue 24): spec files and `--set` items, every manifest format
(`PATH LABEL`, V2's `PATH START TOTAL`, Kinetics csv, SSv2 json, classes.json), view specs and frame lists.

Whatever the input, a parser returns a value or raises one of our errors (ConfigError/DataError): one line, naming the
field or the file. Any other exception fails the test with hypothesis's smallest example. The examples are
derandomized (CI reruns exactly the same ones) and sized so the whole file takes about a minute on one core; a few
CLI runs replay inputs the fuzzing found, to check the exit code and that stderr holds no traceback.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_cli
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from videomae_cli.config.grid import TokenGrid
from videomae_cli.config.prepare import PrepareSpec
from videomae_cli.config.resolve import load_config_file, resolve_spec
from videomae_cli.config.schema import FinetuneSpec, PretrainSpec, check_views, parse_views
from videomae_cli.config.visualize import VisualizeSpec, clip_frames, frame_numbers
from videomae_cli.data.manifest import CLASSES_FILE, class_names, read_manifest
from videomae_cli.data.prepare import jobs
from videomae_cli.data.prepare.readers import detect_format, read_source
from videomae_cli.errors import ConfigError, DataError


def fuzz(examples: int) -> settings:
    """Reproducible settings: the same examples on every run, no example database, no per-example deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no explain phase: it writes patch files
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the whole module: each test writes under its own subfolder, and each example overwrites the files
    of the one before (hypothesis runs every example of a test within one call of it)."""
    return tmp_path_factory.mktemp("fuzz")


def one_line(message: str) -> None:
    assert message, "an empty error message"
    assert len(message.splitlines()) == 1 and not message.endswith(("\n", "\r")), f"not one line: {message!r}"


def check_error(error: Exception, *names: str) -> str:
    """`error` is one of ours, on one line, naming one of `names` (a field or a file)."""
    assert isinstance(error, ConfigError | DataError), f"{type(error).__name__}: {error}"
    message = str(error)
    one_line(message)
    assert any(name in message for name in names), f"names none of {names}: {message!r}"
    return message


def attempt(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, Exception | None]:
    """(fn's result, None) or (None, our error); any other exception propagates, so hypothesis reports it."""
    try:
        result = fn(*args, **kwargs)
    except (ConfigError, DataError) as e:
        event(f"{getattr(fn, '__name__', 'parser')}: {type(e).__name__}")  # pytest --hypothesis-show-statistics
        return None, e
    event(f"{getattr(fn, '__name__', 'parser')}: parsed")
    return result, None


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Building blocks: text, numbers, YAML tokens.

# Text without surrogates (which no file can hold as UTF-8), any other code point included.
TEXT = st.text(max_size=24)
LINE_TEXT = st.text(st.characters(exclude_characters="\n\r"), max_size=16)
# Numbers as users (and broken files) write them: ordinary, padded, signed, unicode digits, too long for int().
NUMBER_WORDS = st.one_of(
    st.integers(-3, 300).map(str),
    st.sampled_from(
        [
            *("-0", "007", "+3", "--5", "-", "1_0", "1e3", "1.5", "nan", "inf", "-inf", "1e400", "0x10", "", " "),
            *("²", "٣", "１２", "9" * 5000, "99999999999999999999", "1" + "0" * 40),
        ]
    ),
    st.text("0123456789-+.e", min_size=1, max_size=8),
)
# Pieces of YAML that reach PyYAML's constructors: tags, anchors, dates, bad escapes, deep nesting.
YAML_WORDS = st.sampled_from(
    [
        "model:", "  name: ", "  dim: ", "mask:", "  ratio: ", "data:", "run:", "optim:", "  betas: ", "meta:",
        "base", "test", "tiny", "7", "-1", "0.5", "1e999", ".nan", "~", "null", "true", "yes", "[", "]", "{", "}",
        ",", ":", "- ", "? ", "&a ", "*a", "*b", "<<: ", "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!binary ",
        "!!set ", "!!omap ", "!!python/tuple ", "!!str ", "!foo ", "2001-02-30", "2024-01-01", "2001-13-01 10:00:00",
        "0b2", "0o9", "0x", "1" * 4400, '"\\x"', "'", '"', "\t", "\n", "\n  ", "#", "%YAML 1.1\n", "---\n", "...",
        "\x00", "\ufeff", "\u2028", "[" * 600, "{a: " * 300,
    ]
)  # fmt: skip
YAMLISH = st.lists(YAML_WORDS, max_size=12).map("".join)


def spec_fields(spec_type: type[BaseModel]) -> list[str]:
    """Every field path of a spec, one level of sections deep (model.dim, run.resume, kind, ...)."""
    paths = []
    for name, info in spec_type.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            paths += [f"{name}.{field}" for field in section.model_fields]
        else:
            paths.append(name)
    return paths


FIELDS = sorted({*spec_fields(PretrainSpec), *spec_fields(FinetuneSpec)})
KEYS = st.one_of(
    st.sampled_from(FIELDS),
    st.just("model.name"),  # the one key with logic of its own (a size fills the shape fields)
    st.sampled_from(FIELDS).map(lambda field: field.split(".")[0]),
    st.sampled_from(["", ".", "model.", ".dim", "model..dim", "model.dim.x", "a b", "meta", "name", "Model"]),
    TEXT,
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, 1, 2, 3, 16, 64, 10**30, -(10**30), 2**63]),
    st.floats(),
    TEXT,
    st.sampled_from(["tiny", "test", "base", "giant", "tube", "frame", "auto", "sincos", "cls", "5x3", "2001-02-30"]),
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3), max_leaves=8
)
TREES = st.dictionaries(KEYS, VALUES, max_size=5)
SPECS = st.sampled_from([PretrainSpec, FinetuneSpec])
# Values a field could plausibly hold, so that mutated specs get past the type checks to the cross-field ones.
NEAR_VALUES = st.one_of(
    st.integers(-2, 300),
    st.sampled_from([1, 2, 3, 4, 6, 8, 14, 16, 32, 64, 224, 768, 10**30]),
    st.floats(-0.5, 1.5),
    st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.9, 1.0, float("nan"), float("inf")]),
    st.booleans(),
    st.none(),
    st.sampled_from(
        ["tiny", "test", "base", "giant", "tube", "random", "frame", "cls", "separable", "fsdp", "segment"]
    ),
    st.lists(st.floats(0, 1.2), max_size=3),
    VALUES,
)


@st.composite
def mutated_specs(draw: st.DrawFn) -> tuple[type, dict[str, Any]]:
    """A valid spec's tree (as `--print-config` writes it) with one to three fields changed."""
    spec_type = draw(SPECS)
    tree = spec_type().model_dump(mode="json")
    for field in draw(st.lists(st.sampled_from(spec_fields(spec_type)), min_size=1, max_size=3)):
        section, _, name = field.partition(".")
        if name:
            tree[section][name] = draw(NEAR_VALUES)
        else:
            tree[section] = draw(NEAR_VALUES)
    return spec_type, tree


# ---------------------------------------------------------------------------------------------------------------------
# Spec files and --set items.


def resolve_or_error(spec_type: type, names: tuple[str, ...], **layers: Any) -> BaseModel | None:
    spec, error = attempt(resolve_spec, spec_type, **layers)
    if error is not None:
        message = check_error(error, *names)
        head, sep, _ = message.partition(": ")
        assert sep and head.strip(), f"no field or file before the reason: {message!r}"
        return None
    assert isinstance(spec, spec_type)
    return spec


# Each @example is an input the fuzzing found a traceback with, kept so that it is tried on every run.
@fuzz(300)
@given(text=st.one_of(YAMLISH, TEXT, st.binary(max_size=40)), suffix=st.sampled_from([".yaml", ".json"]))
@example(text=b"\x80", suffix=".yaml")  # UnicodeDecodeError
@example(text="a: 2001-02-30", suffix=".yaml")  # ValueError from PyYAML's date constructor
@example(text="a: !!bool maybe", suffix=".yaml")  # KeyError
@example(text="a: !!timestamp x", suffix=".yaml")  # AttributeError
@example(text="a: " + "1" * 4400, suffix=".yaml")  # ValueError: over 4300 digits
@example(text="[" * 3000, suffix=".json")  # RecursionError
def test_config_file_text(work: Path, text: str | bytes, suffix: str) -> None:
    path = write(work / "text" / f"config{suffix}", text)
    tree, error = attempt(load_config_file, path)
    if error is not None:
        check_error(error, str(path))
        return
    assert isinstance(tree, dict)
    resolve_or_error(PretrainSpec, (str(path), ":"), configs=[path])


@fuzz(300)
@given(tree=TREES, spec_type=SPECS, as_json=st.booleans())
@example(tree={"\r": None}, spec_type=PretrainSpec, as_json=False)  # a key with a line break: a two-line error
def test_config_file_trees(work: Path, tree: dict[str, Any], spec_type: type, as_json: bool) -> None:
    """Random nested mappings of real and made-up fields, written as YAML or JSON and resolved into a spec."""
    if as_json:
        path = write(work / "trees" / "config.json", json.dumps(tree))
    else:
        path = write(work / "trees" / "config.yaml", yaml.safe_dump(tree, allow_unicode=True))
    resolve_or_error(spec_type, (str(path), ":"), configs=[path])


@fuzz(200)
@given(case=mutated_specs(), as_json=st.booleans())
def test_config_file_mutated_specs(work: Path, case: tuple[type, dict[str, Any]], as_json: bool) -> None:
    spec_type, tree = case
    if as_json:
        path = write(work / "mutated" / "config.json", json.dumps(tree))
    else:
        path = write(work / "mutated" / "config.yaml", yaml.safe_dump(tree, allow_unicode=True))
    resolve_or_error(spec_type, (str(path), ":"), configs=[path])


@fuzz(300)
@given(
    items=st.lists(
        st.one_of(
            st.tuples(KEYS, st.one_of(YAMLISH, TEXT, VALUES.map(lambda v: json.dumps(v)))).map("=".join),
            st.tuples(st.sampled_from(FIELDS), NEAR_VALUES.map(lambda v: json.dumps(v))).map("=".join),
            TEXT,
        ),
        min_size=1,
        max_size=4,
    ),
    spec_type=SPECS,
)
@example(items=["model.name=[1]"], spec_type=PretrainSpec)  # TypeError: unhashable size name
@example(items=["model.name={}"], spec_type=FinetuneSpec)
@example(items=["\x85"], spec_type=PretrainSpec)  # NEL splits the error line
@example(items=["run.resume=2001-02-30"], spec_type=PretrainSpec)  # ValueError from PyYAML's date constructor
def test_set_items(items: list[str], spec_type: type) -> None:
    resolve_or_error(spec_type, ("--set", ":"), sets=items)


@fuzz(100)
@given(tree=TREES, item=st.tuples(st.sampled_from(FIELDS), TEXT).map("=".join))
def test_config_file_under_set(work: Path, tree: dict[str, Any], item: str) -> None:
    """The layers together: a file, then a --set over it (e.g. model.name after a file's shape fields)."""
    path = write(work / "layered" / "config.yaml", yaml.safe_dump(tree, allow_unicode=True))
    resolve_or_error(PretrainSpec, (str(path), "--set", ":"), configs=[path], sets=[item])


def test_config_file_aliases_that_loop(work: Path) -> None:
    """A YAML anchor inside its own mapping is a tree without end: refused, naming the field."""
    path = write(work / "loop.yaml", "model: &m\n  dim: 64\n  again: *m\n")
    with pytest.raises(ConfigError, match=r"model\.again") as error:
        resolve_spec(PretrainSpec, configs=[path])
    one_line(str(error.value))


# ---------------------------------------------------------------------------------------------------------------------
# Manifests: `PATH LABEL` and V2's `PATH START TOTAL`, read for training and by prepare-data.

PATH_WORDS = st.one_of(
    st.sampled_from(["a.mp4", "dir/b c.mp4", "/abs/v.webm", "#comment", "x", "", "é.mkv", "a\x00b.mp4", "."]),
    LINE_TEXT,
)
SEPARATORS = st.sampled_from([" ", " ", "  ", "\t", ","])
MANIFEST_LINES = st.tuples(PATH_WORDS, st.lists(NUMBER_WORDS, max_size=3), SEPARATORS).map(
    lambda parts: parts[2].join([parts[0], *parts[1]])
)
# Mostly well-formed files, so the readers get past the first line: labelled or V2 lists, a stray line at times.
LISTED_PATHS = st.sampled_from(["a.mp4", "dir/b c.mp4", "/abs/v.webm", "é.mkv", "x", "a\x00b.mp4"])
CLASS_LABELS = st.one_of(st.integers(-2, 12), st.sampled_from([999_999, 10**6, 10**11]))
WELL_FORMED = st.one_of(
    st.lists(st.tuples(LISTED_PATHS, CLASS_LABELS).map(lambda t: f"{t[0]} {t[1]}"), min_size=1, max_size=5),
    st.lists(
        st.tuples(LISTED_PATHS, st.integers(-1, 99), st.integers(-2, 99)).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        min_size=1,
        max_size=5,
    ),
)
MANIFESTS = st.one_of(
    st.tuples(WELL_FORMED, st.lists(MANIFEST_LINES, max_size=1)).map(lambda t: "\n".join(t[0] + t[1])),
    st.lists(MANIFEST_LINES, max_size=6).map("\n".join),
    st.lists(MANIFEST_LINES, max_size=4).map("\r\n".join).map(lambda text: "\ufeff" + text),
    TEXT,
    st.binary(max_size=30),
)


def check_entries(entries: list[Any]) -> None:
    assert entries
    for entry in entries:
        assert "\x00" not in str(entry.path), "a path the file system refuses (os.stat raises ValueError)"
        assert all(isinstance(n, int) for n in (entry.label, entry.start, entry.total))


@fuzz(400)
@given(content=MANIFESTS)
@example(content=b"\x80")  # UnicodeDecodeError
@example(content="a.mp4 ²")  # "²".isdigit(), but int("²") is a ValueError
@example(content="a.mp4 --5")  # "--5".lstrip("-").isdigit()
@example(content="a.mp4 " + "9" * 5000)  # over int()'s 4300 digits
@example(content="a\x00b.mp4 1")  # os.stat raises ValueError on it later
@example(content="a.mp4 99999999999")  # class_names would list 10**11 names
def test_manifests(work: Path, content: str | bytes) -> None:
    path = write(work / "manifest" / "train.csv", content)
    entries, error = attempt(read_manifest, path)
    if error is not None:
        check_error(error, str(path))
        return
    check_entries(entries)
    names = class_names(path.parent, max(e.label for e in entries) + 1)
    assert all(isinstance(name, str) for name in names)


@fuzz(150)
@given(content=MANIFESTS)
def test_annotation_source(work: Path, content: str | bytes) -> None:
    """prepare-data reads the same files (and a folder holding them) through its own reader."""
    folder = work / "annotations"
    path = write(folder / "train.csv", content)
    for src in (path, folder):
        spec = PrepareSpec(src=src, out=work / "annotations-out", format="annotations")
        source, error = attempt(read_source, spec, spec.out.absolute())
        if error is not None:
            check_error(error, "src:", str(folder))
            continue
        assert all("\x00" not in str(item.path) for item in source.items)
        assert all(isinstance(name, str) for name in source.classes)


CLASSES_TREES = st.one_of(
    st.fixed_dictionaries({"classes": st.dictionaries(st.one_of(st.integers(-2, 6).map(str), TEXT), VALUES)}),
    st.fixed_dictionaries({"classes": VALUES}),
    VALUES,
)


@fuzz(200)
@given(
    content=st.one_of(CLASSES_TREES.map(json.dumps), TEXT, st.binary(max_size=20), st.just("[" * 5000)),
    count=st.integers(0, 40),
)
@example(content="[" * 5000, count=2)  # RecursionError
@example(content='{"classes": {"0": null, "1": [1]}}', count=2)  # names that are not strings
def test_classes_json(work: Path, content: str | bytes, count: int) -> None:
    folder = work / "classes"
    write(folder / CLASSES_FILE, content)
    names, error = attempt(class_names, folder, count)
    if error is not None:
        check_error(error, str(folder))
        return
    assert len(names) >= count and all(isinstance(name, str) for name in names)


# ---------------------------------------------------------------------------------------------------------------------
# Kinetics csv files.

TIMES = st.one_of(
    st.sampled_from(["0", "10", "10.5", "-1", "nan", "inf", "-inf", "1e400", "1e300", "abc", "", " 3 ", "1,5"]),
    st.floats().map(str),
    NUMBER_WORDS,
)
KINETICS_HEADER = ["label", "youtube_id", "time_start", "time_end", "split"]
HEADERS = st.one_of(
    st.sampled_from(
        [
            KINETICS_HEADER,
            ["label", "youtube_id", "time_start", "time_end"],
            ["Label", " youtube_id ", "TIME_START", "time_end", "split", "extra"],
            ["label", "youtube_id", "time_start", "time_end", "split", "split"],
            ["label", "youtube_id", "time_start", "time_end", ""],
        ]
    ),
    st.lists(TEXT, max_size=6),
)
CELLS = st.one_of(TEXT, st.sampled_from(["train", "val", "validate", "test", "bowling", "a_b", "abc\x00", "x" * 300]))
GOOD_ROWS = st.tuples(
    st.sampled_from(["bowling", "juggling", "ice skating"]),
    st.sampled_from(["abc", "a_b-C", "x" * 11, "abc\x00"]),
    st.integers(0, 300).map(str),
    st.one_of(st.integers(0, 310).map(str), st.floats(0, 400).map(str)),
    st.sampled_from(["train", "val", "validate", "test", "", "Training", "other"]),
).map(list)
ODD_ROWS = st.tuples(CELLS, CELLS, TIMES, TIMES, CELLS).map(list) | st.lists(CELLS | TIMES, max_size=7)
# Mostly good rows (so that the reader gets to the end of the file), at times one odd row among them.
ROWS = st.tuples(st.lists(GOOD_ROWS, max_size=4), st.lists(ODD_ROWS, max_size=1), st.randoms()).map(
    lambda parts: parts[2].sample(parts[0] + parts[1], len(parts[0] + parts[1]))
)


def kinetics_text(header: list[str], rows: list[list[str]], quoted: bool) -> str:
    if not quoted:  # as hand-written files are: no quoting, so commas and quotes in cells break the columns
        return "\n".join(",".join(row) for row in [header, *rows])
    out = io.StringIO()
    csv.writer(out).writerows([header, *rows])
    return out.getvalue()


@fuzz(300)
@given(
    header=HEADERS,
    rows=ROWS,
    quoted=st.booleans(),
    raw=st.one_of(
        st.none(), TEXT, st.binary(max_size=30), st.just("label,youtube_id,time_start,time_end\n" + "x" * 140000)
    ),
    name=st.sampled_from(["train.csv", "validate.csv", "kinetics.csv"]),
)
@example(header=KINETICS_HEADER, rows=[["a", "b", "0", "inf", "train"]], quoted=True, raw=None, name="train.csv")
@example(header=KINETICS_HEADER, rows=[["a", "b", "0", "1", "train", "extra"]], quoted=True, raw=None, name="k.csv")
@example(header=KINETICS_HEADER, rows=[["a", "b\x00", "0", "1", "train"]], quoted=True, raw=None, name="k.csv")
@example(header=[], rows=[], quoted=True, raw=b"label,youtube_id,time_start,time_end\n\x80", name="k.csv")
@example(header=[], rows=[], quoted=True, raw="label,youtube_id,time_start,time_end\n" + "x" * 140000, name="k.csv")
def test_kinetics_csv(
    work: Path, header: list[str], rows: list[list[str]], quoted: bool, raw: str | bytes | None, name: str
) -> None:
    folder = work / "kinetics"
    for old in folder.glob("*.csv"):
        old.unlink()
    path = write(folder / name, kinetics_text(header, rows, quoted) if raw is None else raw)
    detect_format(path)  # never raises: a file it cannot read is just not a Kinetics csv
    detect_format(folder)
    for src, fmt in ((path, "kinetics"), (folder, "auto")):
        spec = PrepareSpec(src=src, out=work / "kinetics-out", format=fmt)
        source, error = attempt(read_source, spec, spec.out.absolute())
        if error is not None:
            check_error(error, "src:", str(folder))
            continue
        assert all("\x00" not in str(item.path) for item in source.items)
        assert all(0 <= item.label < max(1, len(source.classes)) for item in source.items)


# ---------------------------------------------------------------------------------------------------------------------
# Something-Something V2 json files.

INDICES = st.one_of(
    st.integers(-1, 5),
    st.integers(-1, 5).map(str),
    st.sampled_from([1.5, 2.0, float("nan"), float("inf"), 10**400, "x", "", None, True, [1]]),
)
TEMPLATES = st.one_of(st.sampled_from(["Pushing x", "Holding [x]", "Pushing [x]"]), TEXT)
SSV2_LABELS = st.one_of(
    st.lists(TEMPLATES, unique=True, max_size=4).map(lambda names: {n: str(i) for i, n in enumerate(names)}),
    st.dictionaries(st.one_of(st.sampled_from(["Pushing x", "Holding [x]"]), TEXT), INDICES),
    VALUES,
)
ENTRIES = st.one_of(
    st.lists(
        st.fixed_dictionaries(
            {"id": st.one_of(st.sampled_from(["1", "22", "1\x00", "../up", "a/b"]), st.integers(), TEXT, VALUES)},
            optional={"template": st.one_of(TEMPLATES, VALUES)},
        ),
        max_size=4,
    ),
    VALUES,
)
JSON_FILES = st.one_of(st.none(), TEXT, st.binary(max_size=20), st.just("[" * 5000))


@fuzz(300)
@given(labels=SSV2_LABELS, train=ENTRIES, val=st.one_of(st.none(), ENTRIES), raw=JSON_FILES, broken=st.integers(0, 2))
@example(labels={"a": float("inf")}, train=[], val=None, raw=None, broken=0)  # OverflowError: int(Infinity)
@example(labels={"a": 0}, train=[], val=None, raw="[" * 5000, broken=1)  # RecursionError
@example(labels={"a": 0}, train=[{"id": "1\x00", "template": "a"}], val=None, raw=None, broken=0)
def test_ssv2_json(work: Path, labels: Any, train: Any, val: Any, raw: str | bytes | None, broken: int) -> None:
    folder = work / "ssv2"
    (folder / "validation.json").unlink(missing_ok=True)
    files = {"labels.json": labels, "train.json": train, "validation.json": val}
    for i, (name, value) in enumerate(files.items()):
        if raw is not None and i == broken:
            write(folder / name, raw)
        elif value is not None:
            write(folder / name, json.dumps(value))
    for src, fmt in ((folder / "labels.json", "ssv2"), (folder, "auto")):
        spec = PrepareSpec(src=src, out=work / "ssv2-out", format=fmt)
        source, error = attempt(read_source, spec, spec.out.absolute())
        if error is not None:
            check_error(error, "src:")
            continue
        assert all("\x00" not in str(item.path) for item in source.items)
        assert all(isinstance(name, str) for name in source.classes)
        assert all(0 <= item.label < len(source.classes) for item in source.items)


@fuzz(100)
@given(content=st.one_of(VALUES.map(json.dumps), st.dictionaries(TEXT, VALUES).map(json.dumps), JSON_FILES))
@example(content="null")  # AttributeError
@example(content='{"version": 2, "entries": []}')
def test_probe_cache(work: Path, content: Any) -> None:
    """A damaged probe cache is ignored (everything is probed again), whatever it holds."""
    if content is None:
        return
    path = write(work / "cache" / ".probe_cache.json", content)
    assert isinstance(jobs._load_cache(path), dict)


# ---------------------------------------------------------------------------------------------------------------------
# View specs ("5x3") and frame lists ("0,2,4").

VIEW_TEXT = st.one_of(
    st.tuples(st.integers(-1, 12).map(str), st.just("x"), st.sampled_from(["1", "2", "3"])).map("".join),
    st.tuples(NUMBER_WORDS, st.sampled_from(["x", "X", "×", " x ", ""]), NUMBER_WORDS).map("".join),
    st.sampled_from(["5x3", "2x1", "5x3\n", " 5x3", "0x3", "5x2", "٣x3", "1" + "0" * 5000 + "x3"]),
    TEXT,
)


@fuzz(300)
@given(text=VIEW_TEXT)
@example(text="1" + "0" * 5000 + "x3")  # accepted by check_views, then int() raised ValueError in parse_views
def test_views(text: str) -> None:
    views, error = attempt(parse_views, text)
    try:
        check_views(text)
        checked = None
    except ValueError as e:  # raised inside the spec's validator, which pydantic turns into a ConfigError
        checked = e
    if error is not None:
        assert check_error(error, "views").startswith("views: ")
        assert checked is not None and str(checked) == str(error), "check_views and parse_views disagree"
        return
    assert checked is None, "check_views refuses what parse_views accepts"
    clips, crops = views
    assert clips >= 1 and crops in (1, 3)


FRAME_TEXT = st.one_of(
    st.lists(NUMBER_WORDS, max_size=5).map(",".join),
    st.sampled_from(["all", " ALL ", "all,0", "0,,2", "0, 2", "", ",", "0\n", "1" * 5000]),
    TEXT,
)


@fuzz(300)
@given(text=FRAME_TEXT, frames=st.sampled_from([2, 4, 16]))
def test_frames(text: str, frames: int) -> None:
    grid = TokenGrid(frames=frames, height=224, width=224, patch=16, tubelet=2)
    for parse in (frame_numbers, lambda t: clip_frames(t, grid)):
        try:
            result = parse(text)
        except ValueError as e:  # the documented contract: ValueError naming `frames` (callers make it a ConfigError)
            assert not isinstance(e, ConfigError | DataError)
            one_line(str(e))
            assert str(e).startswith("frames: ")
            continue
        assert result is None or all(isinstance(f, int) for f in result)
    shown, error = attempt(
        resolve_spec,
        VisualizeSpec,
        flags={"video": ("--video", "v.mp4"), "out": ("--out", "o.png"), "frames": ("--frames", text)},
    )
    if error is not None:
        assert check_error(error, "frames").startswith("frames: ")
    else:
        assert all(0 <= f < 16 for f in clip_frames(shown.frames, TokenGrid(16, 224, 224, 16, 2)))


@fuzz(150)
@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            "out": st.one_of(TEXT, st.sampled_from(["o.png", "o.GIF", "a\nb.mp4", "x.jpg"])),
            "frames": FRAME_TEXT,
            "num_frames": st.one_of(st.integers(), SCALARS),
            "input_size": st.one_of(st.integers(-64, 512), SCALARS),
            "mask": st.dictionaries(st.sampled_from(["type", "ratio", "decoder_ratio", "x"]), SCALARS, max_size=3),
            "seed": SCALARS,
        },
    )
)
@example(values={"out": "0\x1e"})  # a record separator splits the error line
def test_visualize_spec(values: dict[str, Any]) -> None:
    resolve_or_error(VisualizeSpec, (":",), base=({"video": "v.mp4", **values}, "the test"))


@fuzz(150)
@given(
    values=st.fixed_dictionaries(
        {},
        optional=dict.fromkeys(PrepareSpec.model_fields, NEAR_VALUES),
    )
)
def test_prepare_spec(values: dict[str, Any]) -> None:
    resolve_or_error(PrepareSpec, (":",), base=({"src": "videos", "out": "out", **values}, "the test"))


# ---------------------------------------------------------------------------------------------------------------------
# The CLI on inputs the fuzzing found: the documented exit code, one line, no traceback.


@pytest.mark.parametrize(
    ("args", "files"),
    [
        (["pretrain", "--print-config", "--config", "{tmp}/bad.yaml"], {"bad.yaml": "run:\n  resume: 2001-02-30\n"}),
        (["pretrain", "--print-config", "--set", "model.name=[1]"], {}),
        (["prepare-data", "{tmp}/train.csv", "--out", "{tmp}/out"], {"train.csv": "a.mp4 ²\n"}),
    ],
)
def test_cli_replays(tmp_path: Path, args: list[str], files: dict[str, str]) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    # Paths are absolute and the command runs from the repository, so it imports this checkout's package.
    result = run_cli(*(arg.format(tmp=tmp_path) for arg in args), timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
