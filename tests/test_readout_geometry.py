"""Geometry that follows the readout: sections in unbinned detector pixels mapped through the
frame's binning and window, geometry variants chosen by header values, and the overscan check
that refuses a section that is not an overscan (issue 13, item 2).

The windowed frames are written here with numpy and astropy, not by ccdflow's simulator, so the
test does not share the reduction's idea of where the sections are: a long-slit e2v-like CCD
(512 x 1024 light-sensitive pixels, 16 overscan rows clocked after the last row read), read
through a window of detector rows 301-700 at binning 1x2 (200 data rows, then 8 overscan rows),
whose controller writes a BIASSEC for another mode that falls on illuminated data columns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.framework.engine.errors import IlluminatedOverscanError, SectionError
from ccdflow.framework.headers.geometry import amplifier_regions
from ccdflow.testing import fake_instrument, make_ccd, make_meta, run_step

NX, NY_DATA, NY_OSCAN = 512, 200, 8  # raw pixels of the windowed, 1x2-binned readout
BIAS, READ_NOISE = 1000.0, 8.0  # ADU
SLIT = slice(380, 512)  # raw columns the long slit illuminates
WRONG_BIASSEC = "[481:512,1:200]"  # a serial-overscan section of another mode: slit columns here
DETECTOR = {
    "coordinates": "detector",
    "image_area": "[1:512,1:1024]",
    # the 16 unbinned overscan rows after row 1024, and the whole light-sensitive area
    "amplifiers": [{"name": "A", "overscan": "[1:512,1025:1040]", "trim": "[1:512,1:1024]"}],
}


def windowed_header(**cards) -> fits.Header:
    header = fits.Header({"CCDSUM": "1 2", "CCDSEC": "[1:512,301:700]", "DATASEC": "[1:512,1:200]"})
    header.update(cards)
    return header


def raw_frame(rng: np.random.Generator, light: float, offset: float) -> np.ndarray:
    """Bias level (with a frame offset and a row drift the overscan rows share, as they are
    clocked with the same electronics), read noise, and ``light`` ADU on the slit columns."""
    ny = NY_DATA + NY_OSCAN
    drift = np.linspace(0.0, 6.0, NX)[None, :]  # column pattern, present in the overscan rows
    data = BIAS + offset + drift + rng.normal(0.0, READ_NOISE, (ny, NX))
    if light:
        profile = light * (1 + 0.2 * np.sin(np.arange(NY_DATA) / 15.0))[:, None]
        data[:NY_DATA, SLIT] += rng.poisson(profile * np.ones((1, SLIT.stop - SLIT.start))) - 0.0
    return np.round(data).astype(np.float32)


def test_detector_sections_map_through_binning_and_window():
    camera = fake_instrument(geometry=DETECTOR)
    header = windowed_header()
    meta = make_meta(binning=(1, 2), shape=(208, 512), frame_type="bias")
    (amp,) = amplifier_regions(camera, header, (208, 512), meta=meta)
    assert (amp.overscan_text, amp.trim_text) == ("[1:512,201:208]", "[1:512,1:200]")
    assert "geometry.amplifiers[0].overscan" in amp.overscan_source
    # the same window from MaxIm/SBIG subframe origin keywords (0-based, binned: row 300 -> 150)
    origin = fake_instrument(geometry={**DETECTOR, "window": {"origin_keywords": ["XORGSUBF", "YORGSUBF"]}})
    (amp,) = amplifier_regions(origin, fits.Header({"XORGSUBF": 0, "YORGSUBF": 150}), (208, 512), meta=meta)
    assert (amp.overscan_text, amp.trim_text) == ("[1:512,201:208]", "[1:512,1:200]")
    # a trim section narrower than the window is cut in binned pixels that lie wholly inside it
    narrow = fake_instrument(geometry={**DETECTOR, "amplifiers": [
        {"name": "A", "overscan": "[1:512,1025:1040]", "trim": "[11:500,400:1024]"}]})
    (amp,) = amplifier_regions(narrow, header, (208, 512), meta=meta)
    assert amp.trim_text == "[11:500,51:200]"  # raw row 50 holds detector rows 399-400: cut


def test_a_section_outside_the_window_or_an_unplaced_window_is_refused():
    meta = make_meta(binning=(1, 2), shape=(208, 512))
    inside = fake_instrument(geometry={**DETECTOR, "amplifiers": [
        {"name": "A", "overscan": "[1:16,100:200]", "trim": "[17:512,1:1024]"}]})
    with pytest.raises(SectionError, match="not inside the readout window 301-700") as err:
        amplifier_regions(inside, windowed_header(), (208, 512), meta=meta)
    assert err.value.keyword.startswith("geometry.amplifiers[0].overscan")
    # no CCDSEC/DETSEC, no origin keyword, no offset: a window whose place nobody says
    with pytest.raises(SectionError, match="does not say where the window lies"):
        amplifier_regions(fake_instrument(geometry=DETECTOR), fits.Header({"DATASEC": "[1:512,1:200]"}),
                          (208, 512), meta=meta)
    # a configured offset places it
    placed = fake_instrument(geometry={**DETECTOR, "window": {"offset": [1, 301]}})
    (amp,) = amplifier_regions(placed, fits.Header({"DATASEC": "[1:512,1:200]"}), (208, 512), meta=meta)
    assert amp.overscan_text == "[1:512,201:208]"
    # a CCDSEC whose extent disagrees with the data at this binning
    with pytest.raises(SectionError, match="spans 300 detector pixels along y"):
        amplifier_regions(fake_instrument(geometry=DETECTOR),
                          windowed_header(CCDSEC="[1:512,301:600]"), (208, 512), meta=meta)


def test_variants_are_chosen_by_binning_and_never_borrowed():
    variants = {"variants": [
        {"when": {"binning": "1x1"}, "amplifiers": [{"overscan": "[61:68,1:40]", "trim": "[1:60,1:40]"}]},
        {"when": {"binning": "2x2"}, "amplifiers": [{"overscan": "[31:34,1:20]", "trim": "[1:30,1:20]"}]},
    ]}
    camera = fake_instrument(geometry=variants)
    binned = make_meta(binning=(2, 2), shape=(20, 34))
    (amp,) = amplifier_regions(camera, fits.Header(), (20, 34), meta=binned)
    assert (amp.overscan_text, amp.trim_source) == ("[31:34,1:20]", "geometry.variants[1].amplifiers[0].trim")
    with pytest.raises(SectionError, match="no geometry variant") as err:
        amplifier_regions(camera, fits.Header(), (40, 68), meta=make_meta(binning=(1, 2), shape=(40, 68)))
    assert err.value.keyword == "geometry.variants" and "'1x2'" in str(err.value)
    with_default = fake_instrument(geometry={"variants": [*variants["variants"], {"when": {}}]})
    meta = make_meta(binning=(1, 2), shape=(40, 68))
    (amp,) = amplifier_regions(with_default, fits.Header(), (40, 68), meta=meta)
    assert amp.overscan_text == "[61:68,1:40]"  # the instrument's own amplifiers: the default


def test_header_biassec_inside_the_data_section_is_refused():
    ccd = make_ccd(header=windowed_header(BIASSEC=WRONG_BIASSEC), shape=(208, 512), noise=8)
    with pytest.raises(SectionError, match="overlaps the data section") as err:
        run_step("overscan", ccd, meta=make_meta(binning=(1, 2), shape=(208, 512), frame_type="bias"))
    assert err.value.keyword == "BIASSEC" and err.value.value == WRONG_BIASSEC


def test_overscan_check_refuses_light_and_names_the_figures():
    rng = np.random.default_rng(3)
    flat = raw_frame(rng, light=20000.0, offset=0.0)
    header = fits.Header({"BIASSEC": WRONG_BIASSEC, "RDNOISE": 12.0, "GAIN": 1.5})  # 8 ADU
    meta = make_meta(binning=(1, 2), shape=flat.shape, frame_type="flat", read_noise=12.0, gain=1.5)
    with pytest.raises(IlluminatedOverscanError) as err:
        run_step("overscan", make_ccd(flat, header=header), meta=meta)
    text = str(err.value)
    assert err.value.keyword == "BIASSEC" and WRONG_BIASSEC in text and "holds light" in text
    noise = float(text.split("its noise ")[1].split(" ADU")[0])
    assert noise > 100 and "times the read noise 8.0 ADU" in text and "max_noise_ratio" in text
    # a bias whose 'overscan' is far from its data area: level and noise both named
    bias = raw_frame(rng, light=0.0, offset=0.0)
    bias[:, 500:] += rng.normal(150.0, 72.0, (bias.shape[0], 12)).astype(np.float32)
    header = fits.Header({"BIASSEC": "[497:512,1:208]", "TRIMSEC": "[1:496,1:200]"})
    with pytest.raises(IlluminatedOverscanError, match="above the data area's") as err:
        run_step("overscan", make_ccd(bias, header=header),
                 meta=make_meta(frame_type="bias", shape=bias.shape))
    assert "the data area's noise" in str(err.value)
    # the real overscan rows pass, and the limits are parameters
    good = fits.Header({"BIASSEC": "[1:512,201:208]", "TRIMSEC": "[1:512,1:200]"})
    out = run_step("overscan", make_ccd(raw_frame(rng, 20000.0, 0.0), header=good), meta=meta)
    assert abs(out.header["CF_OSA"] - BIAS - 3) < 1
    run_step("overscan", make_ccd(flat, header=fits.Header({"BIASSEC": WRONG_BIASSEC})), meta=meta,
             params={"check": False})


def write_night(folder: Path, biassec: str | None) -> None:
    """5 biases, 3 lamp flats and 2 long-slit science frames of the windowed readout."""
    rng = np.random.default_rng(7)
    folder.mkdir()
    frames = [("bias", 0.0, 0.0)] * 5 + [("flat", 3.0, 15000.0)] * 3 + [("object", 300.0, 400.0)] * 2
    for i, (kind, exptime, light) in enumerate(frames):
        header = windowed_header(INSTRUME="WINCAM e2v", IMAGETYP=kind.upper(), EXPTIME=exptime,
                                 FILTER="GR3", **{"DATE-OBS": f"2026-03-01T2{i // 4}:{10 + i:02d}:00"},
                                 RDNOISE=READ_NOISE * 1.5, GAIN=1.5)
        if biassec:
            header["BIASSEC"] = biassec
        data = raw_frame(rng, light, offset=rng.normal(0.0, 15.0))
        fits.PrimaryHDU(np.clip(data, 0, 65535).astype(np.uint16), header).writeto(folder / f"f{i:02d}.fits")


def instrument_file(folder: Path, geometry: dict) -> Path:
    body = {
        "extends": "generic", "name": "wincam", "identify": {"INSTRUME": "WINCAM*"},
        "recipes": {"bias": ["overscan", "trim"], "flat": ["overscan", "trim", "bias"],
                    "science": ["overscan", "trim", "bias"]},
        "geometry": geometry,
    }
    path = folder / "wincam.yaml"
    path.write_text(json.dumps(body))  # JSON is YAML
    return path


def night(raw: Path, config: Path, tmp_path: Path, name: str) -> tuple[int, dict]:
    out = tmp_path / name
    proc = subprocess.run(
        [sys.executable, "-m", "ccdflow", "night", str(raw), "--out", str(out), "--instrument-config",
         str(config), "--caldb", str(tmp_path / f"{name}.sqlite"), "--workers", "1"],
        capture_output=True, text=True, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads((out / "report.json").read_text())


def test_windowed_night_refuses_the_header_biassec_and_reduces_with_detector_sections(tmp_path):
    raw = tmp_path / "raw"
    write_night(raw, WRONG_BIASSEC)
    # as the camera writes it: the header BIASSEC on illuminated slit columns, inside DATASEC
    code, report = night(raw, instrument_file(tmp_path, {}), tmp_path, "header")
    assert code == 1
    (bias,) = [m for m in report["masters"] if m["type"] == "bias"]
    assert bias["status"] == "failed" and bias["reason"].count("overlaps the data section") == 5
    assert f"keyword BIASSEC, found '{WRONG_BIASSEC}'" in bias["reason"]
    assert report["counts"]["masters"] == {"failed": 2} and report["counts"]["science"] == {"failed": 2}
    # the same frames with the sections in detector pixels (the header's BIASSEC is not used)
    code, report = night(raw, instrument_file(tmp_path, DETECTOR), tmp_path, "detector")
    assert code == 0, json.dumps(report)[:2000]
    (bias,) = [m for m in report["masters"] if m["type"] == "bias"]
    master = fits.getdata(bias["path"])
    assert master.shape == (NY_DATA, NX)
    # the overscan rows remove the level: what is left is zero within the master's noise
    assert abs(float(np.median(master))) < 3 * READ_NOISE / np.sqrt(5)
    for frame in report["science"]:
        reduced = fits.getdata(frame["path"])
        dark = reduced[:, : SLIT.start - 10]  # no light off the slit: bias-subtracted zero
        assert abs(float(np.median(dark))) < 3 * READ_NOISE / np.sqrt(NX) * 4
