"""`ccdflow master bias|dark|flat RAWDIR` on a night's mixed folder (issue 15 item 5): the
frames of the type are picked and the others counted on stderr; --filter, --exptime and
--temperature narrow the choice, with the tolerance the night groups by; a choice that would
still make several masters is one short named error listing the groups and the option to use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccdflow.cli import cli
from ccdflow.framework.builders.master_selection import MixedGroupsError, select_frames
from ccdflow.framework.calibrations import calibration_type
from ccdflow.framework.engine.plugins import get_plugin_manager
from ccdflow.framework.headers.scan import scan_paths
from ccdflow.simulator import SimulationSpec, simulate_night


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """One night: 3 bias, 2 darks at each of 30 s and 120 s (-20 C), 2 flats in V and in R,
    1 science frame per filter, all in one folder."""
    spec = SimulationSpec(shape=(48, 48), n_bias=3, n_dark=2, dark_exptimes=(30.0, 120.0),
                          dark_temperatures=(-20.0,), n_flat=2, filters=("V", "R"), n_science=1,
                          seed=5)
    return simulate_night(tmp_path_factory.mktemp("mixed"), spec).raw_dir


@pytest.fixture(scope="module")
def bias(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bias") / "bias.fits"
    result = master("bias", str(raw), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_combined"] == 3
    assert summary["left_out"] == {"dark": 4, "flat": 4, "science": 2}
    assert result.stderr.strip() == "master bias: 3 frame(s) selected; left out 4 dark, 4 flat, 2 science"
    return out


def master(*args: str):
    return CliRunner().invoke(cli, ["master", *args])


def test_bias_from_the_whole_folder_counts_what_it_left_out(bias):
    assert bias.exists()


def test_flats_of_two_filters_are_one_short_error_naming_the_option(raw, bias, tmp_path):
    result = master("flat", str(raw), "--bias", str(bias), "--out", str(tmp_path / "f.fits"))
    assert result.exit_code == 3
    error = result.stderr.strip().splitlines()[-1]
    assert ("the 4 flat frames make 2 masters: filter V (2); filter R (2); pick one with --filter NAME"
            in error)
    assert len(error) < 200 and str(raw) not in error  # no list of every file
    assert not (tmp_path / "f.fits").exists()


def test_filter_picks_one_and_an_absent_filter_names_those_there_are(raw, bias, tmp_path):
    darks = tmp_path / "d.fits"
    made = master("dark", str(raw), "--exptime", "120", "--bias", str(bias), "--out", str(darks))
    assert made.exit_code == 0, made.output
    result = master("flat", str(raw), "--filter", "r", "--bias", str(bias), "--dark", str(darks),
                    "--out", str(tmp_path / "f.fits"), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_combined"] == 2 and all("_R_" in p for p in summary["inputs"])
    assert summary["left_out"]["flat of another filter than r"] == 2
    absent = master("flat", str(raw), "--filter", "B", "--bias", str(bias), "--out", str(tmp_path / "g.fits"))
    assert absent.exit_code == 3
    assert "no flat frames of filter B; the flat frames' filters: R (2), V (2)" in absent.stderr


def test_darks_of_two_exposures_need_exptime_within_the_nights_tolerance(raw, bias, tmp_path):
    out = tmp_path / "d.fits"
    mixed = master("dark", str(raw), "--bias", str(bias), "--out", str(out))
    assert mixed.exit_code == 3
    assert "the 4 dark frames make 2 masters: 30 s (2); 120 s (2); pick one with --exptime SECONDS" \
        in mixed.stderr
    # 30.2 s is within the dark rule's tolerance of 30 s (max(0.1 s, 1 %) = 0.3 s): the night's
    # grouping, so the same two frames
    near = master("dark", str(raw), "--exptime", "30.2", "--bias", str(bias), "--out", str(out), "--json")
    assert near.exit_code == 0, near.output
    summary = json.loads(near.stdout)
    assert summary["n_combined"] == 2 and all("_30s_" in p for p in summary["inputs"])
    far = master("dark", str(raw), "--exptime", "31", "--bias", str(bias), "--out", str(tmp_path / "e.fits"))
    assert far.exit_code == 3
    assert "no dark frames of exposure 31 s +-0.31 s; the dark frames' exposure times: 30 s (2), 120 s (2)" \
        in far.stderr


def test_selection_groups_as_the_night_does(raw):
    """Exposures of 59.99 s and 60.01 s are one master (clustered by gaps, never binned); two
    set points are two, told apart by --temperature."""
    manager = get_plugin_manager()
    metas, _ = scan_paths([str(raw)], manager, None)
    darks = [m for m in metas if m.frame_type == "dark"][:2]
    rule = calibration_type("dark").default_rule()
    close = [darks[0].model_copy(update={"exposure_time": 59.99, "temperature": -20.0}),
             darks[1].model_copy(update={"exposure_time": 60.01, "temperature": -20.0})]
    assert len(select_frames("dark", close, rule).frames) == 2
    apart = [close[0], close[1].model_copy(update={"temperature": -10.0})]
    with pytest.raises(MixedGroupsError, match=r"-20 C \(1\); -10 C \(1\); pick one with --temperature C"):
        select_frames("dark", apart, rule)
    assert len(select_frames("dark", apart, rule, temperature=-10.5).frames) == 1


def test_a_file_in_the_folder_that_cannot_be_used_is_left_out_one_named_is_refused(raw, tmp_path):
    folder = tmp_path / "night"
    folder.mkdir()
    for path in sorted(raw.glob("*bias*")):
        (folder / path.name).symlink_to(path)
    junk = folder / "notes.fits"
    junk.write_text("not a FITS file")
    result = master("bias", str(folder), "--out", str(tmp_path / "b.fits"))
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"left out 1 file(s) that cannot be used, e.g. {junk}: ")
    biases = map(str, sorted(raw.glob("*bias*")))
    named = master("bias", str(junk), *biases, "--out", str(tmp_path / "c.fits"))
    assert named.exit_code == 3 and f"cannot use: {junk}: " in named.stderr
    assert len(named.stderr) < 400


def test_another_cameras_frames_of_other_types_do_not_stop_the_master(raw, real_data, tmp_path):
    """A folder shared with an EFOSC2 spectroscopic flat: the simulated biases still make a master."""
    folder = tmp_path / "shared"
    folder.mkdir()
    for path in sorted(raw.glob("*bias*")):
        (folder / path.name).symlink_to(path)
    (folder / "efosc.fits.gz").symlink_to(real_data / "efosc-ntt" / "EFOSC.2022-01-26T19-21-12.485.fits.gz")
    result = master("bias", str(folder), "--out", str(tmp_path / "b.fits"))
    assert result.exit_code == 0, result.output
    assert "master bias: 3 frame(s) selected; left out 1 spec_flat" in result.stderr
