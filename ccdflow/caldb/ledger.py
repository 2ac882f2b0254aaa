"""The nightly pipeline's ledger: has this exact work already been done?

A reduced frame is up to date when a product exists for the same raw checksum, config hash
and calibration ids, and its file is still on disk with the recorded checksum. A master is
up to date when a calibration exists with the same input checksums and config hash. The
ledger lives in the caldb tables (``product``, ``calibration_input``), so every worker that
shares the caldb URL shares it, and a row is committed per frame: a killed run loses at most
the frames in flight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from ccdflow.caldb.models import Calibration, CalibrationInput, Product
from ccdflow.framework.io.fitsio import sha256_file


def file_matches(path: str | Path, sha256: str | None) -> bool:
    """The file exists and still has the checksum the ledger recorded."""
    path = Path(path)
    return path.is_file() and sha256 is not None and sha256_file(path) == sha256


def find_product(db: Any, raw_sha256: str, config_hash: str, calibration_ids: Mapping[str, int],
                 path: str | Path) -> dict[str, Any] | None:
    """The product made from this raw file with this config and these calibrations, if intact."""
    wanted = {(k, v) for k, v in calibration_ids.items()}
    target = str(Path(path).resolve())
    with db.sessions.read() as session:
        products = session.scalars(
            select(Product).where(Product.raw_sha256 == raw_sha256, Product.config_hash == config_hash,
                                  Product.path == target).order_by(Product.id.desc())
        ).all()
        for product in products:
            used = {(pc.type, pc.calibration_id) for pc in product.calibrations}
            if used == wanted and file_matches(product.path, product.sha256):
                return {"product_id": product.id, "path": product.path, "sha256": product.sha256}
    return None


def find_master(db: Any, kind: str, input_sha256s: Sequence[str],
                config_hash: str) -> dict[str, Any] | None:
    """A master built from exactly these inputs with this config, whose file is intact.

    Bad masters count too: rebuilding the same inputs would only make the same bad master
    again (and hide the operator's verdict behind a fresh, "good" copy)."""
    wanted = sorted(input_sha256s)
    with db.sessions.read() as session:
        candidates = session.scalars(
            select(CalibrationInput.calibration_id)
            .join(Calibration, Calibration.id == CalibrationInput.calibration_id)
            .where(CalibrationInput.sha256 == wanted[0], Calibration.type == kind,
                   Calibration.config_hash == config_hash)
        ).all()
        for cal_id in sorted(set(candidates), reverse=True):
            shas = sorted(session.scalars(
                select(CalibrationInput.sha256).where(CalibrationInput.calibration_id == cal_id)
            ).all())
            cal = session.get(Calibration, cal_id)
            if shas == wanted and file_matches(cal.path, cal.sha256):
                return {"id": cal.id, "path": cal.path, "sha256": cal.sha256, "quality": cal.quality}
    return None


def product_count(db: Any) -> int:
    with db.sessions.read() as session:
        return int(session.scalar(select(func.count(Product.id))) or 0)
