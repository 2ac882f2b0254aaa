"""Flag the master bad-pixel mask's pixels in the frame's DQ mask, each BPM bit as its product bit."""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData
from pydantic import Field

from ccdflow.framework import dq
from ccdflow.framework.calibrations.bpm import HOT, LOW, PRODUCT_BITS, UNSTABLE
from ccdflow.framework.engine.errors import NoWorkError, UnprocessableInputError
from ccdflow.framework.engine.step import Step, StepContext, StepParams, header_of


class BpmParams(StepParams):
    bits: int = Field(
        HOT | LOW | UNSTABLE, ge=1, le=0x7FFF,
        description="Which BPM bits mask a pixel: 1 hot, 2 dead/low, 4 unstable.",
    )


def bad_pixels(bpm: np.ndarray, bits: int) -> np.ndarray:
    """Pixels with any of ``bits`` set in the integer bit mask."""
    return (_integers(bpm) & bits) != 0


def _integers(bpm: np.ndarray) -> np.ndarray:
    bpm = np.asarray(bpm)
    # float images of integer values (checked by the step)
    return bpm if np.issubdtype(bpm.dtype, np.integer) else bpm.astype(np.int32)


def product_bits(flags: np.ndarray | None, bpm: np.ndarray, bits: int) -> np.ndarray | None:
    """``flags`` (DQ bits) plus, for each selected BPM bit, its product bit (``PRODUCT_BITS``):
    a pixel both hot and low keeps both reasons."""
    bpm = _integers(bpm)
    for bit, product_bit in PRODUCT_BITS.items():
        if bits & bit:
            flags = dq.flag(flags, (bpm & bit) != 0, product_bit)
    return flags


class BadPixelMasker(Step[BpmParams]):
    """The BPM is optional: without one the step is SKIPPED, not an error."""

    name = "bpm"
    Params = BpmParams
    optional_calibrations = ("bpm",)
    description = "OR the master bad-pixel mask (selected bits) into the frame's mask."

    def run(self, ccd: CCDData, params: BpmParams, calibrations, context: StepContext) -> CCDData:
        bpm = calibrations.get("bpm")
        if bpm is None:
            raise NoWorkError("no bpm available")
        kind = bpm.header.get("CF_MTYPE")
        if kind is not None and kind != "bpm":
            raise UnprocessableInputError("the bpm calibration is not a bad-pixel mask",
                                          path=context.meta.path, keyword="CF_MTYPE", value=kind,
                                          expected="'bpm'")
        if bpm.shape != ccd.shape:
            raise UnprocessableInputError(
                f"master BPM shape {bpm.shape} does not match the frame {ccd.shape} "
                "(was the frame trimmed like the BPM?)", path=context.meta.path,
            )
        data = np.asarray(bpm.data)
        if not np.issubdtype(data.dtype, np.integer) and not np.array_equal(data, np.round(data)):
            raise UnprocessableInputError(
                f"master BPM holds non-integer values (dtype {data.dtype})", path=context.meta.path)
        bad = bad_pixels(data, params.bits)
        flags = product_bits(dq.of(ccd), data, params.bits)
        header = header_of(ccd)
        header["CF_BPMBT"] = (params.bits, "BPM bits applied (1 hot, 2 dead, 4 unstable)")
        header["CF_NBPM"] = (np.count_nonzero(bad), "pixels flagged by the BPM")
        return CCDData(ccd.data, unit=ccd.unit, header=header, mask=None if flags is None else flags != 0,
                       flags=flags, uncertainty=ccd.uncertainty)
