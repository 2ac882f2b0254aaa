"""`ccdflow caldb` end to end: real masters built by ccdflow, real SQLite files, CliRunner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from click.testing import CliRunner

from ccdflow.caldb import CalDB
from ccdflow.caldb.rules import DEFAULT_RULE, rule_for
from ccdflow.cli import EXIT_CONFIG, EXIT_FAILURES, EXIT_INPUT, _add_commands, cli
from ccdflow.framework.builders.masters import build_master
from ccdflow.framework.builders.reduction import group_frames
from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.errors import ConfigError
from ccdflow.framework.engine.plugins import get_plugin_manager
from ccdflow.framework.headers.scan import scan_file, scan_paths
from ccdflow.framework.io.fitswrite import write_ccd
from ccdflow.simulator import SimulationSpec, simulate_night
from ccdflow.simulator.optics import Optics

if "caldb" not in cli.commands:
    _add_commands()

KINDS = ("bias", "dark", "flat")


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """Two simulated nights; per night a master bias, darks of 30 s and 60 s, and a V flat.

    The window dust stays put (the simulator moves it from night to night): the second night's
    flat then differs by noise only, and the master QA does not hold it as suspect."""
    root = tmp_path_factory.mktemp("caldb_cli")
    spec = SimulationSpec(shape=(48, 48), overscan=8, n_bias=3, n_dark=2, dark_exptimes=(30.0, 60.0),
                          dark_temperatures=(-20.0,), n_flat=2, filters=("V",), n_science=1, nights=2,
                          n_stars=3, n_saturated_stars=0, seed=5)
    with mock.patch.object(Optics, "window_dust_on", lambda self, night: list(self.window_dust)):
        sim = simulate_night(root / "sim", spec)
    manager = get_plugin_manager()
    config = build(manager, instrument="generic")
    masters: dict[tuple[str, int], Path] = {}
    science: dict[int, Path] = {}
    for n, raw_dir in enumerate(sim.raw_dirs, start=1):
        frames, rejected = scan_paths([raw_dir], manager)
        assert not rejected
        groups = group_frames(frames).values()
        built: dict[str, CCDData] = {}
        for kind in KINDS:
            for metas in sorted((g for g in groups if g[0].frame_type == kind),
                                key=lambda g: g[0].exposure_time):
                needs = {"bias": (), "dark": ("bias",), "flat": ("bias", "dark")}[kind]
                ccd = build_master(kind, metas, manager, config, {k: built[k] for k in needs},
                                   fallback="none")  # 2-3 frames: too few to clip
                name = f"{kind}{int(metas[0].exposure_time)}" if kind == "dark" else kind
                path = root / "masters" / f"n{n}_{name}.fits"
                write_ccd(ccd, path)
                masters[(name, n)] = path
                built.setdefault(kind, ccd)  # flats are corrected with the 30 s dark
        science[n] = next(Path(f.path) for f in frames if f.frame_type == "science")
    return {"root": root, "masters": masters, "science": science, "raw_dirs": sim.raw_dirs}


@pytest.fixture
def runner():
    return CliRunner()


def run(runner, *args, status=0):
    """Invoke `ccdflow caldb ARGS` on a wide terminal, check the exit status, return the result."""
    result = runner.invoke(cli, ["caldb", *map(str, args)], env={"COLUMNS": "200"})
    assert result.exit_code == status, (result.output, result.exception)
    return result


def run_json(runner, *args, status=0):
    return json.loads(run(runner, *args, "--json", status=status).stdout)


@pytest.fixture
def dbfile(tmp_path, runner):
    path = tmp_path / "caldb.sqlite"
    run(runner, "init", "--caldb", path)
    return path


@pytest.fixture
def loaded(dbfile, night, runner):
    """A caldb holding every master of both nights; returns (path, {(name, night): id})."""
    paths = sorted(night["masters"].items(), key=lambda kv: (kv[0][1], kv[0][0]))
    out = run_json(runner, "add", *(p for _, p in paths), "--caldb", dbfile)
    assert out["added"] == len(paths) and out["failed"] == 0
    ids = {key: r["id"] for (key, _), r in zip(paths, out["results"], strict=True)}
    return dbfile, ids


def best(runner, db, kind, frame, *extra, status=0):
    return run_json(runner, "best", "--type", kind, frame, "--caldb", db, *extra, status=status)


# -- init ------------------------------------------------------------------------------

def test_init_reports_url_and_revision_and_is_repeatable(tmp_path, runner):
    path = tmp_path / "sub" / "caldb.sqlite"
    first = run(runner, "init", "--caldb", path)
    assert f"sqlite:///{path}" in first.stdout and "schema revision" in first.stdout
    assert "None" not in first.stdout
    second = run(runner, "init", "--caldb", path)  # upgrading a current schema does nothing
    assert second.stdout == first.stdout
    assert run_json(runner, "list", "--caldb", path) == []


def test_a_missing_caldb_is_not_created_by_queries(tmp_path, runner):
    path = tmp_path / "nothing.sqlite"
    result = run(runner, "list", "--caldb", path, status=EXIT_INPUT)
    assert "no caldb at" in result.stderr and "ccdflow caldb init" in result.stderr
    assert not path.exists()


def test_caldb_from_environment(tmp_path, runner, monkeypatch, night):
    path = tmp_path / "env.sqlite"
    monkeypatch.setenv("CCDFLOW_CALDB", str(path))
    run(runner, "init")
    run(runner, "add", night["masters"][("bias", 1)])
    assert [r["type"] for r in run_json(runner, "list")] == ["bias"]
    assert path.is_file()


# -- add ------------------------------------------------------------------------------

def test_add_is_idempotent(dbfile, night, runner):
    bias = night["masters"][("bias", 1)]
    first = run(runner, "add", bias, "--caldb", dbfile)
    assert "1 added" in first.stdout
    again = run(runner, "add", bias, "--caldb", dbfile)
    cal_id = run_json(runner, "list", "--caldb", dbfile)[0]["id"]
    assert f"already present, id {cal_id}" in again.stdout
    assert "0 added, 1 already present, 0 failed" in again.stdout
    assert len(run_json(runner, "list", "--caldb", dbfile)) == 1


def test_add_directory_ingests_every_master(dbfile, night, runner):
    out = run_json(runner, "add", night["root"] / "masters", "--caldb", dbfile)
    assert out["added"] == len(night["masters"])


def test_add_refuses_bad_files_with_reasons_and_keeps_the_rest(dbfile, night, runner, tmp_path):
    good = night["masters"][("bias", 2)]
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(good.read_bytes()[:3000])  # truncated in the middle of the data
    no_date = tmp_path / "no_date.fits"
    with fits.open(night["masters"][("flat", 2)]) as hdul:
        del hdul[0].header["CF_DATE"]
        hdul.writeto(no_date)
    result = run(runner, "add", corrupt, good, no_date, "--caldb", dbfile, status=EXIT_FAILURES)
    assert "1 added, 0 already present, 2 failed" in result.stdout
    failures = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(failures) == 2
    assert str(corrupt) in failures[0] and "FITS" in failures[0]
    assert str(no_date) in failures[1] and "CF_DATE" in failures[1]
    assert [r["path"] for r in run_json(runner, "list", "--caldb", dbfile)] == [str(good)]


@pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")
def test_add_foreign_master_needs_type(dbfile, night, runner, tmp_path):
    """A master bias made by ccdproc (no CF_ cards), trimmed to the data area."""
    import ccdproc

    raws = sorted(night["raw_dirs"][1].glob("*bias*.fits"))
    ccds = [ccdproc.trim_image(CCDData.read(p, unit="adu"), fits_section="[1:48,1:48]") for p in raws]
    master = ccdproc.combine(ccds, method="median")
    path = tmp_path / "ccdproc_bias.fits"
    master.write(path)

    refused = run(runner, "add", path, "--caldb", dbfile, status=EXIT_FAILURES)
    assert "--type" in refused.stderr
    added = run_json(runner, "add", path, "--type", "bias", "--instrument", "generic",
                     "--raw-shape", "48x56", "--caldb", dbfile)
    cal_id = added["results"][0]["id"]
    record = run_json(runner, "show", cal_id, "--caldb", dbfile)
    assert (record["type"], record["instrument"], record["raw_shape"], record["shape"]) == (
        "bias", "generic", "48x56", "48x48")
    assert record["stats"]["median"] == pytest.approx(np.median(master.data), abs=1)
    # It competes with ccdflow's own masters for a raw frame of the same geometry, once the
    # own one is accepted: the ccdproc master kept the raw bias level (no overscan removed), so
    # the master QA finds ccdflow's ~1000 ADU lower and holds it as suspect.
    added = run_json(runner, "add", night["masters"][("bias", 2)], "--caldb", dbfile)["results"][0]
    own = added["id"]
    assert added["quality"] == "suspect" and added["qa"]["compared_id"] == cal_id
    assert added["qa"]["figures"]["level_shift"] < -100
    run(runner, "mark-good", own, "--reason", "overscan-subtracted, unlike the ccdproc one",
        "--caldb", dbfile)
    chosen = best(runner, dbfile, "bias", night["science"][2])
    assert {c["id"] for c in chosen["candidates"] if c["accepted"]} == {cal_id, own}


def test_add_checks_its_options(dbfile, night, runner):
    bias = night["masters"][("bias", 1)]
    run(runner, "add", bias, "--raw-shape", "48 by 56", "--caldb", dbfile, status=2)
    bad = run(runner, "add", bias, "--instrument", "nope", "--caldb", dbfile, status=EXIT_CONFIG)
    assert "generic" in bad.stderr  # lists the known instruments
    wrong = run(runner, "add", bias, "--type", "dark", "--caldb", dbfile, status=EXIT_FAILURES)
    assert "contradicts" in wrong.stderr


# -- list and show -----------------------------------------------------------------------

def test_list_filters(loaded, runner):
    db, ids = loaded
    every = run_json(runner, "list", "--caldb", db)
    assert len(every) == len(ids)
    assert {r["id"] for r in run_json(runner, "list", "--type", "flat", "--caldb", db)} == {
        ids[("flat", 1)], ids[("flat", 2)]}
    assert len(run_json(runner, "list", "--filter", "V", "--caldb", db)) == 2
    assert run_json(runner, "list", "--filter", "R", "--caldb", db) == []
    assert run_json(runner, "list", "--instrument", "efosc2", "--caldb", db) == []
    night2 = run_json(runner, "list", "--since", "2026-03-02", "--caldb", db)
    assert {r["id"] for r in night2} == {v for (_, n), v in ids.items() if n == 2}
    night1 = run_json(runner, "list", "--until", "2026-03-01", "--caldb", db)  # the whole day
    assert {r["id"] for r in night1} == {v for (_, n), v in ids.items() if n == 1}
    # An offset is converted to UTC: 2026-03-02T01:00+05:00 is 2026-03-01T20:00Z.
    after = run_json(runner, "list", "--since", "2026-03-02T01:00+05:00", "--until", "2026-03-01",
                     "--caldb", db)
    assert {r["id"] for r in after} == {v for (_, n), v in ids.items() if n == 1}
    assert run_json(runner, "list", "--since", "2026-03-02T01:00:11+05:00", "--until", "2026-03-01",
                    "--type", "bias", "--caldb", db) == []  # the bias is the mean of 20:00:00..20
    run(runner, "list", "--since", "last week", "--caldb", db, status=2)

    run(runner, "mark-bad", ids[("bias", 1)], "--reason", "ramp", "--caldb", db)
    assert ids[("bias", 1)] not in {r["id"] for r in run_json(runner, "list", "--caldb", db)}
    shown = run_json(runner, "list", "--include-bad", "--caldb", db)
    assert next(r for r in shown if r["id"] == ids[("bias", 1)])["quality"] == "bad"
    text = run(runner, "list", "--include-bad", "--caldb", db).stdout
    assert "bad" in text and f"{len(ids)} calibrations" in text


def test_show(loaded, runner, night):
    db, ids = loaded
    record = run_json(runner, "show", ids[("dark60", 1)], "--caldb", db)
    assert record["type"] == "dark" and record["exposure_time"] == 60.0
    assert record["n_combined"] == 2 and len(record["inputs"]) == 2
    assert record["path"] == str(night["masters"][("dark60", 1)])
    assert len(record["sha256"]) == 64
    assert [e["action"] for e in record["events"]] == ["ingest"]
    text = run(runner, "show", ids[("dark60", 1)], "--caldb", db).stdout
    assert "stats.dark_rate" in text and "ingest" in text and "inputs" in text
    missing = run(runner, "show", 999, "--caldb", db, status=EXIT_INPUT)
    assert "no calibration with id 999" in missing.stderr


# -- best ------------------------------------------------------------------------------

TOP_KEYS = {"selected", "candidates", "frame", "policy", "scaling", "waiver", "skipped", "as_of",
            "error"}
CANDIDATE_KEYS = {"id", "path", "accepted", "reasons", "cost", "terms"}


@pytest.mark.parametrize(("kind", "name", "scaling"), [("bias", "bias", None), ("dark", "dark60", None),
                                                       ("flat", "flat", None)])
def test_best_json_schema_and_choice(loaded, runner, night, kind, name, scaling):
    db, ids = loaded
    out = best(runner, db, kind, night["science"][2])
    assert set(out) == TOP_KEYS
    assert out["error"] is None and out["waiver"] is None and out["scaling"] == scaling
    assert out["selected"]["id"] == ids[(name, 2)]
    assert {"id", "path", "type"} <= set(out["selected"]) and out["selected"]["type"] == kind
    assert all(set(c) == CANDIDATE_KEYS for c in out["candidates"])
    assert out["candidates"][0]["id"] == ids[(name, 2)]  # accepted and cheapest first
    costs = [c["cost"] for c in out["candidates"] if c["accepted"]]
    assert costs == sorted(costs)
    assert out["frame"]["path"] == str(night["science"][2])
    assert out["policy"]["max_age_days"] == {"bias": 30, "dark": 30, "flat": 60}[kind]


def test_best_dark_prefers_exact_exposure_then_scales(loaded, runner, night, tmp_path):
    db, ids = loaded
    out = best(runner, db, "dark", night["science"][2])
    accepted = [c["id"] for c in out["candidates"] if c["accepted"]]
    assert ids[("dark30", 2)] in accepted and out["selected"]["id"] == ids[("dark60", 2)]
    odd = tmp_path / "sci_100s.fits"  # no 100 s dark: the nearest exposure is scaled
    with fits.open(night["science"][2]) as hdul:
        hdul[0].header["EXPTIME"] = 100.0
        hdul.writeto(odd)
    out = best(runner, db, "dark", odd)
    assert out["selected"]["id"] == ids[("dark60", 2)]
    assert out["scaling"] == pytest.approx(100 / 60)
    text = run(runner, "best", "--type", "dark", odd, "--caldb", db).stdout
    assert "scaled x1.667 (60 s -> 100 s)" in text


def test_best_table_explains(loaded, runner, night):
    db, ids = loaded
    text = run(runner, "best", "--type", "bias", night["science"][2], "--caldb", db).stdout
    assert "policy: within 30 d" in text
    assert f"selected bias {ids[('bias', 2)]}" in text
    rows = [line.split()[:2] for line in text.splitlines() if line.split()[:1] in (["ok"], [">>"], ["x"])]
    assert rows == [[">>", str(ids[("bias", 2)])], ["ok", str(ids[("bias", 1)])]]


def test_best_fails_naming_frame_and_gates(loaded, runner, night, tmp_path):
    db, _ = loaded
    frame_r = tmp_path / "sci_R.fits"
    with fits.open(night["science"][2]) as hdul:
        hdul[0].header["FILTER"] = "R"
        hdul.writeto(frame_r)
    out = best(runner, db, "flat", frame_r, status=EXIT_FAILURES)
    assert out["selected"] is None and len(out["candidates"]) == 2
    assert str(frame_r) in out["error"] and "filter R" in out["error"]
    assert "2 candidates, all rejected" in out["error"]
    assert all(c["reasons"] == ["filter: need R, is V"] and c["cost"] is None for c in out["candidates"])
    text = run(runner, "best", "--type", "flat", frame_r, "--caldb", db, status=EXIT_FAILURES)
    assert "filter: need R, is V" in text.stdout and "all rejected" in text.stdout
    nothing = best(runner, db, "bpm", night["science"][2], status=EXIT_FAILURES)
    assert "no bpm calibrations recorded" in nothing["error"]


def test_site_instrument_file_sets_the_rules(loaded, runner, night, tmp_path):
    db, ids = loaded
    site = tmp_path / "site.yaml"
    site.write_text("extends: generic\ncaldb:\n  bias: {max_age_days: 0.5}\n")
    out = best(runner, db, "bias", night["science"][2], "--instrument-config", site)
    assert out["policy"]["max_age_days"] == 0.5
    # The night-1 bias is a day older: outside the window, so not even a candidate.
    assert [c["id"] for c in out["candidates"]] == [ids[("bias", 2)]]
    text = run(runner, "best", "--type", "bias", night["science"][2], "--instrument-config", site,
               "--caldb", db).stdout
    assert "1 more bias records outside the 0.5 d window" in text
    # the file's instrument (named generic: it replaces the package's) can be named
    named = best(runner, db, "bias", night["science"][2], "--instrument-config", site,
                 "--instrument", "generic")
    assert named["policy"]["max_age_days"] == 0.5
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: nosuchcam\n")
    run(runner, "best", "--type", "bias", night["science"][2], "--instrument-config", bad,
        "--caldb", db, status=EXIT_CONFIG)


def test_best_on_an_unreadable_frame_says_why_in_one_line(loaded, runner, tmp_path):
    db, _ = loaded
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not FITS" * 500)
    result = run(runner, "best", "--type", "bias", junk, "--caldb", db, status=EXIT_INPUT)
    assert result.stderr.count("\n") == 1 and str(junk) in result.stderr


def test_best_unknown_instrument_is_a_config_error(loaded, runner, night):
    db, _ = loaded
    result = run(runner, "best", "--type", "bias", night["science"][2], "--instrument", "nope",
                 "--caldb", db, status=EXIT_CONFIG)
    assert "unknown instrument 'nope'" in result.stderr


def test_pin_and_waive(loaded, runner, night, tmp_path):
    db, ids = loaded
    old = ids[("bias", 1)]
    pinned = best(runner, db, "bias", night["science"][2], "--pin", old)
    assert pinned["selected"]["id"] == old and pinned["waiver"] is None
    by_path = best(runner, db, "bias", night["science"][2], "--pin", night["masters"][("bias", 1)])
    assert by_path["selected"]["id"] == old

    frame_r = tmp_path / "sci_R.fits"
    with fits.open(night["science"][2]) as hdul:
        hdul[0].header["FILTER"] = "R"
        hdul.writeto(frame_r)
    flat = ids[("flat", 2)]
    refused = best(runner, db, "flat", frame_r, "--pin", flat, status=EXIT_FAILURES)
    assert refused["selected"] is None and "waive" in refused["error"]
    waived = best(runner, db, "flat", frame_r, "--pin", flat, "--waive")
    assert waived["selected"]["id"] == flat
    assert "filter: need R, is V" in waived["waiver"]
    text = run(runner, "best", "--type", "flat", frame_r, "--pin", flat, "--waive", "--caldb", db)
    assert "waiver:" in text.stdout and "pinned" in text.stdout

    run(runner, "best", "--type", "flat", frame_r, "--waive", "--caldb", db, status=2)
    unknown = run(runner, "best", "--type", "bias", frame_r, "--pin", 999, "--caldb", db,
                  status=EXIT_INPUT)
    assert "999" in unknown.stderr


# -- quality and validity ------------------------------------------------------------------

def test_mark_bad_changes_the_choice_and_is_recorded(loaded, runner, night):
    db, ids = loaded
    new, old = ids[("bias", 2)], ids[("bias", 1)]
    frame = night["science"][2]
    assert best(runner, db, "bias", frame)["selected"]["id"] == new
    run(runner, "mark-bad", new, "--reason", "", "--caldb", db, status=EXIT_INPUT)
    run(runner, "mark-bad", new, "--caldb", db, status=2)  # --reason is required
    done = run(runner, "mark-bad", new, "--reason", "light leak", "--who", "night-assistant",
               "--caldb", db)
    assert f"calibration {new} marked bad: light leak" in done.stdout
    out = best(runner, db, "bias", frame)
    assert out["selected"]["id"] == old
    assert next(c for c in out["candidates"] if c["id"] == new)["reasons"] == [
        "quality: marked bad (light leak)"]
    events = run_json(runner, "show", new, "--caldb", db)["events"]
    assert (events[-1]["action"], events[-1]["reason"], events[-1]["who"]) == (
        "mark-bad", "light leak", "night-assistant")
    assert "mark-bad" in run(runner, "show", new, "--caldb", db).stdout

    run(runner, "mark-good", new, "--reason", "leak was elsewhere", "--caldb", db)
    assert best(runner, db, "bias", frame)["selected"]["id"] == new
    record = run_json(runner, "show", new, "--caldb", db)
    assert record["quality"] == "good" and record["events"][-1]["action"] == "mark-good"
    run(runner, "mark-good", 999, "--caldb", db, status=EXIT_INPUT)


def test_certify_and_decertify(loaded, runner, night):
    db, ids = loaded
    new, old = ids[("bias", 2)], ids[("bias", 1)]
    frame = night["science"][2]  # observed 2026-03-02 ~20:00 UTC
    run(runner, "certify", new, "--from", "2026-03-03", "--reason", "after the swap", "--caldb", db)
    out = best(runner, db, "bias", frame)
    assert out["selected"]["id"] == old
    assert any(r.startswith("validity: frame") for r in next(
        c for c in out["candidates"] if c["id"] == new)["reasons"])
    run(runner, "certify", new, "--from", "2026-03-01", "--to", "2026-03-02", "--caldb", db)
    assert run_json(runner, "show", new, "--caldb", db)["valid_to"].startswith("2026-03-02T23:59:59")
    assert best(runner, db, "bias", frame)["selected"]["id"] == new
    run(runner, "certify", new, "--from", "2026-03-05", "--to", "2026-03-01", "--caldb", db,
        status=EXIT_INPUT)
    run(runner, "certify", new, "--from", "2026-03-03", "--caldb", db)
    run(runner, "decertify", new, "--reason", "range was wrong", "--caldb", db)
    record = run_json(runner, "show", new, "--caldb", db)
    assert record["valid_from"] is None and record["valid_to"] is None
    assert [e["action"] for e in record["events"]] == [
        "ingest", "certify", "certify", "certify", "decertify"]
    assert record["events"][-1]["reason"] == "range was wrong"
    assert best(runner, db, "bias", frame)["selected"]["id"] == new


# -- history ---------------------------------------------------------------------------

def test_history_table_json_and_plot(loaded, runner, night, tmp_path):
    db, ids = loaded
    out = run_json(runner, "history", "--type", "dark", "--stat", "dark_rate", "--caldb", db)
    assert out["stat"] == "dark_rate" and out["plot"] is None
    assert [p["id"] for p in out["series"]] == [r["id"] for r in run_json(
        runner, "list", "--type", "dark", "--caldb", db)]
    for point in out["series"]:
        path = Path(point["path"])
        assert point["value"] == pytest.approx(fits.getheader(path)["CF_DKRT"])
    default = run_json(runner, "history", "--type", "dark", "--caldb", db)
    assert default["stat"] == "dark_rate"
    flats = run_json(runner, "history", "--type", "flat", "--filter", "V", "--caldb", db)
    assert flats["stat"] == "level" and [p["filter"] for p in flats["series"]] == ["V", "V"]
    assert run_json(runner, "history", "--type", "flat", "--filter", "R", "--caldb", db)["series"] == []
    noise = run_json(runner, "history", "--type", "bias", "--stat", "read_noise", "--caldb", db)
    assert noise["stat"] == "noise" and len(noise["series"]) == 2

    run(runner, "mark-bad", ids[("dark60", 1)], "--reason", "hot", "--caldb", db)
    assert len(run_json(runner, "history", "--type", "dark", "--caldb", db)["series"]) == 3
    with_bad = run_json(runner, "history", "--type", "dark", "--include-bad", "--caldb", db)
    assert [p["quality"] for p in with_bad["series"]].count("bad") == 1
    assert len(run_json(runner, "history", "--type", "dark", "--since", "2026-03-02",
                        "--caldb", db)["series"]) == 2

    plot = tmp_path / "plots" / "dark_rate.png"
    text = run(runner, "history", "--type", "dark", "--include-bad", "--plot", plot, "--caldb", db)
    assert "dark_rate" in text.stdout and f"plot written to {plot}" in text.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    image = imread(plot)
    assert image.shape[0] >= 300 and image.shape[1] >= 500
    assert image[..., :3].std() > 0.05  # not a blank canvas

    unknown = run(runner, "history", "--type", "bias", "--stat", "bogus", "--caldb", db,
                  status=EXIT_INPUT)
    assert "available: level, median, noise" in unknown.stderr
    empty = run(runner, "history", "--type", "bias", "--plot", tmp_path / "e.png",
                "--since", "2027-01-01", "--caldb", db, status=EXIT_INPUT)
    assert "nothing to plot" in empty.stderr


# -- products: used-by, stale -------------------------------------------------------------

def record_product(db_path: Path, frame: Path, out: Path) -> dict[str, int]:
    """What a pipeline does after reducing ``frame``: record the calibrations it used."""
    manager = get_plugin_manager()
    meta = scan_file(frame, manager)
    db = CalDB(db_path)
    try:
        used = {k: db.best(k, meta, rule_for(manager, meta.instrument, k))[1] for k in KINDS}
        db.record_product(out, meta, used, sha256="0" * 64)
    finally:
        db.close()
    return {k: r.selected_id for k, r in used.items()}


def test_used_by_and_stale_after_a_better_master(dbfile, night, runner, tmp_path):
    night1 = [p for (_, n), p in night["masters"].items() if n == 1]
    run(runner, "add", *night1, "--caldb", dbfile)
    used = record_product(dbfile, night["science"][2], tmp_path / "reduced" / "sci2.fits")
    assert run_json(runner, "stale", "--caldb", dbfile) == []
    users = run_json(runner, "used-by", used["bias"], "--caldb", dbfile)
    assert [(u["product_id"], u["type"], u["raw_name"]) for u in users] == [
        (1, "bias", night["science"][2].name)]
    assert users[0]["receipt"]["selected_id"] == used["bias"]
    assert "1 product used calibration" in run(runner, "used-by", used["bias"], "--caldb", dbfile).stdout

    run(runner, "add", *(p for (_, n), p in night["masters"].items() if n == 2), "--caldb", dbfile)
    stale = run_json(runner, "stale", "--caldb", dbfile)
    assert {r["type"] for r in stale} == set(KINDS)
    assert all(r["product_id"] == 1 and r["used"] == used[r["type"]] and r["best_now"] != r["used"]
               for r in stale)
    assert "1 stale product" in run(runner, "stale", "--caldb", dbfile).stdout
    run(runner, "used-by", 999, "--caldb", dbfile, status=EXIT_INPUT)


def test_stale_after_the_used_master_is_marked_bad(loaded, runner, night, tmp_path):
    db, ids = loaded
    used = record_product(db, night["science"][1], tmp_path / "sci1.fits")
    assert used["bias"] == ids[("bias", 1)]
    assert run_json(runner, "stale", "--caldb", db) == []
    marked = run(runner, "mark-bad", used["bias"], "--reason", "ramp", "--caldb", db)
    assert "1 product used it" in marked.stdout
    stale = run_json(runner, "stale", "--caldb", db)
    assert [(r["type"], r["used"], r["best_now"]) for r in stale] == [
        ("bias", ids[("bias", 1)], ids[("bias", 2)])]


# -- verify ----------------------------------------------------------------------------

def test_verify_detects_changed_and_missing_files(dbfile, night, runner, tmp_path):
    copies = []
    for (name, n), path in night["masters"].items():
        copies.append(tmp_path / "m" / f"n{n}_{name}.fits")
        copies[-1].parent.mkdir(exist_ok=True)
        shutil.copy(path, copies[-1])
    run(runner, "add", *copies, "--caldb", dbfile)
    ok = run_json(runner, "verify", "--caldb", dbfile)
    assert ok["checked"] == len(copies) and ok["counts"]["ok"] == len(copies) and ok["problems"] == []
    assert "0 missing, 0 changed" in run(runner, "verify", "--caldb", dbfile).stdout

    before = run_json(runner, "list", "--include-bad", "--caldb", dbfile)
    changed, gone = copies[0], copies[1]
    with fits.open(changed, mode="update") as hdul:
        hdul[0].header["OBSERVER"] = "someone"
    gone.unlink()
    out = run_json(runner, "verify", "--caldb", dbfile, status=EXIT_FAILURES)
    assert out["counts"] == {"ok": len(copies) - 2, "missing": 1, "changed": 1, "unreadable": 0}
    status = {p["path"]: p["status"] for p in out["problems"]}
    assert status == {str(changed): "changed", str(gone): "missing"}
    text = run(runner, "verify", "--caldb", dbfile, status=EXIT_FAILURES).stdout
    assert "changed" in text and "missing" in text
    assert run_json(runner, "list", "--include-bad", "--caldb", dbfile) == before  # read-only


# -- rules and help ----------------------------------------------------------------------

def test_rule_for(night):
    manager = get_plugin_manager()
    assert rule_for(manager, "generic", "dark").temperature_tolerance == 2.0
    assert rule_for(manager, "generic", "flat").max_age_days == 60
    unknown = rule_for(manager, "generic", "shutter")  # a type no installed plugin registers
    assert unknown == DEFAULT_RULE and unknown.max_age_days == 30
    assert unknown.must_match == ["instrument", "camera", "detector", "binning", "readout_mode",
                                  "gain_setting", "offset", "shape"]
    with pytest.raises(ConfigError, match="registered: .*generic"):
        rule_for(manager, "nope", "bias")


def test_plot_lines_group_comparable_masters(tmp_path):
    from ccdflow.caldb.history import plot_history, setup_label

    assert setup_label({"type": "dark", "temperature": -19.96, "filter": None}) == "-20 C"
    assert setup_label({"type": "flat", "temperature": -20.0, "filter": "V"}) == "filter V"
    assert setup_label({"type": "bias", "temperature": -20.0, "filter": None}) == ""
    assert setup_label({"type": "bias", "camera": "ZWO ASI120MC", "gain_setting": "0", "offset": "9",
                        "filter": None}) == "ZWO ASI120MC, gain 0, offset 9"  # never one line
    series = [{"type": "dark", "obs_time": f"2026-03-0{d}T20:00:00", "stat": "dark_rate",
               "value": 0.03 * (t / -20), "quality": "bad" if d == 3 and t == -20 else "good",
               "temperature": t, "filter": None} for d in (1, 2, 3) for t in (-20, -14)]
    path = plot_history(series, tmp_path / "p.png", "darks")
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", ["init", "add", "list", "show", "best", "history", "mark-bad",
                                  "mark-good", "certify", "decertify", "used-by", "stale", "verify"])
def test_every_command_has_help_with_an_example(runner, name):
    text = run(runner, name, "--help").stdout
    assert "--caldb" in text and "ccdflow caldb " + name in text
    query = name not in {"init", "mark-bad", "mark-good", "certify", "decertify"}
    assert ("--json" in text) == query


# -- the same commands on PostgreSQL ---------------------------------------------------------

def test_commands_on_each_backend(caldb_url, night, runner, tmp_path):
    """init/add/best/history/verify through a URL; skipped for PostgreSQL only when no server answers."""
    init = run(runner, "init", "--caldb", caldb_url)
    assert "schema revision" in init.stdout
    out = run_json(runner, "add", *night["masters"].values(), "--caldb", caldb_url)
    assert out["added"] == len(night["masters"])
    again = run_json(runner, "add", *night["masters"].values(), "--caldb", caldb_url)
    assert again["already_present"] == len(night["masters"])
    for kind in KINDS:
        chosen = best(runner, caldb_url, kind, night["science"][2])
        assert chosen["selected"]["path"] == str(night["masters"][(kind if kind != "dark" else
                                                                  "dark60", 2)])
    late = tmp_path / "late.fits"  # months later: every bias is outside the window
    with fits.open(night["science"][2]) as hdul:
        hdul[0].header["DATE-OBS"] = "2026-06-01T22:00:00"
        hdul.writeto(late)
    failed = best(runner, caldb_url, "bias", late, status=EXIT_FAILURES)
    assert "2 candidates, all rejected" in failed["error"] and "age" in failed["error"]
    assert len(run_json(runner, "history", "--type", "dark", "--caldb", caldb_url)["series"]) == 4
    assert run_json(runner, "verify", "--caldb", caldb_url)["counts"]["ok"] == len(night["masters"])


def test_init_hides_the_password(postgres_url, runner):
    url = postgres_url.replace("@", ":s3cret-pw@", 1)  # trust auth ignores it
    result = runner.invoke(cli, ["caldb", "init", "--caldb", url])
    assert "s3cret-pw" not in result.output and "***" in result.output


def test_other_commands_do_not_pay_for_sqlalchemy():
    import subprocess
    import sys

    from ccdflow.caldb.connection import ENV_VAR
    from ccdflow.cli import caldb_options

    assert caldb_options.ENV_VAR == ENV_VAR
    code = "import sys, ccdflow.cli; ccdflow.cli._add_commands(); print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
