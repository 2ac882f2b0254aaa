"""`ccdflow night` stopped by a signal at a random (seeded) moment: SIGTERM and SIGINT end with
143/130, one message and no traceback, serially and with Dask workers, leaving no temporary file
or spool; SIGKILL leaves them, and the next run removes them. Every re-run completes and the
caldb verifies."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ccdflow.simulator import SimulationSpec, simulate_night

SPEC = SimulationSpec(shape=(96, 96), overscan=8, n_science=2)  # 4 science, 8 masters


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return simulate_night(tmp_path_factory.mktemp("signals"), SPEC).raw_dir


def start(raw: Path, out: Path, workers: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ccdflow", "night", str(raw), "--out", str(out), "--caldb",
         str(out.parent / f"{out.name}.sqlite"), "--workers", str(workers), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def signal_mid_run(raw: Path, tmp_path: Path, sig: int, workers: int, rng: random.Random,
                   window: float, group: bool = False) -> tuple[subprocess.Popen, str, Path]:
    """Start a night and send ``sig`` a random time after it took OUT's lock (i.e. once it is
    working); a night that finished first is started again, with a shorter window."""
    for attempt in range(4):
        out = tmp_path / f"out{attempt}"
        proc = start(raw, out, workers)
        deadline = time.monotonic() + 60
        while not (out / ".ccdflow.lock").exists() and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, window))
        if proc.poll() is None:
            (os.killpg if group else os.kill)(proc.pid, sig)  # group: Ctrl-C at a terminal
            _, stderr = proc.communicate(timeout=120)
            if proc.returncode != 0:  # 0: the signal came after the night had ended (ignored)
                return proc, stderr, out
        else:
            proc.communicate()
        window /= 2
    pytest.fail("the night always finished before the signal")


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*")
            if ".tmp" in p.name or p.name.startswith((".ccdflow-spool-", ".ccdflow.lock"))]


def rerun_completes_and_verifies(raw: Path, out: Path) -> subprocess.CompletedProcess:
    caldb = str(out.parent / f"{out.name}.sqlite")
    again = subprocess.run([sys.executable, "-m", "ccdflow", "night", str(raw), "--out", str(out),
                            "--caldb", caldb, "--workers", "1", "--json"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    counts = json.loads(again.stdout)["counts"]
    assert sum(counts["science"].values()) == 4 and "failed" not in counts["science"]
    assert "failed" not in counts["masters"]
    verify = subprocess.run([sys.executable, "-m", "ccdflow", "caldb", "verify", "--caldb", caldb,
                             "--json"], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert not leftovers(out)
    return again


@pytest.mark.parametrize(("name", "workers", "group", "window"), [
    ("SIGTERM", 1, False, 2.0), ("SIGINT", 1, True, 2.0),
    ("SIGTERM", 2, False, 4.0), ("SIGINT", 2, True, 4.0),
])
def test_signal_stops_the_night_cleanly_and_a_rerun_completes(raw, tmp_path, name, workers, group,
                                                              window):
    sig = getattr(signal, name)
    rng = random.Random(f"{name}-{workers}")
    proc, stderr, out = signal_mid_run(raw, tmp_path, sig, workers, rng, window, group)
    assert proc.returncode == 128 + sig, stderr
    for noise in ("Traceback", "KeyboardInterrupt", "Exception ignored", "CancelledError"):
        assert noise not in stderr, stderr
    messages = [line for line in stderr.splitlines() if "interrupted" in line]
    assert messages == [f"interrupted: {name}: stopped; temporary files were removed; run the "
                        f"same command again to finish"], stderr
    assert not leftovers(out), leftovers(out)
    log = (out / "ccdflow.log").read_text().splitlines()  # closed with the error and the status
    assert f"ERROR   ccdflow.cli: interrupted: {name}: stopped" in log[-2], log[-3:]
    assert f"=== exit status {128 + sig} after" in log[-1], log[-3:]
    rerun_completes_and_verifies(raw, out)


def test_after_sigkill_the_next_run_removes_the_leftovers_and_completes(raw, tmp_path):
    rng = random.Random("SIGKILL")
    _, _, out = signal_mid_run(raw, tmp_path, signal.SIGKILL, 1, rng, 2.0, group=True)
    # Whatever the kill left, and what a kill in the middle of writes leaves for certain.
    planted = [out / "reduced" / ".n1_sci_V_001.fits.k1ll3d_x.tmp",
               out / "masters" / ".ccdflow-spool-k1ll3d_x" / "data.f32",
               out / ".report.json.k1ll3d_x.tmp.json"]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 100)
    from ccdflow.pipeline.outlock import SPOOL_DIR, TEMP_FILE

    names = [p.name for p in out.rglob("*") if ".ccdflow-spool-" not in p.parent.name]
    files = sum(1 for name in names if TEMP_FILE.match(name))
    spools = sum(1 for name in names if SPOOL_DIR.match(name))
    assert (out / ".ccdflow.lock").exists()  # the lock file stays; the lock itself died with it
    again = rerun_completes_and_verifies(raw, out)
    said = " ".join(again.stderr.split())  # the log line may be wrapped
    assert f"removed {files} temporary file(s) and {spools} spool folder(s)" in said, said


def test_watch_holds_the_lock_and_stops_on_sigterm_with_exit_0(raw, tmp_path):
    incoming, out = tmp_path / "incoming", tmp_path / "out"
    incoming.mkdir()
    watch = subprocess.Popen([sys.executable, "-m", "ccdflow", "watch", str(incoming), "--out", str(out),
                              "--caldb", str(tmp_path / "caldb.sqlite"), "--workers", "1",
                              "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 60
    while not (out / ".ccdflow.lock").exists() and watch.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    busy = subprocess.run([sys.executable, "-m", "ccdflow", "night", str(raw), "--out", str(out),
                           "--caldb", str(tmp_path / "caldb.sqlite"), "--workers", "1"],
                          capture_output=True, text=True, timeout=60)
    watch.send_signal(signal.SIGTERM)
    stdout, stderr = watch.communicate(timeout=60)
    assert busy.returncode == 3 and f"in use by `ccdflow watch` (pid {watch.pid}" in busy.stderr
    assert watch.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "SIGTERM: stopping after the work in hand" in stderr and "stopped; report:" in stdout
    assert "=== exit status 0 after" in (out / "ccdflow.log").read_text().splitlines()[-1]
    assert not leftovers(out)


def test_a_signal_dropped_inside_a_finaliser_prints_nothing_and_still_stops(capsys):
    """A signal that lands while a finaliser runs (a SQLAlchemy weakref callback) raises in it;
    Python drops that exception and printed 'Exception ignored ... Traceback' on stderr: the
    run's own check() raises it again, so the dropped copy is not shown."""
    import gc

    from ccdflow.cli import Interrupted, signals_interrupt

    class Finalised:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises here, inside __del__

    with pytest.raises(Interrupted), signals_interrupt() as check:
        Finalised()
        gc.collect()
        check()
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err
