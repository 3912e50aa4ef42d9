"""User-facing errors. Each carries the documented exit code; the CLI prints its message as one line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


class VideoMAEError(Exception):
    """An error the user can act on. `exit_code` is the process exit status (README: Exit codes)."""

    exit_code = 1
    label = "error"  # how the CLI introduces the message


class ConfigError(VideoMAEError):
    """A bad flag, config file or spec field (exit 2). The message names the field and where it came from."""

    exit_code = 2


class DataError(VideoMAEError):
    """Nothing usable to train on, or too many bad clips (exit 3)."""

    exit_code = 3


class NonFiniteLossError(VideoMAEError):
    """The loss became NaN/inf; the last good checkpoint is kept (exit 4)."""

    exit_code = 4


class HubUnavailable(VideoMAEError):
    """A hub checkpoint could not be fetched and is not in the local cache: no connection, the hub down, or offline
    mode (HF_HUB_OFFLINE=1) (exit 69, sysexits' EX_UNAVAILABLE). The message says which."""

    exit_code = 69


class StorageError(VideoMAEError):
    """Reading or writing a file failed mid-run: no space, read-only, permission, quota, I/O error (exit 74,
    sysexits' EX_IOERR). The message names the path and the reason, and what was kept (e.g. the checkpoint to resume
    from)."""

    exit_code = 74


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Give an OSError raised while writing `path` that path: a failed write or flush names no file, and the one line
    the user sees must say which file ("OUT/metrics.jsonl: No space left on device")."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def describe_os_error(error: OSError) -> str:
    """`PATH: reason` for an OSError ("No space left on device", "Read-only file system", ...)."""
    reason = error.strerror or str(error)
    return f"{error.filename}: {reason}" if error.filename else reason


class Preempted(VideoMAEError):
    """SIGTERM/SIGUSR1 stopped training after a checkpoint was written (exit 75, EX_TEMPFAIL: run it again with
    --resume auto)."""

    exit_code = 75
    label = "stopped"
