"""Preprocessing a master's inputs: each raw frame read once, run through its recipe, and parked
in the spool the combine reads; what was learnt on the way (levels, scales, checksums, inputs left
out, and the error the calibrations applied to every input share) comes back in Preprocessed."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.framework.builders.channels import input_levels, normalised_input
from ccdflow.framework.calibrations import calibration_type
from ccdflow.framework.engine.config import ResolvedConfig
from ccdflow.framework.engine.errors import AlgorithmError, UnprocessableInputError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.recipe import run_recipe
from ccdflow.framework.engine.step import StepContext
from ccdflow.framework.io.fitsio import read_ccd, read_file_hashed
from ccdflow.framework.io.spool import Spool
from ccdflow.framework.numerics.dead_readout import refuse_dead_readout
from ccdflow.framework.numerics.frame_passes import add_finite

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager

__all__ = ["Preprocessed", "preprocess_into", "warm_kernels"]


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
    #: Sum over the inputs of the uncertainty their recipe carried (scaled as the combine scales
    #: them), and how many: the error of the calibrations subtracted from every input (a dark's
    #: master bias), the same in each, which the combine's scatter cannot see (None: none carried).
    carried_sum: np.ndarray | None = None
    n_carried: int = 0
    _common: np.ndarray | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def carry(self, error: np.ndarray, scale: float = 1.0) -> None:
        """Add one input's carried uncertainty times ``scale`` (the combine's scale of that
        input), NaN as 0; thread-safe: inputs are preprocessed in threads."""
        with self._lock:
            if self.carried_sum is None:
                self.carried_sum = np.zeros(error.shape, np.float64)
            add_finite(self.carried_sum, error, scale)
            self.n_carried += 1

    def common_error(self) -> np.ndarray | None:
        """The calibrations' error every input shares: the mean of what the inputs carried (a
        common offset passes whole through a mean, a clipped mean and a median alike). The
        float64 sum is divided in place and given up: the first call's result is kept."""
        if self._common is None and self.carried_sum is not None and self.n_carried:
            self._common = np.divide(self.carried_sum, self.n_carried, out=self.carried_sum
                                     ).astype(np.float32)
            self.carried_sum = None
        return self._common


def warm_kernels() -> None:
    """Load the compiled kernels preprocessing calls (numba's cache: ~0.3 s on the first call
    in a process, under numba's compiler lock, so both preprocessing threads would wait for it).
    ``ccdflow master`` runs this on a thread while the masters it applies are read and hashed,
    which leave the interpreter free. A failure here only means the kernel loads (and raises)
    on its first real call."""
    from ccdflow.framework.numerics import exact_median, frame_passes, kernels

    try:
        kernels.warm_up()
        frame_passes.warm_up()
        exact_median.warm_up()
    except Exception:  # noqa: BLE001 - see above: the real call reports it
        log.debug("kernel warm-up failed; kernels load on first use", exc_info=True)


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
            # the frame was read for this recipe alone: its steps may overwrite its arrays
            context = StepContext(meta, config.instrument, absent=dict(absent or {}), owns_pixels=True)
            ccd = run_recipe(manager, ccd, config, context, calibrations)
            # keywords first: raw cards astropy cannot parse (a decimal comma) are never parsed
            overscan = [float(ccd.header[k]) for k in ccd.header if k.startswith("CF_OS")]
            out.levels[i] = float(np.mean(overscan)) if overscan else 0.0
            ccd = caltype.prepare_input(ccd, meta)
            pixels, mask, header = ccd.data, ccd.mask, ccd.header
            carried = None if ccd.uncertainty is None else np.asarray(ccd.uncertainty.array, np.float32)
            if normalised:  # inputs scaled to one level (one per colour channel), from their pixels
                out.levels[i], levels, mosaic = input_levels(ccd, meta)
                out.channel_levels[i] = levels if mosaic is not None else {}
                out.scales[i] = 1.0 / out.levels[i] if mosaic is None else 1.0
                pixels = normalised_input(ccd, levels, mosaic)
                if carried is not None:  # scaled as the combine scales the input: in carry()
                    carried = normalised_input(CCDData(carried, unit=ccd.unit, header=header),
                                               levels, mosaic)
            del ccd  # what is parked is pixels, mask and carried: the frame's other planes go now
            n_nonfinite = spool.put(i, pixels, mask, str(meta.path), consume=True)  # ours: del below
            del pixels, mask
            if spool.masked[i] and spool.mask[i].all():
                raise UnprocessableInputError("no finite, unmasked pixel after preprocessing",
                                              path=str(meta.path))
            if carried is not None:
                out.carry(carried, out.scales[i] if normalised else 1.0)
        except (UnprocessableInputError, AlgorithmError) as exc:
            if not skip_bad:
                raise
            from ccdflow.framework.builders.masters import one_line_reason

            out.left_out[i] = one_line_reason(exc)
            return 0, None
        return n_nonfinite, header

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


