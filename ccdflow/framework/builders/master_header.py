"""A master's header: the normalised cards the caldb reads, its inputs (and those left out with
the reason), and the statistics tracked over time. Every number here is finite: FITS cannot
carry a NaN, and one NaN card used to fail the whole master."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from statistics import mean, pstdev

import numpy as np
from astropy.io import fits

from ccdflow import __version__
from ccdflow.framework.calibrations import calibration_type
from ccdflow.framework.engine.config import ResolvedConfig
from ccdflow.framework.engine.frame import FrameMeta, binning_text, shape_text
from ccdflow.framework.headers.units import to_unit
from ccdflow.framework.io import cards
from ccdflow.framework.io.fitsio import sha256_file
from ccdflow.framework.io.provenance import stamp_calibration
from ccdflow.framework.io.writable_header import printable


def master_stats(
    kind: str, data: np.ndarray, metas: Sequence[FrameMeta], input_levels: Sequence[float] = ()
) -> dict[str, tuple]:
    """Statistics the caldb tracks over time; a statistic that cannot be computed (no finite
    pixel, no finite level) is left out rather than written as NaN.

    ``CF_MED`` and ``CF_NOISE`` for every type (the noise a 3-sigma clipped standard deviation:
    MAD steps on integer data hide real changes); the calibration type adds its own (a bias's
    or flat's ``CF_LEVEL``, a dark's ``CF_DKRT``) from the median and the inputs' levels.
    """
    good = np.isfinite(data)
    finite = data if good.all() else data[good]  # float32: its median is exact; sums in float64
    del good
    if finite.size == 0:
        return {}
    from ccdflow.framework.numerics.exact_median import median_of  # numba: when used

    # the medians are taken in place (median_of: np.median's values bit for bit, nothing
    # reordered), so the one array this needs is the deviations, kept in finite's order
    median = median_of([finite])
    deviation = np.subtract(finite, np.float32(median))
    np.abs(deviation, out=deviation)
    mad = 1.4826 * median_of([deviation], finite_only=False)  # inf kept, as np.median keeps it
    if mad > 0:
        finite = finite[deviation < 3 * mad]
    del deviation
    stats: dict[str, tuple] = {
        cards.MED.keyword: (round(median, 5), cards.MED.comment),
        cards.NOISE.keyword: (round(_std(finite), 5), cards.NOISE.comment),
    }
    stats.update(calibration_type(kind).stats(median, metas, input_levels))
    return {k: v for k, v in stats.items() if math.isfinite(v[0])}


def _std(values: np.ndarray, piece: int = 1 << 20) -> float:
    """``np.std(values, dtype=np.float64)`` without its float64 copy of the whole array (32 MiB
    for a 2k master, 128 MiB for a 4k one): the deviations are squared and summed a piece at a
    time. The sums' order differs from numpy's pairwise one by float64 rounding only."""
    n = values.size
    mean = float(np.sum(values, dtype=np.float64)) / n
    total = 0.0
    for start in range(0, n, piece):
        deviation = values[start:start + piece].astype(np.float64)
        deviation -= mean
        total += float(np.sum(np.square(deviation, out=deviation)))  # not BLAS: its thread count
        # would change the bits between a serial run and a Dask worker
    return math.sqrt(total / n)


def master_header(kind: str, metas: Sequence[FrameMeta], last_header: fits.Header, method: str,
                  clip: str, config: ResolvedConfig, calibration_paths: Mapping[str, str],
                  checksums: Sequence[str] | None = None,
                  left_out: Mapping[int, str] | None = None,
                  calibration_checksums: Mapping[str, str] | None = None) -> fits.Header:
    """The header of a master combined from ``metas`` minus the indices in ``left_out``.

    ``CF_Innnn``/``CF_Snnnn`` list every input of the group, so the ledger knows the same group
    again on a re-run; ``CF_Xnnnn`` (same ``nnnn``) says why an input was left out, and
    ``NCOMBINE`` counts only the frames combined. Times, temperatures and exposure describe
    the frames combined.
    """
    left_out = left_out or {}
    used = [m for i, m in enumerate(metas) if i not in left_out]
    first = used[0]
    times = [m.date_obs.timestamp() for m in used]
    temps = [m.temperature for m in used if m.temperature is not None]
    header = last_header.copy()  # keeps CF_<STEP> statuses: the master's pixels had those steps
    header["IMAGETYP"] = (kind.upper(), "ccdflow master calibration")
    header["EXPTIME"] = (mean(m.exposure_time for m in used), "mean exposure of inputs (s)")
    _camera_cards(header, config, mean(m.exposure_time for m in used), mean(temps) if temps else None)
    header["DATE-OBS"] = (_iso(mean(times)), "mean observation time of inputs (UTC)")
    # Normalised metadata in ccdflow's own cards: the caldb reads these, whatever the
    # camera's keyword conventions (the raw cards above stay as the camera wrote them).
    cards.MTYPE.put(header, kind)
    cards.INST.put(header, first.instrument)
    cards.DET.put(header, first.detector)
    cards.EXPT.put(header, header["EXPTIME"])
    cards.FILT.put(header, first.filter or "")
    cards.DATE.put(header, header["DATE-OBS"])
    cards.TFIRS.put(header, _iso(min(times)))
    cards.TLAST.put(header, _iso(max(times)))
    if temps:
        cards.TEMP.put(header, round(mean(temps), 3))
        cards.TSPRD.put(header, round(pstdev(temps), 3))
    cards.BIN.put(header, binning_text(first.binning))
    cards.READM.put(header, first.readout_mode)
    cards.RAWSH.put(header, shape_text(first.shape))
    cards.CAM.put(header, first.camera or "")
    cards.GSET.put(header, first.gain_setting or "")
    cards.OFFS.put(header, first.offset or "")
    header["NCOMBINE"] = (len(used), "frames combined")
    cards.METH.put(header, method)
    cards.CLIP.put(header, clip)
    cards.VERS.put(header, __version__)
    # what shaped this master, not the whole run's config: a science-only parameter or another
    # plugin's step must not make the same master come out with other bytes
    cards.CHASH.put(header, config.recipe_hash(first.frame_type), f"config hash of the {kind} recipe")
    for i, meta in enumerate(metas, 1):
        cards.INPUT.at(i).put(header, printable(str(meta.path).rsplit("/", 1)[-1])[:68])
        cards.INPUT_SHA.at(i).put(header, checksums[i - 1] if checksums else sha256_file(meta.file))
    if left_out:
        cards.NEXCL.put(header, len(left_out))
    for i, reason in sorted(left_out.items()):
        # a long-string card without a comment: the whole reason, however long
        cards.LEFT_OUT.at(i + 1).put(header, f"{header[cards.INPUT.at(i + 1).keyword]}: {printable(reason)}")
    for cal, path in calibration_paths.items():  # the SHA-256 of the bytes read, when known
        stamp_calibration(header, cal, path, (calibration_checksums or {}).get(cal))
    return header


def _iso(timestamp: float) -> str:
    """FITS-style UTC time without the offset suffix."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")[:-6]


def _camera_cards(header: fits.Header, config: ResolvedConfig, exposure: float,
                  temperature: float | None) -> None:
    """The camera's own exposure and temperature keywords (``EXPOINUS``, ``CCD-TEMP``...) hold
    the inputs' mean, in each keyword's unit, not the last input's value they were copied with
    (a master dark said ``CCD-TEMP = 34.3`` beside ``CF_TEMP = 34.66``)."""
    hmap = config.instrument.header
    for spec, value, what in ((hmap.exposure_time, exposure, "exposure"),
                              (hmap.temperature, temperature, "temperature")):
        for key in spec.keyword:
            if key in header and value is not None:
                unit = spec.units.get(key, spec.unit)
                header[key] = (round(to_unit(value, unit), 6), f"mean {what} of inputs ({unit or 'raw'})")
