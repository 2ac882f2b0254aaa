"""Build master bias/dark/flat frames: preprocess each input with its recipe, then combine."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow.framework import dq
from ccdflow.framework.builders.channels import (
    channel_stats,
    input_levels,
    normalise_master,
    normalised_input,
)
from ccdflow.framework.builders.master_header import master_header, master_stats
from ccdflow.framework.calibrations import calibration_type
from ccdflow.framework.engine.caltype import SETUP_FIELDS
from ccdflow.framework.engine.config import ResolvedConfig
from ccdflow.framework.engine.errors import AlgorithmError, UnprocessableInputError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.recipe import run_recipe
from ccdflow.framework.engine.step import StepContext
from ccdflow.framework.io import cards
from ccdflow.framework.io.fitsio import read_ccd, read_file_hashed, sha256_file
from ccdflow.framework.io.fitswrite import atomic_write, ccd_to_hdulist
from ccdflow.framework.io.spool import Spool, combine_frames
from ccdflow.framework.numerics.dead_readout import refuse_dead_readout

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager

__all__ = ["build_master", "check_group", "choose_rejection", "master_stats",
           "one_line_reason", "preprocess_into", "write_master"]


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
    if fallback == "minmax" and n >= 2:
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
    memory_limit: int | None = None,
    fallback: Fallback = "refuse",
    scratch_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    input_checksums: Sequence[str] | None = None,
    excluded: list[tuple[str, str]] | None = None,
    absent: Mapping[str, str] | None = None,
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

    ``absent`` says why each calibration the inputs' recipe wants but is not given is absent
    (not taken, optional and none matched): the step is SKIPPED with that reason, which the
    master's header keeps (``CF_<tag>N``, HISTORY).
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
        used_clip, counts, fallback_note = choose_rejection(clip, len(kept), fallback)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = combine_frames([spool.data[i] for i in kept], [spool.mask[i] for i in kept],
                                    memory_limit, method=method, clip=used_clip,
                                    scales=[pre.scales[i] for i in kept] if pre.scales else None, **counts)
    if excluded is not None:
        excluded.extend((str(metas[i].path), reason) for i, reason in sorted(pre.left_out.items()))
    data, error = result.data, result.error
    mask = result.n_used == 0
    if mask.all():
        raise UnprocessableInputError(f"no pixel of the master {kind} has a usable input (inputs "
                                      f"{', '.join(str(metas[i].path) for i in kept)})")
    if caltype.normalised:  # to a median of 1, per colour channel on a Bayer sensor
        data, error = normalise_master(data, error, mask, pre.header,
                                       ", ".join(str(metas[i].path) for i in kept))
    data, error = caltype.finish_master(data, error, mask)
    header = master_header(kind, metas, pre.header, method, used_clip, config, calibration_paths or {},
                           [c or sha256_file(m.file) for c, m in zip(pre.checksums, metas, strict=True)],
                           pre.left_out)
    if fallback_note:
        cards.FALLB.put(header, fallback_note[:68])
    cards.NNAN.put(header, pre.n_nonfinite)
    data = np.where(mask, np.float32(0), data).astype(np.float32, copy=False)
    stats = master_stats(kind, data[~mask] if mask.any() else data, metas, pre.levels)
    stats.update(channel_stats(lambda pixels, ms, lv: master_stats(kind, pixels, ms, lv), data, mask,
                               pre.header, metas, pre.levels, pre.channel_levels))
    cards.MASKF.put(stats, round(float(mask.mean()), 7))
    for key, (value, comment) in stats.items():
        header[key] = (value, comment)
    return CCDData(data, unit="adu", header=header,
                   uncertainty=StdDevUncertainty(np.nan_to_num(error).astype(np.float32)),
                   mask=mask if mask.any() else None,
                   flags=dq.flag(None, mask, dq.NO_DATA) if mask.any() else None)


@dataclass
class Preprocessed:
    """What preprocessing learnt on the way: raw levels, flat scales, the last header, and the
    inputs left out (index -> one-line reason)."""

    levels: list[float] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    #: per input, a colour flat's level in each channel (empty: the one level above)
    channel_levels: list[dict[str, float]] = field(default_factory=list)
    n_nonfinite: int = 0
    header: fits.Header = field(default_factory=fits.Header)
    left_out: dict[int, str] = field(default_factory=dict)
    #: SHA-256 of the bytes each input's pixels were read from ('' when it could not be read)
    checksums: list[str] = field(default_factory=list)


def preprocess_into(
    spool: Spool, kind: str, metas: Sequence[FrameMeta], manager: PluginManager, config: ResolvedConfig,
    calibrations: Mapping[str, CCDData | None] | None = None,
    progress: Callable[[str], None] | None = None, threads: int | None = None,
    skip_bad: bool = False, checksums: Sequence[str] | None = None,
    absent: Mapping[str, str] | None = None,
) -> Preprocessed:
    """Read each input once, run its recipe and park the result in ``spool``.

    Frames go through ``threads`` threads (default: the cores, at most 4): reading, the steps'
    numpy/numba work and the spool write release the GIL, so one frame's I/O overlaps another's
    arithmetic. RAM holds one frame per thread. An unusable frame (see :func:`build_master`)
    raises and cancels the frames not started, or with ``skip_bad`` is recorded in
    ``left_out`` and the others go on.

    Each file is read once: its SHA-256 and its pixels come from the same bytes. With
    ``checksums`` (hashed earlier, e.g. for the ledger), a file whose bytes have changed since
    is unusable: the master must not record one checksum and combine other pixels.
    """
    caltype = calibration_type(kind)
    normalised = caltype.normalised
    out = Preprocessed(levels=[0.0] * len(metas), scales=[0.0] * len(metas) if normalised else [],
                       channel_levels=[{} for _ in metas],
                       checksums=list(checksums) if checksums else [""] * len(metas))
    calibrations = dict(calibrations or {})

    def one(i: int) -> tuple[int, fits.Header | None]:
        meta = metas[i]
        try:
            content, sha = read_file_hashed(meta.file)
            if checksums and sha != checksums[i]:
                raise UnprocessableInputError(
                    f"file changed while the night read it (SHA-256 {checksums[i][:12]}... when "
                    f"hashed, {sha[:12]}... when read); left out", path=str(meta.path))
            out.checksums[i] = sha
            ccd = read_ccd(meta.file, hdu=meta.pixel_hdu(config.instrument.data_hdu), content=content)
            del content
            refuse_dead_readout(ccd, meta)
            context = StepContext(meta, config.instrument, absent=dict(absent or {}))
            ccd = run_recipe(manager, ccd, config, context, calibrations)
            # keywords first: raw cards astropy cannot parse (a decimal comma) are never parsed
            overscan = [float(ccd.header[k]) for k in ccd.header if k.startswith("CF_OS")]
            out.levels[i] = float(np.mean(overscan)) if overscan else 0.0
            ccd = caltype.prepare_input(ccd, meta)
            pixels = ccd.data
            if normalised:  # inputs scaled to one level (one per colour channel), from their pixels
                out.levels[i], levels, mosaic = input_levels(ccd, meta)
                out.channel_levels[i] = levels if mosaic is not None else {}
                out.scales[i] = 1.0 / out.levels[i] if mosaic is None else 1.0
                pixels = normalised_input(ccd, levels, mosaic)
            n_nonfinite = spool.put(i, pixels, ccd.mask, str(meta.path))
            if spool.mask[i].all():
                raise UnprocessableInputError("no finite, unmasked pixel after preprocessing",
                                              path=str(meta.path))
        except (UnprocessableInputError, AlgorithmError) as exc:
            if not skip_bad:
                raise
            out.left_out[i] = one_line_reason(exc)
            return 0, None
        return n_nonfinite, ccd.header

    pool = ThreadPoolExecutor(max(1, threads or min(4, os.cpu_count() or 1)))
    try:
        for meta, (n_nonfinite, header) in zip(metas, pool.map(one, range(len(metas))), strict=True):
            out.n_nonfinite += n_nonfinite
            if header is not None:
                out.header = header
            if progress is not None:
                progress(str(meta.path))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return out


def write_master(ccd: CCDData, path: str | Path) -> str:
    """Write a master atomically (SCI, UNCERT, MASK, and what its calibration type adds, e.g.
    a dark's RATE image) and return its SHA-256."""
    hdul = ccd_to_hdulist(ccd)
    hdul.extend(calibration_type(str(ccd.header[cards.MTYPE.keyword])).extra_hdus(ccd))
    atomic_write(hdul, path)
    return sha256_file(path)


def one_line_reason(exc: BaseException) -> str:
    """An error's message without the file name in front (the caller lists the file beside it)
    and on one line, for reports and header cards."""
    text = str(exc)
    path = getattr(exc, "path", None)
    if path and text.startswith(f"{path}: "):
        text = text[len(path) + 2:]
    return " ".join(text.split())
