"""`ccdflow --help` imports no heavy library: sub-commands load their modules when they run."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("astropy", "numpy", "pydantic", "sqlalchemy", "matplotlib", "dask")


def test_top_level_help_lists_commands_without_importing_heavy_modules():
    code = (
        "import sys\n"
        "from ccdflow.cli import cli\n"
        "try:\n"
        "    cli.main(['--help'], standalone_mode=False)\n"
        "finally:\n"
        f"    print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "caldb" in out.stdout and "simulate" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_sub_command_loads_on_demand():
    from click.testing import CliRunner

    from ccdflow.cli import cli

    result = CliRunner().invoke(cli, ["config", "show", "--json"])
    assert result.exit_code == 0 and '"instrument": "generic"' in result.output


def test_sub_command_help_is_light():
    """`ccdflow <command> --help` loads only click and ccdflow's CLI modules, not numpy, astropy,
    pydantic or SQLAlchemy (those load when the command runs), so every help is as quick as the
    top level's (the start-up time itself is measured by hand, not asserted here)."""
    commands = (["master", "--help"], ["master", "bias", "--help"], ["stack", "--help"],
                ["night", "--help"], ["watch", "--help"], ["caldb", "--help"],
                ["caldb", "best", "--help"], ["caldb", "history", "--help"],
                ["config", "show", "--help"], ["reduce", "--help"])
    for args in commands:
        code = (
            "import sys\n"
            "from ccdflow.cli import cli\n"
            f"cli.main({args!r}, standalone_mode=False)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        *_, heavy = out.stdout.strip().splitlines()
        assert "Usage:" in out.stdout, args
        assert heavy == "[]", (args, heavy)
