"""A PostgreSQL caldb that goes away in the middle of a night: the night stops with one clear
line and exit 3, reports what it did, and a re-run after the server is back completes.

The test starts its own server (initdb/pg_ctl on a free loopback port in a temporary folder),
so it can stop it; without those programs it is skipped, unless CCDFLOW_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ccdflow.pipeline.night import NightResult
from ccdflow.simulator import SimulationSpec, simulate_night

SPEC = SimulationSpec(shape=(96, 96), overscan=8, n_science=2)


def program(name: str) -> str | None:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))),
                                       None)
    return found or (f"/usr/local/bin/{name}" if os.access(f"/usr/local/bin/{name}", os.X_OK) else None)


class Server:
    """A throwaway PostgreSQL cluster; as root it runs as the `postgres` user."""

    def __init__(self, folder: Path, port: int, as_user: list[str]) -> None:
        self.folder, self.port, self.as_user = folder, port, as_user
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def ctl(self, *args: str) -> None:
        done = subprocess.run([*self.as_user, program("pg_ctl"), "-D", str(self.folder / "data"),
                               *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        self.ctl("-o", f"-p {self.port} -h 127.0.0.1 -k {self.folder} -c fsync=off",
                 "-l", str(self.folder / "log"), "-w", "start")

    def stop(self) -> None:
        self.ctl("-m", "immediate", "-w", "stop")


@pytest.fixture(scope="module")
def server():
    def unavailable(reason: str):
        if os.environ.get("CCDFLOW_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " -- and CCDFLOW_REQUIRE_POSTGRES=1 requires it")
        pytest.skip(reason)

    if program("initdb") is None or program("pg_ctl") is None:
        unavailable("initdb/pg_ctl not found (PATH, /usr/lib/postgresql/*/bin, /usr/local/bin)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="ccdflow-pg-", dir="/tmp"))  # reachable by `postgres`
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if shutil.which("runuser") is None:
            unavailable("running as root without runuser to start PostgreSQL as another user")
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run([*as_user, program("initdb"), "-D", str(folder / "data"), "-A", "trust",
                           "-U", "postgres", "--no-sync", "-E", "UTF8"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        unavailable(f"initdb failed: {done.stderr.strip()}")
    pg = Server(folder, port, as_user)
    pg.start()
    yield pg
    subprocess.run([*as_user, program("pg_ctl"), "-D", str(folder / "data"), "-m", "immediate",
                    "stop"], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return simulate_night(tmp_path_factory.mktemp("lost"), SPEC).raw_dir


def night(raw: Path, out: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "ccdflow", "night", str(raw), "--out", str(out), "--caldb", url,
            "--workers", "1", "--json"]


@pytest.mark.xfail("stopped" not in NightResult.__dataclass_fields__, strict=False,
                   reason="pipeline stop on CaldbUnavailableError pending")
def test_postgres_stopped_mid_night_stops_it_cleanly_and_a_rerun_completes(server, raw, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(night(raw, out, server.url), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((out / "masters").glob("*.fits")) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    server.stop()
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        server.start()
    assert proc.returncode == 3, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: the run stopped: CaldbUnavailableError: lost the caldb at "
                           f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/postgres"), last
    assert f"what was done is in {out / 'report.json'}" in last
    report = json.loads((out / "report.json").read_text())  # what was done before it stopped
    assert "lost the caldb" in report["stopped"] and report["frames"]
    assert json.loads(stdout)["stopped"] == report["stopped"]

    again = subprocess.run(night(raw, out, server.url), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    counts = json.loads(again.stdout)["counts"]
    assert counts["science"] and set(counts["science"]) <= {"reduced", "up-to-date"}
    assert sum(counts["science"].values()) == 4
    verify = subprocess.run([sys.executable, "-m", "ccdflow", "caldb", "verify", "--caldb",
                             server.url], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
