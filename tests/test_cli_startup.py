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


def test_master_and_stack_help_are_fast_and_light():
    """`ccdflow master --help` / `stack --help` load only click and ccdflow's CLI modules, not numpy
    or astropy (those load when a master is built), so the help is as quick as the top level."""
    import time

    for args in (["master", "--help"], ["master", "bias", "--help"], ["stack", "--help"]):
        code = (
            "import sys, time\n"
            "t0 = time.perf_counter()\n"
            "from ccdflow.cli import cli\n"
            f"cli.main({args!r}, standalone_mode=False)\n"
            "print(round(time.perf_counter() - t0, 3))\n"
            f"print(sorted(m for m in {('numpy', 'astropy', 'sqlalchemy', 'dask')!r} if m in sys.modules))\n"
        )
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        *_, inner, heavy = out.stdout.strip().splitlines()
        assert "Usage:" in out.stdout, args
        assert float(inner) < 0.5 and wall < 1.5, (args, inner, wall)
        assert heavy == "[]", (args, heavy)
