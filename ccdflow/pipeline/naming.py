"""Every output path of a run, built from header values that an attacker or a confused camera
may have written: bounded, printable file-name components, and a final check that the path
stays inside OUT.

Header values (DETECTOR, READOUTM, FILTER...) used to go into file names as they were: a
DETECTOR of ``x/../../../escaped`` put every master of a night into one file outside the
output folder. Names are now made only by :func:`safe_component`, and every path a task
writes is checked by :func:`inside` before anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path, PurePosixPath

from ccdflow.framework.engine.errors import CcdflowError

#: Characters kept as they are; anything else becomes '-'. No separators, no spaces, no '#'
#: or '%' (file names end up in the report's links).
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")
#: Longest component kept before it is cut and given a hash suffix.
MAX_COMPONENT = 48
#: Compression suffixes a raw file may carry; products are always plain ``.fits``.
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".fz", ".z", ".zip", ".xz")
_FITS_SUFFIXES = (".fits", ".fit", ".fts")


class OutputPathError(CcdflowError):
    """An output path would land outside the run's output folder."""


def short_hash(*parts: object, length: int = 8) -> str:
    """A short hex digest of the parts' text: keeps lossy names unique and identities short."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:length]


def safe_component(value: object, max_len: int = MAX_COMPONENT) -> str:
    """``value`` as one file-name component: printable ASCII from a small set, no separators,
    no ``..``, no leading dot, at most ``max_len`` characters. When anything had to change (a
    character replaced, the text cut), a hash of the original is appended so that two different
    values never share a name.
    """
    text = str(value)
    cleaned = re.sub(r"\.{2,}", ".", _UNSAFE.sub("-", text)).strip(".") or "x"
    if cleaned == text and len(text) <= max_len:
        return text
    suffix = "~" + short_hash(text, length=6)
    return cleaned[: max(1, max_len - len(suffix))].rstrip(".") + suffix


def strip_compression(name: str) -> str:
    """``a.fits.gz`` -> ``a.fits``; other names unchanged."""
    lower = name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if lower.endswith(suffix) and lower[: -len(suffix)].endswith(_FITS_SUFFIXES):
            return name[: -len(suffix)]
    return name


def _fits_stem(name: str) -> str:
    """``a.fits.gz``, ``a.fit`` -> ``a``; a name without a FITS suffix is kept whole."""
    name = strip_compression(name)
    lower = name.lower()
    return next((name[: -len(s)] for s in _FITS_SUFFIXES if lower.endswith(s)), name)


def product_relpath(raw: str | Path, rawdir: str | Path | None) -> str:
    """Where a raw file's product goes under ``reduced/``: its path relative to RAWDIR with
    every component made safe, so equal base names in different subfolders give different
    products. Products are plain ``.fits`` whatever the input (``a.fits.gz`` -> ``a.fits``);
    when another FITS file in the same raw folder has the same stem (``a.fits`` beside
    ``a.fits.gz``), the one that is not ``<stem>.fits`` gets a hash of its name appended. A raw
    file outside RAWDIR is named by its base name alone."""
    raw = Path(raw)
    rel = PurePosixPath(raw.name)
    if rawdir is not None:
        # absolute, not resolved: a raw file that is a link keeps the name it has in RAWDIR
        with contextlib.suppress(ValueError):
            rel = PurePosixPath(Path(os.path.abspath(raw)).relative_to(os.path.abspath(rawdir)).as_posix())
    stem = _fits_stem(rel.name)
    if rel.name != f"{stem}.fits" and _stem_shared(raw, stem):
        stem = f"{stem}.{short_hash(rel.name, length=6)}"
    parts = [safe_component(p, 96) for p in rel.parts[:-1]]
    return "/".join([*parts, safe_component(stem, 96) + ".fits"])


def _stem_shared(raw: Path, stem: str) -> bool:
    """Another file in ``raw``'s folder would also be named ``<stem>.fits``."""
    try:
        siblings = [p.name for p in raw.parent.iterdir() if p.name != raw.name]
    except OSError:
        return False
    return any(_fits_stem(n) == stem and n != stem for n in siblings)


def inside(outdir: str | Path, path: str | Path) -> Path:
    """``path`` resolved (a relative one from the working folder, as everywhere), or
    OutputPathError when it would land outside ``outdir`` (through ``..``, an absolute path or a
    symbolic link) or is ``outdir`` itself."""
    root = Path(outdir).resolve()
    target = Path(path).resolve()
    if not target.is_relative_to(root) or target == root:
        raise OutputPathError(f"refusing to write {path}: it resolves to {target}, outside the output "
                              f"folder {root}")
    return target
