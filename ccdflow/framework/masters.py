"""Build master bias/dark/flat frames: preprocess each input with its recipe, then combine."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from statistics import mean, pstdev
from typing import Any, Literal

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow import __version__
from ccdflow.framework.combine import combine
from ccdflow.framework.config import ResolvedConfig
from ccdflow.framework.errors import UnprocessableInputError
from ccdflow.framework.fitsio import read_ccd, sha256_file
from ccdflow.framework.frame import FrameMeta
from ccdflow.framework.provenance import stamp_calibration
from ccdflow.framework.recipe import run_recipe
from ccdflow.framework.step import StepContext

MASTER_TYPES = ("bias", "dark", "flat")


def check_group(kind: str, metas: Sequence[FrameMeta], config: ResolvedConfig) -> None:
    """Refuse inputs that must not be mixed, naming the offending files."""
    if not metas:
        raise UnprocessableInputError(f"no {kind} frames to combine")
    wrong = [m.path for m in metas if m.frame_type != kind]
    if wrong:
        raise UnprocessableInputError(f"not {kind} frames: {', '.join(map(str, wrong))}")
    keys = ["shape", "binning", "readout_mode", "detector"] + (["filter"] if kind == "flat" else [])
    for key in keys:
        values = {getattr(m, key) for m in metas}
        if len(values) > 1:
            raise UnprocessableInputError(
                f"{kind} inputs disagree on {key}: {sorted(map(str, values))}; build one master per value"
            )
    if kind == "dark":
        rule = config.instrument.caldb["dark"]
        exps = [m.exposure_time for m in metas]
        if max(exps) - min(exps) > max(rule.exposure_abs_tolerance, rule.exposure_rel_tolerance * max(exps)):
            raise UnprocessableInputError(f"dark inputs have different exposure times: {sorted(set(exps))} s")
        temps = [m.temperature for m in metas if m.temperature is not None]
        tol = rule.temperature_tolerance
        if temps and tol is not None and max(temps) - min(temps) > 2 * tol:
            raise UnprocessableInputError(
                f"dark inputs span {min(temps):.2f}..{max(temps):.2f} C, more than 2x the "
                f"{tol} C tolerance"
            )


def build_master(
    kind: Literal["bias", "dark", "flat"],
    metas: Sequence[FrameMeta],
    manager: Any,
    config: ResolvedConfig,
    calibrations: Mapping[str, CCDData | None] | None = None,
    *,
    method: Literal["median", "mean"] = "median",
    clip: Literal["sigma", "minmax", "none"] = "sigma",
    calibration_paths: Mapping[str, str] | None = None,
) -> CCDData:
    """Preprocess every input (overscan, trim, bias, dark as the recipe says) and combine."""
    check_group(kind, metas, config)
    calibrations = dict(calibrations or {})
    frames, masks, scales, levels = [], [], [], []
    for meta in metas:
        ccd = read_ccd(meta.path, hdu=config.instrument.data_hdu)
        ccd = run_recipe(manager, ccd, config, StepContext(meta, config.instrument), calibrations)
        overscan = [float(v) for k, v in ccd.header.items() if k.startswith("CF_OS")]
        levels.append(float(np.mean(overscan)) if overscan else 0.0)
        if kind == "flat":
            level = float(np.nanmedian(ccd.data))
            if not np.isfinite(level) or level <= 0:
                raise UnprocessableInputError(f"flat has median {level:.4g} after bias/dark; "
                                              "cannot scale it", path=meta.path)
            scales.append(1.0 / level)
            levels[-1] = level
        frames.append(ccd.data)
        masks.append(ccd.mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = combine(frames, method=method, clip=clip, scales=scales or None, masks=masks)
    data, error = result.data, result.error
    if kind == "flat":
        norm = float(np.nanmedian(data))
        data, error = data / norm, error / norm
    header = _master_header(kind, metas, ccd.header, method, clip, config, calibration_paths or {})
    stats = master_stats(kind, data, metas, levels)
    for key, (value, comment) in stats.items():
        header[key] = (value, comment)
    mask = result.n_used == 0
    return CCDData(np.nan_to_num(data).astype(np.float32), unit="adu", header=header,
                   uncertainty=StdDevUncertainty(np.nan_to_num(error).astype(np.float32)),
                   mask=mask if mask.any() else None)


def master_stats(
    kind: str, data: np.ndarray, metas: Sequence[FrameMeta], input_levels: Sequence[float] = ()
) -> dict[str, tuple]:
    """Statistics the caldb tracks over time.

    ``CF_LEVEL`` is the level of the raw inputs: for a bias, the overscan level removed plus
    what is left in the master (the bias level people watch drift); for a flat, the mean
    median of its inputs before normalisation (lamp or twilight brightness). ``CF_NOISE`` is
    a 3-sigma clipped standard deviation (MAD steps on integer data hide real changes).
    """
    finite = data[np.isfinite(data)].astype(np.float64)
    median = float(np.median(finite))
    mad = 1.4826 * float(np.median(np.abs(finite - median)))
    if mad > 0:
        finite = finite[np.abs(finite - median) < 3 * mad]
    stats: dict[str, tuple] = {
        "CF_MED": (round(median, 5), "median of the master"),
        "CF_NOISE": (round(float(np.std(finite)), 5), "3-sigma clipped std of the master"),
    }
    if kind == "bias" and input_levels:
        stats["CF_LEVEL"] = (round(mean(input_levels) + median, 4), "bias level of inputs (ADU)")
    if kind == "flat" and input_levels:
        stats["CF_LEVEL"] = (round(mean(input_levels), 3), "mean input level (ADU)")
    if kind == "dark":
        exptime = mean(m.exposure_time for m in metas)
        if exptime > 0:
            stats["CF_DKRT"] = (round(median / exptime, 7), "median dark rate (ADU/s)")
    return stats


def _master_header(kind, metas, last_header, method, clip, config, calibration_paths):
    first = metas[0]
    times = [m.date_obs.timestamp() for m in metas]
    temps = [m.temperature for m in metas if m.temperature is not None]
    header = last_header.copy()  # keeps CF_<STEP> statuses: the master's pixels had those steps
    header["IMAGETYP"] = (kind.upper(), "ccdflow master calibration")
    header["EXPTIME"] = (mean(m.exposure_time for m in metas), "mean exposure of inputs (s)")
    header["DATE-OBS"] = (_iso(mean(times)), "mean observation time of inputs (UTC)")
    # Normalised metadata in ccdflow's own cards: the caldb reads these, whatever the
    # camera's keyword conventions (the raw cards above stay as the camera wrote them).
    header["CF_MTYPE"] = (kind, "master calibration type")
    header["CF_INST"] = (first.instrument, "ccdflow instrument config")
    header["CF_DET"] = (first.detector, "detector")
    header["CF_EXPT"] = (header["EXPTIME"], "mean exposure of inputs (s)")
    header["CF_FILT"] = (first.filter or "", "filter ('' when none)")
    header["CF_DATE"] = (header["DATE-OBS"], "mean observation time of inputs (UTC)")
    header["CF_TFIRS"] = (_iso(min(times)), "first input (UTC)")
    header["CF_TLAST"] = (_iso(max(times)), "last input (UTC)")
    if temps:
        header["CF_TEMP"] = (round(mean(temps), 3), "mean detector temperature of inputs (C)")
        header["CF_TSPRD"] = (round(pstdev(temps), 3), "std of input temperatures (C)")
    header["CF_BIN"] = (f"{first.binning[0]}x{first.binning[1]}", "binning x by y")
    header["CF_READM"] = (first.readout_mode, "readout mode")
    header["CF_RAWSH"] = (f"{first.shape[0]}x{first.shape[1]}", "raw shape (ny x nx) of inputs")
    header["NCOMBINE"] = (len(metas), "frames combined")
    header["CF_METH"] = (method, "combine method")
    header["CF_CLIP"] = (clip, "rejection")
    header["CF_VERS"] = (__version__, "ccdflow version")
    header["CF_CHASH"] = (config.config_hash(), "ccdflow config hash")
    for i, meta in enumerate(metas, 1):
        header[f"CF_I{i:04d}"] = (str(meta.path).rsplit("/", 1)[-1][:68], "input file")
        header[f"CF_S{i:04d}"] = sha256_file(meta.path)
    for cal, path in calibration_paths.items():
        stamp_calibration(header, cal, path)
    return header


def _iso(timestamp: float) -> str:
    """FITS-style UTC time without the offset suffix."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")[:-6]
