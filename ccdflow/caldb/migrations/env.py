"""Alembic environment for the caldb: run on the connection schema.py hands over.

``ccdflow.caldb.schema`` opens the transaction (and takes the lock that serialises concurrent
upgrades) and passes its connection in ``config.attributes["connection"]``; a developer running
``alembic`` by hand passes ``-x url=...`` instead (see schema.alembic_config).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from ccdflow.caldb.models import Base


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables in later migrations.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_offline() -> None:
    context.configure(url=context.get_x_argument(as_dictionary=True).get("url")
                      or context.config.get_main_option("sqlalchemy.url"),
                      target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():  # inside the caller's transaction: a no-op
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url")
    if url is None:
        raise SystemExit("alembic by hand: give the caldb's URL with -x url=...")
    engine = create_engine(url)
    with engine.begin() as conn:
        _configure(conn)
        context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
