"""Layered configuration: precedence, provenance of each value, and clear errors."""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner

from ccdflow.framework.engine.config import build, parse_cli_params
from ccdflow.framework.engine.errors import ConfigError
from ccdflow.framework.engine.instrument_files import manager_with_files
from ccdflow.framework.engine.plugins import get_plugin_manager


@pytest.fixture
def manager():
    return get_plugin_manager(reload=True)


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_step_defaults_when_nothing_is_set(manager):
    cfg = build(manager, instrument="generic")
    setting = cfg.steps["overscan"]["method"]
    assert (setting.value, setting.layer) == ("line_median", "step default")
    assert cfg.params("overscan").method == "line_median"


def test_every_layer_overrides_the_one_below(manager, tmp_path):
    inst = write(tmp_path / "cam.yaml", """
        extends: generic
        name: mycam
        steps:
          overscan: {method: mean, poly_order: 2}
          flat: {min_value: 0.3}
    """)
    site = write(tmp_path / "site.yaml", """
        steps:
          overscan: {method: poly}
          flat: {min_value: 0.4}
    """)
    night = write(tmp_path / "night.yaml", "steps:\n  flat: {min_value: 0.5}\n")
    cfg = build(manager_with_files([inst]), config_files=[site, night],
                params=["overscan.poly_order=5"])
    assert cfg.instrument.name == "mycam"
    o, f = cfg.steps["overscan"], cfg.steps["flat"]
    method = o["method"]
    assert (method.value, method.layer, method.source) == ("poly", "site/night file", str(site))
    assert (o["poly_order"].value, o["poly_order"].layer) == (5, "command line")
    assert (f["min_value"].value, f["min_value"].source) == (0.5, str(night))
    assert cfg.steps["dark"]["scale_temperature"].layer == "step default"
    params = cfg.params("overscan")
    assert (params.method, params.poly_order) == ("poly", 5)


def test_instrument_plugin_layer_sits_above_defaults(manager, tmp_path):
    from ccdflow.framework.engine.instrument import Instrument

    base = manager.instrument("generic").model_dump()
    base.update(name="plugcam", steps={"overscan": {"method": "median"}})
    manager.instruments["plugcam"] = Instrument.model_validate(base)
    manager._owner["instrument:plugcam"] = "someplugin"
    cfg = build(manager, instrument="plugcam", params=["flat.min_value=0.1"])
    s = cfg.steps["overscan"]["method"]
    assert (s.value, s.layer, s.source) == ("median", "instrument plugin", "someplugin")


def test_recipe_entry_params_apply_below_user_layers(manager, tmp_path):
    inst = write(tmp_path / "cam.yaml", """
        extends: generic
        name: reccam
        recipes:
          science: [overscan: {method: mean}, trim]
    """)
    cfg = build(manager_with_files([inst]))
    assert cfg.params("overscan", {"method": "mean"}).method == "mean"
    cfg = build(manager_with_files([inst]), params=["overscan.method=median"])
    assert cfg.params("overscan", {"method": "mean"}).method == "median"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("steps:\n  overscan: {method: banana}\n", ["site.yaml", "steps.overscan.method", "banana",
                                                     "median"]),
        ("steps:\n  overscan: {metod: mean}\n", ["site.yaml", "steps.overscan.metod", "unknown key"]),
        ("steps:\n  flatten: {x: 1}\n", ["site.yaml", "steps.flatten", "unknown step", "flat"]),
        ("stepz: {}\n", ["site.yaml", "stepz", "unknown key"]),
        ("steps:\n  flat: {min_value: -1}\n", ["steps.flat.min_value", "-1", "greater than or equal"]),
        ("steps: [1, 2\n", ["site.yaml", "not valid YAML"]),
    ],
)
def test_invalid_site_file_names_file_key_value_and_expectation(manager, tmp_path, text, expected):
    site = tmp_path / "site.yaml"
    site.write_text(text)
    with pytest.raises(ConfigError) as err:
        build(manager, config_files=[site])
    for fragment in expected:
        assert fragment in str(err.value)


def test_invalid_instrument_file_is_reported_with_the_key(manager, tmp_path):
    inst = write(tmp_path / "bad.yaml", "extends: generic\nname: bad\ngain: -2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: gain: .*greater than 0.*-2"):
        build(manager_with_files([inst]))
    inst = write(tmp_path / "bad2.yaml", "extends: nosuchcam\nname: bad\n")
    with pytest.raises(ConfigError, match="unknown instrument 'nosuchcam'"):
        build(manager_with_files([inst]))


def test_cli_params_parse_yaml_scalars_and_reject_garbage():
    assert parse_cli_params(["a.b=1", "a.c=true", "d.e=x y"]) == {"a": {"b": 1, "c": True},
                                                                    "d": {"e": "x y"}}
    with pytest.raises(ConfigError, match="step.param=value"):
        parse_cli_params(["nodot=1"])
    with pytest.raises(ConfigError, match="step.param=value"):
        parse_cli_params(["a.b"])


def test_unknown_instrument_lists_known_ones(manager):
    with pytest.raises(ConfigError, match="unknown instrument 'nope'.*generic"):
        build(manager, instrument="nope")


def test_config_hash_changes_with_parameters(manager):
    a = build(manager, instrument="generic").config_hash()
    b = build(manager, instrument="generic", params=["flat.min_value=0.3"]).config_hash()
    assert a != b
    assert a == build(manager, instrument="generic").config_hash()


def test_config_show_cli_reports_sources(tmp_path):
    from ccdflow.cli import _add_commands, cli

    if "config" not in cli.commands:
        _add_commands()
    site = write(tmp_path / "night.yaml", "steps:\n  overscan: {method: mean}\n")
    result = CliRunner().invoke(cli, ["config", "show", "--json", "--config", str(site),
                                      "-p", "flat.min_value=0.25"])
    assert result.exit_code == 0, result.output
    import json

    rows = {(r["step"], r["param"]): r for r in json.loads(result.output)["params"]}
    assert rows[("overscan", "method")]["source"] == str(site)
    assert rows[("flat", "min_value")]["layer"] == "command line"
    assert rows[("dark", "scale_temperature")]["layer"] == "step default"
    # wide enough that no installed plugin's long parameter value wraps the layer column
    table = CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["config", "show", "--config", str(site)])
    assert table.exit_code == 0 and "site/night file" in table.output
    bad = CliRunner().invoke(cli, ["config", "show", "-p", "overscan.method=zzz"])
    assert bad.exit_code != 0


def test_an_extending_instrument_tries_its_own_frame_type_patterns_first(manager, tmp_path):
    """generic's '*flat*' must not win over the child's 'spec*flat*' (spectroscopic flats were
    classified as imaging flats)."""
    from astropy.io import fits

    from ccdflow.framework.engine.instrument_files import load_instrument_file
    from ccdflow.framework.headers.header_map import normalise

    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent("""\
        extends: generic
        name: spec-cam
        header:
          frame_type:
            values:
              "spec*flat*": spec_flat
    """))
    child, _, _ = load_instrument_file(path, manager.instruments)
    assert list(child.header.frame_type.values)[0] == "spec*flat*"
    assert "*flat*" in child.header.frame_type.values  # the parent's patterns still follow
    header = fits.Header({"NAXIS": 2, "NAXIS1": 8, "NAXIS2": 8, "IMAGETYP": "Spec Flat",
                          "EXPTIME": 3.0, "DATE-OBS": "2026-01-01T00:00:00", "GAIN": 1.0})
    assert normalise(child, [header], "f.fits").frame_type == "spec_flat"
    header["IMAGETYP"] = "Dome Flat"
    assert normalise(child, [header], "f.fits").frame_type == "flat"


@pytest.mark.parametrize(("text", "expected"), [
    ("gain_tabel: {0: 0.2}\n", "gain_tabel: unknown key ({0: 0.2}); did you mean 'gain_table'?"),
    ("caldb:\n  dark: {temperature_tolerence: 3}\n",
     "caldb.dark.temperature_tolerence: unknown key (value 3); did you mean 'temperature_tolerance'?"),
    ("header:\n  frame_type_path: {a: bias}\n", "did you mean 'frame_type_paths'?"),
    ("geometry:\n  amplifiers:\n    - {name: A, overscn: '[1:2,1:2]'}\n", "did you mean 'overscan'?"),
    ("steps:\n  overscan: {metod: mean}\n", "steps.overscan.metod: unknown key"),
    ("zzzzzz: 1\n", "zzzzzz: unknown key (value 1)"),
])
def test_a_misspelt_instrument_key_gets_the_closest_one(manager, tmp_path, text, expected):
    inst = write(tmp_path / "cam.yaml", "extends: generic\nname: typo\n" + text)
    with pytest.raises(ConfigError) as err:
        build(manager_with_files([inst]))
    assert expected.replace("(value ", "(") in str(err.value).replace("(value ", "(")
    if text.startswith("zzzzzz"):
        assert "did you mean" not in str(err.value)


def test_a_misspelt_step_parameter_gets_the_closest_one(manager, tmp_path):
    site = write(tmp_path / "site.yaml", "steps:\n  overscan: {metod: mean}\n")
    with pytest.raises(ConfigError, match="steps.overscan.metod: unknown key .*did you mean 'method'"):
        build(manager, config_files=[site])


def test_misspelt_steps_instruments_and_calibration_types_get_the_closest_name(tmp_path):
    """One wording (errors.did_you_mean) wherever a name is looked up; nothing close: no guess."""
    from ccdflow.framework.calibrations import calibration_type

    manager = get_plugin_manager()
    with pytest.raises(ConfigError, match=r"unknown step; registered steps: .*; did you mean 'cosmicray'\?"):
        build(manager, instrument="generic", params=["cosmicrays.objlim=5"])
    with pytest.raises(ConfigError, match=r"unknown instrument 'generics'; .*did you mean 'generic'\?"):
        build(manager, instrument="generics")
    with pytest.raises(ConfigError, match=r"unknown calibration type 'darkk'; .*did you mean 'dark'\?"):
        calibration_type("darkk", manager)
    with pytest.raises(ConfigError, match=r"unknown step 'flatt'; .*did you mean 'flat'\?"):
        manager.step("flatt")
    typo = tmp_path / "night.yaml"
    typo.write_text("masters:\n  darks: {method: median}\n")
    with pytest.raises(ConfigError, match=r"masters: unknown calibration type 'darks'.*mean 'dark'\?"):
        build(manager, instrument="generic", config_files=[typo])
    with pytest.raises(ConfigError) as nothing_close:
        manager.step("zzzz")
    assert "did you mean" not in str(nothing_close.value)
