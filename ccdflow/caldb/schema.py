"""caldb schema versions: Alembic migrations shipped inside the package, run from code.

``upgrade`` is what ``ccdflow caldb init`` does; ``check_current`` is what every ``CalDB`` open
does, so an old database opened by a newer ccdflow (or the reverse) says what to run.
Alembic itself is imported only when migrations run.

A schema change: edit models.py, add ``migrations/versions/NNNN_what.py`` (``down_revision`` the
previous head; ``alembic.command.revision(alembic_config(URL), "what", autogenerate=True)``
drafts one against a database at the current head), set ``HEAD_REVISION``. The tests check that
the migrated schema equals models.py on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from ccdflow.caldb.connection import (
    display_url,
    first_line,
    makes_unusable,
    unavailable,
    usable,
    with_retry,
)
from ccdflow.caldb.errors import CaldbError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"
#: The migrations' head, i.e. the revision models.py describes. Written here so that opening a
#: caldb (every command) need not import Alembic; test_caldb_schema checks it is the real head.
HEAD_REVISION = "0005"
#: Any 64-bit number of our own: serialises concurrent upgrades of one PostgreSQL database.
_PG_LOCK_KEY = 0x63636466_6C6F7701


class SchemaError(CaldbError):
    """The database's schema revision is not the one this ccdflow needs."""


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config with no ini file: the migrations are found next to this module."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@functools.cache
def _script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The revision this ccdflow's models correspond to."""
    return HEAD_REVISION


def known_revisions() -> list[str]:
    """Every revision shipped with this ccdflow, oldest first."""
    return [s.revision for s in reversed(list(_script().walk_revisions()))]


def _read_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def current_revision(engine: Engine) -> str | None:
    """The database's revision, or None when it was never initialised. Takes no write lock."""
    # caldb_read_only: the SQLite writer engine would otherwise BEGIN IMMEDIATE (connection.py).
    with usable(engine.url), engine.connect() as conn:
        return _read_revision(conn.execution_options(caldb_read_only=True))


def _upgrade_in(conn: Connection, target: str) -> None:
    from alembic import command

    if conn.dialect.name == "postgresql":
        # Two `caldb init` at once: the second waits here, then finds the schema current.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    # On SQLite the writer engine's BEGIN IMMEDIATE already holds the database's write lock.
    if _read_revision(conn) is None and inspect(conn).has_table("calibration"):
        raise SchemaError(
            f"caldb at {display_url(str(conn.engine.url))} has caldb tables but no schema revision "
            f"(made by a pre-release ccdflow?): move it aside and run `ccdflow caldb init`"
        )
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, target)
    if conn.dialect.name == "sqlite":
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise SchemaError(f"upgrade to {target} would break {len(broken)} references, "
                              f"e.g. {tuple(broken[0])}: nothing was changed")


def upgrade(engine: Engine, target: str = "head") -> None:
    """Create or upgrade the schema to ``target`` in one transaction (the writer engine's).

    Safe when several processes call it at once: they serialise on the database's write lock
    (SQLite) or an advisory lock (PostgreSQL) and the later ones find nothing to do.
    """

    def attempt() -> None:
        with engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            driver = conn.connection.dbapi_connection
            assert driver is not None, "a connection just checked out of the pool is live"
            if sqlite:
                # SQLite alters a table by copying it and dropping the old one (Alembic batch
                # mode), and with foreign keys on, DROP TABLE cascades into the rows that
                # refer to it. The pragma works only outside a transaction, so set it before.
                driver.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    _upgrade_in(conn, target)
            finally:
                if sqlite:
                    driver.execute("PRAGMA foreign_keys=ON")

    with usable(engine.url):
        with_retry(attempt)
    check_writable(engine)


def check_writable(engine: Engine) -> None:
    """Raise :class:`CaldbUnavailableError` unless this user can write to the caldb, before a
    command that writes (a night, a registration) does any work.

    A no-op UPDATE rolled back: SQLite opens a read-only file without complaint and even begins
    an IMMEDIATE transaction on it; only a write says no. PostgreSQL likewise refuses it on a
    read-only server or without the privilege.
    """
    from sqlalchemy.exc import DBAPIError

    def attempt() -> None:
        with engine.connect() as conn, conn.begin() as transaction:
            conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = version_num"))
            transaction.rollback()

    try:
        with_retry(attempt)
    except DBAPIError as exc:
        refused = any(s in first_line(exc).lower() for s in ("readonly", "read-only", "permission"))
        if refused or makes_unusable(exc):
            raise unavailable(engine.url, exc) from exc
        raise


def check_current(engine: Engine, url: str) -> None:
    """Raise :class:`SchemaError` saying what to run unless the database is at the head revision."""
    current = with_retry(lambda: current_revision(engine))
    head = head_revision()
    if current == head:
        return
    shown = display_url(url)
    init = f"`ccdflow caldb init --caldb {shown}`"
    if current is None:
        raise SchemaError(f"caldb at {shown} is not initialised: run {init}")
    if current in known_revisions():
        raise SchemaError(f"caldb at {shown} is at schema revision {current}, this ccdflow needs "
                          f"{head}: run {init} to upgrade")
    raise SchemaError(f"caldb at {shown} is at schema revision {current}, written by a newer ccdflow "
                      f"(this one knows revisions up to {head}): upgrade ccdflow to use it")
