"""Build master bias/dark/flat frames: preprocess each input with its recipe, then combine."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow.framework import dq
from ccdflow.framework.builders.channels import channel_stats, normalise_master
from ccdflow.framework.builders.master_header import master_header, master_stats
from ccdflow.framework.builders.pair_combine import combine_pair
from ccdflow.framework.builders.preprocess import Preprocessed, preprocess_into
from ccdflow.framework.calibrations import calibration_type
from ccdflow.framework.engine.caltype import SETUP_FIELDS
from ccdflow.framework.engine.config import ResolvedConfig
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.io import cards
from ccdflow.framework.io.fitsio import sha256_file
from ccdflow.framework.io.fitswrite import atomic_write, ccd_to_hdulist
from ccdflow.framework.io.spool import Spool, combine_frames

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager

__all__ = ["Preprocessed", "build_master", "check_group", "choose_rejection", "few_inputs_warning",
           "master_stats", "one_line_reason", "preprocess_into", "with_common_error", "write_master"]


def check_group(kind: str, metas: Sequence[FrameMeta], config: ResolvedConfig) -> None:
    """Refuse inputs that must not be mixed, naming the offending files and values."""
    if not metas:
        raise UnprocessableInputError(f"no {kind} frames to combine")
    caltype = calibration_type(kind)
    wrong = [f"{m.path} ({m.frame_type})" for m in metas if m.frame_type != caltype.frame_type]
    if wrong:
        raise UnprocessableInputError(f"not {caltype.frame_type} frames: {', '.join(wrong)}")
    keys = [*SETUP_FIELDS, *caltype.also_match]
    for key in keys:
        by_value: dict[str, str] = {}
        for m in metas:
            by_value.setdefault(str(getattr(m, key)), str(m.path))
        if len(by_value) > 1:
            examples = "; ".join(f"{v} in {p}" for v, p in by_value.items())
            raise UnprocessableInputError(
                f"{kind} inputs disagree on {key}: {examples}; build one master per value")
    rule = config.instrument.match_rule(kind)
    caltype.check_inputs(metas, rule)
    temps = [(m.temperature, m) for m in metas if m.temperature is not None]
    tol = rule.temperature_tolerance
    if temps and tol is not None:
        (t_cold, cold), (t_warm, warm) = min(temps, key=lambda t: t[0]), max(temps, key=lambda t: t[0])
        if t_warm - t_cold > 2 * tol:
            raise UnprocessableInputError(
                f"{kind} inputs span {t_cold:.2f} C ({cold.path}) to {t_warm:.2f} C "
                f"({warm.path}), more than 2x the {tol} C tolerance of the {kind} match rule")


Fallback = Literal["refuse", "none", "minmax"]


def choose_rejection(clip: str, n: int, fallback: Fallback) -> tuple[str, dict[str, int], str | None]:
    """The rejection actually used for ``n`` frames: (clip, minmax counts, fallback note).

    A sigma clip needs at least 3 values per pixel to estimate a spread; with fewer, the
    caller's ``fallback`` decides: refuse, combine without rejection, or drop each pixel's
    highest value (cosmic rays are positive).
    """
    if clip == "minmax" and n < 3:
        raise UnprocessableInputError(f"minmax rejection of the lowest and highest value needs >= 3 "
                                      f"frames, got {n}")
    if clip != "sigma" or n >= 3:
        return clip, {}, None
    if fallback == "refuse":
        raise UnprocessableInputError(
            f"sigma clipping needs at least 3 frames, got {n}; add frames, choose clip='none' or "
            "'minmax', or allow a fallback (fallback='none' or 'minmax')")
    if fallback == "minmax" and n >= 2:  # build_master combines a pair without bias (pair_combine)
        return "minmax", {"n_low": 0, "n_high": 1}, f"minmax(0,1): only {n} frames for sigma clip"
    return "none", {}, f"none: only {n} frame(s) for sigma clip"


def build_master(
    kind: str,
    metas: Sequence[FrameMeta],
    manager: PluginManager,
    config: ResolvedConfig,
    calibrations: Mapping[str, CCDData | None] | None = None,
    *,
    method: Literal["median", "mean"] = "median",
    clip: Literal["sigma", "minmax", "none"] = "sigma",
    calibration_paths: Mapping[str, str] | None = None,
    calibration_checksums: Mapping[str, str] | None = None,
    memory_limit: int | None = None,
    fallback: Fallback = "refuse",
    scratch_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    input_checksums: Sequence[str] | None = None,
    excluded: list[tuple[str, str]] | None = None,
    absent: Mapping[str, str] | None = None,
    warn_below: int | None = None,
    min_frames: int = 1,
    sigma_low: float = 3.0,
    sigma_high: float = 3.0,
) -> CCDData:
    """Preprocess every input once (overscan, trim, bias, dark as the recipe says) into a disk
    spool, then combine it in row bands within ``memory_limit`` bytes.

    ``input_checksums`` (SHA-256 per input, in order) saves hashing the inputs again when the
    caller already did (the nightly pipeline's ledger needs them before it builds).

    ``scratch_dir`` holds the spool (default: the system temporary folder; the CLI passes the
    output's folder). NaN/inf input pixels are masked and never reach the master.

    An unusable input (its preprocessing raises UnprocessableInputError or AlgorithmError, its
    pixels are all NaN/inf or all one value, a flat's level is <= 0) raises, unless
    ``excluded`` is a list: then the frame is left out, ``(path, one-line reason)`` is appended
    to the list, the master is built from the rest (the rejection chosen for how many remain)
    and says what it left out (``CF_NEXCL``, ``CF_Xnnnn``). None left: UnprocessableInputError
    with every frame and reason.

    ``calibration_checksums`` (SHA-256 per calibration, of the bytes its pixels were read from)
    saves hashing the calibration files again for their cards.

    ``absent`` says why each calibration the inputs' recipe wants but is not given is absent
    (not taken, optional and none matched): the step is SKIPPED with that reason, which the
    master's header keeps (``CF_<tag>N``, HISTORY).

    Fewer usable inputs than ``min_frames``: UnprocessableInputError. Fewer than ``warn_below``:
    built, with the warning in ``CF_FEWIN`` and HISTORY (the night reports it).
    """
    check_group(kind, metas, config)
    caltype = calibration_type(kind)
    choose_rejection(clip, len(metas), fallback)  # refuse before any work when it cannot be done
    with Spool(len(metas), scratch_dir) as spool:
        pre = preprocess_into(spool, kind, metas, manager, config, calibrations, progress,
                              skip_bad=excluded is not None, checksums=input_checksums,
                              absent=absent)
        kept = [i for i in range(len(metas)) if i not in pre.left_out]
        if not kept:
            raise UnprocessableInputError(f"no usable {kind} frame in the group: " + "; ".join(
                f"{metas[i].path}: {reason}" for i, reason in sorted(pre.left_out.items())))
        if len(kept) < min_frames:
            raise UnprocessableInputError(
                f"only {len(kept)} usable {kind} frame(s), fewer than the {min_frames} a master needs "
                f"(masters: {{{kind}: {{min_frames: {min_frames}}}}}): "
                + ", ".join(str(metas[i].path) for i in kept))
        used_clip, counts, fallback_note = choose_rejection(clip, len(kept), fallback)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            frames, masks = [spool.data[i] for i in kept], spool.masks_or_none(kept)
            scales = [pre.scales[i] for i in kept] if pre.scales else None
            error_note = None
            if used_clip == "minmax" and len(kept) == 2 and fallback_note:  # unbiased for a pair
                result, error_note = combine_pair(frames, masks, scales)
            else:
                result = combine_frames(frames, masks, memory_limit, method=method, clip=used_clip,
                                        scales=scales, sigma_low=sigma_low, sigma_high=sigma_high,
                                        **counts)
            if len(kept) == 1:
                error_note = fill_single_frame_error(result.error, result.n_used, frames[0], masks[0],
                                                     scales[0] if scales else 1.0)
    if excluded is not None:
        excluded.extend((str(metas[i].path), reason) for i, reason in sorted(pre.left_out.items()))
    # an input recipe with its own noise model carries that too, which the scatter already holds
    recipe = config.instrument.recipe_for(metas[0].frame_type) or []
    models_noise = any(e.step == "uncertainty" for e in recipe)
    common = None if models_noise else pre.common_error()
    data, error = result.data, with_common_error(result.error, common)
    mask = result.n_used == 0
    shared_error = common is not None
    del result, common  # the arrays below replace these: not two copies alive at once
    if mask.all():
        raise UnprocessableInputError(f"no pixel of the master {kind} has a usable input (inputs "
                                      f"{', '.join(str(metas[i].path) for i in kept)})")
    if caltype.normalised:  # to a median of 1, per colour channel on a Bayer sensor
        data, error = normalise_master(data, error, mask, pre.header,  # the combine's own arrays
                                       ", ".join(str(metas[i].path) for i in kept), in_place=True)
    data, error = caltype.finish_master(data, error, mask)
    header = master_header(kind, metas, pre.header, method, used_clip, config, calibration_paths or {},
                           [c or sha256_file(m.file) for c, m in zip(pre.checksums, metas, strict=True)],
                           pre.left_out, calibration_checksums)
    for key in [k for k in header if k.startswith("CF_ON")]:  # the overscan step's level variance
        # copied from the last input: what is left in the master is the inputs' over their count
        header[key] = (float(f"{float(header[key]) / len(kept):.4g}"),
                       "row-correlated overscan variance left (ADU2)")
    if fallback_note:
        cards.FALLB.put(header, fallback_note[:68])
    if error_note:
        header.add_history(error_note)
    if shared_error:
        header.add_history("UNCERT: + the calibrations' error every input shares, in quadrature")
    if used_clip == "sigma":
        header.add_history(f"sigma clip: {sigma_low:g} below, {sigma_high:g} above the median (MAD-std)")
    if warn_below is not None and len(kept) < warn_below:
        few = few_inputs_warning(kind, len(kept), warn_below)
        cards.FEWIN.put(header, few[:68])
        header.add_history(few)
    cards.NNAN.put(header, pre.n_nonfinite)
    data = np.asarray(data, np.float32)  # the combine's own array (or the type's): set in place
    data[mask] = 0
    stats = master_stats(kind, data[~mask] if mask.any() else data, metas, pre.levels)
    stats.update(channel_stats(lambda pixels, ms, lv: master_stats(kind, pixels, ms, lv), data, mask,
                               pre.header, metas, pre.levels, pre.channel_levels))
    cards.MASKF.put(stats, round(float(mask.mean()), 7))
    for key, (value, comment) in stats.items():
        header[key] = (value, comment)
    error = np.nan_to_num(np.asarray(error, np.float32), copy=False)
    return CCDData(data, unit="adu", header=header, uncertainty=StdDevUncertainty(error, copy=False),
                   mask=mask if mask.any() else None,
                   flags=dq.flag(None, mask, dq.NO_DATA) if mask.any() else None)


def fill_single_frame_error(error: np.ndarray, n_used: np.ndarray, frame: np.ndarray,
                            mask: np.ndarray | None, scale: float) -> str | None:
    """Fill, in place, the error of a master made from one frame (the engine leaves it NaN, which
    would be written as 0: a master claiming no noise). No spread per pixel exists: the frame's
    robust pixel noise (1.4826 MAD of neighbour differences / sqrt 2) everywhere, which misses
    the larger noise of hot pixels and counts small-scale structure as noise. Returns the note."""
    lone = (n_used == 1) & ~np.isfinite(error)
    good = np.asarray(frame, np.float32) * np.float32(scale)
    if mask is not None:
        good = np.where(np.asarray(mask, bool), np.nan, good)
    diff = np.diff(good, axis=0)
    diff = diff[np.isfinite(diff)]
    if not lone.any() or diff.size == 0:
        return None
    noise = float(1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2))
    error[lone] = noise
    return f"one frame: error = its robust pixel noise {noise:.4g} everywhere (no per-pixel spread)"


def with_common_error(error: np.ndarray, common: np.ndarray | None) -> np.ndarray:
    """The combine's error with the calibrations' error added in quadrature.

    The combine measures each pixel's scatter across the inputs; the master bias subtracted from
    every dark (and the bias and dark from every flat) shifts all inputs alike, so its error is
    not in that scatter but is in the master (a master dark of 5 frames over a master bias of 9
    would understate its variance by a third). Master recipes model no noise of their own (no
    uncertainty step; the overscan step adds its term only where the recipe has one), so what the
    inputs carry is exactly the calibrations' error (see Preprocessed.common_error)."""
    if common is None:
        return error
    error = np.square(error, dtype=np.float32)  # a new array: the caller's is left as it was
    error += np.square(common)
    return np.sqrt(error, out=error)


def write_master(ccd: CCDData, path: str | Path) -> str:
    """Write a master atomically (SCI, UNCERT, MASK, and what its calibration type adds, e.g.
    a dark's RATE image) and return its SHA-256."""
    hdul = ccd_to_hdulist(ccd)
    hdul.extend(calibration_type(str(ccd.header[cards.MTYPE.keyword])).extra_hdus(ccd))
    return atomic_write(hdul, path)  # hashed as written


def few_inputs_warning(kind: str, n: int, warn_below: int) -> str:
    """The warning of a master built from fewer frames than its type's ``warn_below``."""
    return f"only {n} {kind} frame(s), fewer than {warn_below} (masters.{kind}.warn_below)"


def one_line_reason(exc: BaseException) -> str:
    """An error's message without the file name in front (the caller lists the file beside it)
    and on one line, for reports and header cards."""
    text = str(exc)
    path = getattr(exc, "path", None)
    if path and text.startswith(f"{path}: "):
        text = text[len(path) + 2:]
    return " ".join(text.split())
