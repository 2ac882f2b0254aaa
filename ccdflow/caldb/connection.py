"""Which database, and how to talk to it safely from many processes at once."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

ENV_VAR = "CCDFLOW_CALDB"
T = TypeVar("T")


def default_path() -> Path:
    """``$XDG_DATA_HOME/ccdflow/caldb.sqlite`` (``~/.local/share/ccdflow/caldb.sqlite``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ccdflow" / "caldb.sqlite"


def resolve_url(value: str | os.PathLike | None = None) -> str:
    """``--caldb`` value, else ``$CCDFLOW_CALDB``, else the default file. A path means SQLite."""
    text = str(value) if value is not None else os.environ.get(ENV_VAR) or str(default_path())
    if "://" in text:
        return text
    path = Path(text).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def display_url(url: str) -> str:
    """The URL without a password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(engine: Engine, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # pragma: no cover - exercised via tests
        dbapi_conn.isolation_level = None  # SQLAlchemy issues BEGIN itself (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        # Writers take the write lock up front: a deferred transaction that reads and then
        # writes cannot wait for the lock (SQLITE_BUSY without the busy handler). A read on the
        # writer engine (the schema check) says so with the caldb_read_only execution option.
        write = immediate and not conn.get_execution_options().get("caldb_read_only", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engines(url: str) -> tuple[Engine, Engine]:
    """(reader, writer) engines. For SQLite the writer begins IMMEDIATE transactions."""
    if url.startswith("sqlite"):
        reader = create_engine(url, connect_args={"timeout": 30})
        writer = create_engine(url, connect_args={"timeout": 30})
        _sqlite_pragmas(reader, immediate=False)
        _sqlite_pragmas(writer, immediate=True)
        return reader, writer
    engine = create_engine(url, pool_pre_ping=True)
    return engine, engine


def is_transient(exc: BaseException) -> bool:
    """Lock contention and serialization failures: worth retrying, never worth showing."""
    if not isinstance(exc, OperationalError | DBAPIError):
        return False
    text = str(getattr(exc, "orig", exc)).lower()
    return any(s in text for s in ("database is locked", "busy", "deadlock detected",
                                   "could not serialize", "could not obtain lock"))


def with_retry(fn: Callable[[], T], *, attempts: int = 12, base_delay: float = 0.02) -> T:
    """Run ``fn`` again on transient lock errors, with jittered exponential backoff."""
    for attempt in range(attempts):
        try:
            return fn()
        except (OperationalError, DBAPIError) as exc:
            if not is_transient(exc) or attempt == attempts - 1:
                raise
            time.sleep(min(2.0, base_delay * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


class Sessions:
    """Read and write session factories over one database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.reader, self.writer = make_engines(url)
        self._read = sessionmaker(self.reader, expire_on_commit=False)
        self._write = sessionmaker(self.writer, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    def write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction, retried as a whole on lock contention."""

        def attempt() -> T:
            with self._write() as session, session.begin():
                return work(session)

        return with_retry(attempt)

    def dispose(self) -> None:
        self.reader.dispose()
        if self.writer is not self.reader:
            self.writer.dispose()
