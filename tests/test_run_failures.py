"""Whole runs that cannot go on end cleanly: one line, the documented exit status, no traceback,
nothing half-written. A caldb that is a folder, a text file, read-only, an unreachable server or
a missing driver; a full disk; an output folder in use; nights with nothing usable in them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from ccdflow.cli import cli
from ccdflow.simulator import SimulationSpec, simulate_night

SPEC = SimulationSpec(shape=(64, 64), overscan=8, n_science=1)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return simulate_night(tmp_path_factory.mktemp("failures"), SPEC).raw_dir


def ccdflow(*args: str, prefix: tuple[str, ...] = (), code: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """The real console script (or ``code`` run before it, e.g. to hide a module)."""
    entry = ["-m", "ccdflow"] if code is None else [
        "-c", f"{code}\nimport sys\nfrom ccdflow.cli import main\nsys.argv[0] = 'ccdflow'\nmain()"]
    return subprocess.run([*prefix, sys.executable, *entry, *args], capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- a caldb that cannot be used ------------------------------------------------------------------

def caldb_location(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(--caldb value, words the one-line error must contain) for each kind of unusable caldb."""
    if kind == "folder":
        (tmp_path / "caldb-dir").mkdir()
        return str(tmp_path / "caldb-dir"), "is a folder, not a SQLite file"
    if kind == "text file":
        (tmp_path / "notes.sqlite").write_text("observing notes, not a database\n" * 20)
        return str(tmp_path / "notes.sqlite"), "is not a SQLite database"
    if kind == "server down":
        return (f"postgresql+psycopg://pipeline:s3cret@127.0.0.1:{closed_port()}/caldb",
                "cannot reach the caldb at postgresql+psycopg://pipeline:***@127.0.0.1")
    assert kind == "no driver"
    for name in ("psycopg", "psycopg2"):
        monkeypatch.setitem(sys.modules, name, None)  # `import psycopg` now fails, as uninstalled
    return "postgresql+psycopg://pipeline@db.example/caldb", "pip install 'ccdflow[postgres]'"


def commands(raw: Path, out: Path) -> dict[str, list[str]]:
    biases = sorted(str(p) for p in raw.glob("*bias*"))[:3]
    science = sorted(str(p) for p in raw.glob("*sci*"))[0]
    return {
        "night": ["night", str(raw), "--out", str(out), "--workers", "1"],
        "watch": ["watch", str(raw), "--out", str(out), "--workers", "1", "--interval", "0.1"],
        "master": ["master", "bias", *biases, "--out", str(out / "bias.fits"), "--register"],
        "caldb list": ["caldb", "list"],
        "caldb best": ["caldb", "best", "--type", "bias", science],
    }


@pytest.mark.parametrize("kind", ["folder", "text file", "server down", "no driver"])
def test_unusable_caldb_is_one_line_and_exit_3_in_every_command(kind, raw, tmp_path, monkeypatch):
    url, words = caldb_location(kind, tmp_path, monkeypatch)
    out = tmp_path / "out"
    for name, args in commands(raw, out).items():
        result = CliRunner().invoke(cli, [*args, "--caldb", url])
        assert result.exit_code == 3, (name, result.output, result.exception)
        line = one_line_error(result.stderr)
        assert line.startswith("error: ") and words in line, (name, line)
        assert "s3cret" not in result.output, name
        assert not out.exists(), f"{name} wrote into OUT before failing"


def test_the_console_script_says_the_same_for_each_kind(raw, tmp_path, monkeypatch):
    """The real process: exit 3 and one line, the missing driver hidden in a fresh interpreter."""
    cases = {kind: caldb_location(kind, tmp_path, monkeypatch)
             for kind in ("folder", "text file", "server down")}
    cases["no driver"] = ("postgresql+psycopg://pipeline@db.example/caldb",
                          "pip install 'ccdflow[postgres]'")
    hide = "import sys\nsys.modules['psycopg'] = sys.modules['psycopg2'] = None"
    out = tmp_path / "out"

    def run(kind: str) -> subprocess.CompletedProcess:
        return ccdflow("night", str(raw), "--out", str(out), "--workers", "1", "--caldb",
                       cases[kind][0], code=hide if kind == "no driver" else None)

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(cases, pool.map(run, cases), strict=True))
    for kind, proc in results.items():
        assert proc.returncode == 3, (kind, proc.stderr)
        assert cases[kind][1] in one_line_error(proc.stderr), kind
    assert not out.exists()


def test_read_only_caldb_refuses_commands_that_write_and_serves_those_that_read(raw, tmp_path):
    db = tmp_path / "caldb.sqlite"
    assert CliRunner().invoke(cli, ["caldb", "init", "--caldb", str(db)]).exit_code == 0
    url = f"sqlite:///file:{db}?mode=ro&uri=true"  # SQLite itself refuses every write
    out = tmp_path / "out"
    runs = commands(raw, out)
    writers = {k: runs[k] for k in ("night", "watch", "master")}
    writers["caldb add"] = ["caldb", "add", str(raw)]
    writers["caldb mark-bad"] = ["caldb", "mark-bad", "1", "--reason", "test"]
    for name, args in writers.items():
        result = CliRunner().invoke(cli, [*args, "--caldb", url])
        assert result.exit_code == 3, (name, result.output)
        assert "is read-only" in one_line_error(result.stderr), name
        assert not out.exists(), name
    listing = CliRunner().invoke(cli, [*runs["caldb list"], "--caldb", url])
    assert listing.exit_code == 0 and "0 calibrations" in listing.output


def test_read_only_file_or_folder_for_a_user_without_override(raw, tmp_path):
    """chmod 0444/0555 means nothing to root: drop the capabilities that bypass permissions.
    A read-only file in a writable folder still serves queries; in a read-only folder SQLite
    cannot even read it (its WAL journal needs a file there), and says so the same way."""
    db = tmp_path / "ro" / "caldb.sqlite"
    db.parent.mkdir()
    assert CliRunner().invoke(cli, ["caldb", "init", "--caldb", str(db)]).exit_code == 0
    db.chmod(0o444)
    db.parent.chmod(0o555)
    drop = ("setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner")
    try:
        probe = None if shutil.which("setpriv") is None else subprocess.run(
            [*drop, "sh", "-c", f"echo x >> {db.parent / 'probe'}"], capture_output=True, text=True)
        if probe is None or probe.returncode == 0:
            pytest.skip("cannot run a process that respects file permissions here (setpriv "
                        f"missing or unable to drop CAP_DAC_OVERRIDE): {probe and probe.stderr}")
        for folder_mode in (0o555, 0o755):
            db.parent.chmod(folder_mode)
            proc = ccdflow("night", str(raw), "--out", str(tmp_path / "out"), "--workers", "1",
                           "--caldb", str(db), prefix=drop)
            assert proc.returncode == 3, (oct(folder_mode), proc.stderr)
            assert "read-only" in one_line_error(proc.stderr)
            assert not (tmp_path / "out").exists()
        listing = ccdflow("caldb", "list", "--caldb", str(db), prefix=drop)
        assert listing.returncode == 0, listing.stderr
    finally:
        db.parent.chmod(0o755)


def test_caldb_lost_mid_run_is_a_named_error_without_the_password(tmp_path):
    from sqlalchemy.exc import OperationalError

    from ccdflow.caldb.connection import Sessions
    from ccdflow.caldb.errors import CaldbUnavailableError

    sessions = Sessions(f"postgresql+psycopg://pipeline:s3cret@127.0.0.1:{closed_port()}/caldb")

    def work(session):
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    with pytest.raises(CaldbUnavailableError, match="lost the caldb at .*pipeline:\\*\\*\\*@") as caught:
        sessions.write(work)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(CaldbUnavailableError, match="Connection refused"), sessions.read() as session:
        session.connection()


# -- the output folder ----------------------------------------------------------------------------

def test_two_nights_on_one_out_one_refuses_and_the_other_completes(raw, tmp_path):
    biases = tmp_path / "raw"  # a short night: both start together, one takes the lock
    biases.mkdir()
    for path in raw.glob("*bias*"):
        shutil.copy(path, biases)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "ccdflow", "night", str(biases), "--out", str(out), "--workers",
            "1", "--caldb", str(tmp_path / "caldb.sqlite"), "--json"]
    runs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    by_status = {run.returncode: (run, *out_err) for run, out_err in zip(runs, outputs, strict=True)}
    assert sorted(by_status) == [0, 3], outputs
    winner, stdout, _ = by_status[0]
    _, _, stderr = by_status[3]
    assert json.loads(stdout)["counts"]["masters"] == {"built": 1}
    line = one_line_error(stderr)
    assert f"in use by `ccdflow night` (pid {winner.pid}" in line and "another --out" in line
    assert not (out / ".ccdflow.lock").exists()  # released: the next run may start


def test_leftovers_of_a_killed_run_are_removed_under_the_lock(tmp_path, caplog):
    from ccdflow.pipeline.outlock import OutdirBusyError, lock_outdir

    out = tmp_path / "out"
    (out / "masters" / ".ccdflow-spool-k2x9_q1z").mkdir(parents=True)
    (out / "masters" / ".ccdflow-spool-k2x9_q1z" / "data.f32").write_bytes(b"\0" * 64)
    leftovers = [out / "reduced" / ".sci_001.fits.ab3de_9z.tmp", out / ".report.json.q1w2e3r4.tmp.json",
                 out / "masters" / ".2026-03-01_bias_1x1.fits.4242.build.tmp"]
    kept = [out / "reduced" / "sci_001.fits", out / "notes.tmp", out / ".hidden"]
    for path in leftovers + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    with lock_outdir(out, "night"):
        assert not [p for p in leftovers if p.exists()]
        assert not (out / "masters" / ".ccdflow-spool-k2x9_q1z").exists()
        assert all(p.exists() for p in kept)
        holder = json.loads((out / ".ccdflow.lock").read_text())
        assert holder["pid"] == os.getpid() and holder["command"] == "night"
        with pytest.raises(OutdirBusyError, match=f"pid {os.getpid()}"), lock_outdir(out, "watch"):
            pass
    assert "removed 3 temporary file(s) and 1 spool folder(s)" in caplog.text
    assert not (out / ".ccdflow.lock").exists()


# -- nights with nothing to do, or with failures --------------------------------------------------

def test_empty_rawdir_or_one_without_fits_exits_3_before_any_work(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "log.txt").write_text("clouds all night\n")
    for rawdir in (empty, notes):
        out = tmp_path / f"out-{rawdir.name}"
        proc = ccdflow("night", str(rawdir), "--out", str(out), "--workers", "1",
                       "--caldb", str(tmp_path / "caldb.sqlite"))
        assert proc.returncode == 3, proc.stderr
        assert f"no FITS files under {rawdir}" in one_line_error(proc.stderr)
        assert not out.exists()


def test_a_rawdir_of_unknown_files_exits_1_listing_them(tmp_path):
    rawdir = tmp_path / "raw"
    rawdir.mkdir()
    (rawdir / "garbage.fits").write_bytes(b"not a FITS file" * 300)
    fits.PrimaryHDU(np.zeros((8, 8), np.uint16)).writeto(rawdir / "anonymous.fits")  # no INSTRUME
    proc = ccdflow("night", str(rawdir), "--out", str(tmp_path / "out"), "--workers", "1",
                   "--caldb", str(tmp_path / "caldb.sqlite"))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for name in ("garbage.fits", "anonymous.fits"):
        assert any(line.startswith(f"not used ({rawdir / name}): ") for line in proc.stderr.splitlines())
    assert "none of the 2 file(s)" in proc.stderr.strip().splitlines()[-1]


def test_files_not_used_for_one_reason_make_one_line(tmp_path):
    """A camera nothing knows yet makes every file fail the same way: one line says so."""
    rawdir = tmp_path / "raw"
    rawdir.mkdir()
    for i in range(30):
        fits.PrimaryHDU(np.zeros((8, 8), np.uint16)).writeto(rawdir / f"anon{i:02d}.fits")
    proc = ccdflow("night", str(rawdir), "--out", str(tmp_path / "out"), "--workers", "1",
                   "--caldb", str(tmp_path / "caldb.sqlite"))
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("not used")]
    assert len(lines) == 1 and lines[0].startswith(f"not used (30 files, e.g. {rawdir / 'anon00.fits'}): ")
    reason = lines[0].split("): ", 1)[1]
    assert "no instrument recognises this header" in reason and str(rawdir) not in reason
    assert (tmp_path / "out" / "report.json").is_file()


def test_a_failed_master_makes_the_night_exit_1(raw, tmp_path):
    """Flats of a detector no bias was taken for: that master fails, everything else is done."""
    rawdir = tmp_path / "raw"
    shutil.copytree(raw, rawdir)
    for path in sorted(rawdir.glob("*flat*"))[:3]:
        stranger = path.with_name("other_" + path.name)
        shutil.copy(path, stranger)
        with fits.open(stranger, mode="update") as hdul:
            hdul[0].header["DETECTOR"] = "other"
    proc = ccdflow("night", str(rawdir), "--out", str(tmp_path / "out"), "--workers", "1",
                   "--caldb", str(tmp_path / "caldb.sqlite"), "--json")
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["counts"]["science"] == {"reduced": 2} and not result["failed"]
    (failed,) = result["failed_masters"]
    assert failed["type"] == "flat" and "bias" in failed["reason"]
