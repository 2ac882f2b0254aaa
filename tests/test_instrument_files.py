"""An instrument file is an instrument: `--instrument-config FILE` (repeatable) and the user's
instrument folder register a YAML like a plugin's, applied in full in every command
(identification, header map, geometry, recipes, caldb rules), nameable with `--instrument`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.framework.engine.errors import ConfigError
from ccdflow.framework.engine.instrument_files import (
    COMMAND_LINE,
    USER_FOLDER,
    forced_instrument,
    load_in_order,
    manager_with_files,
)
from ccdflow.framework.engine.plugins import PluginManager
from ccdflow.framework.headers.scan import scan_file

#: A camera generic cannot read: no IMAGETYP (its type is in OBSMODE), exposure in milliseconds
#: under ITIME, gain under a keyword of its own. Darks are not taken (LN2-cooled).
ACME = """\
    extends: generic
    name: acme-1
    description: ACME-1 test camera
    identify:
      INSTRUME: "ACME-1*"
    header:
      frame_type:
        keyword: [OBSMODE]
        values:
          "zero": bias
          "skyflat": flat
          "science": science
      exposure_time: {keyword: [ITIME], unit: ms}
      filter: {keyword: [FILTNAM2]}
      gain: {keyword: [CONVGAIN]}
      read_noise: {keyword: [RONOISE]}
    recipes:
      bias: []
      flat: [bias]
      science: [bias, flat, gain]
"""

SHAPE = (40, 48)


def write_frame(path: Path, mode: str, itime_ms: float, level: float, minute: int,
                instrume: str = "ACME-1 #7", seed: int = 0) -> Path:
    """A raw frame as the ACME-1 writes it: bias level 100 ADU, read noise 2 ADU."""
    rng = np.random.default_rng(seed)
    data = (100.0 + level + rng.normal(0, 2.0, SHAPE)).astype(np.float32)
    header = fits.Header({"INSTRUME": instrume, "OBSMODE": mode, "ITIME": itime_ms,
                          "FILTNAM2": "R", "DATE-OBS": f"2026-03-01T01:{minute:02d}:00",
                          "CONVGAIN": 2.0, "RONOISE": 4.0})
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data, header).writeto(path)
    return path


@pytest.fixture
def raw(tmp_path) -> Path:
    folder = tmp_path / "raw"
    for i in range(5):
        write_frame(folder / f"zero{i}.fits", "zero", 0, 0.0, i, seed=i)
    for i in range(5):
        write_frame(folder / f"flat{i}.fits", "skyflat", 2000, 10000.0, 10 + i, seed=10 + i)
    for i in range(2):
        write_frame(folder / f"sci{i}.fits", "science", 60000, 500.0, 20 + i, seed=20 + i)
    return folder


def yaml_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def ccdflow(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccdflow", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def test_a_command_line_file_is_applied_in_full_in_the_night(raw, tmp_path):
    """Identification, header map (type, exposure unit, filter, gain), recipes: all the file's;
    the products name the instrument and are in electrons because the file's gain was applied."""
    cam = yaml_file(tmp_path / "acme.yaml", ACME)
    out = tmp_path / "out"
    proc = ccdflow("night", raw, "--out", out, "--caldb", tmp_path / "c.sqlite", "--workers", 1,
                   "--json", "--instrument-config", cam)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["counts"]["science"] == {"reduced": 2}
    header = fits.getheader(out / "reduced" / "sci0.fits", 1)
    primary = fits.getheader(out / "reduced" / "sci0.fits", 0)
    assert {primary.get("CF_INST"), header.get("CF_INST")} & {"acme-1"}
    assert header["BUNIT"].lower() in ("electron", "electrons")
    data = fits.getdata(out / "reduced" / "sci0.fits", 1)
    # (600 - 100) ADU through a flat normalised to 1, times 2.0 e-/ADU from CONVGAIN
    assert abs(np.median(data) - 1000.0) < 10.0
    # without the file, nothing knows these frames: every file is reported unknown (exit 1)
    bare = ccdflow("night", raw, "--out", tmp_path / "bare", "--caldb", tmp_path / "b.sqlite",
                   "--workers", 1, "--json")
    assert bare.returncode == 1, bare.stdout + bare.stderr


def test_the_user_folder_is_found_without_an_option_and_extends_across_files(raw, tmp_path):
    folder = tmp_path / "instruments"
    yaml_file(folder / "a-base.yaml", ACME)
    # sorted after its base only by chance of the name would be fragile: name it to sort first
    yaml_file(folder / "0-child.yaml", """\
        extends: acme-1
        name: acme-1-site
        identify:
          INSTRUME: "ACME-1 #7"
        caldb:
          bias: {max_age_days: 3}
    """)
    yaml_file(folder / "broken.yaml", "extends: generic\nname: broken\ngain: -1\n")
    env = {"CCDFLOW_INSTRUMENTS": str(folder)}
    proc = ccdflow("plugins", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert listed["instrument_folder"] == str(folder)
    assert {(f["instrument"], f["source"], f["extends"]) for f in listed["instrument_files"]} == {
        ("acme-1", "user instrument folder", "generic"),
        ("acme-1-site", "user instrument folder", "acme-1")}
    assert any("broken.yaml" in f["name"] for f in listed["failed"])
    os.environ["CCDFLOW_INSTRUMENTS"], saved = str(folder), os.environ["CCDFLOW_INSTRUMENTS"]
    try:
        manager = PluginManager().load_entry_points()
    finally:
        os.environ["CCDFLOW_INSTRUMENTS"] = saved
    assert manager.origins["acme-1"].rank == USER_FOLDER
    assert manager.instrument("acme-1-site").caldb["bias"].max_age_days == 3
    # identify is replaced, not merged: the child needs no IMAGETYP (generic's) nor OBSMODE
    assert manager.instrument("acme-1-site").identify == {"INSTRUME": ["ACME-1 #7"]}
    assert any("broken.yaml" in f.name and "gain" in f.error for f in manager.failures)
    meta = scan_file(raw / "sci0.fits", manager)
    assert meta.instrument == "acme-1-site"  # the more specific rule of the same rank
    assert meta.exposure_time == 60.0 and meta.frame_type == "science" and meta.filter == "R"


def test_command_line_beats_the_user_folder_and_packages_and_can_be_named(raw, tmp_path):
    loose = yaml_file(tmp_path / "loose.yaml", """\
        extends: generic
        name: acme-loose
        identify:
          INSTRUME: "*"
        header:
          frame_type: {keyword: [OBSMODE], values: {"science": science}}
          exposure_time: {keyword: [ITIME], unit: ms}
    """)
    manager = manager_with_files([loose])
    assert manager.origins["acme-loose"].rank == COMMAND_LINE
    assert scan_file(raw / "sci0.fits", manager).instrument == "acme-loose"
    # the same file forced on a frame by name
    assert forced_instrument(manager, "acme-loose") == "acme-loose"
    with pytest.raises(ConfigError, match="unknown instrument 'nope'"):
        forced_instrument(manager, "nope")


def test_files_without_identify_rules_are_used_for_every_frame_unless_ambiguous(tmp_path):
    one = yaml_file(tmp_path / "one.yaml", "extends: generic\nname: one\nidentify: {}\n")
    two = yaml_file(tmp_path / "two.yaml", "extends: generic\nname: two\nidentify: {}\n")
    assert forced_instrument(manager_with_files([one]), None) == "one"
    with pytest.raises(ConfigError, match="--instrument NAME"):
        forced_instrument(manager_with_files([one, two]), None)
    assert forced_instrument(manager_with_files([one, two]), "two") == "two"


def test_files_extending_each_other_load_in_any_order_and_unknown_bases_are_named(tmp_path):
    base = yaml_file(tmp_path / "b.yaml", ACME)
    child = yaml_file(tmp_path / "a.yaml", "extends: acme-1\nname: acme-2\n")
    registered = manager_with_files().instruments
    names = [inst.name for _, inst, _ in load_in_order([child, base], registered)]
    assert names == ["acme-1", "acme-2"]
    orphan = yaml_file(tmp_path / "o.yaml", "extends: nosuchcam\nname: o\n")
    with pytest.raises(ConfigError, match=r"o.yaml: extends: unknown instrument 'nosuchcam'"):
        load_in_order([orphan], {})


def test_a_plugin_may_register_a_yaml_path_that_extends_generic(tmp_path):
    from ccdflow.framework.engine.hookspecs import hookimpl

    path = yaml_file(tmp_path / "plug.yaml", ACME.replace("name: acme-1", "name: acme-plug"))

    class Plugin:
        @hookimpl
        def register_instruments(self, register):
            register(path)

    manager = PluginManager(strict=True).load_entry_points()
    manager.register(Plugin(), "acme-plugin")
    inst = manager.instrument("acme-plug")
    assert inst.header.exposure_time.unit == "ms"
    assert inst.header.date_obs.keyword[0] == "DATE-OBS"  # from generic


def test_config_show_names_the_file_layer(tmp_path):
    cam = yaml_file(tmp_path / "acme.yaml", ACME + "    steps:\n      flat: {min_value: 0.2}\n")
    proc = ccdflow("config", "show", "--json", "--instrument-config", cam)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["instrument"] == "acme-1" and shown["instrument_source"] == str(cam.resolve())
    row = next(r for r in shown["params"] if (r["step"], r["param"]) == ("flat", "min_value"))
    assert (row["value"], row["layer"]) == (0.2, "instrument file")


def test_a_childs_path_patterns_are_tried_before_the_parents(tmp_path):
    """asiimg reads ASIImg's file names; a camera's file whose folders say otherwise wins."""
    from ccdflow.framework.engine.instrument_files import load_instrument_file

    path = yaml_file(tmp_path / "zwo.yaml", """\
        extends: asiimg
        name: my-zwo
        header:
          frame_type_paths: {"Flats-dusk/*": flat}
    """)
    child, _, _ = load_instrument_file(path, manager_with_files().instruments)
    patterns = list(child.header.frame_type_paths)
    assert patterns[0] == "Flats-dusk/*" and "bias_asiimg_*" in patterns


def test_an_instrument_file_that_reads_no_frame_is_a_warning(raw, tmp_path):
    """A wrong identify rule (or a file meant for another camera) is otherwise silently unused."""
    cam = yaml_file(tmp_path / "typo.yaml", ACME.replace('INSTRUME: "ACME-1*"', 'INSTRUME: "ACME 1*"'))
    other = yaml_file(tmp_path / "acme.yaml", ACME.replace("name: acme-1", "name: acme-right"))
    proc = ccdflow("night", raw, "--out", tmp_path / "out", "--caldb", tmp_path / "c.sqlite",
                   "--workers", 1, "--json", "--instrument-config", cam, "--instrument-config", other)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (warning,) = json.loads(proc.stdout)["warnings"]
    assert warning.startswith(f"instrument acme-1 from --instrument-config {cam.resolve()} read none of "
                              "the 12 frames") and "acme-right (12)" in warning
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert warning in report["warnings"]


def test_a_frame_type_typo_in_path_patterns_is_refused_when_the_file_loads(tmp_path):
    bad = yaml_file(tmp_path / "bad.yaml", """\
        extends: asiimg
        name: typo-cam
        header:
          frame_type_paths: {"Flat*/*": flt}
    """)
    with pytest.raises(ConfigError, match=r"bad.yaml: header.frame_type_paths\['Flat\*/\*'\] gives "
                                          r"frame type 'flt', which is not a frame type"):
        manager_with_files([bad])
    proc = ccdflow("config", "show", "--instrument-config", bad)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "'flt'" in proc.stderr


def test_a_frame_type_typo_in_the_user_folder_is_reported_and_the_rest_load(tmp_path):
    """Checked with the loading manager's own types (asking the process's manager while it loads
    the folder recursed without end)."""
    folder = tmp_path / "instruments"
    yaml_file(folder / "good.yaml", ACME)
    yaml_file(folder / "paths.yaml", "extends: asiimg\nname: by-folder\nidentify: {INSTRUME: X}\n"
                                     "header:\n  frame_type_paths: {'Bias/*': bias}\n")
    yaml_file(folder / "typo.yaml", "extends: asiimg\nname: typo\nidentify: {INSTRUME: Y}\n"
                                    "header:\n  frame_type_paths: {'Flat/*': flt}\n")
    proc = ccdflow("plugins", "--json", env={"CCDFLOW_INSTRUMENTS": str(folder)})
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert {f["instrument"] for f in listed["instrument_files"]} == {"acme-1", "by-folder"}
    (failed,) = listed["failed"]
    assert "typo.yaml" in failed["name"] and "'flt', which is not a frame type" in failed["error"]
