"""What a night or a watch tells its log (``OUT/ccdflow.log``, see ccdflow.cli.command_log): each
stage's start and end with counts and seconds, and one line per master and per science frame
with the calibrations chosen and why it failed or was skipped.

The lines are written here, in the process that drives the run, from the entries the tasks
return: a task may run in a Dask worker, whose own log records never reach this process. At
INFO a frame is one line (a 300-frame night stays readable); DEBUG adds the calibrations' costs,
the steps' timings and the traceback of every failure. Entry lines carry :data:`FILE_ONLY`: the
console has the progress bar and the summary, which lists failures once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("ccdflow.night")

#: ``extra=`` of records meant for the log file only (the console handler drops them).
FILE_ONLY = {"file_only": True}


def for_console(record: logging.LogRecord) -> bool:
    """Filter of the console handler: everything but :data:`FILE_ONLY` records."""
    return not getattr(record, "file_only", False)


class Stage:
    """Counts of one stage's outcomes, for its closing line."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def master(self, entry: dict[str, Any]) -> None:
        """Count and log a master entry (after its registration, so with its caldb id and QA)."""
        self.counts[entry["status"]] += 1
        log_master(entry)

    def frame(self, entry: dict[str, Any]) -> None:
        """Count and log a science entry."""
        self.counts[entry["status"]] += 1
        log_frame(entry)


@contextmanager
def stage(name: str, total: int, unit: str) -> Iterator[Stage]:
    """``<name>: start, N <unit>`` then ``<name>: done in S s: 3 built, 1 failed``."""
    log.info("%s: start, %d %s", name, total, unit)
    start = time.perf_counter()
    counts = Stage()
    yield counts
    done = ", ".join(f"{n} {status}" for status, n in sorted(counts.counts.items())) or "nothing"
    log.info("%s: done in %.1f s: %s", name, time.perf_counter() - start, done)


def log_master(entry: dict[str, Any]) -> None:
    """One line per master: status, type, frames, seconds, caldb id and QA verdict; its warnings."""
    traceback = entry.pop("traceback", None)
    name, status = entry["name"], entry["status"]
    if status == "failed":
        log.error("master failed %s (%s, %d frames): %s", name, entry["type"], entry["n"],
                  entry.get("reason"), extra=FILE_ONLY)
        _debug_traceback(name, traceback)
        return
    parts = [f"{entry['type']} of {entry['n']} frames", f"in {entry.get('seconds', 0):.1f} s"]
    if entry.get("caldb_id") is not None:
        parts.append(f"caldb id {entry['caldb_id']}")
    if entry.get("qa") is not None:
        from ccdflow.caldb.qa import qa_words

        parts.append(f"QA {qa_words(entry['qa'])}")
    elif entry.get("quality"):
        parts.append(f"quality {entry['quality']}")
    cals = calibration_words(entry.get("calibrations", {}), entry.get("calibrations_absent", {}))
    log.info("master %s %s: %s%s", status, name, ", ".join(parts), f"; {cals}" if cals else "",
             extra=FILE_ONLY)
    for path, why in entry.get("excluded", []):
        log.warning("%s: left out %s: %s", name, Path(path).name, why, extra=FILE_ONLY)
    for warning in [*entry.get("warnings", []), *entry.get("assumed", [])]:
        log.warning("%s: %s", name, warning, extra=FILE_ONLY)
    _debug_calibrations(name, entry.get("calibrations", {}))


def log_frame(entry: dict[str, Any]) -> None:
    """One line per science frame: status, seconds, the calibrations chosen (caldb ids), and
    why it failed; DEBUG: costs, steps and their timings, the traceback of a failure."""
    traceback = entry.pop("traceback", None)
    name, status = Path(entry["raw"]).name, entry["status"]
    cals = calibration_words(entry.get("calibrations", {}), entry.get("calibrations_absent", {}))
    if status == "failed":
        log.error("failed %s: %s%s", name, entry.get("reason"), f" (calibrations: {cals})" if cals else "",
                  extra=FILE_ONLY)
        _debug_traceback(name, traceback)
        return
    where = f" -> reduced/{entry['product']}" if status == "reduced" else ""
    log.info("%s %s%s in %.2f s: %s", status, name, where, entry.get("seconds", 0), cals or "no calibrations",
             extra=FILE_ONLY)
    for warning in entry.get("assumed", []):
        log.warning("%s: %s", name, warning, extra=FILE_ONLY)
    for flag in entry.get("qa_flags", []):  # beyond the instrument's frame_qa: limits
        log.warning("%s: QA %s", name, flag, extra=FILE_ONLY)
    if entry.get("qa"):
        log.debug("%s: QA %s", name, ", ".join(f"{k} {v}" for k, v in entry["qa"].items()), extra=FILE_ONLY)
    _debug_calibrations(name, entry.get("calibrations", {}))
    if entry.get("steps"):
        timings = entry.get("step_seconds", {})
        log.debug("%s: steps %s", name, ", ".join(
            f"{step} {state.lower()}" + (f" {timings[step]:.3f} s" if step in timings else "")
            for step, state in entry["steps"].items()), extra=FILE_ONLY)


def calibration_words(chosen: dict[str, dict[str, Any]], absent: dict[str, str]) -> str:
    """``bias 1, dark 4 (x0.98), flat 6; no bpm: none in the caldb`` (caldb ids)."""
    words = []
    for kind, cal in chosen.items():
        scaling = cal.get("scaling")
        scaled = f" (x{scaling:.3g})" if isinstance(scaling, int | float) and scaling != 1 else ""
        words.append(f"{kind} {cal.get('id')}{scaled}")
    text = ", ".join(words)
    missing = "; ".join(f"no {kind}: {why}" for kind, why in absent.items())
    return "; ".join(part for part in (text, missing) if part)


def _debug_calibrations(name: str, chosen: dict[str, dict[str, Any]]) -> None:
    for kind, cal in chosen.items():
        log.debug("%s: %s %s (caldb id %s) of %s candidate(s): dt %s d, dT %s, cost %s %s", name, kind,
                  cal.get("name"), cal.get("id"), cal.get("n_candidates"), cal.get("dt_days"),
                  cal.get("dtemp"), cal.get("cost"), cal.get("cost_terms") or "", extra=FILE_ONLY)


def _debug_traceback(name: str, traceback: str | None) -> None:
    if traceback:
        log.debug("%s: traceback of the failure:\n%s", name, traceback.rstrip(), extra=FILE_ONLY)
