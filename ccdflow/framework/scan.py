"""Classify files from their headers alone: which instrument, which frame type, or why not.

Scanning never reads pixels, so a night of frames is classified in seconds, and one bad
file is reported with its reason instead of stopping the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from astropy.io import fits

from ccdflow.framework.errors import UnprocessableInputError
from ccdflow.framework.fitsio import read_headers
from ccdflow.framework.frame import FrameMeta
from ccdflow.framework.header_map import Headers, normalise
from ccdflow.framework.instrument import Instrument
from ccdflow.framework.plugins import PluginManager, get_plugin_manager

#: File name endings scanned when a directory is given.
FITS_SUFFIXES = (".fits", ".fit", ".fts")
COMPRESSED = ("", ".gz", ".bz2")


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
    """Classify every file (directories are searched for FITS files); never stops on one."""
    manager = manager or get_plugin_manager()
    # An unknown instrument name is a configuration error for the whole run: raise it.
    chosen = manager.instrument(instrument) if instrument else None
    frames: list[FrameMeta] = []
    unknown: list[tuple[str, str]] = []
    for path in iter_fits_files(paths):
        try:
            frames.append(_scan_one(path, manager, chosen))
        except UnprocessableInputError as exc:
            unknown.append((path, str(exc)))
    return ScanResult(frames, unknown)


def iter_fits_files(paths: Iterable[str | Path]) -> Iterator[str]:
    """Files as given, plus FITS-looking files found under directories, sorted."""
    for item in paths:
        item = Path(item)
        if item.is_dir():
            for found in sorted(p for p in item.rglob("*") if p.is_file() and _looks_fits(p)):
                yield str(found)
        else:
            yield str(item)


def _looks_fits(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s + c) for s in FITS_SUFFIXES for c in COMPRESSED)


def _scan_one(path: str, manager: PluginManager, chosen: Instrument | None) -> FrameMeta:
    headers = read_headers(path, complete=True)
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
    except (ValueError, TypeError, KeyError, fits.VerifyError) as exc:
        # Malformed cards surface lazily as astropy errors; they are bad input, not bugs.
        raise UnprocessableInputError(
            f"header cannot be read as {chosen.name!r}: {type(exc).__name__}: {exc}", path=path
        ) from None


def describe_identity(headers: Headers, manager: PluginManager) -> str:
    """Identifying cards, present or absent ("INSTRUME='X'; IMAGETYP absent"), for reasons."""
    keys = ["INSTRUME", "TELESCOP"]
    for inst in manager.instruments.values():
        keys += [k for k in inst.identify if k not in keys]
    parts = []
    for key in keys:
        header = next((h for h in headers.values() if key in h), None)
        parts.append(f"{key} absent" if header is None else f"{key}={str(header[key]).strip()!r}")
    known = ", ".join(sorted(n for n, i in manager.instruments.items() if i.identify))
    return f"{'; '.join(parts)}; known instruments: {known}"
