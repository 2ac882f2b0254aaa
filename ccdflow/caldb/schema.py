"""Schema management. TEMPORARY: replaced by Alembic migrations (being written now)."""

from __future__ import annotations

from sqlalchemy import Engine

from ccdflow.caldb.models import Base


def upgrade(engine: Engine) -> None:
    Base.metadata.create_all(engine)


def check_current(engine: Engine, url: str) -> None:
    return None
