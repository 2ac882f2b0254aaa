"""A frame that kills the worker process reducing it (a C library crashing on a malformed file,
the out-of-memory killer) fails that frame; the night goes on (ccdflow/pipeline/lost.py).

The worker is killed for real (SIGKILL from inside the task, on every retry) on a real
LocalCluster; the failed entries the night gets for each of its task kinds then go through the
log and the report as any failed frame or master does."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import cloudpickle
import pytest

from ccdflow.pipeline import runlog, tasks
from ccdflow.pipeline.executor import DaskExecutor
from ccdflow.pipeline.lost import lost_result
from ccdflow.pipeline.night import NightResult
from ccdflow.pipeline.report import write_report
from ccdflow.pipeline.spec import make_spec
from ccdflow.testing import make_meta

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def square_or_die(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def test_a_task_that_kills_its_worker_yields_its_lost_entry_and_the_others_finish():
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    try:
        with DaskExecutor(workers=1) as ex:
            got = list(ex.map_unordered(square_or_die, [(x,) for x in range(6)],
                                        lost=lambda fn, args, exc: ("lost", args, type(exc).__name__)))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert sorted(g for g in got if isinstance(g, int)) == [0, 1, 4, 16, 25]
    assert [g for g in got if isinstance(g, tuple)] == [("lost", (3,), "KilledWorker")]


def test_lost_entries_of_every_task_are_reported_and_logged(tmp_path, caplog):
    spec = make_spec(tmp_path / "out", tmp_path / "c.sqlite")
    meta = make_meta(path=str(tmp_path / "raw" / "sci_001.fits"), frame_type="science")
    exc = RuntimeError("KilledWorker: attempted to run task on 4 different workers")
    science = lost_result(tasks.science_task, (spec, meta, "sci_001.fits"), exc)
    master = lost_result(tasks.master_task, (spec, "bias", "2026-03-01_bias", [meta]), exc)
    bpm = lost_result(tasks.bpm_task, (spec, "2026-03-01_bpm", {"path": "d.fits"}, {"path": "f.fits"}, 3),
                      exc)
    scanned = lost_result(tasks.scan_chunk, (spec, [str(meta.path)]), exc)
    for entry in (science, master, bpm):
        assert entry["status"] == "failed" and entry["error"] == "WorkerDiedError"
        assert "worker process running it died" in entry["reason"]
    assert scanned == {"frames": [], "unknown": [(str(meta.path), science["reason"])]}
    with pytest.raises(RuntimeError):  # not one of the night's tasks: not ours to explain
        lost_result(square_or_die, (3,), exc)

    with caplog.at_level("INFO", logger="ccdflow"):
        runlog.log_frame(science)
        runlog.log_master(master)
    assert "failed sci_001.fits: the worker process running it died" in caplog.text
    assert "master failed 2026-03-01_bias.fits" in caplog.text
    result = NightResult(str(tmp_path / "raw"), str(tmp_path / "out"), "dask", "sqlite://",
                         masters=[master, bpm], science=[science])
    paths = write_report(result)
    data = json.loads(Path(paths["json"]).read_text())
    assert data["counts"]["science"] == {"failed": 1} and data["counts"]["masters"] == {"failed": 2}
    assert "WorkerDiedError" in Path(paths["html"]).read_text()
