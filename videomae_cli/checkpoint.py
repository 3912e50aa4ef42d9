"""Checkpoints (design.md: run directory): self-describing safetensors + a resume-only train_state.pt, a manifest of
their sizes and checksums, and loading them back as models.

Every file is written to a temporary name and renamed into place, and a checkpoint directory becomes visible only
once complete, so an interrupted save (even kill -9) leaves the previous checkpoint intact and loadable. A file that
is damaged afterwards (a truncated copy, a bad disk) is refused by every reader with its reason, never handed to a
library that would fail with its own words or, worse, load half a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from videomae_cli.config.schema import FinetuneSpec, PretrainSpec
from videomae_cli.errors import ConfigError, StorageError, describe_os_error, naming
from videomae_cli.models.factory import build_model
from videomae_cli.version import __version__

CHECKPOINTS = "checkpoints"
MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.jsonl"  # one JSON object per log window (and per validation) of a training run
CURVES_FILE = "curves.png"  # the picture of metrics.jsonl, redrawn at checkpoints and at the end
STATE_FILE = "train_state.pt"
MANIFEST_FILE = "manifest.json"
# sha256: with the SHA extensions of current CPUs hashlib's (OpenSSL's) sha256 hashes about 1.3 GB/s, faster than
# blake2b (0.7 GB/s); a ViT-B checkpoint (1.1 GB with its optimizer state) costs 0.8 s. `sha256sum` checks by hand.
CHECKSUM = "sha256"
_STEP_DIR = re.compile(r"^step-(\d{8})$")


class DamagedCheckpoint(ValueError):
    """Why a file is not an intact checkpoint of ours: the reason alone (callers name the path and the field)."""


# ---------------------------------------------------------------------------------------------------------------------
# Writing


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with naming(path):
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def model_metadata(kind: str, spec_json: str, **extra: Any) -> dict[str, str]:
    """The safetensors metadata that makes a weights file self-describing."""
    meta = {"format": "pt", "videomae.kind": kind, "videomae.spec": spec_json, "videomae.version": __version__}
    meta.update({f"videomae.{k}": str(v) for k, v in extra.items()})
    return meta


def save_weights(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Atomically write `state_dict` (made contiguous, detached, on CPU) as safetensors with `metadata`."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: _save_safetensors(tensors, tmp, metadata))


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _save_safetensors(tensors: dict[str, torch.Tensor], tmp: Path, metadata: dict[str, str]) -> None:
    """save_file, except that a failed write is the OSError it was: safetensors names the OS error only in its text
    ("I/O error: File too large (os error 27)"), and callers need the errno and the path to say what to do."""
    try:
        save_file(tensors, str(tmp), metadata=metadata)
    except SafetensorError as e:
        found = _OS_ERROR.search(str(e))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(tmp)) from None


def save_train_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically write the resume state with torch.save."""
    atomic_write(path, lambda tmp: _torch_save(state, tmp))


class _KeepsWriteErrors:
    """A file for torch.save that remembers the OSError a write raised (torch reports it as a RuntimeError)."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.file.flush()


def _torch_save(state: dict[str, Any], tmp: Path) -> None:
    """torch.save, except that a failed write is the OSError it was. torch's own file writer reports one as a
    RuntimeError without the reason ("unexpected pos 704 vs 598"), so after one the state is written once more
    through a Python file, which either succeeds (the cause has passed) or raises the OSError that says why."""
    try:
        torch.save(state, tmp)
    except RuntimeError:
        with open(tmp, "wb") as f:
            sink = _KeepsWriteErrors(f)
            try:
                torch.save(state, sink)
            except RuntimeError:
                if sink.error is not None:
                    raise sink.error from None
                raise


def save_checkpoint(
    run_dir: Path, step: int, state_dict: dict[str, torch.Tensor], metadata: dict[str, str], train_state: dict[str, Any]
) -> Path:
    """Write checkpoints/step-NNNNNNNN/{model.safetensors, train_state.pt, manifest.json} and refresh
    RUN/model.safetensors. A write that fails (no space, read-only, quota, file too large) raises StorageError naming
    the checkpoint to resume from, after removing the staging folder; the previous checkpoints and
    RUN/model.safetensors are left as they were."""
    final = run_dir / CHECKPOINTS / f"step-{step:08d}"
    staging = run_dir / CHECKPOINTS / f".step-{step:08d}.partial"
    writing: str | None = MODEL_FILE  # for the error: torch's writes fail without naming their file
    try:
        shutil.rmtree(staging, ignore_errors=True)
        save_weights(staging / MODEL_FILE, state_dict, metadata)
        _test_delay()
        writing = STATE_FILE
        save_train_state(staging / STATE_FILE, train_state)
        writing = MANIFEST_FILE  # last: a checkpoint with a manifest is complete
        write_manifest(staging, [MODEL_FILE, STATE_FILE])
        writing = None
        shutil.rmtree(final, ignore_errors=True)  # a damaged checkpoint of this step, which a resumed run replaces
        os.replace(staging, final)
    except BaseException as e:  # Ctrl-C mid-save too leaves no staging folder behind
        shutil.rmtree(staging, ignore_errors=True)
        if not isinstance(e, OSError):
            raise
        where = final / writing if writing else final
        reason = e.strerror or str(e)
        raise StorageError(f"cannot write checkpoint {where}: {reason}; {_resume_advice(run_dir, step)}") from None
    try:
        _publish_latest(final / MODEL_FILE, run_dir / MODEL_FILE)
    except OSError as e:
        raise StorageError(
            f"checkpoint {final} is written, but {run_dir / MODEL_FILE} could not be refreshed "
            f"({e.strerror or e}); continue from the checkpoint with `run.resume=auto`"
        ) from None
    return final


def _resume_advice(run_dir: Path, step: int) -> str:
    """What a failed save leaves to resume from: the newest checkpoint before `step` (one past it can only be a
    damaged one that a resumed run was about to replace)."""
    earlier = [path for found_step, path in list_checkpoints(run_dir) if found_step < step]
    if not earlier:
        return "no checkpoint was written before it: fix the cause and start the run again"
    return f"the last checkpoint, {earlier[-1]}, is intact: fix the cause, then continue with `run.resume=auto`"


def _test_delay() -> None:
    """A test hook: VIDEOMAE_TEST_SAVE_DELAY seconds of pause mid-save, so tests can kill -9 a writer in the act."""
    delay = float(os.environ.get("VIDEOMAE_TEST_SAVE_DELAY", "0") or 0)
    if delay > 0:
        time.sleep(delay)


def _publish_latest(source: Path, target: Path) -> None:
    # A hard link costs nothing; fall back to a copy where links are not allowed. Either way the rename is atomic.
    def link_or_copy(tmp: Path) -> None:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)

    atomic_write(target, link_or_copy)


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first, as (step, dir)."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _STEP_DIR.match(entry.name)
        if match and (entry / MODEL_FILE).is_file() and (entry / STATE_FILE).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def prune_checkpoints(run_dir: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints."""
    for _, path in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(path, ignore_errors=True)


def load_train_state(checkpoint_dir: Path) -> dict[str, Any]:
    """The resume state of a checkpoint, read without unpickling arbitrary objects."""
    return torch.load(checkpoint_dir / STATE_FILE, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------------------------------------------------------
# Integrity: the manifest a checkpoint records its files in, and what makes a file damaged


def file_checksum(path: Path) -> str:
    """The hex CHECKSUM of a file's bytes, read in 1 MiB blocks (about 0.08 s per 100 MB, see CHECKSUM)."""
    digest, block = hashlib.new(CHECKSUM), bytearray(1 << 20)
    view = memoryview(block)
    with open(path, "rb", buffering=0) as f:
        while count := f.readinto(block):
            digest.update(view[:count])
    return digest.hexdigest()


def write_manifest(directory: Path, names: list[str]) -> None:
    """Record the size and checksum of each named file of `directory` in its MANIFEST_FILE."""
    files = {
        name: {"size": (directory / name).stat().st_size, CHECKSUM: file_checksum(directory / name)} for name in names
    }
    text = json.dumps({"checksum": CHECKSUM, "files": files}, indent=1) + "\n"
    atomic_write(directory / MANIFEST_FILE, lambda tmp: tmp.write_text(text))


def read_manifest(directory: Path) -> dict[str, dict[str, Any]] | None:
    """{file name: {"size", CHECKSUM}} recorded for a checkpoint directory; None when it has no manifest (written
    before manifests existed)."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text())["files"]
        return {name: {"size": int(entry["size"]), CHECKSUM: str(entry[CHECKSUM])} for name, entry in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise DamagedCheckpoint(f"{MANIFEST_FILE} is unreadable ({type(e).__name__}: {e})") from None


# Checksums already found to match, by (path, size, mtime, inode): fine-tuning looks up its `init` file and its resume
# point twice each, and hashing a checkpoint of several GB again would cost seconds for nothing.
_MATCHED: set[tuple[str, int, int, int]] = set()


def check_recorded(file: Path, entry: dict[str, Any]) -> None:
    """Raise DamagedCheckpoint unless `file` has the size and checksum its manifest `entry` records."""
    if not file.is_file():
        raise DamagedCheckpoint(f"{file.name} is missing")
    stat = file.stat()
    if stat.st_size != entry["size"]:
        size, recorded = describe_sizes(stat.st_size, entry["size"])
        raise DamagedCheckpoint(f"{file.name} is {size}, recorded {recorded}")
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key in _MATCHED:
        return
    if file_checksum(file) != entry[CHECKSUM]:
        raise DamagedCheckpoint(f"{file.name} does not match its recorded {CHECKSUM} (its bytes changed)")
    _MATCHED.add(key)


def recording_checkpoint(file: Path) -> tuple[Path, dict[str, Any]] | None:
    """(checkpoint dir, manifest entry) of the manifest that records `file`: its own checkpoint's, or for
    RUN/model.safetensors (a hard link to the newest checkpoint's weights) the checkpoint it is linked to."""
    if _STEP_DIR.match(file.parent.name):
        candidates = [file.parent]
    elif file.name == MODEL_FILE:
        candidates = [path for _, path in reversed(list_checkpoints(file.parent))]
    else:
        return None
    for directory in candidates:
        twin = directory / file.name
        if twin.is_file() and os.path.samefile(twin, file):
            manifest = read_manifest(directory)
            if manifest is not None and file.name in manifest:
                return directory, manifest[file.name]
            return None
    return None


def describe_sizes(size: int, other: int) -> tuple[str, str]:
    """Two sizes for one sentence: rounded ("1.2 MB"), or in bytes where rounding would make them look alike."""

    def rounded(n: int) -> str:
        for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if n >= scale:
                return f"{n / scale:.1f} {unit}"
        return f"{n} bytes"

    if rounded(size) == rounded(other):
        return f"{size} bytes", f"{other} bytes"
    return rounded(size), rounded(other)


def read_header(file: Path) -> dict[str, Any]:
    """The safetensors header of `file`, after checking that the file is exactly as long as the header says; raises
    DamagedCheckpoint with the reason (a human one: safetensors' own is "invalid header length")."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(9)
        if len(head) < 9:
            raise DamagedCheckpoint("an empty file" if size == 0 else f"truncated to {size} bytes")
        length = int.from_bytes(head[:8], "little")
        if head[8:9] != b"{" or length < 2:
            raise DamagedCheckpoint("not a safetensors file")
        if length > size - 8:
            raise DamagedCheckpoint(f"header length {length} bytes is larger than the file ({size} bytes)")
        raw = head[8:] + f.read(length - 1)
    try:
        header = json.loads(raw)
        meta, entries = header.get("__metadata__") or {}, [e for k, e in header.items() if k != "__metadata__"]
        if not all(isinstance(s, str) for s in [*meta, *meta.values()]) or not all(map(_well_formed, entries)):
            raise ValueError("not one")
        ends = [entry["data_offsets"][1] for entry in entries]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError):
        raise DamagedCheckpoint("not a safetensors file (its header is not a safetensors header)") from None
    expected = 8 + length + max(ends, default=0)
    if size < expected:
        have, want = describe_sizes(size, expected)
        raise DamagedCheckpoint(f"truncated: {have} of the {want} its header describes")
    if size > expected:
        raise DamagedCheckpoint(f"{size - expected} bytes longer than its header describes")
    return header


def _well_formed(entry: dict[str, Any]) -> bool:
    """A tensor entry as safetensors requires one: a dtype name, a shape of sizes and data offsets [begin, end]."""
    sizes, offsets = entry["shape"], entry["data_offsets"]
    numbers = [*sizes, *offsets] if isinstance(sizes, list) and isinstance(offsets, list) else [None]
    return isinstance(entry["dtype"], str) and len(offsets) == 2 and all(type(n) is int and n >= 0 for n in numbers)


# ---------------------------------------------------------------------------------------------------------------------
# Loading our weights files back as models

KIND_SPECS: dict[str, type[PretrainSpec] | type[FinetuneSpec]] = {"pretrain": PretrainSpec, "classifier": FinetuneSpec}
CheckpointKind = Literal["pretrain", "classifier"]
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


def weights_file(path: str | Path) -> Path:
    """The weights file behind a path: the file itself, or MODEL_FILE in a run or checkpoint directory."""
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() else path


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file."""
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def read_spec_json(path: Path) -> tuple[str, dict[str, Any]]:
    """(kind, spec dict) stored in one of our weights files."""
    meta = read_metadata(path)
    if "videomae.spec" not in meta:
        raise ValueError(f"{path} is not a videomae-cli checkpoint (no videomae.spec metadata)")
    return meta.get("videomae.kind", "pretrain"), json.loads(meta["videomae.spec"])


@dataclass(frozen=True)
class WeightsInfo:
    """What one of our weights files says about itself, every part of it checked (see inspect_weights)."""

    file: Path
    kind: CheckpointKind
    spec_dict: dict[str, Any]  # as stored (fine-tuning inherits fields from it)
    spec: PretrainSpec | FinetuneSpec
    classes: list[str] | None


def inspect_weights(file: Path) -> WeightsInfo:
    """Check a weights file of ours without loading it: the safetensors structure, the size and checksum its
    checkpoint's manifest records (if any), the videomae metadata, and every tensor's name, shape and dtype against
    the model its spec describes. Raises DamagedCheckpoint with the reason."""
    recorded = recording_checkpoint(file)
    if recorded is not None:  # first: what the manifest recorded is the authority
        directory, entry = recorded
        try:
            check_recorded(file, entry)
        except DamagedCheckpoint as e:
            linked = f"; the same file as {directory / file.name}, a hard link" if directory != file.parent else ""
            raise DamagedCheckpoint(f"{e}{linked}") from None
    header = read_header(file)
    meta = header.get("__metadata__") or {}
    if "videomae.spec" not in meta:
        raise DamagedCheckpoint("no videomae.spec metadata: not one of our checkpoints")
    kind = meta.get("videomae.kind", "pretrain")
    if kind not in KIND_SPECS:
        raise DamagedCheckpoint(f"videomae.kind {kind!r} is not one this version loads ({', '.join(KIND_SPECS)})")
    try:
        spec_dict = json.loads(meta["videomae.spec"])
        spec = KIND_SPECS[kind].model_validate(spec_dict)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise DamagedCheckpoint(f"videomae.spec is not a valid {kind} spec ({where}: {first['msg']})") from None
    except (ValueError, RecursionError) as e:
        raise DamagedCheckpoint(f"videomae.spec is not valid JSON ({e})") from None
    classes = None
    if kind == "classifier":
        try:
            classes = [str(name) for name in json.loads(meta["videomae.classes"])]
        except (KeyError, ValueError, TypeError, RecursionError) as e:
            raise DamagedCheckpoint(f"no valid videomae.classes metadata ({type(e).__name__}: {e})") from None
    with torch.device("meta"):
        expected = build_model(spec, classes).state_dict()
    check_tensors(header, expected)
    return WeightsInfo(file, kind, spec_dict, spec, classes)


def check_tensors(header: dict[str, Any], expected: dict[str, torch.Tensor]) -> None:
    """Raise DamagedCheckpoint unless the header's tensors are exactly the `expected` state dict's, with its shapes and
    compatible dtypes (any floating dtype for a floating tensor: converted checkpoints may keep their fp16)."""
    stored = {name: entry for name, entry in header.items() if name != "__metadata__"}
    for label, names in (("missing", set(expected) - set(stored)), ("unexpected", set(stored) - set(expected))):
        if names:
            shown = ", ".join(sorted(names)[:3]) + (f", ... ({len(names)} in all)" if len(names) > 3 else "")
            raise DamagedCheckpoint(f"{label} tensors for its spec: {shown}")
    for name, want in expected.items():
        shape, dtype = tuple(stored[name]["shape"]), stored[name]["dtype"]
        if shape != tuple(want.shape):
            raise DamagedCheckpoint(f"{name} is {shape}, its spec needs {tuple(want.shape)}")
        if want.is_floating_point() != (dtype in _FLOAT_DTYPES):
            raise DamagedCheckpoint(f"{name} is {dtype}, its spec needs {str(want.dtype).removeprefix('torch.')}")


def load_state(file: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a weights file that inspect_weights passed (safetensors' own refusal still comes as a reason)."""
    try:
        return load_file(str(file), device=device)
    except SafetensorError as e:
        raise DamagedCheckpoint(f"not a valid safetensors file ({e})") from None


@dataclass(frozen=True)
class LoadedCheckpoint:
    """One of our checkpoints, loaded: the model in eval mode, its kind, the spec it was trained with and, for a
    classifier, its class names (index = logit)."""

    model: nn.Module
    kind: CheckpointKind
    spec: PretrainSpec | FinetuneSpec
    classes: list[str] | None
    path: Path


def load_checkpoint(path: str | Path, device: str = "cpu") -> LoadedCheckpoint:
    """Load a .safetensors file, a checkpoint dir or a run dir we wrote. A file that is not an intact checkpoint of
    ours raises one line, "damaged or not a checkpoint: PATH (reason)" (ConfigError). A pretrain checkpoint gives a
    PretrainVideoMAE (`model(video, mask)` → `.loss`, `.pred`), a classifier checkpoint a VideoClassifier
    (`model(video)` → logits [B, K]). A teacher-target model comes without its teacher: models/teacher.py's
    `with_teacher` attaches it where its loss is computed."""
    file = weights_file(path)
    if not file.is_file():
        raise ConfigError(f"checkpoint: no such file: {file}")
    try:
        info = inspect_weights(file)
        model = build_model(info.spec, info.classes)
        model.load_state_dict(load_state(file, device))
    except DamagedCheckpoint as e:
        raise ConfigError(f"damaged or not a checkpoint: {file} ({e}){_earlier_hint(file)}") from None
    except OSError as e:
        raise StorageError(f"cannot read checkpoint {describe_os_error(e)}") from None
    return LoadedCheckpoint(model.to(device).eval(), info.kind, info.spec, info.classes, file)


def _earlier_hint(file: Path) -> str:
    """The checkpoint before a damaged one (or before the one RUN/model.safetensors is linked to), to load instead."""
    run_dir = file.parent.parent.parent if _STEP_DIR.match(file.parent.name) else file.parent
    found = [path for _, path in list_checkpoints(run_dir)]
    same = [i for i, path in enumerate(found) if os.path.samefile(path / MODEL_FILE, file)]
    return f"; the checkpoint before it: {found[same[0] - 1]}" if same and same[0] > 0 else ""
