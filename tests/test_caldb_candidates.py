"""Which records best() reads as candidates, on SQLite and PostgreSQL (the query, not the rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ccdflow.caldb import CalDB, NoCalibrationError
from ccdflow.framework.engine.instrument import MatchRule
from tests.conftest import fake_calibration_fields, make_meta

RULE = MatchRule(max_age_days=30, must_match=["instrument", "detector", "binning", "readout_mode",
                                              "shape", "filter"])
T0 = datetime(2026, 3, 1, 18)


@pytest.fixture
def db(caldb_url):
    db = CalDB.create(caldb_url)
    yield db
    db.close()


def add(db, n: int, **fields) -> int:
    sha = f"{n:064x}"
    return db.add_fields(fake_calibration_fields(sha, filter="V", **fields)).id


def frame(**overrides):
    return make_meta(date_obs=T0.replace(tzinfo=UTC), shape=(40, 68), detector="default",
                     binning=(1, 1), **overrides)


def test_the_receipt_lists_the_same_setup_and_counts_the_rest_of_it(db):
    near = add(db, 1, obs_time=T0 - timedelta(days=1))
    add(db, 2, obs_time=T0 - timedelta(days=3), binning="2x2")  # another setup: not a candidate
    add(db, 3, obs_time=T0 - timedelta(days=90))  # same setup, outside the window: counted
    record, receipt = db.best("bias", frame(), RULE)
    assert record["id"] == near
    assert [c.id for c in receipt.candidates] == [near]
    assert receipt.note == "1 more bias records outside the 30 d window"


def test_when_the_setup_has_nothing_usable_every_record_of_the_type_is_explained(db):
    bad = add(db, 1, obs_time=T0 - timedelta(days=1))
    db.mark_bad(bad, "striping")
    other = add(db, 2, obs_time=T0 - timedelta(days=2), binning="2x2")
    with pytest.raises(NoCalibrationError) as err:
        db.best("bias", frame(), RULE)
    reasons = {c.id: c.reasons for c in err.value.receipt.candidates}
    assert set(reasons) == {bad, other}
    assert reasons[other] == ["binning: need 1x1, is 2x2"]
    assert "2 candidates, all rejected" in str(err.value)


def test_a_flat_of_another_filter_is_not_a_candidate_but_explains_a_miss(db):
    add(db, 1, type="flat", obs_time=T0)
    assert db.best("flat", frame(filter="V"), RULE)[0]["filter"] == "V"
    with pytest.raises(NoCalibrationError, match="1 filter"):
        db.best("flat", frame(filter="R"), RULE)


def test_nothing_in_the_window_names_the_nearest_records_outside_it(db):
    ids = [add(db, n, obs_time=T0 - timedelta(days=40 + n)) for n in range(7)]
    with pytest.raises(NoCalibrationError) as err:
        db.best("bias", frame(), RULE)
    assert [c.id for c in err.value.receipt.candidates] == ids[:5]  # the five nearest
    assert "7 candidates, all rejected: 5 age (need within 30 d, is 40.0 d), 2 older/newer" in str(
        err.value)
