"""How the ``ccdflow`` command runs its process (ccdflow.cli.process_tuning): BLAS on one thread
in the command's own process and in the workers it starts (never in a program that calls
main()), a user's choice kept; the cyclic collector paused for a master's build and restored."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from ccdflow.cli import cli
from ccdflow.cli.process_tuning import BLAS_THREAD_VARIABLES, collector_paused, single_threaded_blas

ROOT = Path(__file__).resolve().parents[1]
SHOW = ("import atexit, os, sys\n"
        "atexit.register(lambda: print('BLAS', [os.environ.get(v) for v in "
        f"{BLAS_THREAD_VARIABLES!r}], flush=True))\n")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in BLAS_THREAD_VARIABLES}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _blas_seen(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("BLAS "))


def _biases(folder: Path, n: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(n):
        header = fits.Header({"IMAGETYP": "Bias Frame", "EXPTIME": 0.0, "FILTER": "V",
                              "DATE-OBS": f"2026-01-01T01:0{i}:00", "CCD-TEMP": -10.0,
                              "GAIN": 1.5, "RDNOISE": 3.5})
        pixels = np.round(rng.normal(1000, 2, (64, 64))).astype(np.uint16)
        fits.PrimaryHDU(pixels, header).writeto(folder / f"bias_{i}.fits")
    return folder


def test_the_defaults_leave_a_users_choice():
    environ = {"OPENBLAS_NUM_THREADS": "4"}
    single_threaded_blas(environ)
    assert environ == {"OPENBLAS_NUM_THREADS": "4", "MKL_NUM_THREADS": "1", "BLIS_NUM_THREADS": "1"}


@pytest.mark.parametrize(("extra", "seen"), [
    ({}, "BLAS ['1', '1', '1']"),
    ({"OPENBLAS_NUM_THREADS": "3"}, "BLAS ['3', '1', '1']"),
], ids=["default", "user-set"])
def test_the_command_process_runs_blas_on_one_thread(tmp_path, extra, seen):
    script = tmp_path / "ccdflow"  # named as the console script is: the command's own process
    script.write_text(SHOW + "sys.argv = ['ccdflow', '--version']\n"
                      "from ccdflow.cli import main\nmain()\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=_env(**extra), timeout=120)
    assert done.returncode == 0, done.stderr
    assert _blas_seen(done.stdout) == seen


def test_a_program_that_calls_main_keeps_its_environment(tmp_path):
    done = subprocess.run([sys.executable, "-c", SHOW + "sys.argv = ['ccdflow', '--version']\n"
                           "from ccdflow.cli import main\nmain()\n"],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert _blas_seen(done.stdout) == "BLAS [None, None, None]"


def test_the_workers_a_command_starts_inherit_it(tmp_path):
    """`python -m ccdflow` too; a child process (a reduce or night worker) sees the setting, so
    numpy's OpenBLAS in it starts one thread."""
    code = ("import subprocess, sys\n"
            "from ccdflow.cli import cli\n"
            "@cli.command('child-blas')\n"
            "def child_blas():\n"
            "    print(subprocess.run([sys.executable, '-c', 'import os; "
            "print(os.environ.get(\"OPENBLAS_NUM_THREADS\"))'], capture_output=True, text=True"
            ").stdout.strip(), flush=True)\n"
            "sys.argv = ['ccdflow', 'child-blas']\n"
            "from ccdflow.cli import main\nmain()\n")
    script = tmp_path / "ccdflow"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=_env(),
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_collector_paused_and_restored():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # nested: the outer pause holds
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_collector_restored_when_the_work_fails():
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("a build that fails")
    assert gc.isenabled()


def test_a_collector_paused_by_the_caller_stays_paused():
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_master_build_runs_paused_and_restores_the_collector(tmp_path, monkeypatch):
    """The master command builds with the collector paused (from its imports to the write) and
    gives it back, also when the build fails."""
    from ccdflow.cli import master_cmd

    seen: list[bool] = []
    real = master_cmd.build_and_write

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(master_cmd, "build_and_write", spy)
    raw = _biases(tmp_path / "raw", 3)
    done = CliRunner().invoke(cli, ["master", "bias", str(raw), "--instrument", "generic",
                                    "--out", str(tmp_path / "mb.fits")])
    assert done.exit_code == 0, done.output
    assert seen == [False] and gc.isenabled()
    failed = CliRunner().invoke(cli, ["master", "bias", str(raw), "--instrument", "generic",
                                      "--filter", "R", "--out", str(tmp_path / "none.fits")])
    assert failed.exit_code != 0 and "R" in failed.output, failed.output
    assert seen == [False, False] and gc.isenabled()
