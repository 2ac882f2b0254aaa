"""The night's report: ``report.json`` for machines, ``report.html`` with quicklooks for people.

A quality-control tool first: the problems box (what needs attention and what to do about it),
then per-frame QA figures with flagged cells, quicklooks that show the DQ bits, trend plots,
and the history of runs into this OUT (see :mod:`ccdflow.pipeline.report_runs`). The data is
assembled here; :mod:`ccdflow.pipeline.report_html` draws it, :mod:`ccdflow.pipeline.quicklook`
the PNGs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ccdflow import __version__
from ccdflow.pipeline.night import NightResult
from ccdflow.pipeline.outputs import write_text_atomic
from ccdflow.pipeline.quicklook import RULE, choose_science, out_relative, quicklook
from ccdflow.pipeline.report_frames import frame_name, reason
from ccdflow.pipeline.report_html import render
from ccdflow.pipeline.report_runs import (
    config_hashes,
    earlier_runs,
    masters_used,
    new_run_dir,
    previous_report,
    redo_reasons,
    redo_summary,
    run_summary,
)

log = logging.getLogger("ccdflow.night")


def write_report(result: NightResult, db: Any = None, *, now: datetime | None = None) -> dict[str, Path]:
    """Write this run's report into ``OUT/runs/<UTC time>/`` and the same as ``OUT/report.json``
    and ``OUT/report.html`` (the latest, linking the earlier runs); returns their paths (``json``
    and ``html`` the latest, ``run_json`` and ``run_html`` this run's own)."""
    outdir = Path(result.outdir)
    now = now or datetime.now(UTC)
    rundir = new_run_dir(outdir, now)
    previous = previous_report(outdir, rundir)
    runs = earlier_runs(outdir, rundir)
    hashes = config_hashes(outdir)
    reasons = redo_reasons(result, previous, hashes)
    used = masters_used(result) if not result.masters else []
    images = _quicklooks(result, used, outdir)
    # a caldb that went away is not asked again (the run stopped for that reason)
    stopped = db is None or result.stopped is not None
    history = {} if stopped else _history_plots(db, rundir / "trends", outdir)
    data = {
        "ccdflow_version": __version__, "written": now.isoformat(timespec="seconds"),
        "counts": result.counts(), **asdict(result), "warnings": night_warnings(result),
        "quicklooks": {k: v["thumb"] for k, v in images.items()}, "quicklook_images": images,
        "quicklook_rule": RULE, "history_plots": history,
        "calibrations_absent": absent_calibrations(result),
        "run": {"id": rundir.name, "dir": out_relative(rundir, outdir)}, "runs": runs,
        "config_hashes": hashes, "redo": reasons, "redo_summary": redo_summary(result, reasons),
        "masters_used": used, "previous_masters_run": _previous_masters_run(runs),
    }
    data["problems"] = problems(data)
    text = json.dumps(data, indent=2, default=str)
    write_text_atomic(rundir / "run.json", json.dumps(run_summary(data), indent=2, default=str))
    paths = {"run_json": write_text_atomic(rundir / "report.json", text),
             "run_html": write_text_atomic(rundir / "report.html", render(data, base="../../")),
             "json": write_text_atomic(outdir / "report.json", text),
             "html": write_text_atomic(outdir / "report.html", render(data, base=""))}
    return paths


def _quicklooks(result: NightResult, used: list[dict[str, Any]], outdir: Path) -> dict[str, Any]:
    """FITS path -> its quicklook (thumb, full, fits, bits): every master built or found (or,
    when the run built none, every master its frames used), and the science frames RULE picks."""
    files = [m["path"] for m in result.masters if m["status"] in ("built", "up-to-date") and m.get("path")]
    files += [m["path"] for m in used if m["path"]]
    files += [path for _, path in choose_science(result.science)]
    out = {}
    for path in files:
        look = quicklook(path, outdir)
        if look is not None:
            out[path] = look.as_dict()
    return out


def _previous_masters_run(runs: list[dict[str, Any]]) -> str | None:
    """The report of the latest earlier run that built or found masters (for a run that has none)."""
    return next((str(r["html"]) for r in runs if (r.get("counts") or {}).get("masters")), None)


def night_warnings(result: NightResult) -> list[str]:
    """What the night should not pass over, once each with how many products and masters share
    it (an assumed read noise is on every frame of the camera): the first lines of the report."""
    seen: dict[str, int] = {}
    for entry in [*result.masters, *result.science]:
        for warning in entry.get("assumed", []):
            seen[warning] = seen.get(warning, 0) + 1
    return [*result.warnings, *(f"{warning} ({n} file{'s' * (n > 1)})" for warning, n in seen.items())]


def absent_calibrations(result: NightResult) -> list[dict[str, Any]]:
    """Calibrations not applied, grouped by type and reason (not taken by the camera, optional
    and none matched), with the masters and frames each one concerns."""
    groups: dict[tuple[str, str], list[str]] = {}
    for entry in [*result.masters, *result.science]:
        for kind, why in (entry.get("calibrations_absent") or {}).items():
            name = entry.get("product") or entry.get("name") or Path(entry.get("raw", "")).name
            groups.setdefault((kind, why), []).append(name)
    return [{"type": kind, "reason": reason, "n": len(names), "frames": names}
            for (kind, reason), names in sorted(groups.items())]


def problems(data: dict[str, Any]) -> list[dict[str, str]]:
    """What needs attention, most serious first: {kind, what, why, action, anchor}; empty when
    nothing does. Every item names the file and the reason; ``action`` says what to do."""
    out: list[dict[str, str]] = []

    def add(kind: str, what: str, why: str, action: str = "", anchor: str = "") -> None:
        out.append({"kind": kind, "what": what, "why": why, "action": action, "anchor": anchor})

    if data.get("stopped"):
        add("run stopped", "the run", str(data["stopped"]), "fix it and run the same command again")
    for m in data["masters"]:
        if m["status"] == "failed":
            add("failed master", m["name"], reason(m), "its frames use another master or fail",
                anchor="masters")
        elif m.get("quality") == "suspect":
            from ccdflow.caldb.qa import qa_words

            add("suspect master", m["name"], qa_words(m.get("qa")) + "; not chosen until accepted",
                f"ccdflow caldb mark-good {m.get('caldb_id')}", anchor="masters")
        elif m.get("quality") == "bad":
            add("bad master", m["name"], "; ".join(m.get("warnings", [])), anchor="masters")
    for s in data["science"]:
        if s["status"] == "failed":
            add("failed frame", frame_name(s), reason(s), anchor="science")
    for s in data["science"]:
        for flag in s.get("qa_flags") or []:
            add("QA flag", frame_name(s), str(flag), anchor="science")
    for warning in data["warnings"]:
        name, _, rest = warning.partition(": ")  # "<master>.fits: only 3 flat frames ..."
        if name.endswith(".fits") and rest:
            add("warning", name, rest, anchor="masters")
        else:
            add("warning", "the night", warning)
    # a type the camera's file says it takes none of (efosc2: no darks) is its design, not a problem
    for absent in [a for a in data["calibrations_absent"] if not a["reason"].startswith("not taken")]:
        add("calibration not applied", f"{absent['n']} file(s)", f"{absent['type']}: {absent['reason']}",
            anchor="absent")
    for unknown in data["unknown"]:
        add("file not used", Path(unknown["path"]).name, unknown["reason"], anchor="unused")
    return out


def _title(kind: str, stat: str) -> str:
    """'bias level', 'dark rate' (not 'dark dark rate')."""
    words = stat.replace("_", " ")
    return words if words.startswith(kind) else f"{kind} {words}"


def _history_plots(db: Any, folder: Path, outdir: Path) -> dict[str, str]:
    """The caldb's history of each combined type's statistic, this night included: title -> PNG
    relative to OUT (in the run's folder: the caldb moves on, each run keeps its own plots)."""
    from ccdflow.caldb.errors import CaldbError
    from ccdflow.caldb.history import history, plot_history
    from ccdflow.framework.calibrations import master_types

    out = {}
    # each combined type's own statistic (bias level, dark rate, flat level, a plugin type's)
    plots = [(t.name, t.trend_stat, _title(t.name, t.trend_stat)) for t in master_types()]
    for kind, stat, title in plots:
        try:
            series = history(db, kind, stat)
            if series:
                path = plot_history(series, folder / f"history_{kind}.png", f"caldb history: {title}")
                out[title] = out_relative(path, outdir)
        except CaldbError as exc:
            log.info("no %s history plot: %s", title, exc)
        except Exception as exc:  # a plot must never cost the report
            log.warning("no %s history plot: %s: %s", title, type(exc).__name__, exc)
    return out
