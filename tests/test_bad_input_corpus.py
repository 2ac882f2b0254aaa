"""One bad file in an otherwise good night: the night finishes, the good frames are reduced, the
bad one is reported with its reason, and nothing is lost or written where it should not be.

Each case adds one file (or link, FIFO, folder) to a copy of a small simulated night and runs
``ccdflow night`` in this process (cosmic-ray step and report PNGs off: they were 3/4 of the
time and are not what is tested here). Every case checks: no traceback anywhere (output, log,
report.json); the
raw files byte-identical; nothing written outside OUT but the caldb; the exit status the docs
give for its outcome; every master built; both original science frames reduced; and the bad file
reported where its outcome says, with its reason:

- ``unknown``: refused at scan, in report.json's ``unknown`` (path and reason);
- ``excluded``: left out of its master (the master entry's ``excluded`` list, and the master's
  ``CF_Xnnnn`` cards), the master built from the others;
- ``failed``: a failed science entry with its reason;
- ``reduced``: the file itself is a good science frame: reduced, product named ``.fits``;
- ``combined``: a good calibration frame: an input of its built master.

Add a case with one line in CASES.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from ccdflow.cli import cli
from ccdflow.simulator import SimulationSpec, simulate_night
from tests.bad_files import (
    BIAS,
    DARK,
    FLAT,
    SCI,
    Make,
    compressed,
    cut_gzip,
    fifo,
    float64,
    in_subfolder,
    link,
    truncated,
    unreadable_folder,
    with_bytes,
    with_card_text,
    with_cards,
    with_nan,
    with_pixels,
    without_image,
)

SPEC = SimulationSpec(shape=(64, 64), overscan=8, n_bias=3, n_dark=3, dark_exptimes=(30.0,),
                      dark_temperatures=(-20.0,), n_flat=3, filters=("V",), n_science=2, n_stars=5,
                      n_saturated_stars=0, seed=5)
GOOD_SCIENCE = ("n1_sci_V_001.fits", "n1_sci_V_002.fits")
MASTER_KINDS = {"bias", "dark", "flat", "bpm"}

#: Exit status per outcome, as docs/cli.md and docs/night.md give it: a file left unused or out
#: of its master costs nothing else (0); a science frame that failed is 1.
EXIT = {"unknown": 0, "excluded": 0, "reduced": 0, "combined": 0, "failed": 1}


@dataclass(frozen=True)
class Case:
    id: str
    make: Make
    outcome: str
    reason: str  # in the reported reason (case-insensitive)


def _exptime(value):
    return {"EXPTIME": value}


CASES = [
    # pixels: left out of the master, the master built from the rest
    Case("bias all NaN", with_pixels(BIAS, "bad_bias_nan.fits", np.nan), "excluded", "no finite pixel"),
    Case("bias all inf", with_pixels(BIAS, "bad_bias_inf.fits", np.inf), "excluded", "no finite pixel"),
    Case("bias constant", with_pixels(BIAS, "bad_bias_const.fits", 1000.0), "excluded",
         "every pixel is 1000 (a dead readout)"),
    Case("dark all NaN", with_pixels(DARK, "bad_dark_nan.fits", np.nan), "excluded", "no finite pixel"),
    Case("flat all zero", with_pixels(FLAT, "bad_flat_zero.fits", 0.0), "excluded",
         "every pixel is 0 (a dead readout)"),
    Case("flat without light", with_cards(BIAS, "bad_flat_dark.fits",
                                          {"IMAGETYP": "FLAT", "FILTER": "V", "EXPTIME": 5.0}),
         "excluded", "positive level"),
    Case("bias overscan all NaN", with_nan(BIAS, "bad_bias_os.fits", slice(None), slice(64, None)),
         "excluded", "the overscan region holds no finite pixel"),
    Case("bias NaN in one overscan column", with_nan(BIAS, "odd_bias_os1.fits", slice(None), slice(66, 67)),
         "combined", ""),
    Case("science NaN overscan pixels", with_nan(SCI, "odd_sci_os.fits", slice(3, 9), slice(64, 70)),
         "reduced", ""),
    Case("science all NaN", with_pixels(SCI, "bad_sci_nan.fits", np.nan), "failed", "no finite pixel"),
    Case("science all zero", with_pixels(SCI, "bad_sci_zero.fits", 0.0), "failed",
         "every pixel is 0 (a dead readout)"),
    # dates
    Case("DATE-OBS 0001-01-01", with_cards(BIAS, "bad_date_0001.fits", {"DATE-OBS": "0001-01-01T00:00:00"}),
         "unknown", "DATE-OBS, found '0001-01-01T00:00:00', expected 1900-01-01 to 2200-12-31"),
    Case("DATE-OBS 9999-12-31", with_cards(BIAS, "bad_date_9999.fits", {"DATE-OBS": "9999-12-31T23:59:59"}),
         "unknown", "outside the accepted years"),
    Case("DATE-OBS 1899", with_cards(FLAT, "bad_date_1899.fits", {"DATE-OBS": "1899-12-31T20:00:00"}),
         "unknown", "outside the accepted years"),
    Case("DATE-OBS as MJD 1e300", with_cards(BIAS, "bad_date_mjd.fits", {"DATE-OBS": 1e300}), "unknown",
         "outside the accepted years"),
    Case("DATE-OBS not a date", with_cards(SCI, "bad_date_text.fits", {"DATE-OBS": "yesterday"}),
         "unknown", "cannot be parsed"),
    # exposure time
    Case("EXPTIME 1e300", with_cards(DARK, "bad_exp_1e300.fits", _exptime(1e300)), "unknown",
         "exposure time is outside the accepted range (keyword EXPTIME, found 1e+300"),
    Case("EXPTIME NAN text", with_card_text(DARK, "bad_exp_nan.fits", "EXPTIME", b"NAN".rjust(20)),
         "unknown", "EXPTIME"),
    Case("EXPTIME 'inf'", with_cards(SCI, "bad_exp_inf.fits", _exptime("inf")), "unknown", "not finite"),
    Case("EXPTIME -1", with_cards(SCI, "bad_exp_neg.fits", _exptime(-1.0)), "unknown",
         "exposure time is outside the accepted range"),
    Case("dark 0 s", with_cards(DARK, "bad_dark_0s.fits", _exptime(0.0)), "unknown",
         "a dark frame needs an exposure time above 0 s"),
    Case("science 0 s", with_cards(SCI, "bad_sci_0s.fits", _exptime(0.0)), "unknown",
         "a science frame needs an exposure time above 0 s"),
    Case("flat 0 s", with_cards(FLAT, "bad_flat_0s.fits", _exptime(0.0)), "unknown",
         "a flat frame needs an exposure time above 0 s"),
    # detector values
    Case("GAIN 1e300", with_cards(SCI, "bad_gain_huge.fits", {"GAIN": 1e300}), "unknown",
         "gain is outside the accepted range"),
    Case("GAIN -1", with_cards(BIAS, "bad_gain_neg.fits", {"GAIN": -1.0}), "unknown",
         "gain is outside the accepted range"),
    Case("GAIN 0 (a CMOS gain setting)", with_cards(SCI, "bad_gain_zero.fits", {"GAIN": 0}), "unknown",
         "expected 0 < gain <= 1000 e-/ADU"),
    Case("RDNOISE 1e300", with_cards(SCI, "bad_noise.fits", {"RDNOISE": 1e300}), "unknown",
         "read noise is outside the accepted range"),
    Case("CCD-TEMP 1e6", with_cards(DARK, "bad_temp_hot.fits", {"CCD-TEMP": 1e6}), "unknown",
         "temperature is outside the accepted range"),
    Case("CCD-TEMP -300", with_cards(DARK, "bad_temp_cold.fits", {"CCD-TEMP": -300.0}), "unknown",
         "temperature is outside the accepted range"),
    Case("XBINNING 1000", with_cards(BIAS, "bad_binning.fits", {"XBINNING": 1000}), "unknown",
         "binning is outside the accepted range"),
    Case("CCDSUM 'inf inf'", with_cards(BIAS, "bad_ccdsum.fits", {"CCDSUM": "inf inf"}), "unknown",
         "binning cannot be parsed"),
    Case("FILTER of 300 characters", with_cards(FLAT, "bad_filter.fits", {"FILTER": "V" * 300}),
         "unknown", "filter is 300 characters long"),
    Case("IMAGETYP missing", with_cards(SCI, "bad_no_type.fits", {"IMAGETYP": None}), "unknown",
         "no instrument recognises this header"),
    # header text FITS cannot write back: the product is written with the card fixed
    Case("OBJECT non-printable", with_card_text(SCI, "odd_object_ctrl.fits", "OBJECT",
                                                b"'M51\x07\x1b[31m\x7f'"), "reduced", ""),
    Case("OBJECT non-ASCII", with_card_text(SCI, "odd_object_utf8.fits", "OBJECT",
                                            "'Ångström'".encode()), "reduced", ""),
    Case("OBJECT = 1E999", with_card_text(SCI, "odd_object_inf.fits", "OBJECT", b"1E999".rjust(20)),
         "reduced", ""),
    Case("FILTER with control characters", with_card_text(
        FLAT, "bad_filter_ctrl.fits", "FILTER", b"'V\x07\x1b'"), "unknown", "unparsable card (filter)"),
    # files
    Case("float64 science (BITPIX -64)", float64(SCI, "odd_sci_f64.fits"), "reduced", ""),
    Case("NAXIS1 = 0", without_image("bad_naxis0.fits", lambda h: [
        fits.PrimaryHDU(np.zeros((64, 0), np.int16), header=h)]), "unknown", "no HDU holds a 2-D image"),
    Case("truncated data", with_bytes("bad_truncated.fits", truncated), "unknown", "truncated"),
    Case("zero-byte .fits", with_bytes("bad_empty.fits", lambda raw: b""), "unknown",
         "not a readable FITS file"),
    Case("text named .fits", with_bytes("bad_text.fits", lambda raw: b"SIMPLE? no.\n" * 300), "unknown",
         "not a readable FITS file"),
    Case("truncated .fits.gz", with_bytes("bad_cut.fits.gz", cut_gzip), "unknown", "not a readable FITS"),
    Case("header only (NAXIS 0)", without_image("bad_header_only.fits", lambda h: [
        fits.PrimaryHDU(header=h)]), "unknown", "no HDU holds a 2-D image"),
    Case("cube of 50 planes", without_image("bad_cube.fits", lambda h: [
        fits.PrimaryHDU(np.zeros((50, 64, 72), np.int16), header=h)]), "unknown", "NAXIS3=50"),
    Case("binary table only", without_image("bad_table.fits", lambda h: [
        fits.PrimaryHDU(header=h), fits.BinTableHDU.from_columns([fits.Column("x", "E", array=[1.0])])]),
         "unknown", "no HDU holds a 2-D image"),
    Case(".fits.fz science", compressed(SCI, "good_sci_fpack.fits.fz"), "reduced", ""),
    Case(".fits.gz science", compressed(SCI, "good_sci_gzip.fits.gz"), "reduced", ""),
    Case(".fits.fz bias", compressed(BIAS, "good_bias_fpack.fits.fz"), "combined", ""),
    # names and places: header values never make a path, equal names never share a product
    Case("DETECTOR x/../../../escaped", with_cards(SCI, "odd_sci_detector.fits",
                                                  {"DETECTOR": "x/../../../escaped"}),
         "failed", "all rejected: 1 detector (need x/../../../escaped"),
    Case("same name in a subfolder", in_subfolder(SCI, "sub"), "reduced", ""),
    Case(".fits.gz beside its .fits", compressed(SCI, SCI + ".gz"), "reduced", ""),
    # discovery
    Case("symbolic link loop", link("bad_loop.fits", "bad_loop.fits"), "unknown", "symbolic link loop"),
    Case("dangling link", link("bad_dangling.fits", "gone.fits"), "unknown", "dangling symbolic link"),
    Case("link to a folder (a loop)", link("again", "."), "unknown", "symbolic link to a folder"),
    Case("FIFO named .fits", fifo("bad_pipe.fits"), "unknown", "a FIFO, not a regular file"),
    Case("unreadable folder", unreadable_folder("locked"), "unknown", "folder cannot be read"),
]


# -- the night -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """One simulated night for every case (each case copies it)."""
    return simulate_night(tmp_path_factory.mktemp("corpus"), SPEC).raw_dir


def _snapshot(root: Path, skip: set[Path]) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed) with its type, size and mtime."""
    out = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d not in skip]
        for name in [*dirs, *files]:
            path = here / name
            if path in skip or path.name.startswith("caldb.sqlite"):
                continue
            info = path.lstat()
            out[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), info.st_size, info.st_mtime_ns)
    return out


def _hashes(raw: Path) -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(raw):
        for name in files:
            path = Path(folder) / name
            if path.is_symlink() or not stat.S_ISREG(path.lstat().st_mode):
                out[str(path)] = os.readlink(path) if path.is_symlink() else "special"
                continue
            if os.access(path, os.R_OK):
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    """The report without its PNGs (matplotlib was half of each night's time); report.json and
    report.html are still written."""
    from ccdflow.pipeline import report

    monkeypatch.setattr(report, "quicklook", lambda *args: None)
    monkeypatch.setattr(report, "_history_plots", lambda *args: {})


@pytest.fixture
def unlistable(monkeypatch):
    """As root, make os.scandir fail for folders of mode 000 as it does for other users."""
    if os.geteuid() != 0:
        return
    real = os.scandir

    def scandir(path="."):
        if os.path.isdir(path) and stat.S_IMODE(os.stat(path).st_mode) == 0:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_one_bad_file_never_sinks_the_night(case, template, tmp_path, caplog, unlistable):
    raw, out, caldb = tmp_path / "raw", tmp_path / "out", tmp_path / "caldb.sqlite"
    shutil.copytree(template, raw)
    bad = case.make(raw)
    before, hashes = _snapshot(tmp_path, {out}), _hashes(raw)
    try:
        result = CliRunner().invoke(cli, ["night", str(raw), "--out", str(out), "--caldb", str(caldb),
                                          "--workers", "1", "--json", "-p", "cosmicray.skip=true"])
        after, hashes_after = _snapshot(tmp_path, {out}), _hashes(raw)
    finally:
        for folder in raw.iterdir():  # a folder made unreadable, for pytest to clean up
            if folder.is_dir() and not folder.is_symlink():
                folder.chmod(0o755)
    printed = result.output + caplog.text
    assert result.exception is None or isinstance(result.exception, SystemExit), printed
    assert after == before, "written outside OUT"
    assert hashes_after == hashes, "raw files changed"
    report = json.loads((out / "report.json").read_text())

    assert "Traceback" not in printed + (out / "report.json").read_text()  # no unexpected error
    assert result.exit_code == EXIT[case.outcome], printed
    science = {Path(s["raw"]).name: s for s in report["science"]}
    for name in GOOD_SCIENCE:
        assert science[name]["status"] == "reduced", science[name]
        assert Path(science[name]["path"]).is_file()
    masters = report["masters"]
    assert {m["type"] for m in masters if m["status"] == "built"} == MASTER_KINDS, masters
    assert not [m for m in masters if m["status"] == "failed"], masters
    CHECKS[case.outcome](report, out, str(bad), case.reason.lower())


# -- where each outcome is reported ----------------------------------------------------------------

def _unknown(report: dict, out: Path, bad: str, reason: str) -> None:
    found = {u["path"]: u["reason"] for u in report["unknown"]}
    assert bad in found, report["unknown"]
    assert reason in found[bad].lower(), found[bad]
    assert "unexpected" not in found[bad] and bad not in {f["path"] for f in report["frames"]}


def _excluded(report: dict, out: Path, bad: str, reason: str) -> None:
    (master,) = [m for m in report["masters"] if bad in json.dumps(m.get("excluded", []))]
    assert master["status"] == "built"
    (why,) = [why for path, why in master["excluded"] if path == bad]
    assert reason in why.lower(), why
    header = fits.getheader(master["path"])
    left = [header[k] for k in header if k.startswith("CF_X") and k[4:].isdigit()]
    assert header["CF_NEXCL"] == 1 and left and left[0].startswith(Path(bad).name + ": ")
    assert header["NCOMBINE"] == 3


def _failed(report: dict, out: Path, bad: str, reason: str) -> None:
    (entry,) = [s for s in report["science"] if s["raw"] == bad]
    assert entry["status"] == "failed" and reason in entry["reason"].lower(), entry
    assert "unexpected" not in entry["reason"]


def _reduced(report: dict, out: Path, bad: str, reason: str) -> None:
    (entry,) = [s for s in report["science"] if s["raw"] == bad]
    assert entry["status"] == "reduced", entry
    product = Path(entry["path"])
    assert product.suffix == ".fits" and product.is_file() and product.is_relative_to(out)
    with fits.open(product) as hdul:
        hdul.verify("exception")  # every card is standard FITS
        assert np.isfinite(hdul["SCI"].data).any()


def _combined(report: dict, out: Path, bad: str, reason: str) -> None:
    (master,) = [m for m in report["masters"] if Path(bad).name in json.dumps(m.get("inputs", []))]
    assert master["status"] == "built" and not master.get("excluded")
    assert fits.getheader(master["path"])["NCOMBINE"] == 4


CHECKS = {"unknown": _unknown, "excluded": _excluded, "failed": _failed, "reduced": _reduced,
          "combined": _combined}


def test_the_corpus_covers_every_outcome_and_enough_cases():
    assert {c.outcome for c in CASES} == set(CHECKS) == set(EXIT)
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
