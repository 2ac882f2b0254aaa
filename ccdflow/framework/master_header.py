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
from ccdflow.framework.config import ResolvedConfig
from ccdflow.framework.fitsio import sha256_file
from ccdflow.framework.frame import FrameMeta
from ccdflow.framework.provenance import stamp_calibration
from ccdflow.framework.writable_header import printable


def master_stats(
    kind: str, data: np.ndarray, metas: Sequence[FrameMeta], input_levels: Sequence[float] = ()
) -> dict[str, tuple]:
    """Statistics the caldb tracks over time; a statistic that cannot be computed (no finite
    pixel, no finite level) is left out rather than written as NaN.

    ``CF_MED`` and ``CF_NOISE`` for every type (the noise a 3-sigma clipped standard deviation:
    MAD steps on integer data hide real changes); the calibration type adds its own (a bias's
    or flat's ``CF_LEVEL``, a dark's ``CF_DKRT``) from the median and the inputs' levels.
    """
    finite = data[np.isfinite(data)]  # float32: its median is exact; sums below in float64
    if finite.size == 0:
        return {}
    median = float(np.median(finite))
    deviation = np.abs(finite - np.float32(median))
    mad = 1.4826 * float(np.median(deviation))
    if mad > 0:
        finite = finite[deviation < 3 * mad]
    stats: dict[str, tuple] = {
        "CF_MED": (round(median, 5), "median of the master"),
        "CF_NOISE": (round(float(np.std(finite, dtype=np.float64)), 5), "3-sigma clipped std of the master"),
    }
    stats.update(calibration_type(kind).stats(median, metas, input_levels))
    return {k: v for k, v in stats.items() if math.isfinite(v[0])}


def master_header(kind: str, metas: Sequence[FrameMeta], last_header: fits.Header, method: str,
                  clip: str, config: ResolvedConfig, calibration_paths: Mapping[str, str],
                  checksums: Sequence[str] | None = None,
                  left_out: Mapping[int, str] | None = None) -> fits.Header:
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
    header["NCOMBINE"] = (len(used), "frames combined")
    header["CF_METH"] = (method, "combine method")
    header["CF_CLIP"] = (clip, "rejection")
    header["CF_VERS"] = (__version__, "ccdflow version")
    header["CF_CHASH"] = (config.config_hash(), "ccdflow config hash")
    for i, meta in enumerate(metas, 1):
        header[f"CF_I{i:04d}"] = (printable(str(meta.path).rsplit("/", 1)[-1])[:68], "input file")
        header[f"CF_S{i:04d}"] = checksums[i - 1] if checksums else sha256_file(meta.path)
    if left_out:
        header["CF_NEXCL"] = (len(left_out), "inputs left out (CF_Xnnnn: why)")
    for i, reason in sorted(left_out.items()):
        # a long-string card without a comment: the whole reason, however long
        header[f"CF_X{i + 1:04d}"] = f"{header[f'CF_I{i + 1:04d}']}: {printable(reason)}"
    for cal, path in calibration_paths.items():
        stamp_calibration(header, cal, path)
    return header


def _iso(timestamp: float) -> str:
    """FITS-style UTC time without the offset suffix."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")[:-6]
