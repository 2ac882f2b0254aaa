"""What the caldb knows of products: which masters each reduced frame used and why, which
products a master was used for, and which products a better master now exists for.

A mixin of :class:`~ccdflow.caldb.database.CalDB`: it uses the database's sessions and ``best``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ccdflow import __version__
from ccdflow.caldb.models import Calibration, Product, ProductCalibration
from ccdflow.caldb.selection import NoCalibrationError, Receipt, now_utc, utc
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.instrument import MatchRule

if TYPE_CHECKING:
    from ccdflow.caldb.connection import Sessions


class ProductRecords:
    """Products and their calibrations; ``sessions`` and ``best`` come from CalDB."""

    sessions: Sessions
    best: Callable[..., tuple[dict[str, Any], Receipt]]

    def record_product(self, path: str | Path, meta: FrameMeta, used: dict[str, Receipt], *,
                       sha256: str | None = None, raw_sha256: str | None = None,
                       config_hash: str | None = None) -> int:
        """Record a reduced frame and the calibrations (with receipts) that made it.

        Older rows for the same output path go in the same transaction: the file they described
        was overwritten, so a re-reduction never leaves two products for one file."""
        target = str(Path(path).resolve())

        def work(session: Session) -> int:
            old = session.scalars(select(Product.id).where(Product.path == target)).all()
            if old:
                session.execute(delete(ProductCalibration).where(ProductCalibration.product_id.in_(old)))
                session.execute(delete(Product).where(Product.id.in_(old)))
            product = Product(
                path=target, sha256=sha256, raw_name=Path(meta.path or "").name,
                raw_sha256=raw_sha256, instrument=meta.instrument, frame_type=meta.frame_type,
                obs_time=utc(meta.date_obs), config_hash=config_hash, software_version=__version__,
                created_at=now_utc(), frame_meta=meta.model_dump(mode="json"),
            )
            product.calibrations = [
                ProductCalibration(calibration_id=r.selected_id, type=k, receipt=r.summary())
                for k, r in used.items() if r.selected_id is not None
            ]
            session.add(product)
            session.flush()
            return product.id

        return self.sessions.write(work)

    def used_by(self, cal_id: int) -> list[dict[str, Any]]:
        """Products that used a calibration."""
        query = (select(Product, ProductCalibration).join(ProductCalibration)
                 .where(ProductCalibration.calibration_id == cal_id).order_by(Product.id))
        with self.sessions.read() as session:
            return [{"product_id": p.id, "path": p.path, "raw_name": p.raw_name, "type": pc.type,
                     "obs_time": p.obs_time.isoformat(), "receipt": pc.receipt}
                    for p, pc in session.execute(query)]

    def stale(self, rule_for: Callable[[str, str], MatchRule]) -> list[dict[str, Any]]:
        """Products whose best calibration today differs from the one they used."""
        with self.sessions.read() as session:
            products = session.scalars(select(Product).order_by(Product.id)).all()
            used = {p.id: [(pc.type, pc.calibration_id) for pc in p.calibrations] for p in products}
        out = []
        for product in products:
            meta = FrameMeta.model_validate(product.frame_meta)
            for kind, old_id in used[product.id]:
                try:
                    record, _ = self.best(kind, meta, rule_for(product.instrument, kind))
                    new_id, why = record["id"], None
                except NoCalibrationError as exc:
                    new_id, why = None, str(exc)
                if new_id != old_id:
                    if why is None:
                        why = self._why_replaced(kind, old_id, new_id)
                    out.append({"product_id": product.id, "path": product.path, "raw": meta.path,
                                "type": kind, "used": old_id, "best_now": new_id, "reason": why})
        return out

    def _why_replaced(self, kind: str, old_id: int, new_id: int) -> str:
        with self.sessions.read() as session:
            old = session.get(Calibration, old_id)
        if old is not None and old.quality == "bad":
            return f"{kind} {old_id} was marked bad ({old.quality_reason}); best now is {new_id}"
        return f"{kind} {new_id} now ranks before {old_id}"

