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
