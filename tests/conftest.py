"""Shared fixtures: the plugin manager, the real data folder and caldb backends (small frames,
fake instruments and "run one step" come from ccdflow.testing, the plugin authors' fixtures)."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path

import pytest

from ccdflow.framework.engine.plugins import get_plugin_manager
from ccdflow.testing import make_meta
from tests import env_guard

__all__ = ["fake_calibration_fields", "make_meta"]  # make_meta: ccdflow.testing's, for older imports

# What the session must leave as it found it (tests/env_guard.py), taken before this module
# changes anything.
_BEFORE = env_guard.snapshot()

# The tests never see the developer's own instrument folder (~/.config/ccdflow/instruments):
# an empty one of their own, inherited by every ccdflow process a test starts, removed at the end.
_NO_USER_INSTRUMENTS = tempfile.mkdtemp(prefix="ccdflow-no-user-instruments-")
os.environ["CCDFLOW_INSTRUMENTS"] = _NO_USER_INSTRUMENTS


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Undo this module's own change, then fail the run if any test left something behind."""
    import shutil

    shutil.rmtree(_NO_USER_INSTRUMENTS, ignore_errors=True)
    os.environ.pop("CCDFLOW_INSTRUMENTS", None)
    if "CCDFLOW_INSTRUMENTS" in _BEFORE["environment"]:
        os.environ["CCDFLOW_INSTRUMENTS"] = _BEFORE["environment"]["CCDFLOW_INSTRUMENTS"]
    left = env_guard.differences(_BEFORE, env_guard.snapshot())
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "the tests changed the user's environment:\n  " + "\n  ".join(left)
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL_DATA = SHARED / "data" / "real"


@pytest.fixture
def manager():
    """A freshly loaded plugin manager (entry points re-read)."""
    return get_plugin_manager(reload=True)


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data not available: {REAL_DATA} is missing (clone without ../shared)")
    return REAL_DATA


# -- caldb backends: a real SQLite file and a throwaway database on the local PostgreSQL ----------

PG_HOST, PG_PORT, PG_ADMIN_DB = "127.0.0.1", 5432, "test"


@pytest.fixture(scope="session")
def postgres_user() -> str:
    """A role of the local server that may create databases; skip (or fail) when none answers.

    Tries the current OS user, then ``postgres`` (trust auth). With ``CCDFLOW_REQUIRE_POSTGRES=1``
    a missing server fails the tests instead of skipping them.
    """
    import contextlib
    import getpass
    import os

    problems = []
    try:
        import psycopg
    except ImportError as exc:
        psycopg, problems = None, [f"psycopg is not installed ({exc})"]
    users = []
    with contextlib.suppress(Exception):  # no passwd entry in some containers
        users.append(getpass.getuser())
    for user in dict.fromkeys([*users, "postgres"]) if psycopg else []:
        try:
            with psycopg.connect(host=PG_HOST, port=PG_PORT, user=user, dbname=PG_ADMIN_DB,
                                 connect_timeout=3) as conn:
                can = conn.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles "
                                   "WHERE rolname = current_user").fetchone()[0]
            if can:
                return user
            problems.append(f"role {user} may not create databases")
        except psycopg.Error as exc:
            problems.append(f"user {user}: {str(exc).strip().splitlines()[0]}")
    reason = (f"no usable PostgreSQL at {PG_HOST}:{PG_PORT} (database {PG_ADMIN_DB}): "
              + "; ".join(problems))
    if os.environ.get("CCDFLOW_REQUIRE_POSTGRES") == "1":
        pytest.fail(reason + " -- and CCDFLOW_REQUIRE_POSTGRES=1 requires it")
    pytest.skip(reason)


@pytest.fixture
def postgres_url(postgres_user):
    """URL of a fresh, empty database on the local server; dropped after the test."""
    import uuid

    import psycopg

    name = f"ccdflow_t_{uuid.uuid4().hex[:12]}"

    def admin(sql: str) -> None:
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=postgres_user, dbname=PG_ADMIN_DB,
                             autocommit=True) as conn:
            conn.execute(sql)

    admin(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://{postgres_user}@{PG_HOST}:{PG_PORT}/{name}"
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # FORCE: engines a test leaked


@pytest.fixture(params=["sqlite", "postgres"])
def caldb_url(request, tmp_path) -> str:
    """An empty caldb location on each backend: a SQLite file in tmp_path, a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'caldb.sqlite'}"
    return request.getfixturevalue("postgres_url")


def fake_calibration_fields(sha256: str, **overrides) -> dict:
    """Prepared fields for ``CalDB.add_fields`` (the keys ``ingest.read_master`` returns)."""
    values = dict(
        type="bias", instrument="generic", detector="default", binning="1x1", readout_mode="default",
        raw_shape="40x68", shape="40x60", filter=None, exposure_time=0.0, temperature=-20.0,
        temperature_spread=0.1, obs_time=datetime(2026, 3, 1, 18), obs_start=datetime(2026, 3, 1, 17),
        obs_end=datetime(2026, 3, 1, 19), n_combined=3, software_version="test", config_hash="c0ffee",
        stats={"median": 300.0, "noise": 4.0}, path=f"/data/masters/{sha256[:16]}.fits", sha256=sha256,
        inputs=[(f"raw_{sha256[:8]}_{i}.fits", f"{i:064x}") for i in range(3)],
    )
    values.update(overrides)
    return values
