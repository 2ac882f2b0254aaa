"""Headers in the wild (issue 13 item 4): units, cards astropy cannot parse, dates in pieces or
as Julian dates, frame types from rules or file names, camera identity and CMOS settings, and the
provenance of every normalised value."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from astropy.io import fits
from pydantic import ValidationError

import ccdflow.plugins.instruments as builtin_instruments
from ccdflow.framework.engine.errors import ConfigError, UnprocessableInputError
from ccdflow.framework.engine.frame_type_rules import Condition
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.engine.plugins import PluginManager
from ccdflow.framework.headers.header_map import normalise, read_frame_meta
from ccdflow.framework.io.fitsio import read_headers

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
ZWO = REAL / "zwo-asi120mc-cmos"

BASE = {"SIMPLE": "T", "BITPIX": "16", "NAXIS": "2", "NAXIS1": "60", "NAXIS2": "40",
        "IMAGETYP": "'LIGHT'", "EXPTIME": "30.0", "DATE-OBS": "'2026-03-01T22:00:00'"}


def card(key: str, value: str, comment: str = "") -> bytes:
    """One 80-byte card exactly as given: values astropy would refuse to write are kept."""
    text = f"{key:<8}= {value:>20}" + (f" / {comment}" if comment else "")
    return text.ljust(80).encode("latin-1")


def raw_fits(path: Path, **values: str | None) -> str:
    """A header-only FITS file from card texts (None removes a BASE card); underscores in names
    stand for hyphens (DATE_OBS is DATE-OBS) unless the name is quoted in ``cards``."""
    merged = dict(BASE)
    for key, value in values.items():
        key = key.replace("__", "-")
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    block = b"".join(card(k, v) for k, v in merged.items()) + b"END".ljust(80)
    block = block.ljust(2880 * (len(block) // 2880 + 1), b" ")
    try:  # the pixels the header promises (zeros), so the file is complete, as a camera writes it
        size = abs(int(merged["BITPIX"])) // 8 * int(merged["NAXIS1"]) * int(merged["NAXIS2"])
    except (KeyError, ValueError):
        size = 0
    data = b"\0" * size
    path.write_bytes(block + data.ljust(-(-size // 2880) * 2880, b"\0"))
    return str(path)


def read(inst: Instrument, path: str):
    return read_frame_meta(inst, read_headers(path), path)


@pytest.fixture(scope="module")
def generic() -> Instrument:
    manager = PluginManager(strict=True)
    manager.register(builtin_instruments, "builtin_instruments")
    return manager.instrument("generic")


def variant(inst: Instrument, **header) -> Instrument:
    """``inst`` with header-map entries replaced (validated as YAML would be)."""
    data = inst.model_dump()
    data["header"].update(header)
    return Instrument.model_validate(data)


# -- units -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("unit", "raw", "seconds"), [
    ("us", "64", 6.4e-05), ("ms", "1500", 1.5), ("s", "30", 30.0), ("min", "2.5", 150.0),
    ("h", "0.5", 1800.0),
])
def test_exposure_units_convert_to_seconds(generic, tmp_path, unit, raw, seconds):
    inst = variant(generic, exposure_time={"keyword": ["EXPT"], "required": True, "unit": unit})
    reading = read(inst, raw_fits(tmp_path / "f.fits", EXPTIME=None, EXPT=raw))
    assert reading.meta.exposure_time == pytest.approx(seconds, rel=1e-12)
    (source,) = [s for s in reading.sources if s.field == "exposure_time"]
    assert source.keyword == "EXPT" and source.value == reading.meta.exposure_time
    if unit != "s":
        assert f"{float(raw):g} {unit} -> {seconds:g} s" in source.notes


def test_a_fallback_keyword_keeps_its_own_unit(generic, tmp_path):
    """ZWO: EXPOINUS (microseconds) after EXPTIME (seconds); generic lists it so."""
    reading = read(generic, raw_fits(tmp_path / "f.fits", EXPTIME=None, EXPOINUS="64"))
    assert reading.meta.exposure_time == 6.4e-05
    source = next(s for s in reading.sources if s.field == "exposure_time")
    assert (source.keyword, source.raw) == ("EXPOINUS", 64)


def test_fahrenheit_temperature(generic, tmp_path):
    inst = variant(generic, temperature={"keyword": ["CCD-TEMP"], "unit": "F"})
    meta = read(inst, raw_fits(tmp_path / "f.fits", **{"CCD__TEMP": "-4.0"})).meta
    assert meta.temperature == pytest.approx(-20.0)


# -- cards astropy cannot parse ----------------------------------------------------------------
def test_decimal_comma_card_is_read_with_a_warning(generic, tmp_path):
    path = raw_fits(tmp_path / "f.fits", EXPTIME="6,4E-05")
    headers = read_headers(path)
    with pytest.raises(fits.VerifyError, match="Unparsable card"):
        headers[0]["EXPTIME"]  # what astropy does, and what lost the frame before
    reading = read_frame_meta(generic, headers, path)
    assert reading.meta.exposure_time == 6.4e-05
    assert any("EXPTIME" in w and "unparsable" in w for w in reading.warnings)
    assert any("decimal comma in '6,4E-05'" in w for w in reading.warnings)
    with pytest.raises(fits.VerifyError):  # the caller's header is left as it was
        headers[0]["EXPTIME"]


def test_a_quoted_decimal_comma_is_read_too(generic, tmp_path):
    meta = read(generic, raw_fits(tmp_path / "f.fits", EXPTIME="'12,5'")).meta
    assert meta.exposure_time == 12.5


def test_an_unreadable_value_falls_back_to_the_next_keyword(generic, tmp_path):
    reading = read(generic, raw_fits(tmp_path / "f.fits", EXPTIME="1.2.3", EXPOSURE="30.0"))
    assert reading.meta.exposure_time == 30.0
    assert any(w.startswith("EXPTIME: exposure_time is not a number") and "EXPOSURE used instead" in w
               for w in reading.warnings)


def test_the_frame_is_refused_only_when_no_keyword_gives_a_value(generic, tmp_path):
    with pytest.raises(UnprocessableInputError) as info:
        read(generic, raw_fits(tmp_path / "f.fits", EXPTIME="1.2.3", EXPOSURE="'soon'"))
    err = info.value
    assert (err.keyword, err.value) == ("EXPTIME", "1.2.3")
    assert "not a number" in str(err) and "also unusable: EXPOSURE" in str(err)


def test_a_card_that_cannot_be_repaired_is_named(generic, tmp_path):
    path = raw_fits(tmp_path / "f.fits", FILTER="'V\x07\x1b'")
    with pytest.raises(UnprocessableInputError, match=r"Unparsable card \(FILTER\)") as info:
        read(generic, path)
    assert info.value.keyword == "FILTER"


def test_a_broken_card_nobody_needs_is_harmless(generic, tmp_path):
    meta = read(generic, raw_fits(tmp_path / "f.fits", OBJECT="1,2,3 x")).meta
    assert meta.exposure_time == 30.0


# -- dates -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("cards", "when"), [
    ({"DATE__OBS": "'2019-08-08'", "UTCSTART": "'00:42:29.7'"}, datetime(2019, 8, 8, 0, 42, 29, 700000)),
    ({"DATE__OBS": "'2019-08-08'", "UT__START": "'23:59:59'"}, datetime(2019, 8, 8, 23, 59, 59)),
    ({"DATE__OBS": "'2011-07-01'", "UT": "20.5"}, datetime(2011, 7, 1, 20, 30)),
    ({"DATE__OBS": "'2024-04-16T15:33:10.623'"}, datetime(2024, 4, 16, 15, 33, 10, 623000)),
    ({"DATE__OBS": "'2024-04-16T15:33:10.623Z'"}, datetime(2024, 4, 16, 15, 33, 10, 623000)),
    ({"DATE__OBS": "'03/12/96'", "UT": "'02:03:28'"}, datetime(1996, 12, 3, 2, 3, 28)),
    ({"DATE__OBS": None, "MJD__OBS": "58353.25"}, datetime(2018, 8, 23, 6, 0)),
    ({"DATE__OBS": None, "JD": "2458353.75"}, datetime(2018, 8, 23, 6, 0)),
])
def test_observation_time_forms(generic, tmp_path, cards, when):
    reading = read(generic, raw_fits(tmp_path / "f.fits", **cards))
    assert reading.meta.date_obs == when.replace(tzinfo=UTC)
    assert not [w for w in reading.warnings if "date" in w.lower() or "read as" in w]


def test_a_julian_date_without_a_unit_is_read_by_size_with_a_warning(generic, tmp_path):
    inst = variant(generic, date_obs={"keyword": ["MJD-OBS"], "required": True})
    reading = read(inst, raw_fits(tmp_path / "f.fits", **{"DATE__OBS": None, "MJD__OBS": "58353.25"}))
    assert reading.meta.date_obs == datetime(2018, 8, 23, 6, 0, tzinfo=UTC)
    assert any("read as MJD by its size" in w and "units: {MJD-OBS: mjd}" in w for w in reading.warnings)


def test_a_date_without_any_time_is_stamped_midnight_with_a_warning(generic, tmp_path):
    reading = read(generic, raw_fits(tmp_path / "f.fits", **{"DATE__OBS": "'2019-08-08'"}))
    assert reading.meta.date_obs == datetime(2019, 8, 8, tzinfo=UTC)
    assert any("holds only a date" in w and "UTCSTART" in w for w in reading.warnings)


def test_an_impossible_time_of_day_is_refused(generic, tmp_path):
    with pytest.raises(UnprocessableInputError, match="observation time cannot be parsed"):
        read(generic, raw_fits(tmp_path / "f.fits", **{"DATE__OBS": "'2019-08-08'", "UT": "'25:61:00'"}))


# -- frame type from rules and paths -----------------------------------------------------------
BIAS_RULE = [{"type": "bias", "when": [{"field": "exposure_time", "equals": 0},
                                        {"keyword": "SHUTTER", "matches": ["closed*", "0"]}]},
             {"type": "dark", "when": [{"keyword": "SHUTTER", "matches": "closed*"},
                                        {"field": "exposure_time", "above": 0}]}]


@pytest.mark.parametrize(("exptime", "shutter", "kind"), [
    ("0.0", "'CLOSED'", "bias"), ("0", "0", "bias"), ("10.0", "'Closed '", "dark"),
])
def test_frame_type_from_a_rule_over_several_keywords(generic, tmp_path, exptime, shutter, kind):
    inst = variant(generic, frame_type_rules=BIAS_RULE)
    meta = read(inst, raw_fits(tmp_path / "f.fits", IMAGETYP=None, EXPTIME=exptime, SHUTTER=shutter)).meta
    assert meta.frame_type == kind
    assert meta.note.startswith("frame type from rule: ") and "SHUTTER matches" in meta.note


def test_no_rule_holds_names_what_was_tried(generic, tmp_path):
    inst = variant(generic, frame_type_rules=BIAS_RULE)
    with pytest.raises(UnprocessableInputError, match="none of 2 frame_type_rules holds") as info:
        read(inst, raw_fits(tmp_path / "f.fits", IMAGETYP=None, SHUTTER="'OPEN'"))
    assert info.value.keyword == "IMAGETYP or OBSTYPE or FRAMETYP"


@pytest.mark.parametrize("bad", [
    {"keyword": "SHUTTER"},  # no test
    {"keyword": "SHUTTER", "field": "exposure_time", "equals": 0},  # two subjects
    {"field": "exposure_time", "present": True},
    {"keyword": "SHUTTER", "equals": 0, "eval": "__import__('os')"},  # no such thing
])
def test_a_malformed_condition_is_refused_when_the_yaml_loads(bad):
    with pytest.raises(ValidationError):
        Condition.model_validate(bad)


def test_a_rule_naming_an_unknown_type_is_a_config_error(generic, tmp_path):
    rule = {"type": "bais", "when": [{"keyword": "SHUTTER", "present": True}]}
    inst = variant(generic, frame_type_rules=[rule])
    with pytest.raises(ConfigError, match="'bais'"):
        read(inst, raw_fits(tmp_path / "f.fits", IMAGETYP=None, SHUTTER="'C'"))


PATHS = {"Bias/*": "bias", "dark*/*": "dark", "*flat*": "flat"}


def test_frame_type_from_folder_and_file_names_is_opt_in(generic, tmp_path):
    (tmp_path / "Dark_10s").mkdir()
    path = raw_fits(tmp_path / "Dark_10s" / "frame0001.fit", IMAGETYP=None)
    with pytest.raises(UnprocessableInputError, match="missing frame_type"):
        read(generic, path)
    meta = read(variant(generic, frame_type_paths=PATHS), path).meta
    assert meta.frame_type == "dark"
    assert meta.note == "frame type from the path: 'Dark_10s/frame0001.fit' matches 'dark*/*'"
    flat = read(variant(generic, frame_type_paths=PATHS),
                raw_fits(tmp_path / "skyFLAT_3.fits", IMAGETYP=None))
    assert flat.meta.frame_type == "flat"


def test_the_keyword_wins_over_the_path_unless_the_yaml_says_otherwise(generic, tmp_path):
    (tmp_path / "Bias").mkdir()
    path = raw_fits(tmp_path / "Bias" / "x.fits", IMAGETYP="'LIGHT'")
    assert read(variant(generic, frame_type_paths=PATHS), path).meta.frame_type == "science"
    path_first = variant(generic, frame_type_paths=PATHS, frame_type_from=["path", "header"])
    reading = read(path_first, path)
    assert reading.meta.frame_type == "bias"
    assert next(s for s in reading.sources if s.field == "frame_type").raw == "Bias/x.fits"


# -- camera identity and CMOS settings ---------------------------------------------------------
def test_camera_serial_gain_setting_and_offset(generic, tmp_path):
    inst = variant(generic, gain={}, camera_serial={"keyword": ["CAMSER"]},
                   gain_setting={"keyword": ["GAIN"]}, offset={"keyword": ["OFFSET"]})
    path = raw_fits(tmp_path / "f.fits", INSTRUME="'ZWO ASI294MC Pro'", CAMSER="'1a2b'", GAIN="120.0",
                    OFFSET="'30'")
    reading = read(inst, path)
    meta = reading.meta
    assert (meta.camera, meta.gain_setting, meta.offset, meta.gain) == (
        "ZWO ASI294MC Pro #1a2b", "120", "30", None)
    sources = {s.field: s for s in reading.sources}
    assert (sources["gain_setting"].keyword, sources["gain_setting"].raw, sources["gain_setting"].value) == (
        "GAIN", 120.0, "120")
    assert "serial number from CAMSER" in sources["camera"].notes


@pytest.mark.parametrize(("written", "text"), [("0", "0"), ("0.0", "0"), ("'0'", "0"), ("1.5", "1.5"),
                                               ("'HighGain'", "HighGain")])
def test_a_setting_is_the_same_text_however_it_is_written(generic, tmp_path, written, text):
    inst = variant(generic, gain={}, gain_setting={"keyword": ["GAIN"]})
    assert normalise(inst, read_headers(raw_fits(tmp_path / "f.fits", GAIN=written))).gain_setting == text


def test_camera_is_the_instrume_value_by_default(generic, tmp_path):
    assert read(generic, raw_fits(tmp_path / "a.fits", INSTRUME="'SBIG ST-7'")).meta.camera == "SBIG ST-7"
    assert read(generic, raw_fits(tmp_path / "b.fits")).meta.camera is None


# -- the real ZWO set ----------------------------------------------------------------------------
needs_zwo = pytest.mark.skipif(not ZWO.is_dir(), reason=f"real data not available: {ZWO} is missing")


@needs_zwo
def test_zwo_biases_read_through_the_unparsable_exptime(generic):
    """EXPTIME = 6,4E-05 (decimal comma) and EXPOINUS = 64 (us) agree on every bias; the darks
    and flats are read as written, and the folders give the type when the YAML says so."""
    zwo = variant(generic, gain={}, gain_setting={"keyword": ["GAIN"]}, offset={"keyword": ["OFFSET"]},
                  frame_type_paths={"Bias/*": "bias", "Dark_*/*": "dark", "Flat/*": "flat"})
    by_exptime = variant(zwo, exposure_time={"keyword": ["EXPOINUS"], "unit": "us", "required": True})
    files = sorted(ZWO.rglob("*.fit"))
    assert len(files) == 40
    for path in files:
        reading = read(zwo, str(path))
        meta = reading.meta
        assert meta.exposure_time == read(by_exptime, str(path)).meta.exposure_time
        assert meta.frame_type == {"Bias": "bias", "Flat": "flat"}.get(path.parent.name, "dark")
        assert (meta.camera, meta.gain_setting, meta.offset) == ("ZWO ASI120MC-S", "0", "9")
        if meta.frame_type == "bias":
            assert meta.exposure_time == 6.4e-05
            assert any("decimal comma" in w for w in reading.warnings)
        else:
            assert not reading.warnings
        assert meta.date_obs.year == 2024 and meta.date_obs.microsecond % 1000 == 0


def test_identification_reads_an_unparsable_card_too(tmp_path):
    """An identify keyword astropy calls unparsable is matched on its text, not raised."""
    from ccdflow.framework.engine.identifier import matching_pattern

    headers = read_headers(raw_fits(tmp_path / "f.fits", INSTRUME="ZWO,ASI"))
    with pytest.raises(fits.VerifyError):
        headers[0]["INSTRUME"]
    assert matching_pattern(headers, "INSTRUME", ["efosc*", "zwo,*"]) == "zwo,*"
