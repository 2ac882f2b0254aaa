"""Noise-aware dark choice: the caldb prefers the dark that adds the least noise once scaled.

The issue's case (a 120 s frame got a 60 s dark scaled x2 rather than a 300 s dark scaled x0.4)
through real master FITS files in a real SQLite file and PostgreSQL database, the receipts
(`caldb best`, the product's), and a property over random candidate sets.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ccdflow.caldb import CalDB
from ccdflow.caldb.selection import CalRecord, select
from ccdflow.cli import _add_commands, cli
from ccdflow.framework.engine.plugins import get_plugin_manager
from ccdflow.testing import fake_instrument, make_meta

if "caldb" not in cli.commands:
    _add_commands()

NIGHT = datetime(2026, 3, 6, 22, 0)
GAIN, RN = 1.5, 7.0            # e-/ADU, e-
RATE_ADU = 0.02                # ADU/s at -20 C: 0.03 e-/s
RAW = (40, 60)
RULE = fake_instrument().match_rule("dark")


def write_master(path, exposure: float, n: int, temperature: float = -20.0,
                 when: datetime = NIGHT) -> None:
    """A master dark as ccdflow writes its metadata (CF_ cards, NCOMBINE, CF_DKRT)."""
    hdr = fits.Header()
    for key, value in {"CF_MTYPE": "dark", "CF_INST": "generic", "CF_DATE": when.isoformat(),
                       "CF_BIN": "1x1", "CF_RAWSH": f"{RAW[0]}x{RAW[1]}", "CF_EXPT": exposure,
                       "CF_TEMP": temperature, "NCOMBINE": n, "CF_DKRT": RATE_ADU}.items():
        hdr[key] = value
    data = np.full(RAW, RATE_ADU * exposure, np.float32)
    fits.HDUList([fits.PrimaryHDU(header=hdr), fits.ImageHDU(data, name="SCI")]).writeto(path)


def frame_meta(path="sci.fits", **kw):
    values = dict(path=str(path), exposure_time=120.0, temperature=-20.0, shape=RAW, gain=GAIN,
                  read_noise=RN, date_obs=(NIGHT + timedelta(hours=1)).replace(tzinfo=UTC))
    values.update(kw)
    return make_meta(**values)


def added_variance(t_frame, t_dark, n, f_t=1.0, gain=GAIN, rn=RN, rate_adu=RATE_ADU):
    """What a master of n frames at t_dark adds to a frame, in e-**2, written out independently."""
    s = t_frame / t_dark * f_t
    return s * s * (rn * rn + rate_adu * gain * t_dark) / n


@pytest.fixture
def issue_db(caldb_url, tmp_path):
    """The issue's candidates: a 60 s and a 300 s master dark, five frames each, same night."""
    db = CalDB.create(caldb_url)
    manager = get_plugin_manager()
    ids = {}
    for exposure in (60.0, 300.0):
        path = tmp_path / f"dark_{exposure:g}s.fits"
        write_master(path, exposure, n=5)
        ids[exposure] = db.add(path, manager).id
    yield db, ids
    db.close()


def test_a_long_dark_scaled_down_beats_a_short_dark_scaled_up(issue_db, tmp_path):
    db, ids = issue_db
    meta = frame_meta()
    chosen, receipt = db.best("dark", meta, RULE)
    assert chosen["id"] == ids[300.0], receipt.candidates
    terms = {c.id: c.terms for c in receipt.candidates}
    rn2_dark_frame = RN ** 2 + RATE_ADU * GAIN * 120.0  # the frame's own detector variance
    for exposure, cid in ids.items():
        assert terms[cid]["noise"] == pytest.approx(
            added_variance(120.0, exposure, 5) / rn2_dark_frame, rel=1e-4)
        assert terms[cid]["exposure_scale"] == pytest.approx(120.0 / exposure)
        assert terms[cid]["n_combined"] == 5 and "rn 7 e-" in terms[cid]["noise_model"]
    # x2 adds ~20x the variance of x0.4: 4 (49 + 2.7) vs 0.16 (49 + 13.5)
    assert terms[ids[60.0]]["noise"] / terms[ids[300.0]]["noise"] > 15
    # the product's receipt (stored with it in the caldb) carries the terms
    pid = db.record_product(tmp_path / "reduced.fits", meta, {"dark": receipt}, config_hash="h")
    stored = db.used_by(ids[300.0])[0]
    assert stored["product_id"] == pid
    assert stored["receipt"]["cost_terms"]["noise"] == terms[ids[300.0]]["noise"]
    assert stored["receipt"]["temperature_law"] == {
        "law": "arrhenius", "band_gap_ev": 1.12, "doubling_c": None, "temperature_power": None,
        "measure": True, "measure_min_span_c": 3.0, "measured": None}  # one set point: not measured
    assert stored["receipt"]["scaling"] == pytest.approx(0.4)


def test_more_frames_win_among_exact_exposures_and_temperature_enters_the_scale(caldb_url, tmp_path):
    db = CalDB.create(caldb_url)
    manager = get_plugin_manager()
    few = tmp_path / "few.fits"
    many = tmp_path / "many.fits"
    warm = tmp_path / "warm.fits"
    write_master(few, 120.0, n=3)
    write_master(many, 120.0, n=15, when=NIGHT - timedelta(days=2))
    write_master(warm, 120.0, n=15, temperature=-18.5, when=NIGHT - timedelta(days=2))
    ids = {p.name: db.add(p, manager).id for p in (few, many, warm)}
    chosen, receipt = db.best("dark", frame_meta(), RULE)
    db.close()
    # 2 days older costs 2/30; 1/3 - 1/15 of the frame's variance is worth more
    assert chosen["id"] == ids["many.fits"]
    terms = {c.id: c.terms for c in receipt.candidates}
    f_t = RULE.temperature_law.factor(-20.0, -18.5)
    assert terms[ids["warm.fits"]]["temperature_factor"] == pytest.approx(f_t, rel=1e-5)
    frame_var = RN ** 2 + RATE_ADU * GAIN * 120.0
    assert terms[ids["warm.fits"]]["noise"] == pytest.approx(
        added_variance(120.0, 120.0, 15, f_t) / (RN ** 2 + f_t * RATE_ADU * GAIN * 120.0), rel=1e-4)
    assert terms[ids["many.fits"]]["noise"] == pytest.approx(
        added_variance(120.0, 120.0, 15) / frame_var, rel=1e-4)


def test_without_gain_and_read_noise_the_read_noise_limit_is_used_and_said(issue_db):
    db, ids = issue_db
    chosen, receipt = db.best("dark", frame_meta(gain=None, read_noise=None), RULE)
    assert chosen["id"] == ids[300.0]
    terms = {c.id: c.terms for c in receipt.candidates}
    assert terms[ids[60.0]]["noise"] == pytest.approx(2.0 ** 2 / 5)
    assert terms[ids[300.0]]["noise"] == pytest.approx(0.4 ** 2 / 5)
    assert "read-noise limit" in terms[ids[60.0]]["noise_model"]


def test_caldb_best_shows_the_cost_terms(issue_db, tmp_path):
    db, ids = issue_db
    url = db.url
    sci = tmp_path / "sci.fits"
    hdr = fits.Header({"IMAGETYP": "LIGHT", "EXPTIME": 120.0, "CCD-TEMP": -20.0, "GAIN": GAIN,
                       "RDNOISE": RN, "DATE-OBS": (NIGHT + timedelta(hours=1)).isoformat()})
    fits.PrimaryHDU(np.zeros(RAW, np.float32), header=hdr).writeto(sci)
    runner = CliRunner()
    text = runner.invoke(cli, ["caldb", "best", "--type", "dark", str(sci), "--caldb", url],
                         env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert f"selected dark {ids[300.0]}" in text.output
    assert "cost terms: time" in text.output and "noise" in text.output
    assert "x0.4 exposure" in text.output
    out = json.loads(runner.invoke(cli, ["caldb", "best", "--type", "dark", str(sci), "--caldb",
                                         url, "--json"]).stdout)
    noise = {c["id"]: c["terms"]["noise"] for c in out["candidates"]}
    assert noise[ids[60.0]] > noise[ids[300.0]]
    assert out["policy"]["temperature_law"]["law"] == "arrhenius"


def record(i: int, exposure: float, n: int) -> CalRecord:
    return CalRecord(id=i, type="dark", instrument="generic", detector="default", binning="1x1",
                     readout_mode="default", raw_shape=f"{RAW[0]}x{RAW[1]}", filter=None,
                     exposure_time=exposure, temperature=-20.0, obs_time=NIGHT, valid_from=None,
                     valid_to=None, quality="good", ingested_at=NIGHT, path=f"/m/{i}.fits",
                     n_combined=n, stats={"dark_rate": RATE_ADU})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([10.0, 30.0, 45.0, 60.0, 90.0, 180.0, 300.0, 600.0]),
                          st.integers(1, 30)), min_size=2, max_size=6),
       st.sampled_from([20.0, 100.0, 240.0]))
def test_with_all_else_equal_the_chosen_dark_adds_the_least_noise(candidates, t_frame):
    """Same night, temperature and setup: the choice minimises the added variance (exact
    exposures, which are always preferred, are left out of the draw)."""
    records = [record(i, t, n) for i, (t, n) in enumerate(candidates, 1) if t != t_frame]
    if not records:
        return
    chosen, _ = select("dark", frame_meta(exposure_time=t_frame), records, RULE)
    least = min(added_variance(t_frame, r.exposure_time, r.n_combined) for r in records)
    assert added_variance(t_frame, chosen.exposure_time, chosen.n_combined) == pytest.approx(
        least, rel=1e-6)


def test_old_cost_would_have_failed_the_issue():
    """The guard: |ln s| alone ranks x2 (0.69) ahead of x0.4 (0.92); the noise does not."""
    short, long_ = record(1, 60.0, 5), record(2, 300.0, 5)
    chosen, receipt = select("dark", frame_meta(), [short, long_], RULE)
    assert chosen.id == 2
    assert abs(math.log(2.0)) < abs(math.log(0.4))


def test_a_waived_pin_at_another_temperature_still_says_its_temperature_factor():
    """A pin past the temperature gate is scaled by the law when applied; its receipt says by
    how much (the cost is not computed: nothing is ranked)."""
    pinned = record(7, 30.0, 4)
    _, receipt = select("dark", frame_meta(exposure_time=60.0, temperature=-25.0), [], RULE,
                        pinned=pinned, waive=True)
    summary = receipt.summary()
    assert summary["temperature_factor"] == pytest.approx(RULE.temperature_law.factor(-25.0, -20.0),
                                                          rel=1e-5)
    assert summary["scaling"] == pytest.approx(2.0) and summary["waiver"]
