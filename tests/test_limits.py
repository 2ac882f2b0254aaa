"""Per-frame limits: absurd header values refused when scanned, with file, keyword, value and
range; the values real cameras write still accepted; docs/instruments.md in step with the table."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import ccdflow.plugins.instruments as builtin_instruments
from ccdflow.framework.builders.reduction import observing_night
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.plugins import PluginManager
from ccdflow.framework.headers import limits
from ccdflow.framework.headers.header_map import normalise
from ccdflow.framework.headers.scan import scan_file
from tests.conftest import make_meta
from tests.test_header_map import eso, header

DOCS = Path(__file__).resolve().parents[1] / "docs" / "instruments.md"


@pytest.fixture(scope="module")
def builtin() -> PluginManager:
    manager = PluginManager(strict=True)
    manager.register(builtin_instruments, "builtin_instruments")
    return manager


@pytest.fixture(scope="module")
def generic(builtin):
    return builtin.instrument("generic")


def refused(instrument, cards: fits.Header) -> UnprocessableInputError:
    with pytest.raises(UnprocessableInputError) as info:
        normalise(instrument, [cards], "night/f.fits")
    assert info.value.path == "night/f.fits"
    return info.value


@pytest.mark.parametrize(("cards", "keyword", "message"), [
    ({"DATE-OBS": "0001-01-01T00:00:00"}, "DATE-OBS", "outside the accepted years"),
    ({"DATE-OBS": "9999-12-31T23:59:59"}, "DATE-OBS", "outside the accepted years"),
    ({"DATE-OBS": "1899-12-31T23:59:59"}, "DATE-OBS", "outside the accepted years"),
    ({"DATE-OBS": 1e300}, "DATE-OBS", "outside the accepted years"),  # an MJD no calendar holds
    ({"EXPTIME": 1e300}, "EXPTIME", "exposure time is outside the accepted range"),
    ({"EXPTIME": 1.0000001e6}, "EXPTIME", "exposure time is outside the accepted range"),
    ({"EXPTIME": -1.0}, "EXPTIME", "exposure time is outside the accepted range"),
    ({"EXPTIME": 0.0}, "EXPTIME", "a science frame needs an exposure time above 0 s"),
    ({"EXPTIME": 0.0, "IMAGETYP": "DARK"}, "EXPTIME", "a dark frame needs an exposure time above 0 s"),
    ({"EXPTIME": 0.0, "IMAGETYP": "FLAT"}, "EXPTIME", "a flat frame needs an exposure time above 0 s"),
    ({"GAIN": 0}, "GAIN", "gain is outside the accepted range"),
    ({"GAIN": 1e300}, "GAIN", "gain is outside the accepted range"),
    ({"EGAIN": -1.0}, "EGAIN", "gain is outside the accepted range"),
    ({"RDNOISE": 1e300}, "RDNOISE", "read noise is outside the accepted range"),
    ({"RDNOISE": -0.1}, "RDNOISE", "read noise is outside the accepted range"),
    ({"CCD-TEMP": 1e6}, "CCD-TEMP", "temperature is outside the accepted range"),
    ({"CCD-TEMP": -300.0}, "CCD-TEMP", "temperature is outside the accepted range"),
    ({"XBINNING": 1000}, "XBINNING", "binning is outside the accepted range"),
    ({"CCDSUM": "128 128"}, "CCDSUM", "binning is outside the accepted range"),
    ({"CCDSUM": "inf inf"}, "CCDSUM", "binning cannot be parsed"),
    ({"FILTER": "V" * 69}, "FILTER", "filter is 69 characters long"),
    ({"DETECTOR": "x" * 300}, "DETECTOR", "detector is 300 characters long"),
    ({"READOUTM": "y" * 100}, "READOUTM", "readout mode is 100 characters long"),
])
def test_absurd_values_are_refused_naming_keyword_value_and_range(generic, cards, keyword, message):
    error = refused(generic, header(**cards))
    assert message in str(error) and error.keyword == keyword
    assert error.expected and "expected" in str(error)


@pytest.mark.parametrize("cards", [
    {"DATE-OBS": "1900-01-01T00:00:00"}, {"DATE-OBS": "2200-12-31T23:59:59"},
    {"EXPTIME": 1e6}, {"EXPTIME": 0.0, "IMAGETYP": "BIAS"}, {"EXPTIME": 0.001},
    {"GAIN": 1000.0}, {"GAIN": 0.01}, {"RDNOISE": 0.0}, {"RDNOISE": 1000.0},
    {"CCD-TEMP": -273.15}, {"CCD-TEMP": 100.0}, {"CCD-TEMP": 180.2},  # 180.2 K: kelvin_above
    {"XBINNING": 64, "YBINNING": 64}, {"FILTER": "V" * 68},
])
def test_values_at_the_limits_are_accepted(generic, cards):
    normalise(generic, [header(**cards)], "f.fits")


def test_read_noise_of_zero_means_not_given_and_is_never_defaulted(generic):
    """0 in the header means "not given": the frame holds no value, and the steps' one resolver
    refuses it, naming the keyword, rather than use 0 e- (generic has no read noise of its own)."""
    from ccdflow.framework.engine.step import StepContext
    from ccdflow.plugins.steps.noise import detector_gain, detector_read_noise

    meta = normalise(generic, [header(RDNOISE=0.0, GAIN=2.0)], "f.fits")
    assert (meta.read_noise, meta.gain) == (None, 2.0)
    context = StepContext(meta, generic)
    assert detector_gain(context, "t") == 2.0
    with pytest.raises(UnprocessableInputError, match="t needs the read noise") as caught:
        detector_read_noise(context, "t")
    assert caught.value.keyword == "RDNOISE or READNOIS"


def test_a_zero_exposure_dark_that_the_instrument_calls_a_bias_is_accepted(builtin):
    meta = normalise(builtin.instrument("efosc2"), eso("CALIB", "DARK", "IMAGE", 0.0), "e.fits")
    assert meta.frame_type == "bias" and meta.exposure_time == 0.0


def test_a_zero_exposure_dark_is_refused_where_the_instrument_keeps_it_a_dark(generic):
    assert "dark frame needs" in str(refused(generic, header(IMAGETYP="DARK", EXPTIME=0.0)))


def test_scan_reports_a_refused_frame_with_its_reason(tmp_path, builtin):
    path = tmp_path / "old.fits"
    fits.PrimaryHDU(np.zeros((40, 60), np.int16), header(**{"DATE-OBS": "0001-01-01"})).writeto(path)
    with pytest.raises(UnprocessableInputError, match=r"old.fits: observation time is outside"):
        scan_file(path, builtin)


def test_observing_night_of_a_date_that_overflows_is_a_named_error():
    meta = make_meta(date_obs=datetime(1, 1, 1, 3, tzinfo=UTC), path="b.fits")
    with pytest.raises(UnprocessableInputError, match=r"b.fits: observation time has no observing night"):
        observing_night(meta)
    assert observing_night(make_meta(date_obs=datetime(2026, 3, 2, 5, tzinfo=UTC))) == "2026-03-01"


def test_docs_list_every_limit_as_the_code_has_it():
    text = DOCS.read_text()
    section = text[text.index("## What ccdflow refuses per frame"):]
    section = section[:section.index("\n## ", 3)]
    for limit in limits.RANGES:
        row = next((line for line in section.splitlines() if line.startswith(f"| {limit.name} |")), None)
        assert row is not None, f"docs/instruments.md has no row for {limit.name}"
        assert limit.text in row, (limit.text, row)
    assert f"{limits.FIRST_DATE:%Y-%m-%d} to {limits.END_DATE.year - 1}-12-31" in section
    assert re.search(rf"at most {limits.MAX_NAME} characters", section)
    assert all(t in section for t in limits.EXPOSED_TYPES)
