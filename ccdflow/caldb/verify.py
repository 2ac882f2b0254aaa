"""Check that every file the caldb points to is still there, byte for byte. Read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from ccdflow.caldb.database import CalDB
from ccdflow.caldb.models import Product
from ccdflow.framework.io.fitsio import sha256_file

#: Statuses other than "ok": the file is gone, its bytes differ, or it cannot be read.
PROBLEMS = ("missing", "changed", "unreadable")


def check_file(path: str, expected: str) -> tuple[str, str | None, str | None]:
    """(status, actual SHA-256, detail) of one file against its recorded checksum."""
    file = Path(path)
    if not file.is_file():
        return "missing", None, "file not found"
    try:
        actual = sha256_file(file)
    except OSError as exc:
        return "unreadable", None, f"{type(exc).__name__}: {exc.strerror or exc}"
    if actual != expected:
        return "changed", actual, "SHA-256 differs from the one recorded at ingest"
    return "ok", actual, None


def verify(db: CalDB) -> list[dict[str, Any]]:
    """One row per calibration (bad ones too) and per product with a recorded checksum."""
    rows = []
    for rec in db.list(include_bad=True):
        status, actual, detail = check_file(rec["path"], rec["sha256"])
        rows.append({"record": "calibration", "id": rec["id"], "type": rec["type"],
                     "path": rec["path"], "status": status, "expected_sha256": rec["sha256"],
                     "actual_sha256": actual, "detail": detail})
    with db.sessions.read() as session:
        products = session.execute(
            select(Product.id, Product.frame_type, Product.path, Product.sha256)
            .order_by(Product.id)).all()
    for pid, frame_type, path, expected in products:
        if expected is None:  # recorded without a checksum: nothing to verify against
            continue
        status, actual, detail = check_file(path, expected)
        rows.append({"record": "product", "id": pid, "type": frame_type, "path": path,
                     "status": status, "expected_sha256": expected, "actual_sha256": actual,
                     "detail": detail})
    return rows


def problems(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] in PROBLEMS]
