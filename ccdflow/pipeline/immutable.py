"""Masters are immutable: each build has its own name, and no file is ever written over.

A master's name is its group (night, type, setup) plus a short *identity*: a hash of its
inputs' checksums, the parameters of its own recipe, the checksums of the calibrations it was
preprocessed with and the build options. The same work gives the same name (so a re-run finds
it and does nothing), different work a different name (so a re-run with a changed parameter
adds a master beside the old one instead of changing bytes a caldb record points at).

Files are published with a hard link from a temporary name, which fails when the name is
taken: two runs, a watch and a night, or a killed run and its re-run can never replace a
master's bytes, whatever the timing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ccdflow.framework.engine.errors import CcdflowError
from ccdflow.framework.io.fitsio import sha256_file
from ccdflow.pipeline.naming import short_hash


def master_identity(kind: str, input_sha256s: Sequence[str], recipe_hash: str,
                    calibration_sha256s: Mapping[str, str], options: Mapping[str, Any]) -> str:
    """Ten hex digits naming one master build; order of inputs does not matter."""
    text = json.dumps({"kind": kind, "inputs": sorted(input_sha256s), "recipe": recipe_hash,
                       "calibrations": dict(sorted(calibration_sha256s.items())),
                       "options": dict(sorted(options.items()))}, sort_keys=True)
    return short_hash(text, length=10)


def registered(db: Any, path: Path) -> dict[str, Any] | None:
    """The caldb record of the file at ``path`` (resolved), if any."""
    from sqlalchemy import select  # the caldb's: `ccdflow master` without one never loads it

    from ccdflow.caldb.models import Calibration

    with db.sessions.read() as session:
        cal = session.scalars(select(Calibration).where(Calibration.path == str(path.resolve()))
                              .order_by(Calibration.id)).first()
        if cal is None:
            return None
        return {"id": cal.id, "path": cal.path, "sha256": cal.sha256, "quality": cal.quality,
                "quality_reason": cal.quality_reason}


def scratch_name(final: Path) -> Path:
    """A temporary name beside ``final`` that the stale-file cleanup recognises."""
    return final.with_name(f".{final.name}.{os.getpid()}.build.tmp")


def write_new(final: Path, write: Callable[[Path], str]) -> tuple[Path, str, bool]:
    """Write a new master through ``write(tmp) -> sha256`` and publish it at ``final`` or, if
    that name is taken by other bytes, at the first free ``<stem>.rN.fits``.

    ``os.link`` never replaces an existing file (``os.replace`` would). Returns (path, sha256,
    new): ``new`` is False when identical bytes already sit at one of those names (then
    nothing was added). The temporary file is removed in every case."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_name(final)
    try:
        sha = write(tmp)
        candidate, n = final, 1
        while True:
            try:
                os.link(tmp, candidate)
                return candidate, sha, True
            except FileExistsError:
                if candidate.is_file() and sha256_file(candidate) == sha:
                    return candidate, sha, False
            n += 1
            candidate = final.with_name(f"{final.stem}.r{n}{final.suffix}")
    finally:
        tmp.unlink(missing_ok=True)


class RegisteredFileError(CcdflowError):
    """The requested output is a file a caldb record points at: it may not be written over."""


def refuse_registered(out: Path, caldb_url: str | None) -> None:
    """Refuse to write ``out`` when the caldb (``caldb_url``, resolved like ``--caldb``) has a
    record of that file: `ccdflow master --out` must not change a registered calibration."""
    if not out.exists():
        return
    from ccdflow.caldb import CalDB  # only when there is a file the caldb could know
    from ccdflow.caldb.connection import resolve_url

    url = resolve_url(caldb_url)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return  # no caldb yet, so nothing is registered
    db = CalDB(url)
    try:
        record = registered(db, out)
    finally:
        db.close()
    if record is not None:
        raise RegisteredFileError(
            f"{out} is caldb record {record['id']} ({db.display_url}); registered calibrations are "
            "never written over: choose another --out")
