"""caldb errors, in their own module so schema.py, connection.py and database.py can all raise
them (and the CLI can name them without importing SQLAlchemy)."""

from __future__ import annotations

from ccdflow.framework.engine.errors import CcdflowError


class CaldbError(CcdflowError):
    """The caldb itself is unusable (not initialised, too old, unknown id)."""


class CaldbUnavailableError(CaldbError):
    """The caldb cannot be opened or reached at all: a folder or a file that is not a database, a
    read-only file where a write is needed, a PostgreSQL server that does not answer, a missing
    driver, or a connection lost mid-run. No work can go on: the run stops, exit 3."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)  # the message alone is positional: the error pickles (Dask)
        self.url = url
