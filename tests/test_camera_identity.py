"""Camera identity and CMOS settings (issue 13 items 5, 6): calibrations never cross cameras,
gain settings or offsets; records of unknown camera (schema 0004's NULL) are not silently
taken for a known camera; a widened temperature tolerance widens the dark groups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from ccdflow.caldb import CalDB, NoCalibrationError, schema
from ccdflow.caldb.connection import make_engines
from ccdflow.caldb.rules import DEFAULT_RULE
from ccdflow.caldb.selection import CalRecord, select
from ccdflow.framework.calibrations import BUILTIN_TYPES
from ccdflow.framework.calibrations.dark import Dark
from ccdflow.framework.engine.caltype import SETUP_FIELDS
from ccdflow.framework.engine.instrument import Instrument, MatchRule
from ccdflow.pipeline.plan import plan_masters
from tests.conftest import fake_calibration_fields, make_meta

GATES = ("camera", "gain_setting", "offset")
T0 = datetime(2026, 3, 1, 22, 0)
HEADER = {"frame_type": {}, "exposure_time": {}, "date_obs": {}}


def rec(id: int, **kw) -> CalRecord:
    values = dict(type="bias", instrument="generic", detector="default", binning="1x1",
                  readout_mode="default", raw_shape="40x60", filter=None, exposure_time=0.0,
                  temperature=-20.0, obs_time=T0, valid_from=None, valid_to=None, quality="good",
                  ingested_at=T0, path=f"/m/{id}.fits")
    values.update(kw)
    return CalRecord(id=id, **values)


def frame(**kw):
    return make_meta(**{"date_obs": datetime(2026, 3, 2, 1, tzinfo=UTC), **kw})


# -- the rules ------------------------------------------------------------------------------

def test_every_default_rule_gates_on_camera_gain_setting_and_offset():
    generic = Instrument(name="g", header=HEADER)
    rules = [t.default_rule() for t in BUILTIN_TYPES] + list(generic.caldb.values()) + [DEFAULT_RULE]
    assert {t.name for t in BUILTIN_TYPES} <= set(generic.caldb)
    for rule in rules:
        assert set(GATES) <= set(rule.must_match), rule
    assert set(GATES) <= set(SETUP_FIELDS)


def test_a_site_rule_without_camera_still_matches_instrument_and_camera():
    rule = MatchRule(max_age_days=10, must_match=["detector", "binning"])
    assert rule.must_match == ["instrument", "camera", "detector", "binning"]
    inst = Instrument(name="g", header=HEADER, caldb={"flat": {"must_match": ["filter"]}})
    assert inst.match_rule("flat").must_match == ["instrument", "camera", "filter"]


@pytest.mark.parametrize("kind", ["bias", "dark", "flat"])
def test_an_uncooled_camera_widens_its_temperature_tolerance_in_yaml(kind):
    inst = Instrument.model_validate(
        {"name": "uncooled", "header": HEADER, "caldb": {kind: {"temperature_tolerance": 5}}})
    assert inst.match_rule(kind).temperature_tolerance == 5
    assert inst.match_rule(kind).max_age_days == Instrument(name="g", header=HEADER).match_rule(
        kind).max_age_days  # the rest of the type's default rule is kept


# -- selection ------------------------------------------------------------------------------

@pytest.mark.parametrize("gate", GATES)
def test_a_known_value_takes_only_its_own_records(gate):
    records = [rec(1, **{gate: "A"}), rec(2, **{gate: "B"}), rec(3)]
    chosen, receipt = select("bias", frame(**{gate: "A"}), records, DEFAULT_RULE)
    assert chosen.id == 1
    why = {c.id: c.reasons for c in receipt.candidates}
    assert why[2] == [f"{gate}: need A, is B"]
    assert why[3] == [f"{gate}: need A, is unknown"]  # an unknown camera is not assumed to be A


@pytest.mark.parametrize("gate", GATES)
def test_an_unknown_value_takes_only_unknown_records(gate):
    records = [rec(1, **{gate: "A"}), rec(2)]
    chosen, receipt = select("bias", frame(), records, DEFAULT_RULE)
    assert chosen.id == 2
    assert [c.reasons for c in receipt.candidates if c.id == 1] == [[f"{gate}: need unknown, is A"]]


def test_no_record_of_the_frames_camera_is_an_error_naming_the_camera():
    with pytest.raises(NoCalibrationError) as err:
        select("bias", frame(camera="ZWO ASI120MC"), [rec(1, camera="SBIG ST-7")], DEFAULT_RULE)
    assert "bias for generic camera 'ZWO ASI120MC'" in str(err.value)
    assert "1 camera (need ZWO ASI120MC, is SBIG ST-7)" in str(err.value)


def test_another_cameras_master_is_never_applied_even_pinned_with_a_waiver():
    with pytest.raises(NoCalibrationError, match="even with a waiver: camera: need A, is B"):
        select("bias", frame(camera="A"), [], DEFAULT_RULE, pinned=rec(1, camera="B"), waive=True)


def test_a_master_of_unknown_camera_is_used_only_pinned_with_a_waiver():
    with pytest.raises(NoCalibrationError, match="waive explicitly"):
        select("bias", frame(camera="A"), [], DEFAULT_RULE, pinned=rec(1))
    chosen, receipt = select("bias", frame(camera="A"), [], DEFAULT_RULE, pinned=rec(1), waive=True)
    assert chosen.id == 1 and receipt.waiver == "hard gates waived: camera: need A, is unknown"


# -- grouping into masters ------------------------------------------------------------------

def _raw(frame_type: str, i: int, **kw):
    return make_meta(path=f"/raw/{frame_type}_{i:02d}.fits", frame_type=frame_type, filter=None,
                     date_obs=datetime(2026, 3, 1, 20, tzinfo=UTC) + timedelta(minutes=i), **kw)


def test_two_cameras_or_gain_settings_in_one_folder_make_separate_masters_with_their_names():
    frames = [_raw("bias", i, camera=cam, gain_setting=gain, offset="9", exposure_time=0.0)
              for i, (cam, gain) in enumerate([("CamA", "0"), ("CamA", "0"), ("CamB", "0"),
                                                ("CamB", "0"), ("CamA", "120"), ("CamA", "120")])]
    planned = plan_masters(frames)
    assert len(planned) == 3
    for _kind, _name, metas in planned:
        assert len({(m.camera, m.gain_setting) for m in metas}) == 1 and len(metas) == 2
    names = sorted(name for _, name, _ in planned)
    assert names == ["2026-03-01_bias_1x1_CamA_gain0_offset9", "2026-03-01_bias_1x1_CamA_gain120_offset9",
                     "2026-03-01_bias_1x1_CamB_gain0_offset9"]


def _darks(temps):
    return [_raw("dark", i, temperature=t, exposure_time=60.0) for i, t in enumerate(temps)]


UNCOOLED = [24.5, 24.9, 25.3, 25.6, 26.0]  # an uncooled camera warming up over the dark series


def _sizes(temps, rule):
    return sorted(len(group) for group in Dark.split_group(_darks(temps), rule))


def test_dark_groups_follow_the_instruments_temperature_tolerance():
    """Darks cluster by temperature gaps within the rule's tolerance, not by fixed bins: a set at
    -15 +- 0.1 C was split into masters of 4 and 1 by round(T/2)'s edge at -15."""
    default = Instrument(name="g", header=HEADER)
    uncooled = Instrument.model_validate({"name": "u", "header": HEADER,
                                          "caldb": {"dark": {"temperature_tolerance": 5}}})
    rule = default.match_rule("dark")
    assert _sizes([-15.1, -15.0, -14.9, -15.05, -14.95], rule) == [5]
    assert _sizes([-20.1, -19.9, -10.0, -10.2], rule) == [2, 2]  # two set points
    assert _sizes(UNCOOLED, rule) == [5]  # a slow drift: 1.5 C in all
    # a drift longer than twice the tolerance is cut, so no master spans more than its rule
    assert _sizes([20.0, 21.0, 22.0, 23.0, 24.0, 25.0], rule) == [1, 5]
    assert _sizes([20.0, 21.0, 22.0, 23.0, 24.0, 25.0], uncooled.match_rule("dark")) == [6]
    groups = plan_masters(_darks(UNCOOLED), lambda m: uncooled.match_rule("dark"))
    assert len(groups) == 1 and len(groups[0][2]) == 5
    # a rule with no temperature gate does not split darks by temperature at all; frames
    # without a temperature make their own master
    no_gate = MatchRule(max_age_days=30, temperature_tolerance=None)
    assert _sizes([-20.0, 0.0, 25.0], no_gate) == [3]
    assert _sizes([-20.0, None], rule) == [1, 1]
    # the exposure time is clustered too (CalibrationType.numeric_group), not a fixed key
    assert Dark.group_key(_darks([24.5])[0]) == ()


# -- the caldb, on SQLite and PostgreSQL ------------------------------------------------------

@pytest.fixture
def db(caldb_url):
    db = CalDB.create(caldb_url)
    yield db
    db.close()


def test_the_caldb_stores_the_identity_and_best_keeps_cameras_apart(db):
    ids = {cam: db.add_fields(fake_calibration_fields(f"{n:064x}", camera=cam, gain_setting="0",
                                                      offset="9")).id
           for n, cam in enumerate(["CamA", "CamB"], 1)}
    unknown = db.add_fields(fake_calibration_fields(f"{3:064x}")).id
    assert {r["id"]: (r["camera"], r["gain_setting"], r["offset"]) for r in db.list()} == {
        ids["CamA"]: ("CamA", "0", "9"), ids["CamB"]: ("CamB", "0", "9"), unknown: (None, None, None)}
    meta = make_meta(frame_type="science", shape=(40, 68), temperature=-20.0, gain_setting="0",
                     offset="9", date_obs=datetime(2026, 3, 1, 22, tzinfo=UTC))
    for cam, cal_id in ids.items():
        record, _ = db.best("bias", meta.model_copy(update={"camera": cam}), DEFAULT_RULE)
        assert (record["id"], record["camera"]) == (cal_id, cam)
    record, _ = db.best("bias", meta.model_copy(update={"gain_setting": None, "offset": None}),
                        DEFAULT_RULE)
    assert record["id"] == unknown
    with pytest.raises(NoCalibrationError) as err:
        db.best("bias", meta.model_copy(update={"camera": "CamC"}), DEFAULT_RULE)
    reasons = sorted(r for c in err.value.receipt.candidates for r in c.reasons)
    assert reasons[:2] == ["camera: need CamC, is CamA", "camera: need CamC, is CamB"]


def test_a_caldb_at_revision_0003_upgrades_and_keeps_its_records_as_unknown_camera(caldb_url):
    _, writer = make_engines(caldb_url)
    schema.upgrade(writer, "0003")
    columns = ("type, instrument, detector, binning, readout_mode, raw_shape, shape, obs_time, "
               "quality, stats, path, sha256, ingested_at")
    with writer.begin() as conn:
        conn.execute(text(f"INSERT INTO calibration ({columns}) VALUES ('bias', 'generic', 'default', "
                          "'1x1', 'default', '40x68', '40x60', :t, 'good', '{}', '/m/old.fits', "
                          ":sha, :t)"), {"t": T0, "sha": "b" * 64})
        cal_id = conn.execute(text("SELECT id FROM calibration")).scalar()
        conn.execute(text("INSERT INTO calibration_input (calibration_id, name, sha256) "
                          "VALUES (:id, 'raw.fits', :sha)"), {"id": cal_id, "sha": "c" * 64})
        conn.execute(text("INSERT INTO calibration_event (calibration_id, action, at, details) "
                          "VALUES (:id, 'ingest', :t, '{}')"), {"id": cal_id, "t": T0})
    writer.dispose()
    db = CalDB.create(caldb_url)  # what `ccdflow caldb init` does to an old caldb
    try:
        assert schema.current_revision(db.sessions.writer) == schema.head_revision()  # 0004 and later
        old = db.get(cal_id)
        assert (old["path"], old["sha256"], old["camera"], old["gain_setting"], old["offset"]) == (
            "/m/old.fits", "b" * 64, None, None, None)
        assert [i["sha256"] for i in old["inputs"]] == ["c" * 64]
        assert [e["action"] for e in old["events"]] == ["ingest"]
        meta = make_meta(frame_type="science", shape=(40, 68), date_obs=datetime(2026, 3, 2, tzinfo=UTC))
        assert db.best("bias", meta, DEFAULT_RULE)[0]["id"] == cal_id  # no camera: as before
        with pytest.raises(NoCalibrationError, match=r"1 camera \(need CamA, is unknown\)"):
            db.best("bias", meta.model_copy(update={"camera": "CamA"}), DEFAULT_RULE)
    finally:
        db.close()
