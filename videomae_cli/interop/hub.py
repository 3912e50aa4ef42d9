"""Checkpoints by Hugging Face Hub id: `ORG/NAME`, `ORG/NAME@REVISION`, `hf://ORG/NAME[@REVISION][/FILE]`.

A reference is fetched with huggingface_hub into its standard cache (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and the
login token all work as usual), only the files one checkpoint needs. A repository holding one of our checkpoints is
used as it is; one in another codebase's layout (HF transformers, an official .pth) is converted once with
`interop.convert` and the result kept in huggingface_hub's assets cache, keyed by the commit, so the next use loads it
directly — offline too.

Errors are one line each: a repository or revision that does not exist is a ConfigError (exit 2); a hub that cannot
be reached, or offline mode, with the files not in the cache is HubUnavailable (exit 69).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from videomae_cli.checkpoint import DamagedCheckpoint, inspect_weights
from videomae_cli.errors import ConfigError, HubUnavailable, VideoMAEError
from videomae_cli.interop.sources import HF_SHARD_INDEX, HF_WEIGHT_FILES, is_our_checkpoint
from videomae_cli.models.teacher import register_resolver

HUB_PREFIX = "hf://"
LIBRARY = "videomae-cli"  # the assets-cache folder our converted copies live under
# The hub's repository names: letters, digits, "-", "_" and "." (not at either end), at most 96 characters.
_NAME = r"[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?"
_REFERENCE = re.compile(rf"^(?P<repo>{_NAME}/{_NAME})(?:@(?P<revision>[^/@\s]+))?(?:/(?P<file>[^@\s]+))?$")
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
HF_FILES = ("config.json", "preprocessor_config.json")


@dataclass(frozen=True)
class HubRef:
    """A model on the hub: its repository, revision (None: the default branch) and, optionally, one file in it."""

    repo_id: str
    revision: str | None = None
    file: str | None = None
    explicit: bool = True  # written hf://…: False when it could also have been a local path (one that does not exist)

    def __str__(self) -> str:
        """As it was written (hf:// kept)."""
        text = self.repo_id + (f"@{self.revision}" if self.revision else "") + (f"/{self.file}" if self.file else "")
        return HUB_PREFIX + text if self.explicit else text

    @property
    def folder_name(self) -> str:
        """`ORG--NAME`, as huggingface_hub names the repository's cache folder."""
        return self.repo_id.replace("/", "--")


def parse_hub_ref(text: str | Path) -> HubRef | None:
    """The hub reference `text` names, or None when it is a local path. `hf://…` always names the hub (a `/FILE`
    after the repository picks one checkpoint in it); `ORG/NAME[@REV]` does when nothing exists at that path, so a
    local file or folder of the same name always wins."""
    text = str(text)
    explicit = text.startswith(HUB_PREFIX)
    if not explicit and Path(text).exists():
        return None
    match = _REFERENCE.match(text.removeprefix(HUB_PREFIX))
    if match is None or (match["file"] and not explicit):
        if explicit:
            raise ConfigError(f"{text}: not a hub reference (hf://ORG/NAME, hf://ORG/NAME@REVISION, …/FILE)")
        return None
    return HubRef(match["repo"], match["revision"], match["file"], explicit)


@dataclass(frozen=True)
class HubCheckpoint:
    """Where a hub reference's checkpoint is on this machine, and how it got there."""

    ref: HubRef
    commit: str
    path: Path  # one of our checkpoints: the file in the snapshot, or the converted copy
    converted: bool

    def describe(self) -> str:
        how = f", converted: {self.path}" if self.converted else ""
        return f"{self.ref} (commit {self.commit}{how})"  # the whole hash: what @REVISION pins it to


def choose_files(names: list[str], ref: HubRef) -> list[str]:
    """The files of a repository (paths in it) that one checkpoint needs: an HF transformers model's config and
    weights (safetensors preferred), else our `model.safetensors`, else the repository's only checkpoint file."""
    if ref.file is not None:
        if ref.file not in names:
            raise ConfigError(f"{ref}: {ref.repo_id} has no file {ref.file}{_listing(names)}")
        return [ref.file]
    top = set(names)
    if "config.json" in top:
        if HF_SHARD_INDEX in top:
            shards = [n for n in names if re.fullmatch(r"model-\d+-of-\d+\.safetensors", n)]
            return [*(n for n in HF_FILES if n in top), HF_SHARD_INDEX, *shards]
        weights = next((n for n in HF_WEIGHT_FILES if n in top), None)
        if weights is not None:
            return [*(n for n in HF_FILES if n in top), weights]
    if "model.safetensors" in top:
        return ["model.safetensors"]
    candidates = [n for n in names if PurePosixPath(n).suffix in CHECKPOINT_SUFFIXES]
    if len(candidates) == 1:
        return candidates
    if not candidates:
        raise ConfigError(f"{ref}: no checkpoint in {ref.repo_id}{_listing(names)}")
    choices = ", ".join(f"{HUB_PREFIX}{ref.repo_id}/{n}" for n in sorted(candidates)[:6])
    raise ConfigError(f"{ref}: {ref.repo_id} holds several checkpoints; name one: {choices}")


def _listing(names: list[str]) -> str:
    shown = ", ".join(sorted(names)[:8]) + (", …" if len(names) > 8 else "")
    return f" (it has: {shown})" if names else " (it is empty)"


# ---------------------------------------------------------------------------------------------------------------------
# Fetching


@functools.cache
def hub_checkpoint(ref: HubRef, field: str) -> HubCheckpoint:
    """One of our checkpoints for `ref`: fetched, and converted once (then cached) when it is in another layout.
    Errors start with `field`, the spec field or argument that named it."""
    with _naming(field):
        folder, files = fetch(ref)
        commit, source = folder.name, source_in(ref, folder, files)
        if source.suffix == ".safetensors" and _is_ours(source):
            return HubCheckpoint(ref, commit, source, converted=False)
        target = _converted_path(ref, commit, source)
        if not _intact(target):
            _convert(ref, commit, source, target)
        return HubCheckpoint(ref, commit, target, converted=True)


def hub_source(ref: HubRef, field: str) -> tuple[Path, str]:
    """(what `convert` reads for `ref`, fetched; the origin to record in the converted file: ORG/NAME@COMMIT)."""
    with _naming(field):
        folder, files = fetch(ref)
        return source_in(ref, folder, files), f"{ref.repo_id}@{folder.name}"


@contextlib.contextmanager
def _naming(field: str) -> Iterator[None]:
    """Our errors raised inside, starting with `field`."""
    try:
        yield
    except VideoMAEError as e:
        raise type(e)(f"{field}: {e}") from None


def fetch(ref: HubRef) -> tuple[Path, list[str]]:
    """(the snapshot folder, the files in it that the checkpoint needs), downloading what the cache lacks. Online, the
    repository's listing picks the files; offline or unreachable, the cached snapshot for the revision does."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        info = HfApi().model_info(ref.repo_id, revision=ref.revision)
    except Exception as e:
        _raise_if_missing(e, ref)
        if not _unreachable(e):
            raise
        return _cached(ref, e)
    files = choose_files([entry.rfilename for entry in info.siblings or []], ref)
    try:
        return Path(snapshot_download(ref.repo_id, revision=ref.revision, allow_patterns=files)), files
    except Exception as e:  # the connection dropped mid-download: what was cached still serves
        if not _unreachable(e):
            raise
        return _cached(ref, e)


def _cached(ref: HubRef, reason: BaseException) -> tuple[Path, list[str]]:
    """The snapshot already in the cache for `ref`'s revision; HubUnavailable (saying `reason`) when there is none."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(ref.repo_id, revision=ref.revision, local_files_only=True))
    except Exception as e:
        if not _unreachable(e):
            raise
        raise HubUnavailable(_unreachable_line(ref, reason)) from None
    present = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()]
    files = choose_files(present, ref)
    return folder, files


def _unreachable(error: BaseException) -> bool:
    """Whether `error` means the hub could not be asked or could not answer (no connection, offline mode, a timeout,
    a server error, nothing cached): the cache is the fallback, and HubUnavailable the error. A local disk error is
    not one (it stays an OSError: exit 74)."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    network = type(error).__module__.split(".")[0] in {"httpx", "httpx2", "requests", "urllib3"}
    return network or isinstance(error, ConnectionError | TimeoutError | HfHubHTTPError | LocalEntryNotFoundError)


def _raise_if_missing(error: BaseException, ref: HubRef) -> None:
    """A hub answer that the repository or revision does not exist (or is not ours to see), as a ConfigError."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(error, GatedRepoError):
        raise ConfigError(f"{ref}: {ref.repo_id} is gated: accept its terms on the hub, then log in (hf auth login)")
    if isinstance(error, RepositoryNotFoundError):
        raise ConfigError(
            f"{ref}: {_no_local(ref)}no such model on the Hugging Face Hub "
            "(a private model needs a login: hf auth login, or HF_TOKEN)"
        )
    if isinstance(error, RevisionNotFoundError):
        raise ConfigError(f"{ref}: {ref.repo_id} has no revision {ref.revision}")


def _unreachable_line(ref: HubRef, error: BaseException) -> str:
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    cache = constants.HF_HUB_CACHE
    if constants.HF_HUB_OFFLINE or isinstance(error, OfflineModeIsEnabled):
        where = f"not in the Hugging Face cache ({cache})"
        return f"{ref}: {_no_local(ref)}{where}, and HF_HUB_OFFLINE=1 forbids downloading it"
    reason = " ".join(str(error).split())[:200] or type(error).__name__
    return f"{ref}: {_no_local(ref)}cannot reach the Hugging Face Hub ({reason}), and it is not in the cache ({cache})"


def _no_local(ref: HubRef) -> str:
    """For a reference that could have been a local path: say there is none, in case that is what was meant."""
    return "" if ref.explicit else "no such local file or folder; as a hub model: "


# ---------------------------------------------------------------------------------------------------------------------
# Converting once


def source_in(ref: HubRef, folder: Path, files: list[str]) -> Path:
    """What `convert` reads: the snapshot folder for an HF transformers VideoMAE model, else the checkpoint file."""
    if "config.json" in files and _json(folder / "config.json").get("model_type") == "videomae":
        return folder
    weights = [f for f in files if PurePosixPath(f).suffix in CHECKPOINT_SUFFIXES]
    if not weights:
        raise ConfigError(f"{ref}: {', '.join(files)} is not a checkpoint (.safetensors, .pth, .pt or .bin)")
    return folder / weights[0]


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


def _is_ours(file: Path) -> bool:
    try:
        return is_our_checkpoint(file)
    except DamagedCheckpoint:
        return False  # converting it says what is wrong with it


def _converted_path(ref: HubRef, commit: str, source: Path) -> Path:
    """ASSETS/videomae-cli/models--ORG--NAME/COMMIT/NAME.safetensors (HF_ASSETS_CACHE, beside the hub cache)."""
    from huggingface_hub import cached_assets_path

    folder = cached_assets_path(LIBRARY, namespace=f"models--{ref.folder_name}", subfolder=commit)
    return folder / ("model.safetensors" if source.is_dir() else f"{source.stem}.safetensors")


def _intact(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        inspect_weights(path)
    except DamagedCheckpoint:
        return False
    return True


def _convert(ref: HubRef, commit: str, source: Path, target: Path) -> None:
    from videomae_cli.interop.convert import convert, save_conversion
    from videomae_cli.interop.settings import MissingSettings

    try:
        conversion = convert(source)
    except MissingSettings as e:
        hint = " ".join(f"--set {field}=N" for field in e.fields)
        raise ConfigError(
            f"{ref}: {e}: convert it once with `videomae convert {ref} --out FILE.safetensors {hint}` and use FILE"
        ) from None
    except ConfigError as e:
        raise ConfigError(f"{ref}: cannot convert it: {str(e).removeprefix('SRC: ')}") from None
    save_conversion(conversion, target, origin=f"{ref.repo_id}@{commit}")


def register_hub_references() -> None:
    """Let references held in specs (a teacher's) be hub ids too: models/teacher.py resolves them through this."""
    register_resolver(_hub_reference)


def _hub_reference(reference: str, field: str) -> Path | None:
    ref = parse_hub_ref(reference)
    return None if ref is None else hub_checkpoint(ref, field).path
