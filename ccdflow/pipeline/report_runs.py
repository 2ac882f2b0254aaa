"""Every run keeps its report: ``OUT/runs/<UTC time>/report.{html,json}``; ``OUT/report.html`` is
the latest, with links to the earlier ones. And a re-run says what it redid and why: a frame
up to date (the ledger found the same raw file, configuration and calibrations) or reduced
again (a calibration changed: old id -> new id and the caldb's reason, a new configuration, a
frame new to this OUT, a failure last time)."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ccdflow.pipeline.night import NightResult

log = logging.getLogger("ccdflow.night")

#: ISO 8601 basic time: sorts as text, no ':' (not allowed in Windows file names).
RUN_FORMAT = "%Y-%m-%dT%H%M%SZ"


def new_run_dir(outdir: Path, now: datetime) -> Path:
    """``OUT/runs/<UTC time>``, made now; a second run within the same second gets a suffix."""
    runs = outdir / "runs"
    base = now.strftime(RUN_FORMAT)
    for n in range(1000):
        path = runs / (base if n == 0 else f"{base}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{runs / base}: a thousand runs in one second")


def run_summary(data: dict[str, Any]) -> dict[str, Any]:
    """What the list of runs shows of a run, kept small in its ``run.json`` (a 300-frame night's
    report.json is megabytes; a hundred runs are listed from their summaries)."""
    return {"id": data["run"]["id"], "html": f"{data['run']['dir']}/report.html",
            "written": data.get("written"), "redo_stale": data.get("redo_stale", False),
            "counts": data.get("counts", {}), "stopped": data.get("stopped")}


def earlier_runs(outdir: Path, this: Path) -> list[dict[str, Any]]:
    """The runs before ``this``, newest first: when, what they did, their report (relative to OUT)."""
    out = []
    for path in sorted((outdir / "runs").glob("*/run.json"), reverse=True):
        if path.parent == this:
            continue
        try:
            out.append(dict(json.loads(path.read_text())))
        except (OSError, ValueError) as exc:  # a run killed while writing: listed, unread
            log.info("run summary %s unreadable: %s", path, exc)
            out.append({"id": path.parent.name, "html": f"runs/{path.parent.name}/report.html"})
    return out


def previous_report(outdir: Path, this: Path) -> dict[str, Any] | None:
    """The last run's report.json (OUT/report.json from before runs were kept counts too)."""
    for path in [*sorted((outdir / "runs").glob("*/report.json"), reverse=True), outdir / "report.json"]:
        if path.parent == this:
            continue
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return None


def config_hashes(outdir: Path) -> dict[str, str]:
    """Each instrument's config hash from the run's ``config.yaml`` (written before any work)."""
    try:
        configs = (yaml.safe_load((outdir / "config.yaml").read_text()) or {}).get("configs", {})
    except (OSError, yaml.YAMLError):
        return {}
    return {name: str(c.get("config_hash")) for name, c in configs.items() if isinstance(c, dict)}


def _ids(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: c.get("id") for k, c in (entry.get("calibrations") or {}).items()}


def redo_reasons(result: NightResult, previous: dict[str, Any] | None,
                 hashes: dict[str, str]) -> dict[str, str]:
    """raw path -> why this run reduced the frame again or found it up to date."""
    stale: dict[str, list[str]] = {}
    for row in result.stale:
        stale.setdefault(str(row["raw"]), []).append(
            f"stale: {row['type']} {row['used']} -> {row['best_now']} ({row['reason']})")
    before = {s["raw"]: s for s in (previous or {}).get("science", [])}
    old_hashes = (previous or {}).get("config_hashes", {})
    changed = sorted(k for k, v in hashes.items() if k in old_hashes and old_hashes[k] != v)
    out = {}
    for entry in result.science:
        raw, status = entry["raw"], entry["status"]
        old = before.get(raw)
        if status == "up-to-date":
            out[raw] = "up to date: same raw file, configuration and calibrations (the ledger's key)"
        elif status == "failed":
            out[raw] = "failed (see the reason)"
        elif raw in stale:
            out[raw] = "; ".join(stale[raw])
        elif previous is None:
            out[raw] = "first run into this OUT"
        elif old is None:
            out[raw] = "new: not in the previous run"
        elif old.get("status") == "failed":
            out[raw] = "failed in the previous run"
        elif _ids(old) != _ids(entry):
            old_ids, new_ids = _ids(old), _ids(entry)
            out[raw] = "calibration changed: " + ", ".join(
                f"{k} {old_ids.get(k)} -> {new_ids.get(k)}" for k in sorted({*old_ids, *new_ids})
                if old_ids.get(k) != new_ids.get(k))
        elif changed:
            out[raw] = "configuration changed: " + ", ".join(
                f"{k} config {old_hashes[k]} -> {hashes[k]}" for k in changed)
        else:
            out[raw] = ("same calibrations and configuration as the previous run: its product was "
                        "missing or changed, or --force")
    return out


def redo_summary(result: NightResult, reasons: dict[str, str]) -> list[str]:
    """A few lines: how many frames were redone and why, grouped by reason."""
    groups: dict[str, int] = {}
    for entry in result.science:
        why = reasons.get(entry["raw"], "")
        key = why.split(":")[0] if entry["status"] == "reduced" else entry["status"]
        groups[key] = groups.get(key, 0) + 1
    lines = [f"{n} frame{'s' * (n != 1)}: {key}" for key, n in sorted(groups.items())]
    if result.redo_stale:
        lines.insert(0, f"--redo-stale: {len({r['raw'] for r in result.stale})} stale product(s) "
                        "reduced again with today's best calibrations; no master built")
    return lines


def masters_used(result: NightResult) -> list[dict[str, Any]]:
    """The masters this run's frames were calibrated with (what the masters table shows when the
    run built none, as after --redo-stale): type, caldb id, name, path under OUT when there."""
    seen: dict[int, dict[str, Any]] = {}
    for entry in result.science:
        for kind, cal in (entry.get("calibrations") or {}).items():
            if cal.get("id") in seen:
                seen[cal["id"]]["frames"] += 1
                continue
            path = Path(result.outdir) / "masters" / cal["name"]
            seen[cal["id"]] = {"type": kind, "id": cal["id"], "name": cal["name"], "frames": 1,
                               "path": str(path) if path.is_file() else None}
    return sorted(seen.values(), key=lambda m: (m["type"], m["id"]))
