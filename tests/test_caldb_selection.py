"""Selection: every hard gate, the dark exposure policy, cost ranking, tie-break, overrides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ccdflow.caldb.selection import CalRecord, NoCalibrationError, select
from ccdflow.framework.engine.instrument import Instrument
from tests.conftest import make_meta

T0 = datetime(2026, 3, 1, 22, 0)
RULES = Instrument(name="x", header={"frame_type": {}, "exposure_time": {}, "date_obs": {}}).caldb


def rec(id: int, **kw) -> CalRecord:
    values = dict(type="dark", instrument="generic", detector="default", binning="1x1",
                  readout_mode="default", raw_shape="40x60", filter=None, exposure_time=60.0,
                  temperature=-20.0, obs_time=T0, valid_from=None, valid_to=None, quality="good",
                  ingested_at=T0 + timedelta(hours=1), path=f"/m/{id}.fits")
    values.update(kw)
    return CalRecord(id=id, **values)


def frame(**kw):
    values = dict(date_obs=datetime(2026, 3, 2, 1, 0, tzinfo=UTC), exposure_time=60.0,
                  temperature=-20.0, shape=(40, 60))
    values.update(kw)
    return make_meta(**values)


def reasons(kind, meta, records):
    with pytest.raises(NoCalibrationError) as err:
        select(kind, meta, records, RULES[kind])
    return err.value, {c.id: c.reasons for c in err.value.receipt.candidates}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("type", "bias", "type: need dark, is bias"),
        ("instrument", "efosc2", "instrument: need generic, is efosc2"),
        ("detector", "ccd41", "detector: need default, is ccd41"),
        ("binning", "2x2", "binning: need 1x1, is 2x2"),
        ("readout_mode", "slow", "readout_mode: need default, is slow"),
        ("raw_shape", "40x61", "shape: need 40x60, is 40x61"),
        ("quality", "bad", "quality: marked bad"),
        ("obs_time", T0 - timedelta(days=41), "age: need within 30 d, is 41.1 d"),
        ("temperature", -17.5, "temperature: need -20.0 +-2 C, is -17.5 C"),
        ("valid_from", T0 + timedelta(days=2), "validity: frame 2026-03-02T01:00 before valid_from"),
        ("valid_to", T0, "validity: frame 2026-03-02T01:00 after valid_to"),
    ],
)
def test_each_hard_gate_rejects_with_required_and_actual(field, value, expected):
    _, why = reasons("dark", frame(), [rec(1, **{field: value})])
    assert any(r.startswith(expected) for r in why[1]), why


def test_temperature_gate_allows_within_tolerance_and_unknown():
    chosen, _ = select("dark", frame(), [rec(1, temperature=-18.1)], RULES["dark"])
    assert chosen.id == 1
    chosen, _ = select("dark", frame(temperature=None), [rec(2, temperature=-5.0)], RULES["dark"])
    assert chosen.id == 2  # unknown frame temperature: the gate cannot apply


def test_flats_need_the_same_filter_bias_does_not():
    _, why = reasons("flat", frame(filter="V"), [rec(1, type="flat", filter="R")])
    assert why[1] == ["filter: need V, is R"]
    chosen, _ = select("bias", frame(filter="V"), [rec(2, type="bias", filter="R")], RULES["bias"])
    assert chosen.id == 2


def test_all_failures_are_listed_not_just_the_first():
    _, why = reasons("dark", frame(), [rec(1, binning="2x2", quality="bad", temperature=-30.0)])
    assert len(why[1]) == 3


def test_exact_exposure_beats_any_scaled_dark():
    exact_far = rec(1, exposure_time=60.0, obs_time=T0 - timedelta(days=20), temperature=-21.5)
    scaled_near = rec(2, exposure_time=120.0, obs_time=T0)
    chosen, receipt = select("dark", frame(), [scaled_near, exact_far], RULES["dark"])
    assert chosen.id == 1 and receipt.scaling is None
    assert {c.id: c.exact_exposure for c in receipt.candidates} == {1: True, 2: False}


def test_exact_match_tolerance_is_one_percent_or_a_tenth_of_a_second():
    chosen, receipt = select("dark", frame(exposure_time=600.0),
                             [rec(1, exposure_time=605.0)], RULES["dark"])
    assert receipt.candidates[0].exact_exposure and receipt.scaling is None
    chosen, receipt = select("dark", frame(exposure_time=5.0), [rec(1, exposure_time=5.09)],
                             RULES["dark"])
    assert receipt.candidates[0].exact_exposure
    _, receipt = select("dark", frame(exposure_time=5.0), [rec(1, exposure_time=5.2)], RULES["dark"])
    assert not receipt.candidates[0].exact_exposure and receipt.scaling == pytest.approx(5.0 / 5.2)


def test_nearest_exposure_is_scaled_and_the_receipt_says_so():
    chosen, receipt = select("dark", frame(exposure_time=100.0),
                             [rec(1, exposure_time=30.0), rec(2, exposure_time=120.0)], RULES["dark"])
    assert chosen.id == 2 and receipt.scaling == pytest.approx(100 / 120)
    assert "scaled" in receipt.policy["exposure_policy"]


def test_scaling_can_be_forbidden_per_instrument():
    rule = RULES["dark"].model_copy(update={"allow_exposure_scaling": False})
    with pytest.raises(NoCalibrationError, match="scaling not allowed"):
        select("dark", frame(exposure_time=100.0), [rec(1, exposure_time=120.0)], rule)


def test_cost_ranks_by_time_and_temperature_distance():
    near_time = rec(1, obs_time=T0 + timedelta(hours=3), temperature=-21.0)
    near_temp = rec(2, obs_time=T0 - timedelta(days=6), temperature=-20.0)
    chosen, receipt = select("dark", frame(), [near_time, near_temp], RULES["dark"])
    terms = {c.id: c.terms for c in receipt.candidates}
    # |dt|/30 d + |dT|/2 C: 1 -> 0.0/30 + 0.5 = 0.5; 2 -> 6.125/30 = 0.204; each plus the
    # noise of an unscaled master of unknown size (1 frame): s**2 = f_T**2 (1 for id 2)
    assert terms[2]["time"] + terms[2]["temperature"] == pytest.approx(6.125 / 30, rel=1e-4)
    assert terms[1]["time"] + terms[1]["temperature"] == pytest.approx(0.5, abs=1e-4)
    assert (terms[2]["noise"], terms[2]["n_combined"]) == (1.0, 1)
    f_t = RULES["dark"].temperature_law.factor(-20.0, -21.0)
    assert terms[1]["noise"] == pytest.approx(f_t ** 2, rel=1e-5)
    assert chosen.id == 2


def test_tie_break_later_ingest_then_higher_id():
    a = rec(1, ingested_at=T0 + timedelta(days=1))
    b = rec(2, ingested_at=T0 + timedelta(days=2))
    c = rec(3, ingested_at=T0 + timedelta(days=2))
    assert select("dark", frame(), [a, b], RULES["dark"])[0].id == 2
    assert select("dark", frame(), [c, b, a], RULES["dark"])[0].id == 3
    assert select("dark", frame(), [a, c, b], RULES["dark"])[0].id == 3  # order-independent


def test_validity_range_admits_frames_inside_it():
    chosen, _ = select("dark", frame(), [rec(1, valid_from=T0, valid_to=T0 + timedelta(days=1))],
                       RULES["dark"])
    assert chosen.id == 1


def test_no_match_message_names_frame_and_closest_failures():
    err, _ = reasons("dark", frame(temperature=-25.0, binning=(2, 2)), [
        rec(1, binning="2x2", temperature=-18.7), rec(2, binning="2x2", temperature=-18.7),
        rec(3, binning="2x2", temperature=-25.0, obs_time=T0 - timedelta(days=41)),
    ])
    msg = str(err)
    assert msg.startswith("frame.fits: dark for generic default 2x2 60 s at -25.0 C: 3 candidates, "
                          "all rejected:")
    assert "2 temperature (need -25.0 +-2 C, is -18.7 C)" in msg
    assert "1 age (need within 30 d, is 41.1 d)" in msg


def test_nothing_recorded_is_a_clear_error():
    with pytest.raises(NoCalibrationError, match="no flat calibrations recorded for instrument generic"):
        select("flat", frame(), [], RULES["flat"])


def test_pinned_calibration_must_pass_gates_unless_waived():
    bad = rec(9, binning="2x2")
    with pytest.raises(NoCalibrationError, match=r"pinned dark id 9 fails .*binning: need 1x1, is 2x2"):
        select("dark", frame(), [], RULES["dark"], pinned=bad)
    chosen, receipt = select("dark", frame(), [], RULES["dark"], pinned=bad, waive=True)
    assert chosen.id == 9 and "binning: need 1x1, is 2x2" in receipt.waiver
    good = rec(8)
    chosen, receipt = select("dark", frame(), [rec(1)], RULES["dark"], pinned=good)
    assert chosen.id == 8 and receipt.waiver is None and receipt.note == "pinned by override"


def test_receipt_lists_every_candidate_accepted_first():
    records = [rec(1, quality="bad"), rec(2), rec(3, obs_time=T0 - timedelta(days=3))]
    _, receipt = select("dark", frame(), records, RULES["dark"])
    assert [c.id for c in receipt.candidates] == [2, 3, 1]
    assert receipt.candidates[-1].accepted is False and receipt.candidates[-1].cost is None
    summary = receipt.summary()
    assert summary["selected_id"] == 2 and summary["n_candidates"] == 3
    assert receipt.to_dict()["candidates"][0]["id"] == 2


def test_type_and_instrument_can_never_be_waived():
    with pytest.raises(NoCalibrationError, match="even with a waiver: type: need dark, is flat"):
        select("dark", frame(), [], RULES["dark"], pinned=rec(5, type="flat"), waive=True)
    with pytest.raises(NoCalibrationError, match="even with a waiver: instrument"):
        select("dark", frame(), [], RULES["dark"], pinned=rec(6, instrument="efosc2"), waive=True)
