"""caldb on real SQLite files and a real PostgreSQL server: ingest, best(), quality, products, stale."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.caldb import CalDB, CaldbError, NoCalibrationError
from ccdflow.framework.builders.masters import build_master
from ccdflow.framework.builders.reduction import group_frames
from ccdflow.framework.engine.config import build
from ccdflow.framework.headers.scan import scan_paths
from ccdflow.framework.io.fitsio import sha256_file
from ccdflow.framework.io.fitswrite import write_ccd
from ccdflow.simulator import SimulationSpec, simulate_night


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two simulated nights and their masters written by ccdflow."""
    from ccdflow.framework.engine.plugins import get_plugin_manager

    root = tmp_path_factory.mktemp("caldb")
    spec = SimulationSpec(shape=(48, 64), overscan=8, n_bias=3, n_dark=3, dark_exptimes=(60.0,),
                          dark_temperatures=(-20.0, -14.0), n_flat=3, filters=("V",), n_science=1,
                          nights=2, seed=9)
    night = simulate_night(root / "sim", spec)
    manager = get_plugin_manager(reload=True)
    config = build(manager, instrument="generic")
    raws = sorted(p for d in night.raw_dirs for p in d.glob("*.fits"))
    frames, rejected = scan_paths(raws, manager)
    assert not rejected
    masters = {}
    for metas in sorted(group_frames(frames).values(), key=lambda g: ("bias", "dark", "flat",
                                                                      "science").index(g[0].frame_type)):
        kind, first = metas[0].frame_type, metas[0]
        if kind == "science":
            continue
        night_no = first.date_obs.day
        cals = {}
        if kind in ("dark", "flat"):
            cals["bias"] = masters[("bias", night_no, None)][1]
        if kind == "flat":
            cals["dark"] = next(c for (k, n, t), (_, c) in masters.items() if k == "dark" and n == night_no)
        ccd = build_master(kind, metas, manager, config, cals)
        temp = None if kind != "dark" else round(first.temperature)
        path = root / "masters" / f"{kind}_{night_no}_{temp}.fits"
        write_ccd(ccd, path)
        masters[(kind, night_no, temp)] = (path, ccd)
    science = [f for f in frames if f.frame_type == "science"]
    return manager, config, masters, science, root


@pytest.fixture
def db(caldb_url):
    """An empty caldb on each backend (SQLite file, PostgreSQL database)."""
    db = CalDB.create(caldb_url)
    yield db
    db.close()


def add_all(db, built):
    manager, _, masters, *_ = built
    return {key: db.add(path, manager).id for key, (path, _) in masters.items()}


def test_ingest_reads_every_field_of_a_ccdflow_master(db, built):
    manager, config, masters, *_ = built
    (key, (path, ccd)), = [(k, v) for k, v in masters.items() if k[0] == "dark" and k[2] == -14][:1]
    result = db.add(path, manager)
    assert result.created
    rec = db.get(result.id)
    assert (rec["type"], rec["instrument"]) == ("dark", "generic")
    assert (rec["detector"], rec["binning"]) == ("sim0", "1x1")
    assert rec["raw_shape"] == "48x72" and rec["shape"] == "48x64"
    assert rec["exposure_time"] == pytest.approx(60.0)
    assert rec["temperature"] == pytest.approx(-14.0, abs=0.2) and rec["temperature_spread"] < 0.2
    assert rec["n_combined"] == 3 and rec["sha256"] == sha256_file(path)
    assert rec["stats"]["dark_rate"] == pytest.approx(ccd.header["CF_DKRT"])
    assert rec["config_hash"] == config.recipe_hash("dark") and rec["software_version"]
    assert rec["obs_start"] <= rec["obs_time"] <= rec["obs_end"]
    assert len(rec["inputs"]) == 3 and all(len(i["sha256"]) == 64 for i in rec["inputs"])
    assert rec["events"][0]["action"] == "ingest"


def test_same_content_twice_is_not_duplicated(db, built, tmp_path):
    manager, _, masters, *_ = built
    path = masters[("bias", 1, None)][0] if ("bias", 1, None) in masters else next(
        p for (k, *_), (p, _) in masters.items() if k == "bias")
    first = db.add(path, manager)
    copy = tmp_path / "copy.fits"
    shutil.copy(path, copy)
    again = db.add(copy, manager)
    assert (again.id, again.created) == (first.id, False)
    assert len(db.list(kind="bias")) == 1


def test_bad_files_are_refused_with_reasons_others_go_in(db, built, tmp_path):
    manager, _, masters, *_ = built
    good = next(p for (k, *_), (p, _) in masters.items() if k == "flat")
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(b"SIMPLE  =                    T" + b"\0" * 100)
    nodate = tmp_path / "nodate.fits"
    with fits.open(good) as hdul:
        del hdul[0].header["CF_DATE"]
        hdul.writeto(nodate)
    foreign = tmp_path / "foreign.fits"
    fits.writeto(foreign, np.ones((4, 4), np.float32))
    results = {r.path.rsplit("/", 1)[-1]: r for r in db.add_many([corrupt, nodate, good, foreign], manager)}
    assert results[good.name].created
    assert "corrupt.fits" in results["corrupt.fits"].error
    assert "CF_DATE" in results["nodate.fits"].error
    assert "give its type with --type" in results["foreign.fits"].error
    assert len(db.list()) == 1


def test_foreign_master_with_type_is_read_through_the_header_map(db, built, tmp_path):
    manager, *_ = built
    header = fits.Header({"IMAGETYP": "Bias Frame", "EXPTIME": 0.0, "DATE-OBS": "2026-03-01T21:00:00",
                          "CCD-TEMP": -20.1, "XBINNING": 1, "YBINNING": 1, "INSTRUME": "whatever"})
    path = tmp_path / "ccdproc_bias.fits"
    CCDData(np.full((48, 64), 3.0, np.float32), unit="adu", header=header).write(path)
    result = db.add(path, manager, kind="bias", instrument="generic", raw_shape="48x72")
    rec = db.get(result.id)
    assert (rec["type"], rec["raw_shape"], rec["shape"]) == ("bias", "48x72", "48x64")
    assert rec["temperature"] == -20.1
    assert rec["stats"]["median"] == 3.0


def test_best_through_the_database_explains_itself(db, built):
    manager, config, masters, science, _ = built
    ids = add_all(db, built)
    meta = science[0]
    rule = config.instrument.caldb
    bias, receipt = db.best("bias", meta, rule["bias"])
    assert bias["id"] == ids[("bias", meta.date_obs.day, None)]  # same night wins on time distance
    assert len(receipt.candidates) == 2 and all(c.accepted for c in receipt.candidates)
    dark, receipt = db.best("dark", meta, rule["dark"])
    assert dark["temperature"] == pytest.approx(meta.temperature, abs=2)
    rejected = [c for c in receipt.candidates if not c.accepted]
    assert rejected and all(any(r.startswith("temperature") for r in c.reasons) for c in rejected)
    flat, receipt = db.best("flat", meta, rule["flat"])
    assert flat["filter"] == meta.filter


def test_records_outside_the_window_are_explained(db, built):
    manager, config, masters, science, _ = built
    add_all(db, built)
    late = science[0].model_copy(update={"date_obs": science[0].date_obs + timedelta(days=90)})
    with pytest.raises(NoCalibrationError) as err:
        db.best("bias", late, config.instrument.caldb["bias"])
    assert "2 candidates, all rejected: 2 age (need within 30 d" in str(err.value)


def test_mark_bad_good_certify_change_the_choice_and_are_audited(db, built):
    manager, config, masters, science, _ = built
    ids = add_all(db, built)
    meta, rule = science[0], config.instrument.caldb["bias"]
    first, _ = db.best("bias", meta, rule)
    db.mark_bad(first["id"], "light leak", who="tester")
    second, receipt = db.best("bias", meta, rule)
    assert second["id"] != first["id"]
    assert any("marked bad (light leak)" in r for c in receipt.candidates for r in c.reasons)
    with pytest.raises(CaldbError, match="needs a reason"):
        db.mark_bad(first["id"], " ")
    db.mark_good(first["id"], "false alarm", who="tester")
    assert db.best("bias", meta, rule)[0]["id"] == first["id"]
    events = db.get(first["id"])["events"]
    assert [e["action"] for e in events] == ["ingest", "mark-bad", "mark-good"]
    assert events[1]["who"] == "tester" and events[1]["reason"] == "light leak"
    db.certify(first["id"], datetime(2020, 1, 1), datetime(2020, 1, 2), reason="old")
    assert db.best("bias", meta, rule)[0]["id"] != first["id"]
    db.decertify(first["id"])
    assert db.best("bias", meta, rule)[0]["id"] == first["id"]
    with pytest.raises(CaldbError, match="ends .* before it starts"):
        db.certify(first["id"], datetime(2021, 1, 2), datetime(2021, 1, 1))
    with pytest.raises(CaldbError, match="no calibration with id 999999"):
        db.mark_bad(999999, "x")
    assert len(ids) == len(db.list(include_bad=True))


def test_pin_by_id_or_path_and_waiver(db, built):
    manager, config, masters, science, _ = built
    ids = add_all(db, built)
    meta, rule = science[0], config.instrument.caldb["dark"]
    wrong_temp = next(i for (k, n, t), i in ids.items() if k == "dark" and abs(t - meta.temperature) > 3)
    with pytest.raises(NoCalibrationError, match="fails the hard gates.*temperature"):
        db.best("dark", meta, rule, pin=wrong_temp)
    rec, receipt = db.best("dark", meta, rule, pin=wrong_temp, waive=True)
    assert rec["id"] == wrong_temp and receipt.waiver.startswith("hard gates waived: temperature")
    path = db.get(wrong_temp)["path"]
    assert db.best("dark", meta, rule, pin=path, waive=True)[0]["id"] == wrong_temp


def test_products_used_by_and_stale(db, built):
    manager, config, masters, science, root = built
    add_all(db, built)
    meta = science[0]
    rules = config.instrument.caldb
    used = {k: db.best(k, meta, rules[k])[1] for k in ("bias", "dark", "flat")}
    pid = db.record_product(root / "reduced.fits", meta, used, config_hash=config.config_hash())
    bias_id = used["bias"].selected_id
    assert [u["product_id"] for u in db.used_by(bias_id)] == [pid]
    assert db.used_by(bias_id)[0]["receipt"]["selected_id"] == bias_id
    assert db.stale(lambda inst, kind: rules[kind]) == []
    db.mark_bad(bias_id, "striping")
    stale = db.stale(lambda inst, kind: rules[kind])
    assert [(s["product_id"], s["type"], s["used"]) for s in stale] == [(pid, "bias", bias_id)]
    assert stale[0]["best_now"] not in (None, bias_id)


@pytest.mark.parametrize(("card", "value", "expected"), [
    ("CF_BIN", "banana", "CF_BIN"), ("NCOMBINE", "many", "NCOMBINE"), ("CF_TEMP", "warm", "CF_TEMP"),
    ("CF_RAWSH", "big", "CF_RAWSH"), ("NCOMBINE", 0, "whole number >= 1"),
])
def test_nonsense_metadata_is_refused_naming_the_card(db, built, tmp_path, card, value, expected):
    manager, _, masters, *_ = built
    good = next(p for (k, *_), (p, _) in masters.items() if k == "bias")
    bad = tmp_path / "bad.fits"
    with fits.open(good) as hdul:
        hdul[0].header[card] = value
        hdul.writeto(bad)
    (result, ok) = db.add_many([bad, good], manager)
    assert result.id is None and expected in result.error and str(value) in result.error
    assert ok.created


def test_instrument_option_must_agree_with_a_ccdflow_master(db, built):
    manager, _, masters, *_ = built
    path = next(p for (k, *_), (p, _) in masters.items() if k == "bias")
    with pytest.raises(Exception, match="--instrument efosc2 contradicts the file"):
        db.add(path, manager, instrument="efosc2")


def test_stale_says_when_the_used_master_was_marked_bad(db, built):
    manager, config, masters, science, root = built
    add_all(db, built)
    meta, rules = science[0], config.instrument.caldb
    used = {"bias": db.best("bias", meta, rules["bias"])[1]}
    db.record_product(root / "p.fits", meta, used)
    db.mark_bad(used["bias"].selected_id, "striping")
    (stale,) = db.stale(lambda inst, kind: rules[kind])
    assert f"bias {used['bias'].selected_id} was marked bad (striping)" in stale["reason"]


def test_bias_history_level_tracks_the_simulated_bias_level(db, built):
    from ccdflow.caldb.history import history

    manager, *_ = built
    add_all(db, built)
    series = history(db, "bias")
    assert len(series) == 2
    for point in series:  # simulator: 1000 ADU plus a few ADU of nightly drift and offsets
        assert point["value"] == pytest.approx(1000.0, abs=15.0)
