"""Scratch spool: preprocessed frames parked on disk as float32 memmaps so a combine of many
large frames holds only its row bands in RAM, not every frame."""

from __future__ import annotations

import errno
import inspect
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ccdflow.framework.engine.errors import DiskFullError, UnprocessableInputError
from ccdflow.framework.numerics.combine import Combined, combine
from ccdflow.framework.numerics.combine_sources import file_position, release_pages
from ccdflow.framework.numerics.frame_passes import park_frame

#: Band budget when neither the caller nor the combine engine chooses one.
DEFAULT_MEMORY_LIMIT = 512 * 2**20


class Spool:
    """``n`` frames of one shape: float32 data and a bool mask each, in a temporary folder.

    The folder sits next to the output (same filesystem, so no surprise on a small /tmp) and is
    removed on :meth:`close`, which the context manager calls even when building fails. Its
    files' space is reserved before they are mapped: a page of a sparse map that the disk cannot
    hold kills the process with SIGBUS, while a reservation fails with :class:`DiskFullError`.
    """

    def __init__(self, n: int, directory: str | Path | None = None) -> None:
        self.n = n
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix=".ccdflow-spool-", dir=directory))
        self._maps: tuple[np.memmap, np.memmap] | None = None  # data and mask, mapped together
        self.paths: list[str] = [""] * n
        #: per frame, whether any pixel is masked (the mask file of one that has none stays zeros)
        self.masked: list[bool] = [False] * n
        self._lock = threading.Lock()  # frames arrive from several preprocessing threads

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, i: int, data: np.ndarray, mask: np.ndarray | None, path: str | None = None, *,
            consume: bool = False) -> int:
        """Store frame ``i``; NaN and inf pixels are masked (and zeroed). Returns how many were.

        ``consume``: the caller gives ``data`` up, so it is cleaned in place and written to the
        file with ``pwrite``, not copied through the map (whose every page is a fault: 20 ms of
        a 2k frame's ~100 ms of preprocessing). Safe to call from several threads for
        different ``i``.
        """
        with self._lock:
            if self._maps is None:
                self._maps = self._allocate((self.n, *data.shape))
            store, flags = self._maps
            self.paths[i] = path or ""
        if data.shape != store.shape[1:]:
            first = next((p for p in self.paths if p and p != path), "")
            raise UnprocessableInputError(
                f"preprocessed shape {data.shape} differs from the other inputs' "
                f"{store.shape[1:]} ({first})", path=path)
        if mask is not None and np.shape(mask) != data.shape:
            raise ValueError(f"mask shape {np.shape(mask)} differs from the frame's {data.shape}")
        out = store[i]
        # a frame given up is cleaned where it lies and written to the file at out's place
        where = file_position(out) if (consume and data.dtype == np.float32 and data.flags.c_contiguous
                                       and data.flags.writeable) else None
        # the reserved file's zeros say "none masked" until a pixel is excluded
        n_nonfinite, n_bad = park_frame(data, mask, out if where is None else data, flags[i])
        self.masked[i] = n_bad > 0
        if self.masked[i]:
            release_pages(flags[i])
        if where is None:
            release_pages(out)  # written: the page cache holds it until the combine reads it
        else:
            _pwrite_all(where[0], data, where[1])
        return n_nonfinite

    def masks_or_none(self, indices: Sequence[int]) -> list[np.ndarray | None]:
        """The masks of frames ``indices``, None for a frame with nothing masked: a combine
        without masks reads no mask band (a bias of 20 2k frames: 80 MiB less to read)."""
        return [self.mask[i] if self.masked[i] else None for i in indices]

    @property
    def data(self) -> np.memmap:
        """The frames, float32 (n, ny, nx)."""
        return self._mapped()[0]

    @property
    def mask(self) -> np.memmap:
        """Their masks, bool (n, ny, nx): True where a pixel is not to be combined."""
        return self._mapped()[1]

    def _mapped(self) -> tuple[np.memmap, np.memmap]:
        if self._maps is None:
            raise RuntimeError(f"spool {self.directory} holds no frames: none put yet, or closed")
        return self._maps

    def _allocate(self, shape: tuple[int, ...]) -> tuple[np.memmap, np.memmap]:
        """Both maps, or neither (and no file): a thread that finds the spool still unmapped
        after another's DiskFullError tries again and gets its own."""
        try:
            return self._map("data.f32", np.float32, shape), self._map("mask.u8", np.bool_, shape)
        except BaseException:
            for name in ("data.f32", "mask.u8"):
                (self.directory / name).unlink(missing_ok=True)
            raise

    def _map(self, name: str, dtype: type, shape: tuple[int, ...]) -> np.memmap:
        """A writable map of a file whose every byte is already allocated on disk."""
        path = self.directory / name
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, max(size, 1))
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                # No reservation on this filesystem: the free space is the best check left.
                if shutil.disk_usage(self.directory).free < size:
                    raise OSError(errno.ENOSPC, "not enough free space") from None
                os.ftruncate(fd, size)
        except OSError as exc:
            if exc.errno not in DiskFullError.ERRNOS:
                raise
            os.ftruncate(fd, 0)  # give the partial reservation back at once
            raise DiskFullError.in_folder(self.directory.parent, needed=size,
                                          what=f"a combine spool of {self.n} frames") from None
        finally:
            os.close(fd)
        return np.memmap(path, dtype, "r+", shape=shape)

    @property
    def frames(self) -> list[np.ndarray]:
        return [self.data[i] for i in range(self.n)]

    @property
    def masks(self) -> list[np.ndarray]:
        return [self.mask[i] for i in range(self.n)]

    def close(self) -> None:
        self._maps = None  # drop the maps before removing their files
        shutil.rmtree(self.directory, ignore_errors=True)


def _pwrite_all(path: str, data: np.ndarray, position: int) -> None:
    """Write ``data``'s bytes at ``position``; a full disk (where the space could not be
    reserved beforehand, see ``Spool._map``) is a DiskFullError naming the folder."""
    view = data.reshape(-1).view(np.uint8).data
    fd = os.open(path, os.O_WRONLY)
    try:
        while len(view):
            done = os.pwrite(fd, view, position)
            view, position = view[done:], position + done
    except OSError as exc:
        if exc.errno not in DiskFullError.ERRNOS:
            raise
        raise DiskFullError.in_folder(Path(path).parent.parent, needed=len(view),
                                      what="a combine spool frame") from None
    finally:
        os.close(fd)


def combine_frames(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray | None],
                   memory_limit: int | None = None, **options: Any) -> Combined:
    """Call the combine engine with the options it knows.

    The engine gains keywords over time (``memory_limit``, ``rejected_out``, ``threads``...);
    an older engine gets the band size it understands instead of ``memory_limit``, and an
    option it cannot honour is an error rather than silently ignored.
    """
    known = inspect.signature(combine).parameters
    limit = memory_limit or DEFAULT_MEMORY_LIMIT
    if "memory_limit" in known:
        options["memory_limit"] = limit
    elif "band_bytes" in known:
        options["band_bytes"] = max(2**20, limit // 4)  # the numpy engine holds ~3 copies of a band
    unknown = [k for k, v in options.items() if k not in known and v is not None]
    if unknown:
        raise NotImplementedError(f"this combine engine has no {', '.join(unknown)} option")
    return combine(frames, masks=masks, **{k: v for k, v in options.items() if k in known})
