"""Calibration frames group into masters by gaps within the match tolerance, for every numeric
group key (issue 14 item 1): odd cooler set points and exposures that differ in the last digit
make one master each, never a split at a fixed bin edge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

from ccdflow.framework.calibrations.dark import Dark
from ccdflow.framework.engine.caltype import CalibrationType, cluster_by_gaps
from ccdflow.framework.engine.errors import PluginError
from ccdflow.framework.engine.instrument import Instrument, MatchRule
from ccdflow.pipeline.plan import plan_masters
from tests.conftest import make_meta

HEADER = {"frame_type": {}, "exposure_time": {}, "date_obs": {}}
RULE = Instrument(name="g", header=HEADER).match_rule("dark")  # 2 C; 0.1 s or 1 %


def _dark(i: int, temp: float | None, exp: float = 60.0):
    return make_meta(path=f"/raw/dark_{i:02d}.fits", frame_type="dark", filter=None, exposure_time=exp,
                     temperature=temp, date_obs=datetime(2026, 3, 1, 20, tzinfo=UTC) + timedelta(minutes=i))


def _groups(frames, rule=RULE):
    return sorted(sorted((m.exposure_time, m.temperature) for m in g) for g in Dark.split_group(frames, rule))


def test_odd_set_points_and_exposures_make_one_master_each():
    """-15 +- 0.1 C (round(T/2) put its edge at -15), -5.3 and 0.7 C (odd set points 6 C apart),
    each at 59.99 and 60.01 s (round(t, 1) keeps them, round(t) would too, but 60.04 and 60.06
    straddle round(t, 1)'s edge) and at 300 s."""
    temps = {-15: [-15.1, -15.0, -14.9, -15.05, -14.95], -5.3: [-5.3, -5.25, -5.35], 0.7: [0.7, 0.75]}
    frames, i = [], 0
    for point in temps.values():
        for exp in (59.99, 60.01, 60.04, 60.06, 300.0):
            for t in point:
                frames.append(_dark(i, t, exp))
                i += 1
    groups = Dark.split_group(frames, RULE)
    assert len(groups) == 6  # 3 set points x (60 s, 300 s)
    for group in groups:
        assert max(m.temperature for m in group) - min(m.temperature for m in group) <= 0.2 + 1e-9
        exposures = {m.exposure_time for m in group}
        assert exposures in ({59.99, 60.01, 60.04, 60.06}, {300.0})
    assert sorted(len(g) for g in groups) == [2, 3, 5, 2 * 4, 3 * 4, 5 * 4]


def test_the_night_plans_one_master_per_set_point_named_by_its_means():
    frames = [_dark(i, t, e) for i, (t, e) in enumerate([(-15.1, 59.99), (-14.9, 60.01), (-15.0, 60.0),
                                                         (-5.3, 59.99), (-5.2, 60.01)])]
    planned = plan_masters(frames, lambda m: RULE)
    names = sorted(name for _, name, _ in planned)
    assert names == ["2026-03-01_dark_60s_-15C_1x1", "2026-03-01_dark_60s_-5C_1x1"]
    assert sorted(len(metas) for _, _, metas in planned) == [2, 3]


def test_gaps_split_and_spans_cap_each_numeric_key():
    # exposure: 1 % of 300 s is 3 s, so 298-301 s is one master and 310 s another
    assert _groups([_dark(i, -10.0, e) for i, e in enumerate([298.0, 300.0, 301.0, 310.0])]) == [
        [(298.0, -10.0), (300.0, -10.0), (301.0, -10.0)], [(310.0, -10.0)]]
    # 0.1 s absolute below 10 s: 1.0 and 1.05 together, 1.2 apart
    assert [len(g) for g in Dark.split_group([_dark(i, -10.0, e) for i, e in enumerate([1.0, 1.05, 1.2])],
                                             RULE)] == [2, 1]
    # a slow exposure creep (steps of 2 s at 300 s) is cut where the span exceeds the tolerance
    creep = [_dark(i, -10.0, 300.0 + 2 * i) for i in range(4)]
    assert [len(g) for g in Dark.split_group(creep, RULE)] == [2, 2]
    # a wider rule keeps them together
    wide = MatchRule(max_age_days=30, exposure_rel_tolerance=0.05, temperature_tolerance=2.0)
    assert [len(g) for g in Dark.split_group(creep, wide)] == [4]
    # frames without a temperature: their own master, after the others
    mixed = [_dark(0, -10.0), _dark(1, None), _dark(2, -10.1)]
    assert [len(g) for g in Dark.split_group(mixed, RULE)] == [2, 1]


class Glow(CalibrationType):
    """A plugin's type grouped by a numeric key it declares, with its own tolerance."""

    name: ClassVar[str] = "glow"
    frame_type: ClassVar[str | None] = "glow"
    numeric_group: ClassVar[tuple[str, ...]] = ("exposure_time", "temperature")

    @classmethod
    def group_tolerance(cls, field, value, rule):
        return (0.5, 1.0) if field == "temperature" else super().group_tolerance(field, value, rule)


class Broken(CalibrationType):
    name: ClassVar[str] = "broken"
    numeric_group: ClassVar[tuple[str, ...]] = ("gain",)


def test_a_plugin_type_declares_its_numeric_keys_and_tolerances():
    frames = [_dark(i, t, 30.0) for i, t in enumerate([0.0, 0.4, 0.8, 1.2, 3.0])]
    # gap 0.5, span 1.0: 0.0-0.8, then 1.2 (span), then 3.0 (gap)
    assert [len(g) for g in Glow.split_group(frames, None)] == [3, 1, 1]
    with pytest.raises(PluginError, match="override group_tolerance"):
        Broken.split_group([make_meta(gain=1.5)], None)
    assert cluster_by_gaps(frames, "temperature", lambda v: None) == [frames]
