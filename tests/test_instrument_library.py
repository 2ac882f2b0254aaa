"""The instrument library (NINA, SharpCap, ASIImg, MaxIm DL, ACP, TheSkyX, KStars/Ekos, CCDOPS)
on real headers: each fixture in tests/data/headers/<program>/ (sources and changes in that
folder's README) is identified as its program's instrument, not generic, and every normalised
field equals what the header says.

Headers that carry no frame-type card (ASIImg, SharpCap, CCDOPS) are refused with an error
naming the keyword; their other fields are checked through the same instrument with the type
given, as a camera's own file (``extends: asiimg``...) would give it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

import ccdflow.plugins.instruments as builtin_instruments
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.header_spec import KeywordSpec
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.engine.plugins import PluginManager
from ccdflow.framework.headers.header_map import normalise
from ccdflow.framework.headers.scan import scan_file
from ccdflow.framework.io.fitsio import read_headers

HEADERS = Path(__file__).parent / "data" / "headers"


@dataclass(frozen=True)
class Want:
    """What one real header says, normalised (gain in e-/ADU; settings as text)."""

    instrument: str
    frame_type: str
    exposure: float
    filter: str | None
    date_obs: datetime
    temperature: float | None
    camera: str
    binning: tuple[int, int] = (1, 1)
    gain: float | None = None
    gain_setting: str | None = None
    offset: str | None = None
    read_noise: float | None = None
    readout_mode: str = "default"
    no_type_card: bool = False  # the header has no frame-type card: the type is given


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


WANT = {
    "nina/nina-1.9-asi183mm-light.fits": Want(
        "nina", "science", 60.0, "L", _utc(2020, 1, 21, 20, 29, 8, 357000), -20.0,
        "ZWO ASI183MM Pro", gain=0.020356755703688, gain_setting="50", offset="8"),
    "nina/nina-1.10-asi294mc-light.fits": Want(
        "nina", "science", 30.0, None, _utc(2021, 3, 2, 20, 19, 0, 455000), -10.0,
        "ZWO ASI294MC Pro", gain=1.00224268436432, gain_setting="120", offset="30"),
    "sharpcap/sharpcap-asi290mm-imagej.fits": Want(
        "sharpcap", "science", 2.0, None, _utc(2019, 4, 29, 20, 25, 29, 821958), 12.7,
        "ZWO ASI290MM Mini", no_type_card=True),
    "asiimg/asiimg-asi120mc-bias.fits": Want(
        "asiimg", "bias", 64e-6, None, _utc(2024, 4, 16, 15, 33, 10, 623000), 26.0,
        "ZWO ASI120MC-S", gain_setting="0", offset="9", no_type_card=True),
    "asiimg/asiimg-asi120mc-dark-10s.fits": Want(
        "asiimg", "dark", 10.0, None, _utc(2024, 4, 16, 15, 43, 46, 524000), 26.0,
        "ZWO ASI120MC-S", gain_setting="0", offset="9", no_type_card=True),
    "asiimg/asiimg-asi120mc-flat.fits": Want(
        "asiimg", "flat", 0.005, None, _utc(2024, 4, 18, 15, 23, 15, 741000), 24.5,
        "ZWO ASI120MC-S", gain_setting="0", offset="9", no_type_card=True),
    "maxim-dl/maxim-5.15-aspen-flat.fits": Want(
        "maxim-dl", "flat", 1.0, "R", _utc(2017, 4, 12, 3, 28, 40), -7.914703500000001,
        "Apogee Aspen CG16M", readout_mode="Monochrome"),
    # Feder's Alta: its own instrument (two identifying keywords) still wins over maxim-dl.
    "maxim-dl/maxim-4.10-alta-bias.fits": Want(
        "feder-apogee", "bias", 0.0, None, _utc(2012, 2, 6, 11, 45, 25), -35.0279865,
        "Apogee Alta", readout_mode="Monochrome"),
    "acp/acp-maxim-5.24-itelescope-light.fits": Want(
        "acp", "science", 300.0, "SII", _utc(2018, 7, 4, 14, 3, 3), -34.993802250000002,
        "Apogee USB/Net", readout_mode="Monochrome"),
    "acp/acp-maxim-6.18-aspen-light.fits": Want(
        "acp", "science", 90.0, "r", _utc(2018, 8, 23, 8, 49, 30), -19.984783500000002,
        "AspenCG16", readout_mode="Monochrome"),
    "theskyx/theskyx-10.5-dark-2x2.fits": Want(
        "theskyx", "dark", 120.0, None, _utc(2023, 8, 15, 2, 40, 0, 466000), -20.02,
        "ASCOM Camera", binning=(2, 2)),
    "kstars-ekos/indi-qsi-light.fits": Want(
        "kstars-ekos", "science", 900.0, "Ha", _utc(2018, 10, 13, 21, 12, 41, 560000), -20.0,
        "QSI CCD", gain=0.251),
    # CCDOPS's FILTER = 'None' is the text the header holds, not a missing filter.
    "ccdops/ccdops-5.47-st7-neon.fits": Want(
        "ccdops", "science", 10.0, "None", _utc(2013, 1, 28, 3, 8, 12), 4.455891600369,
        "SBIG ST-7", gain=1.74, readout_mode="6", no_type_card=True),
    # SGP and APT go to generic: GAIN = 120 is their setting, EGAIN the e-/ADU it must read.
    "generic/sgp-3.1-asi294mc-light.fits": Want(
        "generic", "science", 30.0, "HaOIII", _utc(2020, 5, 30, 0, 22, 49, 96882), -17.5,
        "ZWO ASI294MC Pro", gain=3.99000000953674),
    "generic/apt-3.54-asi294mc-light.fits": Want(
        "generic", "science", 240.0, None, _utc(2018, 9, 17, 21, 4, 46), None,
        "ZWO ASI294MC Pro", gain=1.00224268436432),
}


@pytest.fixture(scope="module")
def builtin() -> PluginManager:
    """Only ccdflow's own instruments, so an installed third-party plugin cannot interfere."""
    manager = PluginManager(strict=True)
    manager.register(builtin_instruments, "builtin_instruments")
    return manager


def _with_type(instrument: Instrument, kind: str) -> Instrument:
    """The instrument as a camera's file extending it would be: the frame type given."""
    spec = KeywordSpec(keyword=["IMAGETYP"], default=kind)
    return instrument.model_copy(
        update={"header": instrument.header.model_copy(update={"frame_type": spec})}
    )


def test_every_fixture_has_expectations() -> None:
    on_disk = {str(p.relative_to(HEADERS)) for p in HEADERS.glob("*/*.fits")}
    assert on_disk == {*WANT, SHARPCAP_RGB}


@pytest.mark.parametrize("name", sorted(WANT))
def test_real_header_is_read_as_its_program_says(name: str, builtin: PluginManager) -> None:
    want, path = WANT[name], str(HEADERS / name)
    headers = read_headers(path, complete=True)
    assert builtin.identify(headers) == want.instrument
    instrument = builtin.instrument(want.instrument)
    if want.no_type_card:
        with pytest.raises(UnprocessableInputError, match="missing frame_type") as info:
            scan_file(path, builtin)
        assert info.value.keyword == "IMAGETYP"
        meta = normalise(_with_type(instrument, want.frame_type), headers, path)
    else:
        meta = scan_file(path, builtin)
    assert (meta.instrument, meta.frame_type, meta.filter) == (
        want.instrument, want.frame_type, want.filter)
    assert meta.exposure_time == pytest.approx(want.exposure, rel=1e-12)
    assert meta.date_obs == want.date_obs
    assert meta.temperature == (None if want.temperature is None
                                else pytest.approx(want.temperature, abs=1e-9))
    assert meta.binning == want.binning
    assert meta.gain == (None if want.gain is None else pytest.approx(want.gain, rel=1e-12))
    assert (meta.gain_setting, meta.offset) == (want.gain_setting, want.offset)
    assert (meta.camera, meta.readout_mode, meta.read_noise) == (
        want.camera, want.readout_mode, want.read_noise)


SHARPCAP_RGB = "sharpcap/sharpcap-4.1-asi183mc-rgb.fits"


def test_sharpcap_reads_egainsav_serial_and_settings(builtin: PluginManager) -> None:
    """SharpCap 4.1's EGAIN (0.1226) is at the 12-bit ADC's depth; the saved ADU are 16x finer
    (EGAINSAV 0.00766). Its frame is a debayered RGB cube, refused as no 2-D image, so the
    fields are read from the same cards with the cube's third axis taken away."""
    path = str(HEADERS / SHARPCAP_RGB)
    headers = read_headers(path, complete=True)
    assert builtin.identify(headers) == "sharpcap"
    with pytest.raises(UnprocessableInputError, match="no 2-D image"):
        normalise(_with_type(builtin.instrument("sharpcap"), "science"), headers, path)
    flat = headers[0].copy()
    flat["NAXIS"] = 2
    del flat["NAXIS3"]
    meta = normalise(_with_type(builtin.instrument("sharpcap"), "science"), [flat], path)
    assert (meta.exposure_time, meta.temperature) == (280.0, -0.5)
    assert meta.date_obs == _utc(2025, 3, 19, 22, 51, 59, 384632)
    assert (meta.gain, meta.read_noise) == (0.00766, 1.7)
    assert (meta.gain_setting, meta.offset) == ("300", "8")
    assert meta.camera == "ZWO ASI183MC Pro #112E900511080900"


def test_nina_gain_setting_is_never_read_as_electrons_per_adu(builtin: PluginManager) -> None:
    """The same NINA header through generic (forced): EGAIN wins over GAIN = 120 there too."""
    path = str(HEADERS / "nina/nina-1.10-asi294mc-light.fits")
    meta = scan_file(path, builtin, instrument="generic")
    assert meta.gain == pytest.approx(1.00224268436432)


def test_the_library_ships_with_ccdflow(builtin: PluginManager) -> None:
    assert {"nina", "sharpcap", "asiimg", "maxim-dl", "acp", "theskyx", "kstars-ekos",
            "ccdops"} <= set(builtin.instruments)
