"""The CLI's end without interpreter teardown (cli.exit_finished, os._exit after the atexit
handlers and a flush): every byte a command printed reaches a pipe, the statuses are the
documented ones, a reader that goes away early gets no traceback, and atexit handlers and
non-daemon threads still finish."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}


def run(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "ccdflow", *args]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=120)


def test_a_long_output_reaches_the_pipe_whole():
    done = run("plugins")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    # the same command run without exit_finished (click returns, the interpreter tears down)
    reference = run(code="import sys\nfrom ccdflow.cli import cli\n"
                         "cli.main(['plugins'], standalone_mode=False)\n")
    assert reference.returncode == 0, reference.stderr
    assert len(done.stdout) > 10_000 and done.stdout == reference.stdout
    assert done.stdout.endswith("\n")


def test_version_and_config_show_print_everything():
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("ccdflow, version ")
    assert version.stdout.endswith("\n") and version.stderr == ""
    shown = run("config", "show", "--instrument", "generic")
    assert shown.returncode == 0, shown.stderr
    assert "instrument" in shown.stdout and shown.stdout.endswith("\n")


def test_a_failing_command_keeps_its_status_and_one_line():
    bad = run("config", "show", "--instrument", "nosuch")
    assert bad.returncode == 2
    assert "configuration error: unknown instrument 'nosuch'" in bad.stderr
    assert "Traceback" not in bad.stderr
    usage = run("no-such-command")
    assert usage.returncode == 2 and "No such command" in usage.stderr


def test_a_failed_frame_is_status_1_and_said(tmp_path):
    done = run("reduce", str(tmp_path / "missing.fits"), "--out", str(tmp_path / "out"))
    assert done.returncode == 1, done.stderr  # some frames failed
    assert "Traceback" not in done.stderr + done.stdout
    assert "missing.fits: file not found" in done.stderr + done.stdout
    assert "0 reduced, 1 failed" in done.stderr + done.stdout


def test_a_reader_that_goes_away_early_gets_no_traceback():
    for args in (("plugins",), ("--version",)):
        proc = subprocess.Popen([sys.executable, "-m", "ccdflow", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=ENV)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()  # `| head -1`
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.stderr.close()
        status = proc.wait(timeout=120)
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert status in (0, 1), (args, status, err)  # click ends an EPIPE with status 1


def test_a_closed_stdout_before_start_is_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "ccdflow", "plugins"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=ENV, timeout=120, text=True)
    assert proc.returncode == 0 and proc.stderr == ""


def command_script(tmp_path: Path, setup: str) -> subprocess.CompletedProcess[str]:
    """Run ``setup`` then ccdflow's main() from a script named ``ccdflow``, as the console
    script is: the process that may end without teardown."""
    script = tmp_path / "ccdflow"
    script.write_text(f"import sys\n{setup}\nfrom ccdflow.cli import main\n"
                      "sys.argv = ['ccdflow', '--version']\nmain()\nprint('not reached')\n")
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=ENV,
                          timeout=120)


def test_atexit_handlers_of_user_code_still_run(tmp_path):
    done = command_script(tmp_path, "import atexit\n"
                          "atexit.register(lambda: print('bye', flush=True))\n"
                          "atexit.register(lambda: sys.stderr.write('err-bye\\n'))  # never flushed")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ccdflow, version ") and lines[1:] == ["bye"]  # main() did not return
    assert done.stderr == "err-bye\n"


@pytest.mark.parametrize(("body", "ending"), [
    # exit_finished itself: the buffered output flushed, atexit run, nothing after it
    ("sys.stdout.write('x' * 200000)\nfrom ccdflow.cli import exit_finished\nexit_finished()\n",
     "x" * 200000 + "bye\n"),
    # main() called by a program (not the ccdflow command) returns to it
    ("sys.argv = ['ccdflow', '--version']\nfrom ccdflow.cli import main\nmain()\nprint('after main')\n",
     "\nafter main\nbye\n"),
], ids=["exit_finished", "main-in-a-program"])
def test_a_program_with_an_atexit_handler(body, ending):
    done = run(code="import atexit, sys\natexit.register(lambda: print('bye'))\n" + body
               + "print('not reached')\n" * ("exit_finished()" in body))
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(ending) and "not reached" not in done.stdout


def test_output_printed_without_flush_is_delivered(tmp_path):
    done = command_script(tmp_path, "sys.stdout.write('x' * 200000)")
    assert done.returncode == 0 and done.stdout.startswith("x" * 200000)
    assert done.stdout.endswith("\n") and "version" in done.stdout and "not reached" not in done.stdout


def test_a_live_non_daemon_thread_is_joined_not_cut_off(tmp_path):
    done = command_script(tmp_path, "import threading, time\n"
                          "def late():\n"
                          "    time.sleep(0.5)\n"
                          "    print('thread done', flush=True)\n"
                          "threading.Thread(target=late).start()")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "thread done" and "not reached" not in done.stdout
