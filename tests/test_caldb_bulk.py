"""Batch ingest (CalDB.add_records) on SQLite and PostgreSQL: idempotent, in order, whole records."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from ccdflow.caldb import CalDB, CaldbError
from tests.conftest import fake_calibration_fields


@pytest.fixture
def db(caldb_url):
    db = CalDB.create(caldb_url)
    yield db
    db.close()


def test_a_batch_goes_in_once_in_order_with_inputs_and_events(db):
    known = db.add_fields(fake_calibration_fields("a" * 64))
    batch = [fake_calibration_fields(c * 64) for c in "cba"] + [fake_calibration_fields("c" * 64)]
    results = db.add_records(batch, who="loader", batch_size=2)
    assert [r.path for r in results] == [f["path"] for f in batch]
    assert [r.created for r in results] == [True, True, False, False]
    assert results[2].id == known.id and results[3].id == results[0].id
    assert sorted(r["sha256"] for r in db.list()) == ["a" * 64, "b" * 64, "c" * 64]
    record = db.get(results[0].id)
    assert [i["name"] for i in record["inputs"]] == [n for n, _ in batch[0]["inputs"]]
    assert [(e["action"], e["who"]) for e in record["events"]] == [("ingest", "loader")]
    assert record["stats"] == {"median": 300.0, "noise": 4.0}


def test_values_of_mixed_python_types_and_empty_columns_are_stored_as_given(db):
    aware = datetime(2026, 3, 1, 19, tzinfo=UTC)
    batch = [
        fake_calibration_fields("1" * 64, temperature=-20, exposure_time=np.float32(2.5),
                                n_combined=np.int64(5), obs_time=aware, filter=None,
                                temperature_spread=None, stats={}),
        fake_calibration_fields("2" * 64, temperature=-19.5, exposure_time=3, inputs=[],
                                obs_start=None, obs_end=None, software_version=None),
    ]
    first, second = (db.get(r.id) for r in db.add_records(batch))
    assert (first["temperature"], first["exposure_time"], first["n_combined"]) == (-20.0, 2.5, 5)
    assert first["obs_time"] == "2026-03-01T19:00:00" and first["filter"] is None
    assert first["stats"] == {} and second["inputs"] == [] and second["obs_start"] is None
    assert second["exposure_time"] == 3.0


def test_a_record_with_unknown_or_missing_fields_is_refused_whole(db):
    with pytest.raises(CaldbError, match=r"unknown fields \['colour'\], missing fields \['obs_time'\]"):
        db.add_records([fake_calibration_fields("e" * 64), fake_calibration_fields(
            "f" * 64, colour="red", obs_time=None)])
    assert db.list() == []  # the batch is one transaction
