"""Gain and read noise are never silently defaulted (issue 13 item 7), and come per CMOS gain
setting from a table (item 6): header, then gain_table/read_noise_table, then the instrument's
own numbers, then an explicit `assume:` recorded in the product and flagged in the night report,
else a named error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from pydantic import ValidationError

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.engine.step import StepContext
from ccdflow.framework.io import cards
from ccdflow.plugins.steps.noise import detector_gain, detector_read_noise, resolve
from ccdflow.simulator import SimulationSpec, simulate_night
from ccdflow.testing import make_ccd, make_meta, run_step
from ccdflow.testing.fakes import FAKE_INSTRUMENT


def camera(**fields) -> Instrument:
    """The fake camera without gain or read noise of its own, plus ``fields``."""
    data = {k: v for k, v in FAKE_INSTRUMENT.items() if k not in ("gain", "read_noise")}
    return Instrument.model_validate({**data, **fields})


def context(inst: Instrument, **meta) -> StepContext:
    return StepContext(make_meta(instrument=inst.name, **meta), inst)


def test_generic_has_no_gain_or_read_noise_and_a_frame_without_them_is_refused():
    from ccdflow.testing import builtin_manager

    generic = builtin_manager().instrument("generic")
    assert (generic.gain, generic.read_noise) == (None, None)
    ctx = StepContext(make_meta(), generic)
    with pytest.raises(UnprocessableInputError, match="needs the gain") as caught:
        detector_gain(ctx, "the uncertainty step")
    assert "GAIN" in str(caught.value.keyword)
    assert "assume:" in str(caught.value)  # the error says which YAML line would help
    with pytest.raises(UnprocessableInputError, match="needs the read noise"):
        detector_read_noise(ctx, "t")


def test_the_steps_that_need_them_refuse_and_no_product_says_electron():
    inst = camera()
    meta = make_meta(instrument=inst.name)
    for step in ("uncertainty", "gain", "cosmicray"):
        with pytest.raises(UnprocessableInputError, match="needs the"):
            run_step(step, make_ccd(shape=(40, 60), level=100.0), meta=meta, instrument=inst)


def test_order_header_then_table_then_instrument_then_assumed():
    inst = camera(gain=2.0, gain_table={0: 0.25, "100": 0.1}, read_noise_table={"0": 6.5},
                  assume={"read_noise": 4.0})
    assert resolve(context(inst, gain=3.0), "gain", "t").source.startswith("header")
    assert resolve(context(inst, gain=3.0), "gain", "t").value == 3.0
    assert resolve(context(inst, gain_setting="100"), "gain", "t").value == 0.1
    assert resolve(context(inst, gain_setting="100.0"), "gain", "t").value == 0.1  # same number
    assert resolve(context(inst), "gain", "t").value == 2.0  # no setting in the header
    assert resolve(context(inst, gain_setting="0"), "read_noise", "t").value == 6.5
    assumed = resolve(context(inst), "read_noise", "t")
    assert (assumed.value, assumed.assumed) == (4.0, True)


def test_a_gain_setting_missing_from_the_table_is_a_named_error_listing_the_table():
    inst = camera(gain_table={"0": 0.25, "100": 0.1}, gain=1.0)
    with pytest.raises(UnprocessableInputError, match="gain setting '120'") as caught:
        detector_gain(context(inst, gain_setting="120"), "the gain step")
    assert "'0': 0.25" in str(caught.value) and "'100': 0.1" in str(caught.value)
    assert caught.value.value == "120"


def test_assume_and_a_measured_value_together_are_refused():
    with pytest.raises(ValidationError, match="both `read_noise` and `assume"):
        camera(read_noise=5.0, assume={"read_noise": 4.0})


def test_an_assumed_value_is_recorded_in_the_product():
    inst = camera(gain=1.5, assume={"read_noise": 4.0})
    meta = make_meta(instrument=inst.name)
    debiased = make_ccd(shape=(40, 60), level=100.0, header={"CF_BIAS": "DONE"})
    out = run_step("uncertainty", debiased, meta=meta, instrument=inst)
    assert cards.ARDN.get(out.header) == 4.0 and cards.AGAIN.get(out.header) is None
    assert out.header["CF_URN"] == 4.0
    assert cards.assumptions(out.header) == ["read noise 4 e- assumed (instrument `assume:`), not measured"]
    expected = np.sqrt(100.0 * 1.5 + 4.0 ** 2) / 1.5
    np.testing.assert_allclose(out.uncertainty.array, expected, rtol=1e-6)


def test_bunit_is_electron_with_an_assumed_gain_and_the_card_says_so():
    inst = camera(assume={"gain": 2.0})
    out = run_step("gain", make_ccd(shape=(40, 60), level=10.0), meta=make_meta(instrument=inst.name),
                   instrument=inst)
    assert str(out.unit) == "electron" and float(out.data[0, 0]) == 20.0
    assert cards.AGAIN.get(out.header) == 2.0 and "assumed" in out.header.comments["CF_GAINV"]


def test_cosmic_rays_in_electrons_use_the_gain_the_gain_step_applied():
    """After the gain step the gain is the one applied (CF_GAINV), not asked for again."""
    inst = camera(read_noise=5.0)
    meta = make_meta(instrument=inst.name, gain=2.0)
    electrons = run_step("gain", make_ccd(shape=(40, 60), level=10.0, noise=1.0), meta=meta, instrument=inst)
    out = run_step("cosmicray", electrons, meta=make_meta(instrument=inst.name), instrument=inst)
    assert out.header["CF_CRGN"] == 1.0 and out.header["CF_CRRN"] == 5.0


def test_the_night_report_flags_an_assumed_read_noise(tmp_path):
    """A camera whose headers lack RDNOISE, with `assume: {read_noise: 5.0}`: every product says
    so, and report.json and report.html flag it once with the number of files."""
    spec = SimulationSpec(shape=(48, 64), overscan=8, n_bias=3, n_dark=3, dark_exptimes=(60.0,),
                          dark_temperatures=(-20.0,), n_flat=3, filters=("V",), n_science=2)
    raw = simulate_night(tmp_path / "sim", spec).raw_dir
    for path in Path(raw).glob("*.fits"):
        with fits.open(path, mode="update") as hdul:
            del hdul[0].header["RDNOISE"]
    yaml = tmp_path / "nordn.yaml"
    yaml.write_text("name: nordn\nextends: generic\nassume: {read_noise: 5.0}\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "ccdflow", "night", str(raw), "--out", str(out),
                           "--caldb", str(tmp_path / "c.sqlite"), "--instrument-config", str(yaml),
                           "--instrument", "nordn", "--workers", "1", "--json"],
                          capture_output=True, text=True, timeout=600)
    report = json.loads((out / "report.json").read_text())
    reduced = [s for s in report["science"] if s["status"] == "reduced"]
    assert len(reduced) == 2, proc.stdout + proc.stderr
    line = "read noise 5 e- assumed (instrument `assume:`), not measured"
    assert all(s["assumed"] == [line] for s in reduced)
    # the small simulated night's masters of 3 frames are warned about too (masters.*.warn_below)
    assert [w for w in report["warnings"] if "warn_below" not in w] == [f"{line} (2 files)"]
    assert line in (out / "report.html").read_text()
    for entry in reduced:
        assert fits.getval(entry["path"], "CF_ARDN") == 5.0
