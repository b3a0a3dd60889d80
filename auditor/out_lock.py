"""One medaudit at a time per output folder: ``<out>/.medaudit.lock``.

Two audits writing one folder would each rewrite results.json after every step and leave
a file that mixes them. The lock is an ``flock`` on a file holding the owner's PID: the
kernel drops it when the process dies however it dies, so a lock left behind by a killed
run is simply taken over (with a note), and a second live run is refused with exit 2.
"""

from __future__ import annotations

import errno
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from auditor.errors import InputError, UsageError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not locked
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".medaudit.lock"


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _open(path: Path) -> int:
    # O_NOFOLLOW: a .medaudit.lock symlink planted in a shared folder is refused, not
    # followed (opening it for writing would truncate its target).
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{path} is a symbolic link; medaudit does not write through links in --out") from None
        raise InputError(f"cannot create the lock file {path}: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:  # a hard link would truncate another file
        os.close(fd)
        raise InputError(f"{path} is not a plain file of its own (a link?); remove it")
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.lstat(path).st_ino
    except FileNotFoundError:
        return False


def acquire(out: Path, note: Callable[[str], None] = lambda message: None) -> int:
    """Lock ``out`` for this process; returns the lock's file descriptor for :func:`release`."""
    path = Path(out) / LOCK_NAME
    while True:
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"PID {holder}" if holder else "another process"
            raise UsageError(f"another medaudit run ({who}) is writing to {out}; wait for it to finish "
                             f"or choose another --out") from None
        # The previous holder unlinks the file before it unlocks: if that happened between
        # our open and our flock, we hold a lock on a file nobody else can see. Start over.
        if _same_file(fd, path):
            break
        os.close(fd)
    stale = _read_pid(fd)
    if stale is not None and stale != os.getpid():
        note(f"took over the lock of {out} left by PID {stale}, which no longer runs")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def release(out: Path, fd: int) -> None:
    path = Path(out) / LOCK_NAME
    try:
        if _same_file(fd, path):
            os.unlink(path)
    except OSError:
        pass  # a read-only folder by now: the flock still goes with the descriptor
    finally:
        os.close(fd)


@contextmanager
def out_folder_lock(out: Path, note: Callable[[str], None] = lambda message: None) -> Iterator[None]:
    """Hold the lock of ``out`` (which must exist) for the duration of the block, errors included."""
    if fcntl is None:
        yield
        return
    fd = acquire(out, note)
    try:
        yield
    finally:
        release(out, fd)


def refuse_existing_audit(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Exit 2 when ``out`` already holds an audit and the user asked neither to continue it
    (``--resume``) nor to replace it (``--overwrite``): a re-run with a typo in ``--out``, or
    a second model audited into the first one's folder, would otherwise silently destroy
    evidence. Reads the folder only, so the sandbox's child repeats it with the same answer."""
    if resume and overwrite:
        raise UsageError("--resume continues the audit in --out and --overwrite replaces it: give one of them")
    if resume or overwrite or not (out / "results.json").is_file():
        return
    raise UsageError(
        f"{out} already holds an audit (results.json); pass --overwrite to replace it, --resume to "
        "continue an interrupted one, or choose another --out"
    )
