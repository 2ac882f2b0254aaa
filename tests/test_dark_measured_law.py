"""The temperature law measured from the caldb's own master darks (caldb/measured_law.py).

A camera's law is rarely known and a few percent off is several standard errors on a faint
sky: with master darks at temperatures spanning at least measure_min_span_c, their rates fit
the law's parameter, the receipt says so and the dark step applies that law."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.caldb import CalDB
from ccdflow.framework.engine.dark_law import BOLTZMANN_EV, KELVIN, TemperatureLaw, fit_law
from ccdflow.framework.engine.plugins import get_plugin_manager
from tests.test_dark_choice import NIGHT, RAW, frame_meta

ARRHENIUS = TemperatureLaw(law="arrhenius", band_gap_ev=1.12)


def arrhenius_rate(temp_c: float, band_gap: float, power: float = 1.5) -> float:
    t = temp_c + KELVIN
    return 1e6 * t**power * math.exp(-band_gap / (2 * BOLTZMANN_EV * t))


@pytest.mark.parametrize("band_gap", [0.9, 1.12, 1.3])
def test_the_band_gap_is_recovered_from_two_set_points(band_gap):
    points = [(t, arrhenius_rate(t, band_gap), f"t{t}") for t in (-15.0, -5.3)]
    fitted = fit_law(ARRHENIUS, points)
    assert fitted is not None and fitted.band_gap_ev == pytest.approx(band_gap, abs=1e-3)
    assert fitted.measured == "t-15.0, t-5.3"


def test_a_doubling_interval_is_recovered_and_bad_points_keep_the_given_law():
    doubling = TemperatureLaw(law="doubling", doubling_c=6.0)
    points = [(t, 0.1 * 2 ** (t / 4.5), str(t)) for t in (-25.0, -20.0, -15.0)]
    assert fit_law(doubling, points).doubling_c == pytest.approx(4.5, rel=1e-6)
    assert fit_law(doubling, points[:1]) is None  # one temperature
    assert fit_law(doubling, [(-20.0, 0.1, "a"), (-18.0, 0.2, "b")]) is None  # span < 3 C
    assert fit_law(doubling, [(-20.0, 0.1, "a"), (-10.0, -0.2, "b")]) is None  # a negative rate
    assert fit_law(ARRHENIUS, [(-20.0, 0.1, "a"), (-10.0, 0.1001, "b")]) is None  # flat: not physical


def _master(path, temperature: float, rate_adu: float, exposure: float = 300.0, n: int = 7) -> None:
    hdr = fits.Header()
    for key, value in {"CF_MTYPE": "dark", "CF_INST": "generic", "CF_DATE": NIGHT.isoformat(),
                       "CF_BIN": "1x1", "CF_RAWSH": f"{RAW[0]}x{RAW[1]}", "CF_EXPT": exposure,
                       "CF_TEMP": temperature, "NCOMBINE": n, "CF_DKRT": rate_adu}.items():
        hdr[key] = value
    rng = np.random.default_rng(int(abs(temperature) * 10))
    data = (rate_adu * exposure + rng.normal(0, 0.5, RAW)).astype(np.float32)
    fits.HDUList([fits.PrimaryHDU(header=hdr), fits.ImageHDU(data, name="SCI")]).writeto(path)


def test_the_caldb_measures_the_law_and_the_receipt_and_the_dark_step_use_it(tmp_path):
    """Darks at -20 and -10 C of a camera whose rate doubles every 5 C: the frame at -18 C gets
    the -20 C dark scaled by 2**(2/5) = 1.32 (silicon's default 1.12 eV would give 1.23)."""
    from ccdflow.testing import make_ccd, run_step

    db = CalDB.create(f"sqlite:///{tmp_path / 'caldb.sqlite'}")
    try:
        manager = get_plugin_manager()
        for temp in (-20.0, -10.0):
            _master(tmp_path / f"d{temp:g}.fits", temp, 0.02 * 2 ** ((temp + 20) / 5))
            db.add(tmp_path / f"d{temp:g}.fits", manager)
        rule = manager.instruments["generic"].match_rule("dark", manager)
        meta = frame_meta(temperature=-18.0, exposure_time=300.0,
                          date_obs=(NIGHT + timedelta(hours=1)))
        record, receipt = db.best("dark", meta, rule)
        summary = receipt.summary()
        law = TemperatureLaw.model_validate(summary["temperature_law"])
        assert law.law == "arrhenius" and law.measured and "-20.00 C" in law.measured
        # the arrhenius curve through both points, 2 C from one end: within 1 % of the camera's
        # doubling law; silicon's 1.12 eV would say 1.23
        assert summary["temperature_factor"] == pytest.approx(2 ** 0.4, rel=0.012)
        with fits.open(record["path"]) as hdul:
            dark = make_ccd(data=hdul["SCI"].data.astype(np.float32), header=dict(hdul[0].header))
        frame = make_ccd(data=np.full(RAW, 500.0, np.float32), header={"CF_BIAS": "DONE"})
        from ccdflow.framework.engine.step import StepContext
        out = run_step("dark", frame, calibrations={"dark": dark},
                       context=StepContext(meta, manager.instruments["generic"],
                                           receipts={"dark": summary}))
        assert out.header["CF_DKTSC"] == pytest.approx(summary["temperature_factor"], rel=1e-5)
        assert "measured from caldb" in " ".join(str(h) for h in out.header["HISTORY"])
    finally:
        db.close()
