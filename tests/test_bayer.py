"""Colour (Bayer) sensors (issue 13 item 6): the pattern read from BAYERPAT, XBAYROFF/YBAYROFF and
ROWORDER, kept right through an odd trim, flats normalised per colour channel (the colours of a
grey source survive flat-fielding; a globally normalised flat tints them), statistics per
channel, products raw with their pattern cards; the real ZWO ASI120MC-S flats."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.headers.bayer import follow_trim, mosaic_of

#: What a GRBG sensor's colours are at (row % 2, column % 2), written out here rather than
#: taken from the module under test.
GRBG = {(0, 0): "G", (0, 1): "R", (1, 0): "B", (1, 1): "G"}


def channel_pixels(data: np.ndarray, colour_at: dict[tuple[int, int], str], channel: str) -> np.ndarray:
    return np.concatenate([data[r::2, c::2].ravel() for (r, c), ch in colour_at.items() if ch == channel])


def shifted(colour_at: dict[tuple[int, int], str], dy: int, dx: int) -> dict[tuple[int, int], str]:
    """The colours of an array cut ``dy`` rows and ``dx`` columns into one with ``colour_at``."""
    return {(r, c): colour_at[((r + dy) % 2, (c + dx) % 2)] for r in (0, 1) for c in (0, 1)}


# -- reading the pattern ---------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
@pytest.mark.parametrize("order", ["TOP-DOWN", "BOTTOM-UP", None])
@pytest.mark.parametrize("height", [10, 11])
def test_pattern_offsets_and_row_order_place_every_colour(pattern, order, height):
    """The pattern starts at the image's top-left, shifted by the offsets; with ROWORDER
    BOTTOM-UP the top is the last stored row (Siril's and NINA's reading); absent: top-down."""
    for xoff, yoff in itertools.product(range(3), range(3)):
        header = fits.Header({"BAYERPAT": pattern, "XBAYROFF": xoff, "YBAYROFF": yoff})
        if order:
            header["ROWORDER"] = order
        mosaic = mosaic_of(header, height)
        for y, x in itertools.product(range(height), range(5)):
            top_row = height - 1 - y if order == "BOTTOM-UP" else y
            assert mosaic.colour(y, x) == pattern[2 * ((top_row + yoff) % 2) + (x + xoff) % 2]


def test_a_bottom_up_image_of_even_height_flips_the_row_parity():
    top_down = mosaic_of(fits.Header({"BAYERPAT": "RGGB", "ROWORDER": "TOP-DOWN"}), 960)
    bottom_up = mosaic_of(fits.Header({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP"}), 960)
    assert (top_down.cell, bottom_up.cell) == ("RGGB", "GBRG")


def test_real_nina_and_asiimg_headers():
    data = Path(__file__).parent / "data" / "headers"
    nina = fits.getheader(data / "nina" / "nina-1.10-asi294mc-light.fits")
    assert (nina["BAYERPAT"], nina["ROWORDER"], nina["XBAYROFF"]) == ("RGGB", "TOP-DOWN", 0)
    assert mosaic_of(nina, nina["NAXIS2"]).cell == "RGGB"
    asiimg = fits.getheader(data / "asiimg" / "asiimg-asi120mc-flat.fits")
    assert "ROWORDER" not in asiimg and mosaic_of(asiimg, asiimg["NAXIS2"]).cell == "GRBG"
    mono = fits.getheader(data / "nina" / "nina-1.9-asi183mm-light.fits")
    assert mosaic_of(mono, 8) is None


@pytest.mark.parametrize(("cards", "keyword"), [
    ({"BAYERPAT": "RGBG"}, "BAYERPAT"), ({"BAYERPAT": "GGRGGB" * 6}, "BAYERPAT"),
    ({"BAYERPAT": "RGGB", "ROWORDER": "LEFT-RIGHT"}, "ROWORDER"),
    ({"BAYERPAT": "RGGB", "XBAYROFF": 0.5}, "XBAYROFF"), ({"BAYERPAT": "RGGB", "YBAYROFF": "x"}, "YBAYROFF"),
])
def test_a_pattern_that_cannot_be_placed_is_refused_not_read_as_grey(cards, keyword):
    with pytest.raises(UnprocessableInputError) as caught:
        mosaic_of(fits.Header(cards), 8, "f.fits")
    assert caught.value.keyword == keyword


@pytest.mark.parametrize("value", ["", "NONE", "mono"])
def test_no_pattern(value):
    assert mosaic_of(fits.Header({"BAYERPAT": value}), 8) is None
    assert mosaic_of(fits.Header(), 8) is None


# -- trimming ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["TOP-DOWN", "BOTTOM-UP"])
def test_after_any_trim_the_rewritten_pattern_names_pixel_0_0(order):
    """BAYERPAT is rewritten for the trimmed array in the file's own ROWORDER convention, the
    offsets set to 0, the raw cards kept in CF_BAYRW: a reader that ignores the offsets is right."""
    height = 12
    raw = fits.Header({"BAYERPAT": "GRBG", "XBAYROFF": 1, "YBAYROFF": 0, "ROWORDER": order})
    before = mosaic_of(raw, height)
    for y0, y1, x0 in itertools.product((0, 1, 2), (11, 12), (0, 1, 3)):
        header = raw.copy()
        follow_trim(header, height, [(y0, y1)], [(x0, 20)])
        assert (header["XBAYROFF"], header["YBAYROFF"], header["ROWORDER"]) == (0, 0, order)
        assert header["CF_BAYRW"] == "GRBG x1 y0"
        after = mosaic_of(header, y1 - y0)
        for y, x in itertools.product(range(y1 - y0), range(4)):
            assert after.colour(y, x) == before.colour(y + y0, x + x0)


def test_amplifier_sections_joined_out_of_step_are_refused():
    header = fits.Header({"BAYERPAT": "RGGB"})
    follow_trim(header.copy(), 20, [(0, 20)], [(0, 10), (12, 20)])  # an even gap: fine
    with pytest.raises(UnprocessableInputError, match="out of step"):
        follow_trim(header, 20, [(0, 20)], [(0, 10), (11, 20)])


# -- per-channel flats, end to end ------------------------------------------------------------------

LAMP = {"R": 1.4, "G": 1.0, "B": 0.45}  # a warm lamp
QE = {"R": 0.5, "G": 1.0, "B": 0.8}  # the sensor's response to each colour


def _write(path: Path, data: np.ndarray, imagetyp: str, when: datetime) -> None:
    header = fits.Header({"INSTRUME": "COLOURSIM", "IMAGETYP": imagetyp, "EXPTIME": 1.0,
                          "DATE-OBS": when.isoformat(timespec="seconds").replace("+00:00", ""),
                          "FILTER": "L", "BAYERPAT": "GRBG", "XBAYROFF": 0, "YBAYROFF": 0,
                          "ROWORDER": "TOP-DOWN", "GAIN": 1.0, "RDNOISE": 3.0})
    fits.PrimaryHDU(data.astype(np.float32), header).writeto(path)


def test_a_per_channel_flat_keeps_the_colours_of_a_grey_source(tmp_path):
    """A GRBG camera (raw 50 x 66, trimmed [2:65,2:49]: one row and one column cut, so the
    trimmed frame starts on another colour), flats from a warm lamp, a grey science source.
    Reduced by `ccdflow night`: the master's channels each have median 1, the product keeps its
    (rewritten) pattern cards, and its R/G and B/G ratios are the raw frame's own, i.e. the
    scene's as the sensor records it; the same flat normalised globally tints them by the lamp."""
    rng = np.random.default_rng(4)
    shape = (50, 66)
    colour = np.empty(shape, "<U1")
    for (r, c), ch in GRBG.items():
        colour[r::2, c::2] = ch
    response = rng.normal(1.0, 0.03, shape) * np.linspace(0.9, 1.1, shape[1])  # pixels and vignetting
    qe = np.vectorize(QE.get)(colour) * response
    raw = tmp_path / "raw"
    raw.mkdir()
    start = datetime(2026, 3, 1, 20, tzinfo=UTC)
    for i, brightness in enumerate((18000.0, 20000.0, 22000.0, 21000.0)):
        redder = {"R": 1.0 + 0.03 * i, "G": 1.0, "B": 1.0 - 0.03 * i}  # a lamp warming up
        lamp = np.vectorize(lambda ch, r=redder: LAMP[ch] * r[ch])(colour)
        _write(raw / f"flat{i}.fits", brightness * lamp * qe + rng.normal(0, 5, shape), "FLAT",
               start + timedelta(minutes=i))
    scene = 5000.0 * qe  # grey: the same flux in every colour
    _write(raw / "sci.fits", scene, "LIGHT", start + timedelta(hours=2))
    yaml = tmp_path / "coloursim.yaml"
    yaml.write_text("name: coloursim\nextends: generic\nidentify: {INSTRUME: COLOURSIM}\n"
                    "geometry: {overscan_keyword: null, amplifiers: [{name: A, trim: '[2:65,2:49]'}]}\n"
                    "recipes: {flat: [trim], science: [trim, flat]}\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "ccdflow", "night", str(raw), "--out", str(out),
                           "--caldb", str(tmp_path / "c.sqlite"), "--instrument-config", str(yaml),
                           "--workers", "1", "--json"], capture_output=True, text=True, timeout=600)
    report = json.loads((out / "report.json").read_text())
    [flat] = [m for m in report["masters"] if m["type"] == "flat"]
    [science] = report["science"]
    assert science["status"] == "reduced", proc.stdout + proc.stderr

    trimmed = shifted(GRBG, 1, 1)  # the trimmed frame's colours, by hand
    assert trimmed == {(0, 0): "G", (0, 1): "B", (1, 0): "R", (1, 1): "G"}
    master = fits.getdata(flat["path"], "SCI")
    master_header = fits.getheader(flat["path"])
    assert master_header["BAYERPAT"] == "GBRG" and master_header["CF_BAYRW"] == "GRBG x0 y0"
    for ch in "RGB":
        assert np.median(channel_pixels(master, trimmed, ch)) == pytest.approx(1.0, abs=1e-6)
        assert master_header[f"CF_MED{ch}"] == pytest.approx(1.0, abs=1e-4)
    from ccdflow.caldb import CalDB

    db = CalDB(tmp_path / "c.sqlite")
    [record] = db.list(kind="flat")
    db.close()
    assert record["stats"]["median_R"] == pytest.approx(1.0, abs=1e-4)
    assert record["stats"]["level_B"] == master_header["CF_LEVEB"]
    # per-channel input levels: the lamp's colour, which the master no longer carries
    assert master_header["CF_LEVER"] / master_header["CF_LEVEG"] == pytest.approx(
        1.4 * 0.5 * np.mean([1 + 0.03 * i for i in range(4)]), rel=0.02)

    product = fits.open(science["path"])
    sci, header = product["SCI"].data, product[0].header
    assert (header["BAYERPAT"], header["XBAYROFF"], header["ROWORDER"]) == ("GBRG", 0, "TOP-DOWN")
    assert sci.shape == (48, 64)  # raw: no debayering

    def ratios(image: np.ndarray) -> np.ndarray:
        medians = {ch: np.median(channel_pixels(image, trimmed, ch)) for ch in "RGB"}
        return np.array([medians["R"] / medians["G"], medians["B"] / medians["G"]])

    scene_ratios = ratios(scene[1:49, 1:65])
    np.testing.assert_allclose(scene_ratios, [0.5, 0.8], rtol=0.02)  # the grey source, as recorded
    np.testing.assert_allclose(ratios(sci), scene_ratios, rtol=0.01)
    # the same inputs normalised by one global median: tinted by the lamp's inverse colour
    flats = [fits.getdata(raw / f"flat{i}.fits")[1:49, 1:65] for i in range(4)]
    global_flat = np.mean([f / np.median(f) for f in flats], axis=0)
    tinted = ratios(scene[1:49, 1:65] / global_flat)
    np.testing.assert_allclose(tinted, [1 / 1.4, 1 / 0.45], rtol=0.05)  # G/R and G/B of the lamp
    assert np.all(np.abs(tinted / scene_ratios - 1) > 0.3)  # 37 % and 190 % off


def test_a_foreign_unnormalised_colour_flat_is_normalised_per_channel_by_the_flat_step():
    """A master flat made elsewhere (median 20000, a warm lamp's colours) is brought to 1 per
    channel before dividing: a grey frame keeps R/G = B/G = 1."""
    from ccdflow.testing import make_ccd, run_step

    colour = np.empty((40, 60), "<U1")
    for (r, c), ch in GRBG.items():
        colour[r::2, c::2] = ch
    lamp = np.vectorize(LAMP.get)(colour) * 20000.0
    header = {"BAYERPAT": "GRBG"}
    flat = make_ccd(lamp, header=header)
    out = run_step("flat", make_ccd(np.full((40, 60), 500.0), header=header), calibrations={"flat": flat})
    for ch in "RGB":
        assert np.median(channel_pixels(out.data, GRBG, ch)) == pytest.approx(500.0, rel=1e-6)


# -- the real ZWO ASI120MC-S flats -------------------------------------------------------------------

def test_real_zwo_flats_give_a_master_with_each_channel_at_1(real_data, tmp_path):
    """The 10 real ASIImg flats after the 15 real biases, through the builders' Python API with
    an instrument written here (the type from the folder names, one row and one column trimmed
    so the pattern moves): each colour channel of the master flat has median 1 within 1e-3,
    where the inputs' channels differ by tens of percent."""
    from ccdflow.framework.builders.masters import build_master
    from ccdflow.framework.builders.reduction import group_frames
    from ccdflow.framework.engine.config import build
    from ccdflow.framework.engine.instrument_files import manager_with_files
    from ccdflow.framework.headers.scan import scan_paths

    zwo = real_data / "zwo-asi120mc-cmos"
    yaml = tmp_path / "asi120.yaml"
    yaml.write_text("name: asi120\nextends: asiimg\nheader:\n  frame_type_paths: {'Bias/*': bias, "
                    "'Flat/*': flat}\n  frame_type_from: [path]\n"
                    "geometry: {overscan_keyword: null, amplifiers: [{name: A, trim: '[2:1280,2:960]'}]}\n"
                    "recipes: {bias: [saturation, trim], flat: [saturation, trim, bias]}\n")
    manager = manager_with_files([yaml])
    config = build(manager, instrument="asi120")
    frames, unknown = scan_paths([zwo / "Bias", zwo / "Flat"], manager, instrument="asi120")
    groups = {g[0].frame_type: g for g in group_frames(frames).values()}
    assert (len(groups["bias"]), len(groups["flat"])) == (15, 10), unknown
    bias = build_master("bias", groups["bias"], manager, config, fallback="none")
    flat = build_master("flat", groups["flat"], manager, config, {"bias": bias}, fallback="none")
    assert flat.header["BAYERPAT"] == "GBRG" and flat.header["CF_BAYRW"].startswith("GRBG")
    trimmed = shifted(GRBG, 1, 1)
    data = flat.data if flat.mask is None else np.where(flat.mask, np.nan, flat.data)
    for ch in "RGB":
        assert np.nanmedian(channel_pixels(data, trimmed, ch)) == pytest.approx(1.0, abs=1e-3)
    levels = [flat.header[f"CF_LEVE{ch}"] for ch in "RGB"]
    assert max(levels) / min(levels) > 1.2  # a global normalisation would have left them apart
