"""As-of replay: ``best(..., as_of=T)`` chooses with the caldb as it was at T (ingests, quality,
validity, suspect and its acceptance), on SQLite and PostgreSQL; events older than schema 0005
get their states derived by the migration; `caldb best --as-of` and `night --caldb-as-of`."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ccdflow.caldb import CalDB, NoCalibrationError, schema
from ccdflow.caldb.selection import now_utc
from ccdflow.cli import cli
from tests.conftest import fake_calibration_fields
from tests.test_caldb_ingest import built  # noqa: F401  (the module's masters fixture)

KINDS = ("bias", "dark", "flat")


@pytest.fixture
def db(caldb_url):
    db = CalDB.create(caldb_url)
    yield db
    db.close()


def choices(db, built, **options):  # noqa: F811
    """{(frame, kind): (id, receipt)} for every science frame and calibration type."""
    _, config, _, science, _ = built
    out = {}
    for meta in science:
        for kind in KINDS:
            try:
                record, receipt = db.best(kind, meta, config.instrument.caldb[kind], **options)
                out[(meta.path, kind)] = (record["id"], receipt.to_dict())
            except NoCalibrationError as exc:
                out[(meta.path, kind)] = (None, exc.receipt.to_dict())
    return out


def tick() -> datetime:
    """A time strictly between what was done before and what comes after."""
    time.sleep(0.01)
    at = now_utc()
    time.sleep(0.01)
    return at


def test_replay_gives_the_earlier_choices_and_receipts(db, built):  # noqa: F811
    manager, config, masters, science, _ = built
    night1 = {k: db.add(p, manager).id for k, (p, _) in masters.items() if k[1] == 1}
    earlier = choices(db, built)
    assert all(i is not None for i, _ in earlier.values())
    t1 = tick()
    # Later: the second night's masters (better for the second night's frames), a master
    # marked bad, a validity range, a suspect master accepted.
    added = {k: db.add(p, manager) for k, (p, _) in masters.items() if k[1] == 2}
    db.mark_bad(night1[("bias", 1, None)], "light leak")
    db.certify(night1[("flat", 1, None)], datetime(2020, 1, 1), datetime(2020, 1, 2), "wrong range")
    for result in added.values():
        if result.quality == "suspect":
            db.mark_good(result.id, "accepted")
    # and a bias of the same setup a year later: receipts now count it outside the window
    same = db.get(night1[("bias", 1, None)])
    db.add_fields(fake_calibration_fields(
        "f" * 64, **{k: same[k] for k in ("type", "instrument", "camera", "detector", "binning",
                                          "readout_mode", "gain_setting", "offset", "raw_shape")},
        obs_time=datetime(2027, 3, 1)))
    later = choices(db, built)
    assert any("1 more bias records outside" in (r["note"] or "") for _, r in later.values())
    assert {k: i for k, (i, _) in later.items()} != {k: i for k, (i, _) in earlier.items()}
    t2 = tick()
    assert choices(db, built, as_of=t1) == earlier  # ids and whole receipts
    assert choices(db, built, as_of=t2) == later
    # The record comes back as it was: good then, bad now.
    bias1 = night1[("bias", 1, None)]
    record, _ = db.best("bias", science[0], config.instrument.caldb["bias"], as_of=t1)
    assert record["id"] == bias1 and record["quality"] == "good" and record["as_of"] == t1.isoformat()
    assert db.get(bias1)["quality"] == "bad"
    # Before anything was ingested there was nothing to choose; a pin must have existed then.
    with pytest.raises(NoCalibrationError, match="no bias calibrations recorded"):
        db.best("bias", science[0], config.instrument.caldb["bias"], as_of=t1 - timedelta(days=1))
    newer = added[("bias", 2, None)].id
    with pytest.raises(Exception, match=f"pinned bias {newer!r} is not in .* as of"):
        db.best("bias", science[0], config.instrument.caldb["bias"], pin=newer, as_of=t1)


def test_migration_derives_the_states_of_older_events(caldb_url):
    """A caldb at 0004 whose events have no before/after: upgraded, it replays correctly."""
    engine = sa.create_engine(caldb_url)
    schema.upgrade(engine, "0004")
    t0 = datetime(2026, 3, 1, 12)
    row = dict(type="bias", instrument="generic", detector="d", binning="1x1", readout_mode="default",
               raw_shape="40x68", shape="40x60", obs_time=t0, quality="bad", quality_reason="leak",
               stats="{}", path="/m/b.fits", sha256="a" * 64, ingested_at=t0,
               valid_from=datetime(2026, 3, 5), valid_to=None)
    events = [("ingest", None, t0, {"software_version": "0.0.9"}),
              ("certify", "first", t0 + timedelta(hours=1), {"valid_from": None, "valid_to": None}),
              ("mark-bad", "leak", t0 + timedelta(hours=2), {}),
              ("mark-good", "no leak", t0 + timedelta(hours=3), {"previous_reason": "leak"}),
              ("certify", "second", t0 + timedelta(hours=4),
               {"valid_from": "2026-03-02T00:00:00", "valid_to": "2026-03-03T00:00:00"}),
              ("mark-bad", "leak", t0 + timedelta(hours=5), {})]
    with engine.begin() as conn:
        columns = ", ".join(row)
        conn.execute(sa.text(f"INSERT INTO calibration ({columns}) VALUES "
                             f"({', '.join(':' + k for k in row)})"), row)
        for action, reason, at, details in events:
            conn.execute(sa.text("INSERT INTO calibration_event (calibration_id, action, reason, who, "
                                 "at, details) VALUES (1, :a, :r, 'old', :t, :d)"),
                         {"a": action, "r": reason, "t": at, "d": json.dumps(details)})
    engine.dispose()
    db = CalDB.create(caldb_url)
    try:
        got = [(e["action"], e["details"]["after"]) for e in db.get(1)["events"]]
        first = {"valid_from": "2026-03-02T00:00:00", "valid_to": "2026-03-03T00:00:00"}
        assert [a for a, _ in got] == [a for a, *_ in events]
        assert got[0][1] == {"quality": "good", "quality_reason": None, "valid_from": None,
                             "valid_to": None}
        assert got[1][1] == {**got[0][1], **first}  # the range the second certify replaced
        assert got[2][1]["quality"] == "bad" and got[3][1]["quality"] == "good"
        assert got[4][1]["valid_from"] == "2026-03-05T00:00:00"  # the record's range today
        assert got[5][1] == {"quality": "bad", "quality_reason": "leak",
                             "valid_from": "2026-03-05T00:00:00", "valid_to": None}
        assert db.get(1)["events"][2]["details"]["before"] == got[1][1]
        assert db.get(1)["qa"] is None  # nobody compared it: not re-judged by an upgrade
    finally:
        db.close()


def test_cli_best_as_of(tmp_path, built):  # noqa: F811
    manager, _, masters, science, _ = built
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    db = CalDB.create(url)
    first = db.add(masters[("bias", 1, None)][0], manager).id
    t1 = tick()
    db.mark_bad(first, "leak")
    db.add(masters[("bias", 2, None)][0], manager)
    db.close()
    runner = CliRunner()

    def best(*extra):
        result = runner.invoke(cli, ["caldb", "best", "--type", "bias", str(science[0].path),
                                     "--caldb", url, *extra])
        return result

    then = json.loads(best("--as-of", t1.isoformat(), "--json").stdout)
    assert then["selected"]["id"] == first and then["as_of"] == t1.isoformat()
    assert then["selected"]["quality"] == "good"
    assert json.loads(best("--json").stdout)["selected"]["id"] != first
    text = best("--as-of", t1.isoformat()).stdout
    assert f"caldb as of {t1.isoformat()}" in text and f"selected bias {first}" in text


def test_night_as_of_replays_the_choices_and_registers_nothing(tmp_path):
    from ccdflow.pipeline.executor import SerialExecutor
    from ccdflow.pipeline.night import run_night
    from ccdflow.pipeline.report import write_report
    from ccdflow.pipeline.spec import RunSpec, forget_environments
    from ccdflow.simulator import SimulationSpec, simulate_night
    from ccdflow.testing.night import TINY_NIGHT

    sim = simulate_night(tmp_path / "sim", SimulationSpec(**{**TINY_NIGHT, "nights": 2}))
    url = f"sqlite:///{tmp_path / 'caldb.sqlite'}"
    CalDB.create(url).close()

    def night(raw, out, as_of=None):
        spec = RunSpec(outdir=str(tmp_path / out), caldb_url=url, instrument="generic",
                       caldb_as_of=as_of)
        try:
            with SerialExecutor() as executor:
                return run_night(raw, spec, executor)
        finally:
            forget_environments()

    def used(result):
        assert result.science and all(s["status"] == "reduced" for s in result.science)
        return {s["raw"]: {k: c["id"] for k, c in s["calibrations"].items()} for s in result.science}

    first = used(night(sim.raw_dirs[0], "out1"))
    t1 = tick()
    night(sim.raw_dirs[1], "out2")  # the second night's masters, registered
    db = CalDB(url)
    try:
        bias = next(iter(first.values()))["bias"]
        db.mark_bad(bias, "light leak")
        records = len(db.list(include_bad=True))
        replay = night(sim.raw_dirs[0], "out3", as_of=t1)
        assert used(replay) == first
        built = [m for m in replay.masters if m["status"] == "built"]
        assert built and all("caldb_id" not in m for m in built)
        assert all(any("not registered" in w for w in m["warnings"]) for m in built)
        assert len(db.list(include_bad=True)) == records  # nothing registered into a past
        html = write_report(replay)["html"].read_text()
        assert f"caldb as of {t1.isoformat()}" in html
        today = used(night(sim.raw_dirs[0], "out4"))
        assert all(c["bias"] != bias for c in today.values())
    finally:
        db.close()
