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
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ccdflow.caldb.errors import CaldbUnavailableError
from ccdflow.framework.engine.errors import CcdflowError, DiskFullError

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
    if path.is_dir():
        raise CaldbUnavailableError(f"caldb {path} is a folder, not a SQLite file: give a file "
                                    f"path such as {path / 'caldb.sqlite'}", url=str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CaldbUnavailableError(f"cannot create the folder of caldb {path}: "
                                    f"{exc.strerror or exc}", url=str(path)) from exc
    return f"sqlite:///{path}"


def display_url(url: str | URL) -> str:
    """The URL without a password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


#: Python modules that provide PostgreSQL drivers: missing, they are installed by the extra.
_PG_DRIVERS = {"psycopg", "psycopg2", "psycopg_binary", "psycopg_c", "asyncpg", "pg8000"}


def first_line(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def unavailable(url: str | URL, exc: BaseException, *, lost: bool = False) -> CcdflowError:
    """The one-line error for a database error that makes the caldb unusable: what the user has
    (a folder, a text file, a read-only file, a server that does not answer) and what to do."""
    shown, text = display_url(url), first_line(exc)
    low = text.lower()
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database.removeprefix("file:").split("?")[0])
        if "disk is full" in low:
            return DiskFullError.in_folder(path.parent, what=f"caldb {path.name}")
        if path.is_dir():
            why = f"is a folder, not a SQLite file: give a file path such as {path / 'caldb.sqlite'}"
        elif "not a database" in low or "malformed" in low:
            why = (f"is not a SQLite database ({text}): give the path of a caldb, or of a file "
                   f"that does not exist yet")
        elif "readonly" in low or "read-only" in low:
            why = (f"is read-only ({text}): ccdflow writes to the file and to its folder (journal); "
                   f"make both writable or give another --caldb")
        elif "unable to open" in low:
            why = f"cannot be opened ({text}): does its folder exist, and may this user write there?"
        else:
            why = f"{'failed mid-run' if lost else 'cannot be used'}: {text}"
        return CaldbUnavailableError(f"caldb {path} {why}", url=shown)
    if any(s in low for s in ("read-only", "permission denied")):
        return CaldbUnavailableError(f"caldb at {shown} is read-only for this user ({text}): this "
                                     f"command records in it; give a role that may write, or "
                                     f"another --caldb", url=shown)
    if lost:
        return CaldbUnavailableError(f"lost the caldb at {shown} mid-run: {text}", url=shown)
    hint = " (is the server running, and is this its host and port?)" if any(
        s in low for s in ("refused", "could not connect", "connection failed", "timeout")) else ""
    return CaldbUnavailableError(f"cannot reach the caldb at {shown}: {text}{hint}", url=shown)


def makes_unusable(exc: DBAPIError) -> bool:
    """Errors of the database itself (not of a statement): it is gone, unreadable or read-only."""
    kinds = isinstance(exc, OperationalError | InterfaceError) or type(exc) is DatabaseError
    return kinds and not is_transient(exc)


@contextmanager
def usable(url: str | URL, *, lost: bool = False) -> Iterator[None]:
    """Turn errors that make the caldb unusable into :class:`CaldbUnavailableError` (or
    :class:`DiskFullError`); ``lost`` says the caldb was working earlier in this run."""
    try:
        yield
    except DBAPIError as exc:
        if not makes_unusable(exc):
            raise
        raise unavailable(url, exc, lost=lost) from exc


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
    """(reader, writer) engines. For SQLite the writer begins IMMEDIATE transactions. A URL
    SQLAlchemy cannot use, or a driver that is not installed, is a :class:`CaldbUnavailableError`."""
    try:
        return _make_engines(url)
    except ModuleNotFoundError as exc:  # the dialect imports its DB-API module here
        shown = display_url(url)
        name = (exc.name or "").split(".")[0]
        postgres = name in _PG_DRIVERS or make_url(url).get_backend_name() == "postgresql"
        install = ("pip install 'ccdflow[postgres]'" if postgres
                   else "install the Python package that provides it")
        raise CaldbUnavailableError(f"the caldb at {shown} needs the database driver {name!r}, which "
                                    f"is not installed: {install}", url=shown) from None
    except ArgumentError as exc:
        raise CaldbUnavailableError(f"--caldb {display_url(url) if '://' in url else url} is not a "
                                    f"database URL ccdflow can use: {first_line(exc)}") from None


def _make_engines(url: str) -> tuple[Engine, Engine]:
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
        """A read session; the caldb going away meanwhile is a :class:`CaldbUnavailableError`."""
        with usable(self.url, lost=True), self._read() as session:
            yield session

    def write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction, retried as a whole on lock contention; the caldb going
        away (not a lock) is a :class:`CaldbUnavailableError`."""

        def attempt() -> T:
            with self._write() as session, session.begin():
                return work(session)

        with usable(self.url, lost=True):
            return with_retry(attempt)

    def dispose(self) -> None:
        self.reader.dispose()
        if self.writer is not self.reader:
            self.writer.dispose()
