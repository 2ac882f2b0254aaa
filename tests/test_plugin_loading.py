"""The plugin manager against real entry points of fake distributions installed in tmp_path
(tests/plugin_site.py: modules plus a ``*.dist-info`` folder that ``importlib.metadata``
finds exactly as it finds a pip-installed plugin)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from click.testing import CliRunner

from ccdflow.framework.engine import plugins
from ccdflow.framework.engine.errors import PluginError
from ccdflow.framework.engine.plugins import PluginManager, get_plugin_manager
from tests.plugin_site import GOOD, FakeSite, context_for, header, isolated_plugins, step_module

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def patch():
    """Like ``monkeypatch``, but undone before the process-wide manager is rebuilt."""
    with isolated_plugins() as mp:
        yield mp


@pytest.fixture
def site(tmp_path, patch):
    return FakeSite(tmp_path / "site", patch)


@pytest.fixture
def cli():
    from ccdflow import cli as cli_package

    if "plugins" not in cli_package.cli.commands:
        cli_package._add_commands()
    return cli_package.cli


# -- loading ---------------------------------------------------------------------------


def test_good_plugin_contributes_step_and_instrument(site):
    site.install("tp-good", {"tp_good": "tp_good_mod"}, {"tp_good_mod": GOOD})
    manager = PluginManager().load_entry_points()
    info = manager.plugins["tp_good"]
    assert (info.distribution, info.version) == ("tp-good", "1.2.3")
    assert info.steps == ["tp_scale"] and info.instruments == ["tpcam"]
    assert manager.step("tp_scale").name == "tp_scale"
    assert manager.instrument("tpcam").identify == {"INSTRUME": ["TPCAM*"]}
    assert manager.owner("step", "tp_scale") == "tp_good"
    assert manager.failures == [] and manager.blocked == []
    assert "generic" in manager.instruments  # built-ins load alongside


def test_builtin_steps_plugin_listed(patch):
    if not (ROOT / "ccdflow" / "plugins" / "steps" / "overscan.py").exists():
        pytest.skip("built-in step modules not written yet (ccdflow/plugins/steps/overscan.py)")
    manager = PluginManager().load_entry_points()
    assert manager.plugins["builtin_steps"].distribution == "ccdflow"
    assert manager.plugins["builtin_instruments"].instruments


def test_loading_twice_is_harmless(site):
    site.install("tp-good", {"tp_good": "tp_good_mod"}, {"tp_good_mod": GOOD})
    manager = PluginManager().load_entry_points().load_entry_points()
    assert manager.failures == [] and manager.plugins["tp_good"].steps == ["tp_scale"]


def test_broken_plugin_is_reported_and_others_still_load(site):
    site.install("tp-broken", {"tp_broken": "tp_broken_mod"},
                 {"tp_broken_mod": "raise ImportError(\"No module named 'missing_dependency'\")"})
    site.install("tp-good", {"tp_good": "tp_good_mod"}, {"tp_good_mod": GOOD})
    manager = PluginManager().load_entry_points()
    [failure] = manager.failures
    assert (failure.name, failure.distribution) == ("tp_broken", "tp-broken")
    assert "ImportError" in failure.error and "missing_dependency" in failure.error
    assert "tp_broken" not in manager.plugins
    # The host keeps working: other plugins and the built-ins are there and usable.
    assert "tp_scale" in manager.steps
    assert manager.identify(header(INSTRUME="TPCAM-1")) == "tpcam"
    assert manager.identify(header()) == "generic"


def test_plugin_calling_sys_exit_on_import_is_reported(site):
    site.install("tp-exit", {"tp_exit": "tp_exit_mod"}, {"tp_exit_mod": "raise SystemExit(3)"})
    manager = PluginManager().load_entry_points()
    assert [(f.name, f.error) for f in manager.failures] == [("tp_exit", "SystemExit: 3")]


def test_strict_mode_raises(site, patch):
    site.install("tp-broken", {"tp_broken": "tp_broken_mod"},
                 {"tp_broken_mod": "import tp_missing_dependency_xyz"})
    with pytest.raises(PluginError, match=r"tp_broken.*tp-broken.*tp_missing_dependency_xyz"):
        PluginManager(strict=True).load_entry_points()
    patch.setenv("CCDFLOW_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="tp_broken"):
        PluginManager().load_entry_points()
    with pytest.raises(PluginError, match="tp_broken"):
        get_plugin_manager(reload=True)
    # An explicit strict=False wins over the environment.
    assert PluginManager(strict=False).load_entry_points().failures[0].name == "tp_broken"


def test_disable_plugins_env_blocks_without_importing(site, patch):
    site.install("tp-good", {"tp_good": "tp_good_mod"}, {"tp_good_mod": GOOD})
    patch.setenv("CCDFLOW_DISABLE_PLUGINS", "some_other, tp_good")
    manager = PluginManager().load_entry_points()
    assert manager.blocked == ["tp_good"]
    assert "tp_good" not in manager.plugins and "tp_scale" not in manager.steps
    assert "tpcam" not in manager.instruments
    assert "tp_good_mod" not in sys.modules
    assert manager.failures == []


def test_disable_plugins_by_distribution_name(site, patch):
    site.install("tp-good", {"tp_good": "tp_good_mod"}, {"tp_good_mod": GOOD})
    patch.setenv("CCDFLOW_DISABLE_PLUGINS", "tp-good")
    manager = PluginManager().load_entry_points()
    assert manager.blocked == ["tp_good"] and "tp_scale" not in manager.steps


MISSPELT = """
from ccdflow.framework.engine.hookspecs import hookimpl

@hookimpl
def register_step(register):
    raise AssertionError("never called")
"""

WRONG_ARGUMENT = """
from ccdflow.framework.engine.hookspecs import hookimpl

@hookimpl
def register_steps(reg):
    raise AssertionError("never called")
"""


def test_misspelt_hook_is_a_failure(site):
    site.install("tp-typo", {"tp_typo": "tp_typo_mod"}, {"tp_typo_mod": MISSPELT})
    site.install("tp-good", {"tp_good": "tp_good_mod"}, {"tp_good_mod": GOOD})
    manager = PluginManager().load_entry_points()
    [failure] = manager.failures
    assert failure.name == "tp_typo" and failure.distribution == "tp-typo"
    assert "unknown hook 'register_step'" in failure.error
    assert "did you mean 'register_steps'" in failure.error
    assert "tp_typo" not in manager.plugins
    assert manager.pm.get_plugin("tp_typo") is None  # unregistered, so later checks pass
    assert "tp_scale" in manager.steps
    with pytest.raises(PluginError, match="unknown hook 'register_step'"):
        PluginManager(strict=True).load_entry_points()


WRAPPER_NOT_GENERATOR = """
from ccdflow.framework.engine.hookspecs import hookimpl

@hookimpl(wrapper=True)
def run_step(step, ccd, params, calibrations, context):
    return None
"""


@pytest.mark.parametrize(
    ("source", "message"),
    [(WRONG_ARGUMENT, "{'reg'}"), (WRAPPER_NOT_GENERATOR, "generator function")],
    ids=["wrong-argument", "wrapper-not-generator"],
)
def test_bad_hook_implementation_is_a_failure(site, source, message):
    site.install("tp-arg", {"tp_arg": "tp_arg_mod"}, {"tp_arg_mod": source})
    manager = PluginManager().load_entry_points()
    [failure] = manager.failures
    assert failure.name == "tp_arg" and message in failure.error
    assert failure.error.startswith("invalid hook implementation")
    assert manager.pm.get_plugin("tp_arg") is None


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            step_module("tp_loose", "model_config = ConfigDict(extra='allow')\n"
                        "    x: int = Field(1, description='x')"),
            "extra='forbid'",
        ),
        (step_module("tp_undoc", "x: int = 1"), "without a description: x"),
        (step_module("tp_plain", base="object"), "not a subclass of ccdflow Step"),
        (step_module("not an identifier"), "must be an identifier"),
    ],
    ids=["params-allow-extra", "undocumented-field", "not-a-step", "bad-name"],
)
def test_invalid_step_is_reported(site, source, message):
    site.install("tp-bad", {"tp_bad": "tp_bad_mod"}, {"tp_bad_mod": source})
    manager = PluginManager().load_entry_points()
    [failure] = manager.failures
    assert (failure.name, failure.distribution) == ("tp_bad", "tp-bad")
    assert failure.error.startswith("PluginError") and message in failure.error
    assert "tp_bad" not in manager.plugins
    with pytest.raises(PluginError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PluginManager(strict=True).load_entry_points()


HALF_GOOD = GOOD.replace(
    "    register(Scaler)\n",
    "    register(Scaler)\n    register(object)\n",
)


def test_failed_plugin_leaves_no_partial_registrations(site):
    # tp_a_half loads first (entry points load by name), registers tp_scale, then fails.
    site.install("tp-half", {"tp_a_half": "tp_half_mod"}, {"tp_half_mod": HALF_GOOD})
    site.install("tp-good", {"tp_good": "tp_good_mod"}, {"tp_good_mod": GOOD})
    manager = PluginManager().load_entry_points()
    [failure] = manager.failures
    assert failure.name == "tp_a_half" and "not a subclass of ccdflow Step" in failure.error
    # Its step was withdrawn, so the same names are free for the next plugin.
    assert manager.owner("step", "tp_scale") == "tp_good"
    assert manager.steps["tp_scale"].__module__ == "tp_good_mod"


def test_non_instrument_registration_is_reported(site):
    source = GOOD.replace('register(instrument("tpcam", {"INSTRUME": "TPCAM*"}))',
                          'register({"name": "tpcam"})')
    site.install("tp-dict", {"tp_dict": "tp_dict_mod"}, {"tp_dict_mod": source})
    manager = PluginManager().load_entry_points()
    assert "expects an Instrument or the Path of an instrument YAML, got dict" in manager.failures[0].error


def test_duplicate_step_name_is_reported(site):
    site.install("tp-first", {"tp_first": "tp_first_mod"},
                 {"tp_first_mod": step_module("tp_dup")})
    site.install("tp-second", {"tp_second": "tp_second_mod"},
                 {"tp_second_mod": step_module("tp_dup")})
    manager = PluginManager().load_entry_points()
    [failure] = manager.failures
    assert (failure.name, failure.distribution) == ("tp_second", "tp-second")
    assert "step 'tp_dup' is already registered by plugin 'tp_first'" in failure.error
    assert manager.owner("step", "tp_dup") == "tp_first"
    assert manager.steps["tp_dup"].__module__ == "tp_first_mod"


def test_status_keyword_clash_is_reported(site):
    site.install("tp-first", {"tp_first": "tp_first_mod"},
                 {"tp_first_mod": step_module("tp_clip")})
    site.install("tp-second", {"tp_second": "tp_second_mod"},
                 {"tp_second_mod": step_module("tp_clipper")})
    manager = PluginManager().load_entry_points()
    [failure] = manager.failures
    assert failure.name == "tp_second" and "status keyword CF_TP_CL" in failure.error


def test_duplicate_instrument_name_is_reported(site):
    clash = GOOD.replace('"tp_scale"', '"tp_other"')
    site.install("tp-good", {"tp_good": "tp_good_mod"}, {"tp_good_mod": GOOD})
    site.install("tp-clash", {"tp_zclash": "tp_clash_mod"}, {"tp_clash_mod": clash})
    manager = PluginManager().load_entry_points()
    [failure] = manager.failures
    assert failure.name == "tp_zclash"
    assert "instrument 'tpcam' is already registered" in failure.error
    assert "tp_other" not in manager.steps  # withdrawn with the plugin


def test_entry_point_name_clash_is_reported(site):
    site.install("tp-a", {"tp_same": "tp_a_mod"}, {"tp_a_mod": GOOD})
    site.install("tp-b", {"tp_same": "tp_b_mod"}, {"tp_b_mod": step_module("tp_other")})
    manager = PluginManager().load_entry_points()
    [failure] = manager.failures
    assert failure.name == "tp_same" and "already registered" in failure.error
    assert manager.plugins["tp_same"].steps  # the first one is untouched
    assert "tp_scale" in manager.steps


# -- identify_instrument ----------------------------------------------------------------

DECLARATIVE = GOOD.replace("register(Scaler)", "pass").replace(
    'register(instrument("tpcam", {"INSTRUME": "TPCAM*"}))',
    'register(instrument("tpcam", {"INSTRUME": "TPCAM*"}))\n'
    '    register(instrument("tpcam-red", {"INSTRUME": "TPCAM*", "FILTER": "R*"}))',
)

CODE_IDENTIFIER = """
from ccdflow.framework.engine.hookspecs import hookimpl
from tp_decl_mod import instrument

@hookimpl
def register_instruments(register):
    register(instrument("tpcam-legacy", {}))

@hookimpl
def identify_instrument(header, headers):
    return "tpcam-legacy" if header.get("TPSERIAL", "").startswith("L") else None
"""


def test_declarative_identify_most_specific_wins(site):
    site.install("tp-decl", {"tp_decl": "tp_decl_mod"}, {"tp_decl_mod": DECLARATIVE})
    manager = PluginManager().load_entry_points()
    assert manager.instruments["generic"].identify  # generic also matches these headers
    assert manager.identify(header(INSTRUME="TPCAM-1")) == "tpcam"
    assert manager.identify(header(INSTRUME="tpcam-1")) == "tpcam"  # case-insensitive
    assert manager.identify(header(INSTRUME="TPCAM-1", FILTER="R_Bessel")) == "tpcam-red"
    assert manager.identify(header(INSTRUME="OTHERCAM")) == "generic"
    assert manager.identify({0: fits.Header({"INSTRUME": "NOPE"})}) is None


def test_identify_rules_match_any_hdu(site):
    site.install("tp-decl", {"tp_decl": "tp_decl_mod"}, {"tp_decl_mod": DECLARATIVE})
    manager = PluginManager().load_entry_points()
    headers = {**header(), 1: fits.Header({"INSTRUME": "TPCAM-2"})}
    headers["SCI"] = headers[1]
    assert manager.identify(headers) == "tpcam"


def test_code_identifier_is_asked_before_declarative_rules(site):
    site.install("tp-decl", {"tp_decl": "tp_decl_mod"}, {"tp_decl_mod": DECLARATIVE})
    site.install("tp-code", {"tp_code": "tp_code_mod"}, {"tp_code_mod": CODE_IDENTIFIER})
    manager = PluginManager().load_entry_points()
    assert manager.failures == []
    # Declarative rules would say tpcam; the code-based identifier claims it first.
    assert manager.identify(header(INSTRUME="TPCAM-1", TPSERIAL="L042")) == "tpcam-legacy"
    # When the code passes (None), the declarative rules decide.
    assert manager.identify(header(INSTRUME="TPCAM-1", TPSERIAL="X001")) == "tpcam"


# -- run_step wrappers ------------------------------------------------------------------

WRAPPER = """
from ccdflow.framework.engine.hookspecs import hookimpl

CALLS = []


@hookimpl(wrapper=True)
def run_step(step, ccd, params, calibrations, context):
    CALLS.append(("before", step.name, float(ccd.data.sum())))
    result = yield
    CALLS.append(("after", step.name, result.header.get(step.status_keyword())))
    result.header["TPWRAP"] = (step.name, "wrapped by the tp_wrap plugin")
    return result
"""


def test_run_step_wrapper_from_plugin_wraps_the_step(site):
    site.install("tp-good", {"tp_good": "tp_good_mod"}, {"tp_good_mod": GOOD})
    site.install("tp-wrap", {"tp_wrap": "tp_wrap_mod"}, {"tp_wrap_mod": WRAPPER})
    manager = PluginManager(strict=True).load_entry_points()
    step_cls = manager.step("tp_scale")
    ccd = CCDData(np.ones((4, 5), dtype=np.float32), unit="adu", header=fits.Header())
    context = context_for(manager.instrument("tpcam"))
    result = manager.run_step(step_cls(), ccd, step_cls.Params(factor=3.0), {}, context)
    np.testing.assert_allclose(result.data, 3.0)
    assert result.header["TPWRAP"] == "tp_scale"
    # Plugin wrappers are outside the framework's bookkeeping: they see its status keyword.
    calls = importlib.import_module("tp_wrap_mod").CALLS
    assert calls == [("before", "tp_scale", 20.0), ("after", "tp_scale", "DONE")]
    assert context.statuses == {"tp_scale": "DONE"} and "tp_scale" in context.timings


# -- the CLI ----------------------------------------------------------------------------


def test_cli_plugins_json_lists_plugins_failures_and_blocked(site, cli, patch):
    site.install("tp-good", {"tp_good": "tp_good_mod"}, {"tp_good_mod": GOOD})
    site.install("tp-broken", {"tp_broken": "tp_broken_mod"},
                 {"tp_broken_mod": "import tp_missing_dependency_xyz"})
    site.install("tp-blocked", {"tp_blocked": "tp_blocked_mod"},
                 {"tp_blocked_mod": step_module("tp_never")})
    patch.setenv("CCDFLOW_DISABLE_PLUGINS", "tp_blocked")
    get_plugin_manager(reload=True)
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["tp_good"] == {
        "name": "tp_good", "distribution": "tp-good", "version": "1.2.3",
        "steps": ["tp_scale"], "instruments": ["tpcam"], "calibration_types": [],
    }
    [failed] = data["failed"]
    assert failed["name"] == "tp_broken" and failed["distribution"] == "tp-broken"
    assert "tp_missing_dependency_xyz" in failed["error"]
    assert data["blocked"] == ["tp_blocked"]


def test_cli_plugins_table_shows_failures_verbatim(site, cli):
    # Brackets in an error must not be eaten as rich markup.
    site.install("tp-broken", {"tp_broken": "tp_broken_mod"},
                 {"tp_broken_mod": "raise RuntimeError('[bold]needs[/bold] libfoo')"})
    site.install("tp-good", {"tp_good": "tp_good_mod"}, {"tp_good_mod": GOOD})
    get_plugin_manager(reload=True)
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "tp_good" in result.stdout and "tpcam" in result.stdout
    assert "RuntimeError: [bold]needs[/bold] libfoo" in result.stdout


def test_cli_strict_plugins_fails(site, cli):
    site.install("tp-broken", {"tp_broken": "tp_broken_mod"},
                 {"tp_broken_mod": "import tp_missing_dependency_xyz"})
    get_plugin_manager(reload=True)
    result = CliRunner().invoke(cli, ["--strict-plugins", "plugins", "--json"])
    # a configuration error: one line naming the plugin, exit 2 (docs/cli.md), no traceback
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "tp_broken" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["plugins"], env={"CCDFLOW_STRICT_PLUGINS": "1"})
    assert result.exit_code == 2 and "tp_broken" in result.output


def test_get_plugin_manager_caches_until_reload(site):
    first = get_plugin_manager(reload=True)
    assert get_plugin_manager() is first
    site.install("tp-good", {"tp_good": "tp_good_mod"}, {"tp_good_mod": GOOD})
    assert "tp_good" not in get_plugin_manager().plugins
    assert "tp_good" in get_plugin_manager(reload=True).plugins
    assert plugins._MANAGER is get_plugin_manager()
