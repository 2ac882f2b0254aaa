"""Classify files from their headers alone: which instrument, which frame type, or why not.

Scanning never reads pixels, so a night of frames is classified in seconds, and one bad
file is reported with its reason instead of stopping the others.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from astropy.io import fits

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.engine.plugins import PluginManager, get_plugin_manager
from ccdflow.framework.headers.card_values import read_card, shown
from ccdflow.framework.headers.header_map import Headers, normalise
from ccdflow.framework.io import cards
from ccdflow.framework.io.fitsio import read_headers

#: File name endings scanned when a directory is given.
FITS_SUFFIXES = (".fits", ".fit", ".fts")
#: ``.fz``: tile-compressed (fpack); astropy reads it, and the pixels are in extension 1.
COMPRESSED = ("", ".gz", ".bz2", ".fz")


class ScanResult(NamedTuple):
    """Frames that were classified, and (path, reason) for every file that was not."""

    frames: list[FrameMeta]
    unknown: list[tuple[str, str]]


def scan_file(
    path: str | Path, manager: PluginManager | None = None, instrument: str | None = None
) -> FrameMeta:
    """FrameMeta of one file; UnprocessableInputError says why it cannot be classified."""
    manager = manager or get_plugin_manager()
    chosen = manager.instrument(instrument) if instrument else None
    return _scan_one(str(path), manager, chosen)


def scan_paths(
    paths: Iterable[str | Path], manager: PluginManager | None = None, instrument: str | None = None
) -> ScanResult:
    """Classify every file (directories are searched for FITS files); never stops on one.

    ``unknown`` also holds what discovery could not use: dangling links, link loops, FIFOs and
    folders that cannot be read (see :func:`discover_fits_files`)."""
    manager = manager or get_plugin_manager()
    # An unknown instrument name is a configuration error for the whole run: raise it.
    chosen = manager.instrument(instrument) if instrument else None
    files, problems = discover_fits_files(paths)
    frames: list[FrameMeta] = []
    unknown: list[tuple[str, str]] = list(problems)
    for path in files:
        try:
            frames.append(_scan_one(path, manager, chosen))
        except UnprocessableInputError as exc:
            unknown.append((path, str(exc)))
    return ScanResult(frames, unknown)


def discover_fits_files(paths: Iterable[str | Path]) -> tuple[list[str], list[tuple[str, str]]]:
    """(files, problems): regular files given, plus FITS-named ones under the folders given
    (sorted per folder), and (path, "path: reason") for everything that looked like input but
    cannot be read: a missing file, a dangling link, a link loop, a FIFO or device, a link to a
    folder inside a folder given (not followed: it could lead out of the tree or round in
    circles), a folder that cannot be listed. Nothing is opened, so a FIFO named ``x.fits``
    never blocks the scan."""
    files: list[str] = []
    problems: list[tuple[str, str]] = []
    for item in map(str, paths):
        if os.path.isdir(item):
            found: list[str] = []
            _walk(item, found, problems)
            files += sorted(found)
            continue
        reason = _not_a_file(item)
        if reason is None:
            files.append(item)
        else:
            problems.append((item, f"{item}: {reason}"))
    return files, problems


def iter_fits_files(paths: Iterable[str | Path]) -> Iterator[str]:
    """Files as given (whatever they are: the scan says why one is unusable), plus the readable
    FITS files found under directories, sorted; :func:`discover_fits_files` also says what it
    left out under the directories, and why."""
    for item in paths:
        if Path(item).is_dir():
            yield from discover_fits_files([item])[0]
        else:
            yield str(item)


def _walk(folder: str, found: list[str], problems: list[tuple[str, str]]) -> None:
    """Collect FITS-named regular files under ``folder``, depth first, without following links
    to folders; every entry that cannot be used is a problem with its reason."""
    try:
        with os.scandir(folder) as entries:
            listed = list(entries)
    except OSError as exc:
        problems.append((folder, f"{folder}: folder cannot be read ({_os_reason(exc)}); its files "
                                 "were not scanned"))
        return
    for entry in listed:
        # before the checks that may fail: a failure is reported for this entry's name, never
        # with the previous entry's verdict (or none at all for the first)
        named = _looks_fits(Path(entry.name))
        try:
            if entry.is_dir(follow_symlinks=False):
                _walk(entry.path, found, problems)
                continue
            if entry.is_file(follow_symlinks=False):
                if named:
                    found.append(entry.path)
                continue
            reason = _not_a_file(entry.path)
        except OSError as exc:
            reason = f"cannot be examined ({_os_reason(exc)})"
        if reason is None:
            if named:  # a link to a regular file
                found.append(entry.path)
        elif named or reason.startswith(_FOLDER_LINK):
            problems.append((entry.path, f"{entry.path}: {reason}"))


_FOLDER_LINK = "symbolic link to a folder"


def _not_a_file(path: str) -> str | None:
    """None for a regular file or a link to one; else why it cannot be read as one."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"dangling symbolic link (to {os.readlink(path)!r}, which does not exist)"
        return "file not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"symbolic link loop (to {os.readlink(path)!r})"
        return f"cannot be examined ({_os_reason(exc)})"
    if stat.S_ISREG(info.st_mode):
        return None
    if stat.S_ISDIR(info.st_mode):
        return f"{_FOLDER_LINK} ({os.readlink(path)!r}), not followed; give the folder itself to scan it"
    kind = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device"}.get(stat.S_IFMT(info.st_mode), "not a regular file")
    return f"{kind}, not a regular file; not read"


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _looks_fits(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s + c) for s in FITS_SUFFIXES for c in COMPRESSED)


def _scan_one(path: str, manager: PluginManager, chosen: Instrument | None) -> FrameMeta:
    reason = _not_a_file(path)
    if reason is not None:  # before opening: a FIFO would block the scan forever
        raise UnprocessableInputError(reason, path=path)
    headers = read_headers(path, complete=True)
    written = ccdflow_output(headers)
    if written is not None:  # its IMAGETYP is its inputs': it would pass for a raw frame
        raise UnprocessableInputError(written, path=path)
    if chosen is None:
        name = manager.identify(headers)
        if name is None:
            raise UnprocessableInputError(
                f"no instrument recognises this header ({describe_identity(headers, manager)})",
                path=path,
            )
        chosen = manager.instrument(name)
    try:
        return normalise(chosen, headers, path)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, fits.VerifyError) as exc:
        # Malformed cards surface lazily as astropy errors; they are bad input, not bugs.
        raise UnprocessableInputError(
            f"header cannot be read as {chosen.name!r}: {type(exc).__name__}: {exc}", path=path
        ) from None


def ccdflow_output(headers: Headers) -> str | None:
    """Why a file ccdflow wrote (``CF_VERS`` in its primary header: a master, a reduced product,
    a stack) is not a raw frame, or None for any other file. A master keeps its inputs'
    IMAGETYP and a product its raw frame's: scanned as raw, a master bias in the folder of the
    biases would be combined into the next master as one more bias, a product reduced again."""
    primary = headers.get(0)
    if primary is None or cards.VERS.keyword not in primary:
        return None
    kind, raw = cards.MTYPE.get(primary), cards.RAW.get(primary)
    if kind is not None:
        return (f"a ccdflow master {kind} (CF_MTYPE), not a raw frame: a calibration is given "
                "as one (--bias, --dark, --flat, --bpm) or chosen from the caldb")
    if raw is not None:
        return f"a ccdflow product reduced from {raw} (CF_RAW), not a raw frame: reduce the raw file"
    what = primary.get("CF_PTYPE", "file")
    return f"a ccdflow {what} (CF_VERS {primary[cards.VERS.keyword]}), not a raw frame"


def describe_identity(headers: Headers, manager: PluginManager) -> str:
    """Identifying cards, present or absent ("INSTRUME='X'; IMAGETYP absent"), for reasons."""
    keys = ["INSTRUME", "TELESCOP"]
    for inst in manager.instruments.values():
        keys += [k for k in inst.identify if k not in keys]
    parts = []
    for key in keys:
        header = next((h for h in headers.values() if key in h), None)
        card = None if header is None else read_card(header, key)  # never raises: a bad card is text
        value = None if card is None else (card.value if card.value is not None else card.error)
        parts.append(f"{key} absent" if header is None else f"{key}={shown(value)!r}")
    known = ", ".join(sorted(n for n, i in manager.instruments.items() if i.identify))
    return f"{'; '.join(parts)}; known instruments: {known}"
