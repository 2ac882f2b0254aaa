"""`ccdflow config show` and `ccdflow plugins` document every step and parameter (issue 15 item
5): each built-in step's description and each of its parameters' descriptions are shown in the
table and carried by --json, and `config show` includes the masters: settings with their layer."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ccdflow.cli import _add_commands, cli
from ccdflow.framework.engine.master_options import MasterOptions
from ccdflow.framework.engine.plugins import get_plugin_manager

# wide enough that no description wraps, so each is found whole in the table
WIDE = {"COLUMNS": "1000"}


@pytest.fixture(scope="module")
def builtin_steps():
    _add_commands()
    manager = get_plugin_manager()
    return {name: manager.steps[name] for name in manager.plugins["builtin_steps"].steps}


def invoke(*args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner(env=env).invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def flat(text: str) -> str:
    """Table text with its borders and runs of spaces collapsed."""
    return " ".join(text.replace("│", " ").split())


def test_config_show_json_describes_every_step_and_parameter(builtin_steps):
    shown = json.loads(invoke("config", "show", "--json"))
    for name, step in builtin_steps.items():
        assert len(shown["steps"][name]) > 10, name
        params = {r["param"]: r["description"] for r in shown["params"] if r["step"] == name}
        assert set(params) == set(step.Params.model_fields), name
        for param, description in params.items():
            assert len(description) > 10, f"{name}.{param} has no real description: {description!r}"


def test_config_show_table_shows_every_description(builtin_steps):
    table = flat(invoke("config", "show", env=WIDE))
    for name, step in builtin_steps.items():
        assert flat(step.description) in table, name
        for param, field in step.Params.model_fields.items():
            assert flat(field.description or "") in table, f"{name}.{param}"
    for field in MasterOptions.model_fields.values():
        assert flat(field.description or "") in table


def test_config_show_includes_the_masters_settings_and_their_layers(tmp_path):
    night = tmp_path / "night.yaml"
    night.write_text("masters:\n  dark: {method: median, warn_below: 3}\n")
    shown = json.loads(invoke("config", "show", "--json", "--config", str(night)))
    rows = {(r["type"], r["option"]): r for r in shown["masters"]}
    assert {kind for kind, _ in rows} >= {"bias", "dark", "flat", "bpm"}
    assert {option for _, option in rows} == set(MasterOptions.model_fields)
    assert shown["calibration_types"]["flat"] == "response of one filter, normalised to a median of 1"
    assert rows[("dark", "method")] | {"description": ""} == {
        "type": "dark", "option": "method", "value": "median", "layer": "site/night file",
        "source": str(night), "description": ""}
    assert (rows[("dark", "clip")]["value"], rows[("dark", "clip")]["layer"]) == ("sigma", "type default")
    assert rows[("bias", "method")]["value"] == "mean" and rows[("bpm", "min_frames")]["value"] == 3
    assert all(len(r["description"]) > 10 for r in rows.values())
    table = flat(invoke("config", "show", "--config", str(night), env=WIDE))
    assert f"warn_below 3 site/night file ({night})" in table


def test_plugins_describes_every_step_and_parameter(builtin_steps):
    listed = json.loads(invoke("plugins", "--json"))
    table = flat(invoke("plugins", env=WIDE))
    for name, step in builtin_steps.items():
        entry = listed["steps"][name]
        assert entry["plugin"] == "builtin_steps" and entry["description"] == step.description
        assert list(entry["params"]) == list(step.Params.model_fields)
        for param, doc in entry["params"].items():
            assert len(doc["description"]) > 10 and doc["type"], f"{name}.{param}"
            assert flat(doc["description"]) in table, f"{name}.{param}"
        assert flat(step.description) in table
    assert listed["steps"]["cosmicray"]["params"]["sigclip"]["default"] == 4.5
    assert listed["calibration_types"]["flat"]["frame_type"] == "flat"
    assert "normalised to a median of 1" in table
