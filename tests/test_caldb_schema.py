"""caldb schema on real SQLite files and a real PostgreSQL server: migrations, checks, messages."""

from __future__ import annotations

import multiprocessing
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Index, MetaData, Text, inspect, text

from ccdflow.caldb import CalDB, CaldbError, schema
from ccdflow.caldb.connection import display_url, make_engines
from ccdflow.caldb.models import Base
from tests.conftest import fake_calibration_fields

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def writer(caldb_url):
    """The caldb writer engine on an empty database (what CalDB.create hands to upgrade)."""
    _, engine = make_engines(caldb_url)
    yield engine
    engine.dispose()


def schema_diffs(engine, metadata=Base.metadata) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                metadata)


def test_migrations_build_the_schema_from_an_empty_database(writer):
    assert schema.current_revision(writer) is None
    schema.upgrade(writer)
    assert schema.current_revision(writer) == schema.head_revision()
    assert set(inspect(writer).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}


def test_migrated_schema_equals_the_models(writer):
    schema.upgrade(writer)
    assert schema_diffs(writer) == []
    # The comparison does see a difference when there is one.
    changed = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    Index("ix_extra", changed.tables["product"].c.path)
    assert [d[0] for d in schema_diffs(writer, changed)] == ["add_index"]


def downgrade_to_base(engine) -> None:
    from alembic import command

    with engine.begin() as conn:
        config = schema.alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "base")


def test_downgrade_to_empty_and_up_again(writer):
    schema.upgrade(writer)
    downgrade_to_base(writer)
    assert schema.current_revision(writer) is None
    assert set(inspect(writer).get_table_names()) <= {"alembic_version"}
    schema.upgrade(writer)
    assert schema_diffs(writer) == []


def test_opening_an_uninitialised_database_says_what_to_run(caldb_url):
    shown = display_url(caldb_url)
    with pytest.raises(CaldbError) as err:
        CalDB(caldb_url)
    assert str(err.value) == (f"caldb at {shown} is not initialised: "
                              f"run `ccdflow caldb init --caldb {shown}`")


def test_a_plain_path_is_named_as_its_sqlite_url(tmp_path):
    with pytest.raises(CaldbError, match=r"caldb at sqlite:///.*/new\.sqlite is not initialised"):
        CalDB(tmp_path / "new.sqlite")


def test_an_older_revision_says_how_to_upgrade_and_init_upgrades_it(caldb_url, writer):
    revisions = schema.known_revisions()
    if len(revisions) < 2:
        pytest.skip("only one schema revision exists so far")
    older, head = revisions[-2], revisions[-1]
    schema.upgrade(writer, older)
    shown = display_url(caldb_url)
    with pytest.raises(schema.SchemaError) as err:
        CalDB(caldb_url)
    assert str(err.value) == (f"caldb at {shown} is at schema revision {older}, this ccdflow needs "
                              f"{head}: run `ccdflow caldb init --caldb {shown}` to upgrade")
    CalDB.create(caldb_url).close()
    db = CalDB(caldb_url)
    assert schema.current_revision(db.sessions.writer) == head
    db.close()
    assert schema_diffs(writer) == []


def test_a_revision_from_a_newer_ccdflow_is_named(caldb_url, writer):
    schema.upgrade(writer)
    with writer.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(CaldbError, match="at schema revision 9999_future, written by a newer ccdflow "
                                         rf"\(this one knows revisions up to {schema.head_revision()}\)"):
        CalDB(caldb_url)


def test_create_twice_keeps_the_data(caldb_url):
    db = CalDB.create(caldb_url)
    first = db.add_fields(fake_calibration_fields("a" * 64))
    db.close()
    db = CalDB.create(caldb_url)
    again = db.add_fields(fake_calibration_fields("a" * 64))
    assert (again.id, again.created) == (first.id, False)
    assert [r["sha256"] for r in db.list()] == ["a" * 64]
    assert schema.current_revision(db.sessions.writer) == schema.head_revision()
    db.close()


def _create(url: str) -> str:
    try:
        CalDB.create(url).close()
        return "ok"
    except Exception as exc:  # reported to the parent, which shows it
        return f"{type(exc).__name__}: {exc}"


def test_concurrent_inits_of_one_empty_database_all_succeed(caldb_url):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(_create, [caldb_url] * 4) == ["ok"] * 4
    db = CalDB(caldb_url)
    assert schema_diffs(db.sessions.writer) == []
    db.close()


def test_a_foreign_schema_without_revision_is_not_touched(caldb_url, writer):
    Base.metadata.create_all(writer)
    with pytest.raises(schema.SchemaError, match="has caldb tables but no schema revision"):
        schema.upgrade(writer)


def test_the_head_revision_constant_is_the_migrations_head():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(schema.alembic_config())
    assert schema.head_revision() == script.get_current_head() == schema.known_revisions()[-1]


def test_migrations_need_no_ini_file_and_ship_as_package_data():
    config = schema.alembic_config()
    assert config.config_file_name is None
    assert (Path(config.get_main_option("script_location")) / "env.py").is_file()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["ccdflow.caldb"]
    package = ROOT / "ccdflow" / "caldb"
    shipped = [p.relative_to(package).as_posix() for p in (package / "migrations").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts]
    assert shipped and all(any(fnmatch(f, g) for g in package_data) for f in shipped), shipped


def _rebuild_calibration_table(config, target) -> None:
    """What a future migration that alters `calibration` does on SQLite (Alembic batch mode)."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    ops = Operations(MigrationContext.configure(config.attributes["connection"]))
    with ops.batch_alter_table("calibration", recreate="always") as batch:
        batch.alter_column("path", existing_type=Text(), nullable=False)


@pytest.mark.parametrize("foreign_keys_off", [True, False])
def test_a_sqlite_table_rebuild_during_upgrade_keeps_the_rows_referring_to_it(
        tmp_path, monkeypatch, foreign_keys_off):
    from alembic import command

    url = f"sqlite:///{tmp_path / 'caldb.sqlite'}"
    db = CalDB.create(url)
    db.add_fields(fake_calibration_fields("a" * 64))
    db.close()
    _, writer = make_engines(url)
    if foreign_keys_off:  # what schema.upgrade does
        monkeypatch.setattr(command, "upgrade", _rebuild_calibration_table)
        schema.upgrade(writer)
    else:  # the same rebuild with foreign keys on: the reason upgrade turns them off
        with writer.begin() as conn:
            config = schema.alembic_config()
            config.attributes["connection"] = conn
            _rebuild_calibration_table(config, "head")
    with writer.connect() as conn:
        kept = [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("calibration", "calibration_input", "calibration_event")]
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    writer.dispose()
    assert kept == ([1, 3, 1] if foreign_keys_off else [1, 0, 0])
