"""FITS output: raw frames with the generic instrument's keywords, and the truth images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from ccdflow.simulator.amplifiers import amp_regions
from ccdflow.simulator.schedule import SimFrame, iso_ms
from ccdflow.simulator.spec import SimulationSpec

IMAGETYP = {"bias": "BIAS", "dark": "DARK", "flat": "FLAT", "science": "LIGHT", "sky": "SKY"}


def raw_header(frame: SimFrame, spec: SimulationSpec) -> fits.Header:
    """Header cards a typical acquisition program writes (see instruments/generic.yaml)."""
    ny, nx = spec.shape
    header = fits.Header()
    header["IMAGETYP"] = (IMAGETYP[frame.frame_type], "frame type")
    header["OBJECT"] = frame.object
    header["EXPTIME"] = (frame.exptime, "[s] exposure time")
    if frame.filter is not None:
        header["FILTER"] = (frame.filter, "filter in the beam")
    header["DATE-OBS"] = (iso_ms(frame.date_obs), "UTC start of exposure")
    header["CCD-TEMP"] = (frame.temperature, "[C] CCD temperature")
    header["XBINNING"] = 1
    header["YBINNING"] = 1
    header["INSTRUME"] = "ccdflow-sim"
    header["DETECTOR"] = "sim0"
    if spec.detector_keywords:
        _detector_cards(header, spec)
    if spec.amplifiers > 1:  # one BIASSEC cannot say it: cards per amplifier, and the YAML
        for amp in amp_regions(spec):
            header[f"BSEC{amp.name}"] = (amp.section(amp.overscan_cols), f"amp {amp.name} overscan")
            header[f"DSEC{amp.name}"] = (amp.section(amp.data_cols), f"amp {amp.name} data")
        return _finish(header)
    p = spec.prescan
    if spec.overscan:
        header["BIASSEC"] = (f"[{p + nx + 1}:{p + nx + spec.overscan},1:{ny}]", "overscan (x, y)")
    header["TRIMSEC"] = (f"[{p + 1}:{p + nx},1:{ny}]", "illuminated area (x, y)")
    return _finish(header)


def _detector_cards(header: fits.Header, spec: SimulationSpec) -> None:
    """GAIN and RDNOISE when every amplifier shares them; else one card per amplifier
    (GAIN_A, RDNOISE_A...), which no single-gain reading can mistake for the frame's."""
    amps = amp_regions(spec)
    if len({a.gain for a in amps}) == 1:
        header["GAIN"] = (amps[0].gain, "[e-/ADU]")
    else:
        for a in amps:
            header[f"GAIN_{a.name}"] = (a.gain, f"[e-/ADU] amplifier {a.name}")
    if len({a.read_noise for a in amps}) == 1:
        header["RDNOISE"] = (amps[0].read_noise, "[e-] read noise")
    else:
        for a in amps:
            header[f"RDNOIS_{a.name}"] = (a.read_noise, f"[e-] read noise, amplifier {a.name}")
    header["SATURATE"] = (spec.saturation, "[ADU] saturation level")


def _finish(header: fits.Header) -> fits.Header:
    header["BUNIT"] = "ADU"
    return header


def write_raw(frame: SimFrame, raw: np.ndarray, spec: SimulationSpec) -> None:
    """uint16 pixels stored the camera way: BITPIX 16 with BZERO 32768."""
    frame.path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(raw, raw_header(frame, spec)).writeto(frame.path, overwrite=True)


def write_truth(path: Path, data: np.ndarray, comment: str, unit: str) -> None:
    header = fits.Header()
    header["COMMENT"] = comment
    header["BUNIT"] = unit
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data, header).writeto(path, overwrite=True)


def check_no_strangers(raw_dir: Path, frames: list[SimFrame]) -> None:
    """Refuse to mix our frames with FITS files a different run or person left behind."""
    ours = {f.path.name for f in frames}
    strangers = sorted(p.name for p in raw_dir.glob("*.fits") if p.name not in ours)
    if strangers:
        raise FileExistsError(
            f"{raw_dir} already holds {len(strangers)} FITS file(s) this simulation would not "
            f"write (e.g. {strangers[0]}); use an empty output directory")
