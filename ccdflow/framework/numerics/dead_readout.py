"""A raw frame that holds no signal at all: every pixel NaN/inf, or every pixel one value.

Such a frame comes from a failed readout (a camera that returned zeros, a writer that filled
the array with NaN), not from the sky or the detector. Combined into a master it used to fail
the whole group (an all-zero flat) or the write of the master (an all-NaN bias); it is found
here, before any step runs on it, so the master can be built without it.
"""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.frame import FrameMeta

#: Stride of the first look: one pixel in 7x7 varies in any real frame, so a full pass over the
#: frame is needed only when that sample is constant.
_SAMPLE = 7


def dead_readout(data: np.ndarray, mask: np.ndarray | None = None) -> str | None:
    """Why ``data`` holds no signal ('no finite pixel', 'every pixel is 0'), or None.

    ``mask`` marks the pixels read as NaN/inf (``read_ccd`` sets it only when there are any).
    """
    if mask is not None and np.asarray(mask, bool).all():
        return "no finite pixel (every pixel is NaN or inf)"
    sample = data[::_SAMPLE, ::_SAMPLE]
    sample = sample[np.isfinite(sample)] if mask is not None else sample.ravel()
    if sample.size > 1 and sample.min() != sample.max():
        return None
    values = data[np.isfinite(data)] if mask is not None else data
    if values.size == 0:
        return "no finite pixel (every pixel is NaN or inf)"
    low, high = values.min(), values.max()
    if low == high:
        return f"every pixel is {float(low):g} (a dead readout)"
    return None


def refuse_dead_readout(ccd: CCDData, meta: FrameMeta) -> None:
    """UnprocessableInputError naming the file when the raw frame holds no signal."""
    reason = dead_readout(np.asarray(ccd.data), ccd.mask)
    if reason is not None:
        raise UnprocessableInputError(reason, path=str(meta.path))
