"""One writer per run directory: a training run holds an OS lock on RUN/.lock for as long as it runs (rank 0 only),
so a second run on the same `run.out` is refused with one line before it writes anything.

The lock is a POSIX record lock (`fcntl.lockf`), which the kernel drops when its process ends, however it ends: a run
killed with kill -9 leaves at most the file, whose existence means nothing, never a lock. Not `flock`: a flock lock
belongs to the open file, which forked DataLoader workers share, so it would outlive a killed trainer until each of
its workers noticed; a POSIX lock belongs to the process alone. The file holds the holder's pid and host, for the
refusal to name.

On the way out the holder removes the file while it still holds the lock (and the directory, if it made it and
nothing else was written: a run refused during setup leaves nothing behind); so a taker checks, once it holds a
lock, that the file it locked is still the one at RUN/.lock, and tries again otherwise.

A process takes a directory's lock once: taking it again while held (the CLI, then `train()`) nests. Closing any other
descriptor of the file would drop a POSIX lock, so nothing else in the process opens it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from videomae_cli.errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows: no POSIX locks; runs go unguarded
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
_BUSY = {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK}
_NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}  # a file system that cannot lock at all


@dataclass
class RunLock:
    """This process's hold on a run directory. `notice` says when the file system could not lock it."""

    out: Path
    fd: int | None
    created: bool  # this process made the directory
    notice: str | None = None
    depth: int = 1  # how many blocks of this process hold it
    key: tuple[int, int] = field(init=False)  # the directory's (device, inode)

    def __post_init__(self) -> None:
        self.key = _identity(self.out)


_held: dict[tuple[int, int], RunLock] = {}  # this process's, by RunLock.key


@contextlib.contextmanager
def hold_run_directory(out: Path) -> Iterator[RunLock]:
    """Create `out` if needed and hold its lock until the block ends; ConfigError naming `run.out` when another live
    process holds it. OSErrors creating the directory or the file propagate (the CLI checks the path beforehand)."""
    created = not out.is_dir()
    out.mkdir(parents=True, exist_ok=True)
    lock = _held.get(_identity(out))
    if lock is not None:
        lock.depth += 1
    else:
        lock = _acquire(out, created)
        _held[lock.key] = lock
    try:
        yield lock
    finally:
        lock.depth -= 1
        if lock.depth == 0:
            del _held[lock.key]
            _release(lock)


def _identity(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _acquire(out: Path, created: bool) -> RunLock:
    path = out / LOCK_FILE
    for _ in range(100):  # again whenever the holder removed the file (or the empty directory) under us
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except FileNotFoundError:
            out.mkdir(parents=True, exist_ok=True)
            continue
        if fcntl is None:
            os.close(fd)
            return RunLock(out, None, created)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd)
            os.close(fd)
            if e.errno in _BUSY:
                raise ConfigError(f"run.out: {out} is in use by another run{holder}") from None
            if e.errno in _NO_LOCKS:
                why = os.strerror(e.errno)
                return RunLock(
                    out, None, created, f"warning: {out} cannot be locked ({why}): nothing stops a second run"
                )
            raise
        if _still_there(fd, path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            return RunLock(out, fd, created)
        os.close(fd)
    raise ConfigError(f"run.out: {out} is in use by another run")


def _still_there(fd: int, path: Path) -> bool:
    """Whether the file `fd` locked is still the one at `path` (its holder may have removed it just before)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _holder(fd: int) -> str:
    """ " (pid N on HOST)" as the holder wrote it (just after it locked); empty if it never does."""
    for _ in range(20):
        with contextlib.suppress(OSError, ValueError):
            pid, host = os.pread(fd, 512, 0).decode().split()
            return f" (pid {int(pid)} on {host})"
        time.sleep(0.01)
    return ""


def _release(lock: RunLock) -> None:
    """Remove the file while still holding the lock, then let go; remove the directory too if this process made it
    and nothing else was written there."""
    if lock.fd is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(lock.out / LOCK_FILE)
    os.close(lock.fd)
    if lock.created:
        with contextlib.suppress(OSError):
            lock.out.rmdir()  # fails unless empty
