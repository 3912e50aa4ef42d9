"""Layered resolution of a spec: defaults < `--config` files (later wins) < `--set key.path=value` < explicit flags.

Each leaf remembers which layer set it, so a validation error becomes one line that names the field, what is wrong,
and where its value came from ("(set by --depth)", "(set by config run.yaml)").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from videomae_cli.config.schema import Strict
from videomae_cli.config.sizes import SIZES
from videomae_cli.errors import ConfigError

SIZE_KEYS = frozenset(SIZES["base"])


class _Layers:
    """Accumulates nested settings and remembers which source set each leaf (for error messages)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.sources: dict[str, str] = {}

    def set(self, path: str, value: Any, source: str) -> None:
        keys = path.split(".")
        if not all(keys):
            raise ConfigError(one_line(f"{source}: {path!r} is not a key path like model.depth"))
        node = self.data
        for i, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(one_line(f"{'.'.join(keys[: i + 1])}: is a value, not a section (from {source})"))
            node = child
        if keys == ["model", "name"]:
            self._forget_size_fields_from_files()
        node[keys[-1]] = value
        self.sources[path] = source

    def merge(self, tree: dict[str, Any], source: str, prefix: str = "", _above: frozenset[int] = frozenset()) -> None:
        """Set every leaf of `tree`, model.name first so a file's own explicit shape fields win over its size."""
        above = _above | {id(tree)}  # the sections being merged: a YAML alias can make one hold itself
        items = sorted(tree.items(), key=lambda kv: kv[0] != "name")
        for key, value in items:
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value:
                if id(value) in above:
                    raise ConfigError(one_line(f"{path}: a YAML alias to a section that holds it (from {source})"))
                self.merge(value, source, f"{path}.", above)
            else:
                self.set(path, value, source)

    def _forget_size_fields_from_files(self) -> None:
        # A size chosen later replaces shape fields that an earlier config file (e.g. a saved spec.yaml) spelled out,
        # but not shape fields given on the command line.
        model = self.data.get("model", {})
        for key in SIZE_KEYS:
            if key in model and self.sources.get(f"model.{key}", "").startswith("config "):
                del model[key]
                del self.sources[f"model.{key}"]

    def source_of(self, field: str) -> str | None:
        """The source of `field` or of its nearest parent/child that was set."""
        if field in self.sources:
            return self.sources[field]
        for path, source in self.sources.items():
            if path.startswith(field + ".") or field.startswith(path + "."):
                return source
        return None


def one_line(text: str) -> str:
    """`text` as one line: line breaks and other unprintable characters (which a key or a value may hold) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# Besides YAMLError, PyYAML's constructors raise plain errors for bad tagged or implicit scalars (`!!int x`,
# `!!bool maybe`, a date like 2001-02-30, an integer of more than 4300 digits), and deep nesting exhausts the stack.
_PARSE_ERRORS = (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError)


def _parse_error(error: Exception) -> str:
    """Why a YAML/JSON text did not parse, on one line."""
    if isinstance(error, RecursionError):
        return "nested too deeply"
    lines = str(error).strip().splitlines()
    return one_line(lines[0] if lines else type(error).__name__)


def load_config_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON mapping from `path`; errors name the file."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(one_line(f"--config {path}: cannot read ({e.strerror})")) from None
    except UnicodeDecodeError as e:
        raise ConfigError(one_line(f"--config {path}: not UTF-8 text (byte {e.start})")) from None
    try:
        tree = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except _PARSE_ERRORS as e:
        raise ConfigError(one_line(f"--config {path}: not valid YAML/JSON ({_parse_error(e)})")) from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(one_line(f"--config {path}: must hold a mapping of sections (model:, mask:, ...)"))
    tree.pop("meta", None)  # spec.yaml files carry run metadata that is not part of the spec
    return tree


def parse_set(item: str) -> tuple[str, Any]:
    """`key.path=value` → (path, value), the value read as YAML (numbers, booleans, lists, null)."""
    path, sep, raw = item.partition("=")
    if not sep or not path.strip():
        raise ConfigError(one_line(f"--set {item}: expected key.path=value, e.g. --set model.depth=6"))
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except _PARSE_ERRORS:  # not YAML: the text itself (e.g. run.resume=2001-02-30, a folder name)
        value = raw
    return path.strip(), value


def collect_settings(
    configs: list[Path] | None = None,
    sets: list[str] | None = None,
    flags: dict[str, tuple[str, Any]] | None = None,
    base: tuple[dict[str, Any], str] | None = None,
) -> _Layers:
    """The merged, not yet validated settings: base < config files < --set < flags."""
    layers = _Layers()
    if base is not None:
        layers.merge(*base)
    for path in configs or []:
        tree = load_config_file(path)
        try:
            layers.merge(tree, f"config {path}")
        except RecursionError:  # parsed, but too deep to walk
            raise ConfigError(one_line(f"--config {path}: not valid YAML/JSON (nested too deeply)")) from None
    for item in sets or []:
        key, value = parse_set(item)
        layers.set(key, value, f"--set {key}")
    for key, (flag, value) in (flags or {}).items():
        if value is not None:
            layers.set(key, value, flag)
    return layers


def resolve_spec(
    spec_type: type[Strict],
    configs: list[Path] | None = None,
    sets: list[str] | None = None,
    flags: dict[str, tuple[str, Any]] | None = None,
    base: tuple[dict[str, Any], str] | None = None,
) -> Strict:
    """Build and validate a spec from config files, --set items, and explicit flags ({path: (flag, value)}), over
    an optional `base` (settings, source name) below the config files (e.g. the model of an --init checkpoint)."""
    layers = collect_settings(configs, sets, flags, base)
    try:
        return spec_type.model_validate(layers.data)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e, layers)) from None


_FIELD_PREFIX = re.compile(r"^[a-z_]+(\.[a-z_]+)*: ")


def describe_validation_error(error: ValidationError, layers: _Layers) -> str:
    """One line for the first problem: the field, what is wrong, the offending value, and which flag/file set it."""
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] == "value_error" and _FIELD_PREFIX.match(message):
        # Cross-field checks name their field themselves ("model.heads: ..."), whatever section raised them.
        field, message = (part.strip() for part in message.split(":", 1))
    got = first.get("input")
    shown = "" if first["type"] in ("extra_forbidden", "value_error") or isinstance(got, dict) else f", got {got!r}"
    source = layers.source_of(field)
    origin = f" (set by {source})" if source else ""
    return one_line(f"{field}: {message}{shown}{origin}")


def spec_to_yaml(spec: BaseModel, extra: dict[str, Any] | None = None) -> str:
    """The resolved spec as YAML (paths as strings), optionally with a `meta:` block appended."""
    tree = spec.model_dump(mode="json")
    text = yaml.safe_dump(tree, sort_keys=False)
    if extra:
        text += yaml.safe_dump({"meta": extra}, sort_keys=False)
    return text
