"""`ccdflow.log`: every command that writes outputs appends its log inside its output (OUT, or the
folder of `master`/`stack`'s file), INFO by default and DEBUG with -v, with a header per run;
the commands' results go to stdout, progress and warnings to stderr. Real console-script runs
on a small simulated night with a frame that fails and a file that cannot be read."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ccdflow.simulator import SimulationSpec, simulate_night
from tests.bad_files import SCI, with_bytes, with_pixels

SPEC = SimulationSpec(shape=(64, 64), overscan=8, filters=("V",), n_science=2)
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR)\s+ccdflow[.\w]*: ")


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """The night's raw files, one science frame of NaN (fails) and one truncated file (unused)."""
    raw = simulate_night(tmp_path_factory.mktemp("log"), SPEC).raw_dir
    with_pixels(SCI, "bad_sci_nan.fits", np.nan)(raw)
    with_bytes("bad_truncated.fits", lambda r: (r / SCI).read_bytes()[:-2880])(raw)
    return raw


def ccdflow(*args: str, status: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ccdflow", *args], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == status, proc.stdout + proc.stderr
    return proc


def runs(log: Path) -> list[list[str]]:
    """The log's runs, each from its header line on."""
    out: list[list[str]] = []
    for line in log.read_text().splitlines():
        if " ccdflow.cli: === ccdflow " in line:
            out.append([])
        out[-1].append(line)
    return out


def levels(lines: list[str]) -> set[str]:
    return {m.group(1) for line in lines if (m := LINE.match(line))}


def test_night_logs_stages_masters_and_frames_and_debug_tracebacks_with_v(raw, tmp_path):
    out, caldb = tmp_path / "out", str(tmp_path / "caldb.sqlite")
    before = sorted(p.name for p in raw.iterdir())
    first = ccdflow("night", str(raw), "--out", str(out), "--caldb", caldb, "--workers", "1", status=1)
    # the result on stdout, progress and nothing of the summary on stderr
    assert first.stdout.startswith(f"night {raw}\nfiles    ")
    assert "failed bad_sci_nan.fits: " in first.stdout and f"log:    {out / 'ccdflow.log'}" in first.stdout
    assert "files " not in first.stderr and "report:" not in first.stderr

    log = out / "ccdflow.log"
    (run,) = runs(log)
    text = "\n".join(run)
    assert f"=== ccdflow night {raw} --out {out} --caldb {caldb} --workers 1 (ccdflow " in run[0]
    assert all(LINE.match(line) for line in run), text  # one line per record at INFO
    assert levels(run) == {"INFO", "WARNING", "ERROR"}, text  # no DEBUG without -v
    for stage in ("scan", "bias masters", "dark masters", "flat masters", "bad-pixel masks", "science"):
        assert re.search(rf"INFO    ccdflow.night: {stage}: start, \d+ ", text), stage
        assert re.search(rf"INFO    ccdflow.night: {stage}: done in \d+\.\d s: ", text), stage
    assert len(re.findall(r"INFO    ccdflow.night: master built \S+: \w+ of \d+ frames, in [\d.]+ s, "
                          r"caldb id \d+, QA ", text)) == 1 + 4 + 1 + 1
    reduced = re.findall(r"INFO    ccdflow.night: reduced (n1_sci_V_00\d.fits) -> reduced/n1_sci_V_00\d.fits "
                         r"in [\d.]+ s: bias \d+, dark \d+ \(x0.5\), flat \d+, bpm \d+$", text, re.M)
    assert reduced == ["n1_sci_V_001.fits", "n1_sci_V_002.fits"], text
    assert re.search(r"ERROR   ccdflow.night: failed bad_sci_nan.fits: .*no finite pixel.* \(calibrations: "
                     r"bias \d+, dark \d+ \(x0.5\), flat \d+, bpm \d+\)$", text, re.M), text
    assert f"INFO    ccdflow.night: not used {raw / 'bad_truncated.fits'}: " in text
    assert "only 4 dark frame(s)" in text and "report: " in text
    assert "Traceback" not in text and re.search(r"=== exit status 1 after [\d.]+ s$", run[-1])

    # a second run appends with its own header; -v: DEBUG lines, the failure's traceback; the
    # tasks run on Dask workers, and what they did is in the log all the same
    again = ccdflow("-v", "night", str(raw), "--out", str(out), "--caldb", caldb, "--workers", "2", status=1)
    assert "Traceback" not in again.stderr
    first_again, second = runs(log)
    assert first_again == run
    text = "\n".join(second)
    assert "=== ccdflow -v night " in second[0] and "dask LocalCluster, 2 worker" in text
    assert {"DEBUG", "INFO", "ERROR"} <= levels(second)
    assert re.search(r"INFO    ccdflow.night: up-to-date n1_sci_V_001.fits in [\d.]+ s: bias \d+", text)
    assert re.search(r"DEBUG   ccdflow.night: n1_sci_V_001.fits: flat \S+ \(caldb id \d+\) of 1 ", text)
    traceback = text.split("DEBUG   ccdflow.night: bad_sci_nan.fits: traceback of the failure:\n")[1]
    assert traceback.startswith("Traceback (most recent call last):\n")
    assert "UnprocessableInputError: " in traceback.split("\n20")[0]

    # inside OUT only: nothing beside the raw files
    assert sorted(p.name for p in raw.iterdir()) == before
    assert [p for p in tmp_path.rglob("ccdflow.log")] == [log]


def test_master_and_stack_log_beside_their_file(raw, tmp_path):
    caldb = str(tmp_path / "caldb.sqlite")
    night = tmp_path / "night"
    ccdflow("night", str(raw), "--out", str(night), "--caldb", caldb, "--workers", "1", status=1)
    biases = sorted(str(p) for p in raw.glob("n1_bias_*.fits"))

    made = tmp_path / "masters" / "bias.fits"
    built = ccdflow("master", "bias", *biases, "--out", str(made), "--caldb", caldb)
    assert built.stdout.startswith(f"wrote bias {made} from 5 frame(s)") and "wrote" not in built.stderr
    (run,) = runs(made.parent / "ccdflow.log")
    text = "\n".join(run)
    assert "=== ccdflow master bias " in run[0] and f" --out {made} " in run[0]
    assert f"INFO    ccdflow.master: wrote bias {made} from 5 frame(s) in " in text
    assert levels(run) == {"INFO"} and "=== exit status 0 after " in run[-1]

    # an error is logged with its message and status; the console says it once, on stderr
    darks = [str(p) for p in raw.glob("n1_dark_*.fits")]
    refused = ccdflow("master", "dark", *darks[:3], "--out", str(made.parent / "dark.fits"), status=3)
    assert refused.stdout == "" and "needs a master bias" in refused.stderr
    last = runs(made.parent / "ccdflow.log")[-1]
    assert "ERROR   ccdflow.cli: " in last[-2] and "needs a master bias" in last[-2]
    assert "=== exit status 3 after " in last[-1]

    stacked = tmp_path / "stacks" / "V.fits"
    products = sorted(str(p) for p in (night / "reduced").glob("n1_sci_V_*.fits"))
    done = ccdflow("-v", "stack", *products, "--clip", "none", "--out", str(stacked))
    assert done.stdout.startswith(f"wrote {stacked} from 2 exposures") and "wrote" not in done.stderr
    (run,) = runs(stacked.parent / "ccdflow.log")
    text = "\n".join(run)
    assert f"ccdflow.stack: wrote {stacked} from 2 exposures (median, clip none, match offset)" in text
    assert all(f"INFO    ccdflow.stack: {p}: " in text and "pixels rejected" in text for p in products)
    assert sorted(p.parent.name for p in tmp_path.rglob("ccdflow.log")) == ["masters", "night", "stacks"]


def test_simulate_and_demo_log_in_their_folder(tmp_path):
    sim = tmp_path / "sim"
    made = ccdflow("simulate", str(sim), "--size", "32", "--filters", "V", "--n-science", "1")
    assert made.stdout.startswith("raw frames:  ")
    (run,) = runs(sim / "ccdflow.log")
    assert "INFO    ccdflow.simulator: raw frames in " in run[1] and "exit status 0" in run[-1]
    assert not (sim / "night1" / "raw" / "ccdflow.log").exists()

    demo = tmp_path / "demo"
    shown = ccdflow("demo", "--out", str(demo), "--size", "64", "--filters", "V", "--n-science", "1")
    assert "science vs. simulator truth" in shown.stdout and "science vs." not in shown.stderr
    (run,) = runs(demo / "ccdflow.log")
    text = "\n".join(run)
    assert "ccdflow.night: science: done in " in text and "ccdflow.night: reduced n1_sci_V_001.fits" in text


def test_a_broken_log_folder_is_one_line(tmp_path):
    """OUT that is a file: the log cannot be opened, and the command says so in one line."""
    out = tmp_path / "taken"
    out.write_text("")
    proc = ccdflow("simulate", str(out / "sim"), "--size", "32", status=3)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_warnings_are_logged_and_nothing_is_written_before_the_folder_exists(tmp_path):
    """Python warnings reach the log (and still the console's stream); records of a command
    that ends before its folder exists are dropped, and no folder is made for them."""
    import logging
    import warnings

    from ccdflow.cli.command_log import open_log
    from ccdflow.pipeline.runlog import FILE_ONLY, for_console

    absent = tmp_path / "absent"
    with open_log(absent, verbose=0):
        logging.getLogger("ccdflow.night").warning("refused before any work")
    assert not absent.exists()

    with pytest.warns(UserWarning, match="a card was fixed"), open_log(tmp_path, verbose=0) as path:
        warnings.warn("a card was fixed", UserWarning, stacklevel=1)
        logging.getLogger("ccdflow.night").debug("not at INFO")
    text = path.read_text()
    assert "WARNING ccdflow.warnings: UserWarning: a card was fixed (" in text
    assert "not at INFO" not in text and "=== exit status 0 after" in text
    record = logging.LogRecord("ccdflow.night", logging.ERROR, __file__, 1, "x", None, None)
    assert for_console(record)
    record.__dict__.update(FILE_ONLY)
    assert not for_console(record)
