"""dq.reconcile's memory of (mask, bits) pairs known to agree: a pair ``flagged`` made is trusted
without the comparison pass, any other pair is compared, a disagreeing pair is still repaired, and
the record goes when the mask does."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from astropy.nddata import CCDData

from ccdflow.framework import dq
from ccdflow.framework.numerics import frame_passes


@pytest.fixture
def checks(monkeypatch) -> list[tuple[int, int]]:
    """Every mask_agrees call reconcile makes, as (id(mask), id(bits))."""
    calls: list[tuple[int, int]] = []
    original = frame_passes.mask_agrees

    def counting(mask, flags):
        calls.append((id(mask), id(flags)))
        return original(mask, flags)

    monkeypatch.setattr(frame_passes, "mask_agrees", counting)
    return calls


def frame(shape=(64, 64)) -> CCDData:
    return CCDData(np.zeros(shape, np.float32), unit="adu")


def test_a_pair_made_by_flagged_is_trusted_without_a_check(checks):
    where = np.zeros((64, 64), bool)
    where[5, 7] = True
    mask, flags = dq.flagged(frame(), where, dq.SATURATED)
    assert flags[5, 7] == dq.SATURATED and np.array_equal(mask, flags != 0)
    assert dq.reconcile(flags, mask) is flags
    ccd = CCDData(np.zeros((64, 64), np.float32), unit="adu", mask=mask)
    ccd.flags = flags
    assert dq.of(ccd) is flags
    assert checks == []


def test_a_pair_with_nothing_flagged_is_trusted_too(checks):
    mask, flags = dq.flagged(frame(), np.zeros((64, 64), bool), dq.SATURATED)
    assert not mask.any() and not flags.any() and flags.dtype == dq.DTYPE
    assert dq.reconcile(flags, mask) is flags
    assert checks == []


def test_a_pair_never_seen_is_checked_once_then_remembered(checks):
    flags = np.zeros((64, 64), dq.DTYPE)
    flags[3, 4] = dq.HOT
    mask = flags != 0
    assert dq.reconcile(flags, mask) is flags
    assert checks == [(id(mask), id(flags))]
    assert dq.reconcile(flags, mask) is flags
    assert len(checks) == 1
    # the same mask with other bits (an equal copy) is another pair: checked
    other = flags.copy()
    assert dq.reconcile(other, mask) is other
    assert len(checks) == 2


def test_a_mask_that_disagrees_gets_masked_bits_and_is_not_remembered(checks):
    flags = np.zeros((64, 64), dq.DTYPE)
    flags[3, 4] = dq.HOT
    flags[9, 9] = dq.COSMIC_RAY  # bits where the mask is now clear: dropped
    mask = np.zeros((64, 64), bool)
    mask[3, 4] = True
    mask[10, 20] = mask[-1, -1] = True  # new pixels masked by someone else (a user's mask)
    before = flags.copy()
    for _ in range(2):
        out = dq.reconcile(flags, mask)
        assert out is not flags
        assert out[3, 4] == dq.HOT and out[10, 20] == dq.MASKED and out[-1, -1] == dq.MASKED
        assert out[9, 9] == 0
        assert np.array_equal(out != 0, mask) and np.count_nonzero(out) == 3
    assert len(checks) == 2  # a disagreeing pair is compared again every time
    assert np.array_equal(flags, before)  # the bits given are never changed


def test_the_record_goes_when_the_mask_is_collected():
    flags = np.zeros((64, 64), dq.DTYPE)
    flags[1, 2] = dq.LOW
    mask = flags != 0
    dq.remember_pair(mask, flags)
    key = id(mask)
    assert key in dq._AGREED and dq._known_pair(mask, flags)
    del mask
    gc.collect()
    assert key not in dq._AGREED
    # a new mask that may reuse the id is not trusted through the old record
    again = np.zeros((64, 64), bool)
    assert not dq._known_pair(again, flags)


def test_records_of_flagged_frames_do_not_pile_up():
    before = len(dq._AGREED)
    for i in range(50):
        where = np.zeros((32, 32), bool)
        where[i % 32, 0] = True
        dq.flagged(frame((32, 32)), where, dq.SATURATED)  # results dropped at once
    gc.collect()
    assert len(dq._AGREED) <= before


def test_a_pair_whose_bits_died_is_not_trusted(checks):
    flags = np.zeros((16, 16), dq.DTYPE)
    mask = flags != 0
    dq.remember_pair(mask, flags)
    del flags
    gc.collect()
    new_bits = np.ones((16, 16), dq.DTYPE)  # disagrees with the mask everywhere
    assert not dq._known_pair(mask, new_bits)
    out = dq.reconcile(new_bits, mask)
    assert len(checks) == 1 and not out.any()
