"""Header map: keyword lookup, value mapping, units, and the errors bad headers must give."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from astropy.io import fits

import ccdflow.plugins.instruments as builtin_instruments
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.engine.plugins import PluginManager
from ccdflow.framework.headers.header_map import match_value, normalise
from ccdflow.framework.headers.scan import scan_file, scan_paths
from ccdflow.framework.io.fitsio import read_ccd, read_headers


@pytest.fixture(scope="module")
def builtin() -> PluginManager:
    manager = PluginManager(strict=True)
    manager.register(builtin_instruments, "builtin_instruments")
    return manager


@pytest.fixture(scope="module")
def generic(builtin: PluginManager) -> Instrument:
    return builtin.instrument("generic")


def header(**cards) -> fits.Header:
    """A 2-D primary header with sensible defaults; ``None`` removes a card."""
    base = {"NAXIS": 2, "NAXIS1": 60, "NAXIS2": 40, "IMAGETYP": "LIGHT", "EXPTIME": 30.0,
            "DATE-OBS": "2026-03-01T22:00:00", "FILTER": "V", "CCD-TEMP": -20.0}
    base.update(cards)
    out = fits.Header()
    out["SIMPLE"] = True
    out["BITPIX"] = 16
    for key, value in base.items():
        if value is not None:
            out[key] = value
    return out


def write(path, *hdus: fits.PrimaryHDU | fits.ImageHDU | fits.BinTableHDU) -> str:
    fits.HDUList(list(hdus)).writeto(path)
    return str(path)


# -- value mapping ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("Bias Frame", "bias"), ("Dark Frame", "dark"), ("Light Frame", "science"),
        ("Flat Field", "flat"), ("BIAS", "bias"), ("zero", "bias"), ("DARK", "dark"),
        ("FLAT", "flat"), ("Sky Flat", "flat"), ("LIGHT", "science"), ("object", "science"),
        ("  light  ", "science"),
    ],
)
def test_frame_type_strings_from_common_programs(generic: Instrument, raw: str, kind: str):
    meta = normalise(generic, [header(IMAGETYP=raw)], "f.fits")
    assert meta.frame_type == kind


def test_match_value_is_case_insensitive_glob_first_match_wins():
    patterns = {"*flat*": "flat", "flat field": "never", "BIAS*": "bias"}
    assert match_value("Flat Field", patterns) == (True, "flat")
    assert match_value("bias frame", patterns) == (True, "bias")
    assert match_value("Tricolor Image", patterns) == (False, "Tricolor Image")


def test_unknown_frame_type_names_keyword_and_value(generic: Instrument):
    with pytest.raises(UnprocessableInputError) as info:
        normalise(generic, [header(IMAGETYP="Tricolor Image")], "f.fits")
    err = info.value
    assert (err.path, err.keyword, err.value) == ("f.fits", "IMAGETYP", "Tricolor Image")
    assert "'generic'" in str(err)


def test_strict_values_reject_unmapped_strings(generic: Instrument):
    hmap = generic.header.model_copy(deep=True)
    hmap.frame_type = hmap.frame_type.model_copy(update={"strict_values": True})
    strict = generic.model_copy(update={"header": hmap})
    with pytest.raises(UnprocessableInputError, match="expected one of"):
        normalise(strict, [header(IMAGETYP="calibration frame")], "f.fits")


# -- compound values (ESO DPR CATG|TYPE|TECH) ------------------------------------------------
def eso(catg: str | None, typ: str | None, tech: str | None, exptime: float = 10.0):
    cards = header(IMAGETYP=None, FILTER=None, **{"CCD-TEMP": None}, EXPTIME=exptime)
    for key, value in (("CATG", catg), ("TYPE", typ), ("TECH", tech)):
        if value is not None:
            cards[f"HIERARCH ESO DPR {key}"] = value
    cards["HIERARCH ESO DET TLM1 START"] = 160.0
    return [cards]


@pytest.mark.parametrize(
    ("catg", "typ", "tech", "exptime", "kind"),
    [
        ("CALIB", "DARK", "IMAGE", 0.0, "bias"),
        ("CALIB", "DARK", "IMAGE", 60.0, "dark"),
        ("CALIB", "BIAS", "IMAGE", 0.0, "bias"),
        ("CALIB", "SKY,FLAT", "IMAGE", 3.0, "flat"),
        ("CALIB", "FLAT,LAMP", "IMAGE", 3.0, "flat"),
        ("SCIENCE", "OBJECT", "IMAGE", 180.0, "science"),
        ("SCIENCE", "STD", "IMAGE", 10.0, "science"),
        ("CALIB", "FOCUS", "IMAGE", 1.0, "other"),
        ("CALIB", "FLAT", "SPECTRUM", 10.0, "spec_flat"),
        ("CALIB", "WAVE", "SPECTRUM", 1.6, "arc"),
        ("SCIENCE", "OBJECT", "SPECTRUM", 600.0, "spectrum"),
        ("SCIENCE", "STD", "SPECTRUM", 15.0, "spectrum"),
        ("SCIENCE", "OBJECT", "MOS", 600.0, "spectrum"),
        (None, "DARK", None, 0.0, "bias"),  # missing parts contribute ''
    ],
)
def test_eso_compound_frame_types(builtin, catg, typ, tech, exptime, kind):
    meta = normalise(builtin.instrument("efosc2"), eso(catg, typ, tech, exptime), "e.fits")
    assert meta.frame_type == kind
    assert meta.is_imaging == (kind in {"bias", "dark", "flat", "science"})


def test_compound_with_every_part_missing_is_a_missing_keyword(builtin):
    with pytest.raises(UnprocessableInputError, match="missing frame_type") as info:
        normalise(builtin.instrument("efosc2"), eso(None, None, None), "e.fits")
    assert "HIERARCH ESO DPR CATG" in info.value.keyword


# -- units -----------------------------------------------------------------------------------
def test_kelvin_is_converted_to_celsius(builtin):
    meta = normalise(builtin.instrument("efosc2"), eso("CALIB", "DARK", "IMAGE"), "e.fits")
    assert meta.temperature == pytest.approx(-113.15)


@pytest.mark.parametrize(("raw", "celsius"), [(-20.0, -20.0), (4.46, 4.46), (180.2, -92.95)])
def test_generic_reads_celsius_but_takes_values_above_100_as_kelvin(generic, raw, celsius):
    meta = normalise(generic, [header(**{"CCD-TEMP": raw})], "f.fits")
    assert meta.temperature == pytest.approx(celsius)


def test_implausible_temperature_is_an_error(builtin):
    feder = builtin.instrument("feder-apogee")  # plain Celsius, no kelvin fallback
    cards = header(INSTRUME="Apogee USB/Net", TELESCOP="FEDER", **{"CCD-TEMP": 180.2})
    with pytest.raises(UnprocessableInputError, match="temperature is outside the accepted range") as info:
        normalise(feder, [cards], "f.fits")
    assert info.value.keyword == "CCD-TEMP"


def test_exposure_in_milliseconds(generic):
    hmap = generic.header.model_copy(deep=True)
    hmap.exposure_time = hmap.exposure_time.model_copy(update={"unit": "ms"})
    inst = generic.model_copy(update={"header": hmap})
    assert normalise(inst, [header(EXPTIME=1500)], "f.fits").exposure_time == 1.5


# -- missing and nonsense keywords -----------------------------------------------------------
@pytest.mark.parametrize("key", ["EXPTIME", "DATE-OBS", "IMAGETYP"])
def test_missing_required_keyword_names_file_and_keyword(generic, key):
    cards = header(**{key: None})
    if key == "EXPTIME":
        cards.remove("EXPOSURE", ignore_missing=True)
    with pytest.raises(UnprocessableInputError) as info:
        normalise(generic, [cards], "night/f.fits")
    assert info.value.path == "night/f.fits"
    assert key in info.value.keyword
    assert str(info.value).startswith("night/f.fits: missing")


def test_blank_value_counts_as_missing(generic):
    cards = header(EXPTIME=None)
    cards["EXPTIME"] = "   "
    with pytest.raises(UnprocessableInputError, match="missing exposure_time"):
        normalise(generic, [cards], "f.fits")


@pytest.mark.parametrize(
    ("value", "message"),
    [("abc", "not a number"), ("NaN", "not finite"), ("inf", "not finite"),
     (-1.0, "exposure time is outside the accepted range")],
)
def test_nonsense_exposure_is_a_clear_error(generic, value, message):
    with pytest.raises(UnprocessableInputError, match=message) as info:
        normalise(generic, [header(EXPTIME=value)], "f.fits")
    assert info.value.keyword == "EXPTIME"
    assert info.value.path == "f.fits"


@pytest.mark.parametrize(
    ("cards", "message"),
    [({"DATE-OBS": "yesterday"}, "cannot be parsed"), ({"CCD-TEMP": "cold"}, "not a number"),
     ({"GAIN": -1.5}, "gain is outside the accepted range"), ({"CCDSUM": "two by two"}, "binning"),
     ({"XBINNING": 1.5}, "binning must be positive integers"),
     ({"NAXIS": 0}, "no HDU holds a 2-D image")],
)
def test_nonsense_optional_values_are_errors_too(generic, cards, message):
    with pytest.raises(UnprocessableInputError, match=message):
        normalise(generic, [header(**cards)], "f.fits")


# -- binning and time ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cards", "binning"),
    [({"CCDSUM": "2 2"}, (2, 2)), ({"CCDSUM": "1 2"}, (1, 2)), ({"CCDSUM": "3x3"}, (3, 3)),
     ({"XBINNING": 2, "YBINNING": 4}, (2, 4)), ({}, (1, 1)),
     ({"CCDSUM": "2 2", "XBINNING": 1}, (2, 2))],
)
def test_binning(generic, cards, binning):
    assert normalise(generic, [header(**cards)], "f.fits").binning == binning


@pytest.mark.parametrize(
    ("cards", "when"),
    [
        ({"DATE-OBS": "2013-07-13", "TIME-OBS": "00:57:33"}, datetime(2013, 7, 13, 0, 57, 33)),
        ({"DATE-OBS": "2013-07-13", "UT": "00:57:33.5"},
         datetime(2013, 7, 13, 0, 57, 33, 500000)),
        ({"DATE-OBS": "2011-07-01", "UT": 20.5}, datetime(2011, 7, 1, 20, 30)),
        ({"DATE-OBS": "2013-07-13T01:02:03", "UT": "23:00:00"}, datetime(2013, 7, 13, 1, 2, 3)),
        ({"DATE-OBS": "2013-07-13 01:02:03"}, datetime(2013, 7, 13, 1, 2, 3)),
    ],
)
def test_date_only_date_obs_takes_the_time_from_time_obs(generic, cards, when):
    meta = normalise(generic, [header(**cards)], "f.fits")
    assert meta.date_obs == when.replace(tzinfo=UTC)


# -- multi-extension files -------------------------------------------------------------------
def mef(tmp_path, name="mef.fits") -> str:
    primary = fits.PrimaryHDU(header=header(NAXIS=None, NAXIS1=None, NAXIS2=None, FILTER="R"))
    table = fits.BinTableHDU.from_columns([fits.Column("x", "E", array=np.zeros(3))])
    image = fits.ImageHDU(np.full((8, 12), 7, np.uint16), name="im1")
    image.header["CCDSUM"] = "2 2"
    return write(tmp_path / name, primary, table, image)


def test_auto_data_hdu_finds_the_image_extension(tmp_path, builtin):
    path = mef(tmp_path)
    meta = scan_file(path, builtin)
    assert (meta.instrument, meta.frame_type, meta.shape) == ("generic", "science", (8, 12))
    assert (meta.binning, meta.filter) == ((2, 2), "R")  # extension first, then primary
    ccd = read_ccd(path, hdu="auto")
    assert ccd.shape == (8, 12) and ccd.header["IMAGETYP"] == "LIGHT"


def test_fixed_data_hdu_on_a_mef_says_where_the_pixels_are(tmp_path, builtin):
    path = mef(tmp_path)
    fixed = builtin.instrument("generic").model_copy(update={"data_hdu": 0})
    with pytest.raises(UnprocessableInputError, match="1 BINTABLE NAXIS=2, 2 IMAGE 'IM1' NAXIS=2"):
        normalise(fixed, read_headers(path), path)


def test_file_without_any_image_is_reported(tmp_path, builtin):
    table = fits.BinTableHDU.from_columns([fits.Column("x", "E", array=np.zeros(3))])
    empty = fits.PrimaryHDU(header=header(NAXIS=0, NAXIS1=None, NAXIS2=None))
    path = write(tmp_path / "table.fits", empty, table)
    with pytest.raises(UnprocessableInputError, match="no HDU holds a 2-D image"):
        scan_file(path, builtin)


# -- scanning many files ---------------------------------------------------------------------
def test_scan_paths_reports_bad_files_and_continues(tmp_path, builtin):
    good = write(tmp_path / "good.fits", fits.PrimaryHDU(np.zeros((40, 60), np.int16),
                                                         header=header(IMAGETYP="BIAS")))
    raw = (tmp_path / "good.fits").read_bytes()
    (tmp_path / "truncated.fits").write_bytes(raw[: len(raw) - 2880])
    (tmp_path / "half_header.fits").write_bytes(raw[:1000])
    (tmp_path / "garbage.fits").write_bytes(b"not a FITS file at all " * 200)
    (tmp_path / "empty.fit").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not scanned: not a FITS name")
    anon = header(IMAGETYP=None, INSTRUME="Mystery Cam")
    write(tmp_path / "anonymous.fits", fits.PrimaryHDU(np.zeros((4, 4), np.int16), header=anon))
    missing = str(tmp_path / "gone.fits")

    frames, unknown = scan_paths([tmp_path, missing], builtin)

    assert [f.path for f in frames] == [good]
    assert frames[0].frame_type == "bias"
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in unknown}
    assert set(reasons) == {"truncated.fits", "half_header.fits", "garbage.fits", "empty.fit",
                            "anonymous.fits", "gone.fits"}
    assert "truncated" in reasons["truncated.fits"]
    assert "not a readable FITS file" in reasons["garbage.fits"]
    assert "not a readable FITS file" in reasons["half_header.fits"]
    assert "file not found" in reasons["gone.fits"]
    assert "INSTRUME='Mystery Cam'" in reasons["anonymous.fits"]
    assert "IMAGETYP absent" in reasons["anonymous.fits"]
    assert all(r.startswith(str(tmp_path)) for r in reasons.values())  # path first


def test_truncated_file_is_an_error_for_scan_file(tmp_path, builtin):
    write(tmp_path / "f.fits", fits.PrimaryHDU(np.zeros((100, 100), np.int16), header=header()))
    raw = (tmp_path / "f.fits").read_bytes()
    (tmp_path / "cut.fits").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UnprocessableInputError, match="truncated"):
        scan_file(tmp_path / "cut.fits", builtin)
    assert read_headers(tmp_path / "cut.fits")[0]["IMAGETYP"] == "LIGHT"  # lenient by default


def test_named_instrument_overrides_identification(tmp_path, builtin):
    path = write(tmp_path / "f.fits", fits.PrimaryHDU(np.zeros((4, 4), np.int16),
                                                      header=header(INSTRUME="Apogee USB/Net",
                                                                    TELESCOP="FEDER")))
    assert scan_file(path, builtin).instrument == "feder-apogee"
    assert scan_file(path, builtin, instrument="generic").instrument == "generic"


def test_unknown_instrument_name_is_a_config_error_for_the_whole_scan(tmp_path, builtin):
    from ccdflow.framework.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown instrument 'nope'"):
        scan_paths([tmp_path], builtin, instrument="nope")
