"""Master QA at ingest: 20 simulated next-night masters of each type are not suspect; a 10 ADU
bias jump, a new dust donut and a dark with its cosmic rays left in are; a suspect master is
never chosen until a person accepts it, and the receipt says it was skipped."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.caldb import CalDB
from ccdflow.caldb.qa import limits_for, review
from ccdflow.framework.builders.masters import build_master
from ccdflow.framework.builders.reduction import group_frames
from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.instrument import MatchRule
from ccdflow.framework.engine.master_qa import MasterQa
from ccdflow.framework.headers.scan import scan_paths
from ccdflow.framework.io.fitswrite import write_ccd
from ccdflow.simulator import SimulationSpec, simulate_night
from ccdflow.simulator.optics import Donut, Optics, dust_pattern

NIGHTS = 21  # the first master of each type has nothing to compare with: 20 comparisons
KINDS = ("bias", "dark", "flat")


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """21 nights of the same simulated camera: each night's masters ingested in order.

    The simulator moves the window dust from night to night (a real change of the flats); here
    it stays put, so every next-night master differs from the last by new noise only."""
    from ccdflow.framework.engine.plugins import get_plugin_manager

    root = tmp_path_factory.mktemp("qa")
    spec = SimulationSpec(shape=(192, 192), overscan=16, n_bias=5, n_dark=4, dark_exptimes=(120.0,),
                          dark_temperatures=(-20.0,), n_flat=3, filters=("V",), n_science=1,
                          nights=NIGHTS, seed=3)
    with mock.patch.object(Optics, "window_dust_on", lambda self, night: list(self.window_dust)):
        night = simulate_night(root / "sim", spec)
    manager = get_plugin_manager(reload=True)
    config = build(manager, instrument="generic")
    frames, rejected = scan_paths(sorted(p for d in night.raw_dirs for p in d.glob("*.fits")), manager)
    assert not rejected
    groups = sorted((g for g in group_frames(frames).values() if g[0].frame_type in KINDS),
                    key=lambda g: (g[0].date_obs.date(), KINDS.index(g[0].frame_type)))
    db = CalDB.create(f"sqlite:///{root / 'caldb.sqlite'}")
    latest: dict = {}
    added: dict[str, list] = {k: [] for k in KINDS}
    for metas in groups:
        kind = metas[0].frame_type
        cals = {k: latest[k][0] for k in ("bias", "dark")[:KINDS.index(kind)]}
        ccd = build_master(kind, metas, manager, config, cals)
        path = root / "masters" / f"{kind}_{metas[0].date_obs:%m%d}.fits"
        write_ccd(ccd, path)
        latest[kind] = (ccd, metas, path)
        added[kind].append(db.add(path, manager))
    science = [f for f in frames if f.frame_type == "science"]
    yield {"db": db, "manager": manager, "config": config, "added": added, "latest": latest,
           "science": science, "root": root}
    db.close()


def variant(series, kind: str, name: str, change) -> tuple[Path, object]:
    """A copy of the last night's master of ``kind`` with its pixels changed, ingested."""
    _, _, source = series["latest"][kind]
    path = series["root"] / "masters" / f"{name}.fits"
    with fits.open(source) as hdul:
        hdul["SCI"].data = change(hdul["SCI"].data.astype(np.float32)).astype(np.float32)
        hdul.writeto(path)
    return path, series["db"].add(path, series["manager"])


def test_next_night_masters_are_not_suspect(series):
    for kind, results in series["added"].items():
        first, *rest = results
        assert first.quality == "good" and first.qa["verdict"] == "first of its setup"
        assert "no earlier good" in first.qa["note"]
        assert [r.quality for r in rest] == ["good"] * (NIGHTS - 1), kind  # false-suspect rate 0/20
        for previous, result in zip(results, rest, strict=False):
            assert result.qa["compared_id"] == previous.id  # the previous night's, same setup
            figures = result.qa["figures"]
            assert figures["outlier_fraction"] < 0.0005 and abs(figures["level_shift"]) < 0.1


def test_a_real_change_is_suspect_with_its_figures(series):
    db, last = series["db"], {k: r[-1] for k, r in series["added"].items()}
    _, jump = variant(series, "bias", "bias_jump", lambda d: d + 10.0)  # the whole level
    _, half = variant(series, "bias", "bias_half", lambda d: np.where(np.arange(d.shape[0])[:, None]
                                                                      >= d.shape[0] // 2, d + 10, d))
    donut = Donut(y=80.0, x=110.0, radius=10.0, depth=0.02)  # the simulator's shallowest dust
    _, dusty = variant(series, "flat", "flat_dust", lambda d: d * dust_pattern(d.shape, [donut]))
    for result, kind in ((jump, "bias"), (half, "bias"), (dusty, "flat")):
        assert result.quality == "suspect", result.qa
        assert result.qa["compared_id"] == last[kind].id and result.qa["exceeded"]
    assert jump.qa["figures"]["level_shift"] > 3  # 10 ADU against ~2.7 ADU per pixel
    assert dusty.qa["figures"]["smooth_outlier_fraction"] > 0.002
    # A dark combined as a plain mean without rejection keeps the night's cosmic rays.
    _, metas, _ = series["latest"]["dark"]
    ccd = build_master("dark", metas, series["manager"], series["config"],
                       {"bias": series["latest"]["bias"][0]}, method="mean", clip="none")
    path = series["root"] / "masters" / "dark_with_cosmics.fits"
    write_ccd(ccd, path)
    cosmic = db.add(path, series["manager"])
    assert cosmic.quality == "suspect" and cosmic.qa["figures"]["outlier_fraction"] > 0.002
    record = db.get(cosmic.id)  # stored: quality, reason, the QA and the ingest event
    assert record["quality"] == "suspect" and f"dark {last['dark'].id}" in record["quality_reason"]
    assert record["qa"]["figures"] == cosmic.qa["figures"]
    ingest = record["events"][0]
    assert ingest["action"] == "ingest" and ingest["details"]["qa"]["verdict"] == "suspect"
    assert ingest["details"]["after"]["quality"] == "suspect"


def test_suspect_is_skipped_until_accepted(series):
    db, frame = series["db"], max(series["science"], key=lambda m: m.date_obs)  # the last night
    rule = series["config"].instrument.caldb["bias"]
    before, _ = db.best("bias", frame, rule)
    path, suspect = variant(series, "bias", "bias_step", lambda d: d + 12.0)
    assert suspect.quality == "suspect"
    # Same observation time as the good one, ingested later: it would win the tie-break.
    chosen, receipt = db.best("bias", frame, rule)
    assert chosen["id"] == before["id"]
    line = f"bias {suspect.id} skipped as suspect ({db.get(suspect.id)['quality_reason']})"
    assert line in receipt.skipped  # (with any suspect bias an earlier test left)
    assert receipt.summary()["skipped"] == receipt.skipped  # stored with products, shown in reports
    rejected = next(c for c in receipt.candidates if c.id == suspect.id)
    assert any(r.startswith("quality: suspect") and f"mark-good {suspect.id}" in r
               for r in rejected.reasons)
    db.mark_good(suspect.id, "the step is real: new controller", who="night astronomer")
    chosen, receipt = db.best("bias", frame, rule)
    assert chosen["id"] == suspect.id and not receipt.skipped
    event = db.get(suspect.id)["events"][-1]
    assert event["action"] == "mark-good" and event["who"] == "night astronomer"
    assert (event["details"]["before"]["quality"], event["details"]["after"]["quality"]) == (
        "suspect", "good")
    db.mark_bad(suspect.id, "not needed any more")  # leave the series as it was for other tests


def test_limits_come_from_the_type_and_the_instrument_rule_overrides_them(series):
    dark = MatchRule(max_age_days=30)
    assert limits_for("dark", dark)["max_smooth_outlier_fraction"] == 0.003  # the dark's default
    assert limits_for("bias", dark)["max_smooth_outlier_fraction"] == 0.001
    assert not limits_for("bpm", dark)["enabled"]
    loose = MatchRule(max_age_days=30, qa=MasterQa(max_level_shift=10, max_smooth_outlier_fraction=1))
    assert limits_for("dark", loose)["max_level_change"] == 0.25  # not overridden: kept
    _, _, source = series["latest"]["bias"]
    path = series["root"] / "masters" / "bias_plus5.fits"
    with fits.open(source) as hdul:
        hdul["SCI"].data = hdul["SCI"].data + np.float32(5)
        hdul.writeto(path)
    from ccdflow.caldb.ingest import read_master

    fields = read_master(path, series["manager"])
    assert review(series["db"], dict(fields), loose)["verdict"] == "good"
    strict = review(series["db"], dict(fields), MatchRule(max_age_days=30))
    assert strict["verdict"] == "suspect" and strict["limits"]["max_level_shift"] == 1.0
    off = review(series["db"], dict(fields), MatchRule(max_age_days=30, qa=MasterQa(enabled=False)))
    assert off["verdict"] == "not compared" and off["compared_id"] is None


def test_show_history_list_and_the_night_report_say_suspect_with_figures(series, tmp_path):
    from click.testing import CliRunner

    from ccdflow.cli import cli
    from ccdflow.pipeline.night import NightResult
    from ccdflow.pipeline.report import write_report

    db = series["db"]
    path, suspect = variant(series, "flat", "flat_dust_cli",
                            lambda d: d * dust_pattern(d.shape, [Donut(60.0, 60.0, 12.0, 0.03)]))
    url = db.url
    runner = CliRunner()

    def caldb(*args):
        result = runner.invoke(cli, ["caldb", *map(str, args), "--caldb", url], env={"COLUMNS": "250"})
        assert result.exit_code == 0, result.output
        return result.stdout

    compared = suspect.qa["compared_id"]
    shown = caldb("show", suspect.id)
    assert "suspect" in shown and f"suspect against {compared}: smooth_outlier_fraction" in shown
    assert "qa.smooth_outlier_fraction" in shown
    history = caldb("history", "--type", "flat")
    assert f"suspect against {compared}" in history and "first of its setup" in history
    assert "suspect" in caldb("list", "--type", "flat")
    as_json = json.loads(caldb("history", "--type", "flat", "--json"))
    point = next(p for p in as_json["series"] if p["id"] == suspect.id)
    assert point["quality"] == "suspect" and point["qa"]["exceeded"]
    # The night's report: the masters table says suspect, with the figures and how to accept it.
    result = NightResult("raw", str(tmp_path), "serial", url, masters=[
        {"type": "flat", "name": path.name, "path": str(path), "status": "built", "n": 3,
         "caldb_id": suspect.id, "quality": "suspect", "qa": suspect.qa}])
    html = write_report(result)["html"].read_text()
    assert f"suspect against {compared}: smooth_outlier_fraction" in html
    assert f"ccdflow caldb mark-good {suspect.id}" in html
    db.mark_bad(suspect.id, "test master")


def test_a_night_registers_its_suspect_master_skips_it_and_says_so(tmp_path):
    """Two simulated nights as the simulator makes them: the window dust moves between them (a
    real change of the flat), so the second night's flat is suspect; its science frames keep
    the first night's flat, and the receipt, the product header and the report say why."""
    from ccdflow.pipeline.executor import SerialExecutor
    from ccdflow.pipeline.night import run_night
    from ccdflow.pipeline.report import write_report
    from ccdflow.pipeline.spec import RunSpec, forget_environments
    from ccdflow.testing.night import TINY_NIGHT

    sim = simulate_night(tmp_path / "sim", SimulationSpec(**{**TINY_NIGHT, "shape": (128, 128),
                                                            "nights": 2, "seed": 11}))
    url = f"sqlite:///{tmp_path / 'caldb.sqlite'}"
    CalDB.create(url).close()
    spec = RunSpec(outdir=str(tmp_path / "out"), caldb_url=url, instrument="generic")
    results = []
    try:
        for raw in sim.raw_dirs:
            with SerialExecutor() as executor:
                results.append(run_night(raw, spec, executor))
    finally:
        forget_environments()
    flat1, flat2 = (next(m for m in r.masters if m["type"] == "flat") for r in results)
    assert flat1["qa"]["verdict"] == "first of its setup"
    assert flat2["quality"] == "suspect" and flat2["qa"]["compared_id"] == flat1["caldb_id"]
    assert flat2["qa"]["figures"]["smooth_outlier_fraction"] > 0.001
    science = results[1].science[0]
    used = science["calibrations"]["flat"]
    assert used["id"] == flat1["caldb_id"]
    db = CalDB(url)
    reason = db.get(flat2["caldb_id"])["quality_reason"]
    db.close()
    assert used["skipped"] == [f"flat {flat2['caldb_id']} skipped as suspect ({reason})"]
    # astropy folds a long HISTORY line onto several cards of 72 characters
    history = "".join(str(h) for h in fits.getheader(science["path"])["HISTORY"])
    assert f"flat {flat2['caldb_id']} skipped as suspect" in history
    html = write_report(results[1])["html"].read_text()
    assert f"suspect against {flat1['caldb_id']}" in html and "skipped as suspect" in html


def test_an_instrument_file_overrides_the_limits_of_caldb_add(series, tmp_path):
    from ccdflow.framework.engine.instrument_files import manager_with_files

    site = tmp_path / "site.yaml"
    site.write_text("extends: generic\ncaldb:\n  bias:\n    qa: {max_level_shift: 10, "
                    "max_smooth_outlier_fraction: 1}\n")
    manager = manager_with_files([site])
    assert manager.instruments["generic"].caldb["bias"].max_age_days == 30  # the rest kept
    _, _, source = series["latest"]["bias"]
    for offset, expected in ((6.0, "good"), (7.0, "suspect")):  # the site's rule, the default
        path = tmp_path / f"bias_plus{offset:g}.fits"
        with fits.open(source) as hdul:
            hdul["SCI"].data = hdul["SCI"].data + np.float32(offset)
            hdul.writeto(path)
        added = series["db"].add(path, manager if expected == "good" else series["manager"])
        assert added.quality == expected, added.qa
        assert added.qa["limits"]["max_level_shift"] == (10 if expected == "good" else 1.0)
        series["db"].mark_bad(added.id, "test master")  # out of the other tests' way


def test_masters_without_any_error_are_not_compared_and_it_says_so(tmp_path):
    """Constant test images with no UNCERT, no noise and no scatter: nothing to judge within."""
    from ccdflow.framework.engine.plugins import get_plugin_manager
    from tests.test_dark_choice import write_master

    db = CalDB.create(f"sqlite:///{tmp_path / 'caldb.sqlite'}")
    try:
        first, second = tmp_path / "a.fits", tmp_path / "b.fits"
        write_master(first, 60.0, n=5)
        write_master(second, 60.0, n=7)  # the same exposure: a dark is compared with its like
        manager = get_plugin_manager()
        assert db.add(first, manager).qa["verdict"] == "first of its setup"
        added = db.add(second, manager)
        assert added.quality == "good" and added.qa["verdict"] == "not compared"
        assert "no error to compare within" in added.qa["note"]
    finally:
        db.close()


def test_a_dark_is_compared_only_with_darks_of_its_exposure(tmp_path):
    """A real night's darks of 5-120 s differ as rates (bias residual and readout glow over a few
    seconds): the Feder Apogee night made four of five suspect when a 5 s dark was judged
    against a 120 s one."""
    from ccdflow.framework.engine.plugins import get_plugin_manager
    from tests.test_dark_choice import write_master

    db = CalDB.create(f"sqlite:///{tmp_path / 'caldb.sqlite'}")
    try:
        manager = get_plugin_manager()
        for exposure in (120.0, 5.0, 60.0):
            write_master(tmp_path / f"d{exposure:g}.fits", exposure, n=5)
            qa = db.add(tmp_path / f"d{exposure:g}.fits", manager).qa
            assert qa["verdict"] == "first of its setup", (exposure, qa)
            assert "setup and exposure" in qa["note"]
    finally:
        db.close()
