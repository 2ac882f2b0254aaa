"""Every real file in ../shared/data/real is classified as its README says, or reported
unknown with a reason that names what is missing.

Expectations come from the folder READMEs (role, EXPTIME, filter, binning, temperature).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import ccdflow.plugins.instruments as builtin_instruments
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.plugins import PluginManager, get_plugin_manager
from ccdflow.framework.headers.geometry import amplifier_regions
from ccdflow.framework.headers.scan import iter_fits_files, scan_file, scan_paths
from ccdflow.framework.io.fitsio import read_ccd, read_headers

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
if not REAL.is_dir():
    pytest.skip(
        f"real data not available: {REAL} is missing (repository checked out without ../shared)",
        allow_module_level=True,
    )

FILES = list(iter_fits_files([REAL]))
DOCS = {"README.md", "SHA256SUMS", "image_metadata.csv"}


@dataclass(frozen=True)
class Expect:
    """What scanning one file must give; ``instrument=None`` means reported unknown."""

    instrument: str | None
    frame_type: str | None = None
    filter: str | None = None
    exposure: float | None = None
    binning: tuple[int, int] = (1, 1)
    temperature: float | None = None  # Celsius, compared to 0.01
    reason: tuple[str, ...] = ()  # substrings of the unknown reason


# -- efosc-ntt: 5 bias, 3 imaging flats, 6 imaging science, 10 spectroscopic --------------
_EFOSC_TEMP = 160.0 - 273.15  # HIERARCH ESO DET TLM1 START = 160.0 K
_EFOSC = {
    "2022-01-26T19-02-38.210": ("bias", "Free", 0.0),
    "2022-01-26T19-03-08.542": ("bias", "Free", 0.0),
    "2022-01-26T19-03-39.513": ("bias", "Free", 0.0),
    "2022-01-26T19-04-10.535": ("bias", "Free", 0.0),
    "2022-01-26T19-04-41.537": ("bias", "Free", 0.0),
    "2022-01-26T19-18-58.464": ("spec_flat", "Free", 10.3120),
    "2022-01-26T19-21-12.485": ("spec_flat", "Free", 10.3131),
    "2022-01-26T19-21-57.491": ("spec_flat", "Free", 10.3117),
    "2022-01-26T19-37-39.560": ("arc", "Free", 1.6049),
    "2022-01-27T02-31-32.701": ("spectrum", "Free", 600.0005),
    "2022-01-27T04-46-29.093": ("spectrum", "Free", 600.0026),
    "2022-01-28T00-08-16.282": ("flat", "g#782", 3.3005),
    "2022-01-28T00-08-54.737": ("flat", "g#782", 3.8006),
    "2022-01-28T00-09-33.792": ("flat", "g#782", 4.4005),
    "2022-01-28T04-54-24.341": ("science", "g#782", 180.0057),
    "2022-01-28T05-05-25.843": ("science", "g#782", 180.0092),
    "2022-01-28T05-09-05.986": ("science", "g#782", 180.0065),
    "2022-01-28T08-37-47.742": ("science", "g#782", 119.9994),
    "2022-01-28T08-40-27.113": ("science", "g#782", 120.0006),
    "2022-01-28T08-43-07.204": ("science", "g#782", 120.0003),
    "2022-01-29T01-12-03.548": ("spectrum", "Free", 15.0033),
    "2022-01-30T11-13-22.132": ("spec_flat", "Free", 24.5430),
    "2022-01-30T11-16-19.090": ("spec_flat", "Free", 24.5438),
    "2022-01-30T11-17-18.092": ("spec_flat", "Free", 24.5441),
}

# -- header-zoo ------------------------------------------------------------------------------
_NO_ID = "no instrument recognises"
_ZOO = {
    "midas-NOT-alfosc-flat.fits.gz": Expect("generic", "flat", None, 1.0, temperature=0.0),
    "midas-badfitskeys-dfosc-skyflat.fits.gz": Expect(
        None, reason=(_NO_ID, "INSTRUME='DFOSC_FASU'", "IMAGETYP absent")
    ),
    # MaxIm DL files of other cameras are read by the maxim-dl library file.
    "msumastro-aspen_trimmed.fit": Expect("maxim-dl", "flat", "R", 1.0, temperature=-7.91),
    **{
        f"msumastro-biastest{i}.fit": Expect("feder-apogee", "bias", None, 0.0, temperature=t)
        for i, t in enumerate([-35.03, -34.87, -35.16, -35.09, -35.12], start=1)
    },
    **{
        f"msumastro-darktest{i}.fit": Expect("feder-apogee", "dark", None, 30.0, temperature=t)
        for i, t in enumerate([-35.03, -34.87, -35.16, -35.09, -35.12], start=1)
    },
    "msumastro-celestron_nightscape_10100_astro_fx_v106.fit": Expect(
        "generic", "science", None, 60.0, temperature=-5.94
    ),
    # Named "flat", but the header says BIAS: the header wins.
    "msumastro-flattest.fit": Expect("feder-apogee", "bias", None, 0.0, temperature=-35.03),
    "msumastro-maximdl_5_21_header.fit": Expect("feder-apogee", "science", "R", 90.0,
                                                temperature=-42.00),
    "msumastro-maximdl_5_23_header.fit": Expect("feder-apogee", "science", "B", 90.0,
                                                temperature=-40.01),
    "msumastro-maximdl_6_16_header.fit": Expect("feder-apogee", "science", "B", 90.0,
                                                temperature=-40.01),
    # Aspen CG16: a different Feder camera, run by ACP (LAT-OBS/LONG-OBS/ALT-OBS): acp.yaml.
    "msumastro-maximdl_6_18_header.fit": Expect("acp", "science", "r", 90.0,
                                                temperature=-19.98),
    # CCDOPS writes no frame-type card: identified, then refused naming the missing keyword.
    "msumastro-neon-on-dome-10-sec-high-res-though-scope.fit": Expect(
        None, reason=("missing frame_type for instrument 'ccdops'", "IMAGETYP")
    ),
    "msumastro-uint16.fit": Expect("feder-apogee", "science", "R", 90.0, temperature=-19.91),
    "msumastro-uint16_missing_filter.fit": Expect("feder-apogee", "science", None, 90.0,
                                                  temperature=-19.91),
    "msumastro-uint16_no_pointing.fit": Expect("feder-apogee", "science", "R", 90.0,
                                               temperature=-19.91),
    "msumastro-uint16_not_m101.fit": Expect("feder-apogee", "science", "R", 90.0,
                                            temperature=-19.91),
    "stellarphot-TIC-367710318-tiny.fit.bz2": Expect("acp", "science", "rp", 90.0,
                                                     temperature=-30.07),
    "stellarphot-TIC-402828941-tiny.fit.bz2": Expect("acp", "science", "ip", 120.0,
                                                     temperature=-30.03),
    "stellarphot-wasp-10-tiny.fit.bz2": Expect("acp", "science", "r", 90.0,
                                               temperature=-20.04),
}

# -- cosmic-ray-frames -----------------------------------------------------------------------
_CR = {
    # IRAF IMAGETYP='object'; CCD-TEMP = 180.2 is kelvin (Cu block), FILTERS = 48.
    "saao1m-ste3-a8280271.fits": Expect("generic", "science", "48", 150.04,
                                        temperature=180.2 - 273.15),
    # Processed (DRAGONS) and calibrated (HST) products are not raw frames for ccdflow.
    "gmos-s-S20190808S0048-cutout.fits": Expect(
        None, reason=(_NO_ID, "INSTRUME='GMOS-S'", "IMAGETYP absent")
    ),
    "hst-acs-hrc-j8bt06nyq-flt-crflagged.fits.gz": Expect(
        None, reason=("unrecognised frame type", "IMAGETYP", "'EXT'")
    ),
}

# -- zwo-asi120mc-cmos: ASIImg headers without IMAGETYP (type only in file/folder names) ------
# Identified as ASIImg's (SWCREATE); the type from ASIImg's own file names (Bias_ASIImg_...), the
# exposure from EXPOINUS (us; EXPTIME '6,4E-05' has a decimal comma), 24.5-26 C uncooled.
_ZWO_FOLDERS = {"Bias": ("bias", 64e-6), "Dark_1s": ("dark", 1.0), "Dark_10s": ("dark", 10.0),
                "Dark_100s": ("dark", 100.0), "Flat": ("flat", 0.005)}

_FEDER_FLAT_EXPTIME = {"B": 120.0, "V": 30.0, "R": 15.0, "I": 5.0}
_FEDER_TEMPS = {  # spot checks from the README table; the rest are -18.4 .. -22.45 C
    "flood-flat-002B.fit.gz": -22.45, "flood-flat-007B.fit.gz": -18.41,
    "darks-001D120.fit.gz": -18.66, "SA112-SF1-003I1.fit.gz": -18.67,
    "flood-flat-001bias.fit.gz": -18.71,
}


def _feder(name: str) -> Expect:
    """The mini files' names encode role, filter and exposure (see the folder README)."""
    temp = _FEDER_TEMPS.get(name)
    if m := re.fullmatch(r"SA112-SF1-\d{3}([BVRI])1\.fit\.gz", name):
        band = m.group(1)
        return Expect("feder-apogee", "science", band, 60.0 if band == "B" else 30.0,
                      temperature=temp)
    if m := re.fullmatch(r"darks-\d{3}D(\d+)\.fit\.gz", name):
        return Expect("feder-apogee", "dark", "R", float(m.group(1)), temperature=temp)
    if re.fullmatch(r"flood-flat-\d{3}bias\.fit\.gz", name):
        return Expect("feder-apogee", "bias", "R", 0.0, temperature=temp)
    if m := re.fullmatch(r"flood-flat-\d{3}([BVRI])\.fit\.gz", name):
        band = m.group(1)
        return Expect("feder-apogee", "flat", band, _FEDER_FLAT_EXPTIME[band], temperature=temp)
    raise KeyError(name)


def expected(path: Path) -> Expect:
    folder, name = path.parent.name, path.name
    if path.parent.parent.name == "zwo-asi120mc-cmos" and folder in _ZWO_FOLDERS:
        kind, exposure = _ZWO_FOLDERS[folder]
        return Expect("asiimg", kind, None, exposure)
    if folder == "efosc-ntt":
        kind, filt, exptime = _EFOSC[name.removeprefix("EFOSC.").removesuffix(".fits.gz")]
        return Expect("efosc2", kind, filt, exptime, (2, 2), _EFOSC_TEMP)
    if folder == "feder-apogee-mini":
        return _feder(name)
    return {"header-zoo": _ZOO, "cosmic-ray-frames": _CR}[folder][name]


@pytest.fixture(scope="module")
def builtin() -> PluginManager:
    """Only ccdflow's own instruments, so an installed third-party plugin cannot interfere."""
    manager = PluginManager(strict=True)
    manager.register(builtin_instruments, "builtin_instruments")
    return manager


def _rel(path: str | Path) -> str:
    return str(Path(path).relative_to(REAL))


@pytest.mark.parametrize("path", FILES, ids=_rel)
def test_real_file_is_classified_or_reported(path: str, builtin: PluginManager) -> None:
    want = expected(Path(path))
    if want.instrument is None:
        with pytest.raises(UnprocessableInputError) as info:
            scan_file(path, builtin)
        for text in (path, *want.reason):
            assert text in str(info.value)
        return
    meta = scan_file(path, builtin)
    assert (meta.instrument, meta.frame_type, meta.filter) == (
        want.instrument, want.frame_type, want.filter,
    )
    assert meta.exposure_time == pytest.approx(want.exposure, abs=1e-4)
    assert meta.binning == want.binning
    if want.temperature is not None:
        assert meta.temperature == pytest.approx(want.temperature, abs=0.01)
    assert meta.path == path
    assert meta.date_obs.tzinfo is not None
    assert meta.is_imaging == (meta.frame_type in {"bias", "dark", "flat", "science"})


def test_every_file_is_covered() -> None:
    """Each FITS file has an expectation and nothing else hides in the data folders."""
    for path in FILES:
        expected(Path(path))
    others = {p.name for p in REAL.rglob("*") if p.is_file() and str(p) not in FILES}
    assert others <= DOCS
    table = {*(f"EFOSC.{k}.fits.gz" for k in _EFOSC), *_ZOO, *_CR}
    assert table <= {Path(p).name for p in FILES}, "table names a file that is not there"


def test_scan_paths_reports_unknowns_and_counts_per_folder(builtin: PluginManager) -> None:
    frames, unknown = scan_paths([REAL], builtin)
    assert len(frames) + len(unknown) == len(FILES)
    zwo = Counter((f.frame_type, f.exposure_time, f.camera, f.gain_setting, f.offset)
                  for f in frames if f.instrument == "asiimg")
    camera = ("ZWO ASI120MC-S", "0", "9")
    assert zwo == {("bias", 64e-6, *camera): 15, ("dark", 1.0, *camera): 5, ("dark", 10.0, *camera): 5,
                   ("dark", 100.0, *camera): 5, ("flat", 0.005, *camera): 10}
    assert sorted(Path(p).name for p, _ in unknown) == sorted([
        "gmos-s-S20190808S0048-cutout.fits", "hst-acs-hrc-j8bt06nyq-flt-crflagged.fits.gz",
        "midas-badfitskeys-dfosc-skyflat.fits.gz",
        "msumastro-neon-on-dome-10-sec-high-res-though-scope.fit",
    ])
    efosc = Counter(f.frame_type for f in frames if f.instrument == "efosc2")
    assert efosc == {"bias": 5, "flat": 3, "science": 6, "spec_flat": 6, "arc": 1, "spectrum": 3}
    feder = Counter(
        f.frame_type for f in frames if Path(f.path).parent.name == "feder-apogee-mini"
    )
    assert feder == {"bias": 10, "dark": 50, "flat": 50, "science": 40}


def test_efosc_biases_are_read_as_bias_with_a_note(builtin: PluginManager) -> None:
    meta = scan_file(REAL / "efosc-ntt" / "EFOSC.2022-01-26T19-02-38.210.fits.gz", builtin)
    assert meta.frame_type == "bias"
    assert "CALIB|DARK|IMAGE" in meta.note and "zero exposure" in meta.note
    # CONAD (e-/ADU), not OUT1 GAIN (ADU/e-); RON in electrons.
    assert (meta.gain, meta.read_noise) == (1.10, 7.8)
    assert (meta.detector, meta.readout_mode, meta.shape) == ("ccd40", "fastL", (1030, 1030))


def test_efosc_sections_fit_the_pixels(builtin: PluginManager) -> None:
    """Overscan level equals the bias level under the image; a flat leaves it dark."""
    inst = builtin.instrument("efosc2")
    folder = REAL / "efosc-ntt"
    bias = read_ccd(folder / "EFOSC.2022-01-26T19-02-38.210.fits.gz", hdu=inst.data_hdu)
    flat = read_ccd(folder / "EFOSC.2022-01-28T00-08-16.282.fits.gz", hdu=inst.data_hdu)
    (amp,) = amplifier_regions(inst, bias.header, bias.shape)
    assert abs(np.median(bias.data[amp.overscan]) - np.median(bias.data[amp.trim])) < 6
    assert 200 < np.median(bias.data[amp.overscan]) < 240
    assert np.median(flat.data[amp.overscan]) < 400 < 30000 < np.percentile(flat.data[amp.trim], 5)


def test_feder_sections_come_from_the_header(builtin: PluginManager) -> None:
    inst = builtin.instrument("feder-apogee")
    flat = read_ccd(REAL / "feder-apogee-mini" / "flood-flat-001R.fit.gz", hdu=inst.data_hdu)
    (amp,) = amplifier_regions(inst, flat.header, flat.shape)
    assert (amp.overscan_text, amp.trim_text) == ("[1538:1541, 1:1024]", "[1:1536, 1:1024]")
    assert np.median(flat.data[amp.overscan]) < 15 < 50 < np.median(flat.data[amp.trim])


def test_alfosc_pixels_are_found_in_the_image_extension(builtin: PluginManager) -> None:
    path = REAL / "header-zoo" / "midas-NOT-alfosc-flat.fits.gz"
    meta = scan_file(path, builtin)
    assert (meta.shape, meta.gain, meta.read_noise) == ((2052, 2148), 0.33, 4.2)
    assert list(read_headers(path))[:3] == [0, 1, "im1"]


def test_missing_frame_type_names_the_keyword_when_instrument_is_forced(
    builtin: PluginManager,
) -> None:
    path = REAL / "header-zoo" / "msumastro-neon-on-dome-10-sec-high-res-though-scope.fit"
    with pytest.raises(UnprocessableInputError, match="keyword IMAGETYP or OBSTYPE") as info:
        scan_file(path, builtin, instrument="generic")
    assert info.value.keyword == "IMAGETYP or OBSTYPE or FRAMETYP"


def test_the_process_wide_manager_ships_the_three_instruments() -> None:
    manager = get_plugin_manager()
    assert {"generic", "efosc2", "feder-apogee"} <= set(manager.instruments)
    assert all(f.name != "builtin_instruments" for f in manager.failures)
    meta = scan_file(REAL / "feder-apogee-mini" / "darks-001D5.fit.gz", manager)
    assert (meta.instrument, meta.frame_type, meta.exposure_time) == ("feder-apogee", "dark", 5.0)
