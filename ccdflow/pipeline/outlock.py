"""One run at a time per output folder, and the clean-up of what killed runs left in it.

`night` and `watch` hold ``OUT/.ccdflow.lock`` for their whole run: an ``flock``, which the
kernel releases when the process ends however it ends (even ``kill -9``), so a lock is never
stale and never needs removing by hand. A second run on the same OUT is refused, naming the
process that holds it. Holding the lock also makes the clean-up safe: temporary files of
interrupted atomic writes and combine spools of killed runs are removed at the start, since no
other run can be writing them, and again when a run is interrupted (a Dask worker killed in the
middle of a write leaves its temporary file behind).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from ccdflow.framework.engine.errors import CcdflowError

log = logging.getLogger("ccdflow.night")

LOCK_NAME = ".ccdflow.lock"

#: Names of temporary files, all hidden and written next to their target:
#: ``.NAME.XXXXXXXX.tmp`` (fitswrite.atomic_write), ``.NAME.XXXXXXXX.tmp.SUFFIX``
#: (pipeline.outputs.write_atomic; XXXXXXXX is mkstemp's 8 random characters) and
#: ``.NAME.PID.build.tmp`` (pipeline.immutable's scratch name of a master being published).
TEMP_FILE = re.compile(r"^\..+\.(?:[a-z0-9_]{8}\.tmp(?:\.[^.]+)?|\d+\.build\.tmp)$")
#: Combine spools (framework.spool.Spool): ``.ccdflow-spool-XXXXXXXX`` folders.
SPOOL_DIR = re.compile(r"^\.ccdflow-spool-[a-z0-9_]{8}$")


class OutdirBusyError(CcdflowError):
    """Another live ccdflow run holds the output folder's lock."""


def remove_leftovers(outdir: Path) -> tuple[int, int]:
    """Remove temporary files and spool folders anywhere under ``outdir``; returns how many
    of each. Only safe under the folder's lock (they could be another run's work in progress)."""
    files = spools = 0
    for root, dirs, names in os.walk(outdir):  # symbolic links to folders are not followed
        for name in [d for d in dirs if SPOOL_DIR.match(d)]:
            shutil.rmtree(Path(root) / name, ignore_errors=True)
            dirs.remove(name)
            spools += 1
        for name in names:
            if TEMP_FILE.match(name):
                with suppress(FileNotFoundError):
                    (Path(root) / name).unlink()
                    files += 1
    return files, spools


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it into the file."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "another ccdflow run"
    host = "" if info.get("host") == socket.gethostname() else f" on host {info.get('host')}"
    return (f"`ccdflow {info.get('command', '?')}` (pid {info['pid']}{host}, running since "
            f"{info.get('started', '?')})")


def _acquire(path: Path) -> int:
    """An open descriptor of ``path`` holding its exclusive lock; OutdirBusyError if taken."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutdirBusyError(
                f"{path.parent} is in use by {holder}: wait for it to finish, or give another "
                f"--out (two runs writing one folder would overwrite each other's work)") from None
        # The previous holder removes the file when it ends: if it did so between our open and
        # our flock, we hold a lock on a file nobody else will ever open. Start again.
        with suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        os.close(fd)


@contextmanager
def lock_outdir(outdir: Path, command: str) -> Iterator[Path]:
    """Hold ``OUT/.ccdflow.lock`` while the block runs, after removing what killed runs left.

    Raises :class:`OutdirBusyError` when another live run holds it. The folder is created
    if needed (the lock lives in it).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / LOCK_NAME
    fd = _acquire(path)
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                  "started": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        files, spools = remove_leftovers(outdir)
        if files or spools:
            log.warning("removed %d temporary file(s) and %d spool folder(s) left in %s by an "
                        "interrupted run", files, spools, outdir)
        try:
            yield outdir
        except BaseException:
            # Interrupted: worker processes may have died mid-write (the writers in this
            # process removed their own temporary files on the way out).
            files, spools = remove_leftovers(outdir)
            log.info("removed %d temporary file(s) and %d spool folder(s)", files, spools)
            raise
    finally:
        with suppress(FileNotFoundError):
            path.unlink()  # before the lock goes: see _acquire
        os.close(fd)
