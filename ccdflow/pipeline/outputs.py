"""Small atomic writers for the night's text and image outputs (FITS goes through fitsio)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ccdflow.framework.engine.errors import DiskFullError


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary name in the target folder, then rename over ``path``.
    A full disk is a :class:`DiskFullError` (the partial temporary file is removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are for the whole team
        os.replace(tmp, path)
    except BaseException as exc:
        written = _size(tmp)
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in DiskFullError.ERRNOS:
            # The size is unknown before writing: what got written is a lower bound.
            raise DiskFullError.in_folder(path.parent, needed=written, what=path.name,
                                          at_least=True) from None
        raise
    return path


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))
