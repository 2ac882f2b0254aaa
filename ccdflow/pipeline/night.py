"""`ccdflow night`: one raw folder in; masters, reduced frames, provenance and a report out.

Stages run in order (bias masters before darks, darks before flats, flats before science, so
each stage can choose the previous one's masters from the caldb); inside a stage every task is
independent and runs wherever the executor puts it. Masters are registered in the caldb by
this process as they finish; science products are recorded by the worker, one row per frame.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ccdflow.framework.calibrations import calibration_type
from ccdflow.framework.engine.frame import FrameMeta, imaging_types
from ccdflow.framework.engine.instrument_files import unclaimed
from ccdflow.framework.headers.scan import discover_fits_files
from ccdflow.pipeline.executor import SerialExecutor
from ccdflow.pipeline.outputs import write_text_atomic
from ccdflow.pipeline.plan import master_frame_types, match_rules, plan_bpms, plan_masters, plan_products
from ccdflow.pipeline.runlog import FILE_ONLY, stage
from ccdflow.pipeline.spec import RunSpec, environment
from ccdflow.pipeline.tasks import bpm_task, master_task, one_line, scan_chunk, science_task

log = logging.getLogger("ccdflow.night")


def _master_order(entry: dict[str, Any]) -> tuple:
    return (calibration_type(entry["type"]).order, entry["name"])


@dataclass
class NightResult:
    """Everything the report needs."""

    rawdir: str
    outdir: str
    executor: str
    caldb: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[dict[str, str]] = field(default_factory=list)
    masters: list[dict[str, Any]] = field(default_factory=list)
    science: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    #: Why the run stopped before the end (caldb unreachable, disk full); None when it ran through.
    stopped: str | None = None
    #: What the run should not pass over (an instrument file that read no frame)
    warnings: list[str] = field(default_factory=list)
    #: ``--caldb-as-of`` (ISO, UTC): calibrations were chosen with the caldb as it was then.
    caldb_as_of: str | None = None
    #: ``--redo-stale``: only the frames whose calibrations changed were reduced, no master built.
    redo_stale: bool = False
    #: With ``--redo-stale``: each stale product's calibration change (caldb ``stale`` rows:
    #: raw, type, used, best_now, reason), so the report says why each frame was redone.
    stale: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed_masters(self) -> list[dict[str, Any]]:
        return [m for m in self.masters if m["status"] == "failed"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [s for s in self.science if s["status"] == "failed"]

    def counts(self) -> dict[str, Any]:
        def by_status(items: list[dict[str, Any]]) -> dict[str, int]:
            out: dict[str, int] = {}
            for item in items:
                out[item["status"]] = out.get(item["status"], 0) + 1
            return out

        types: dict[str, int] = {}
        for frame in self.frames:
            types[frame["type"]] = types.get(frame["type"], 0) + 1
        return {"files": len(self.frames) + len(self.unknown), "unreadable_or_unknown": len(self.unknown),
                "frame_types": types, "masters": by_status(self.masters),
                "science": by_status(self.science)}


def run_night(
    rawdir: str | Path,
    spec: RunSpec,
    executor: Any = None,
    progress: Callable[[str, int, int], None] = lambda stage, done, total: None,
    *,
    redo_stale: bool = False,
) -> NightResult:
    """Scan, build masters, reduce science frames; ``progress(stage, done, total)`` is told as
    each task finishes. Never raises for a bad frame (see the result's failures). When the caldb
    becomes unreachable or the disk fills, the run stops: ``result.stopped`` says why and the
    result holds what was done, for the report."""
    executor = executor or SerialExecutor()
    env = environment(spec)
    result = NightResult(str(rawdir), spec.outdir, executor.description, env.db.display_url,
                         caldb_as_of=None if spec.caldb_as_of is None else spec.caldb_as_of.isoformat(),
                         redo_stale=redo_stale)
    try:
        _run_stages(rawdir, spec, executor, progress, redo_stale, result)
    except Exception as exc:
        from ccdflow.pipeline.tasks import is_fatal

        if not is_fatal(exc):
            raise
        result.stopped = f"{type(exc).__name__}: {exc}"
        log.error("run stopped: %s", result.stopped)
    result.science.sort(key=lambda e: e["raw"])
    result.masters.sort(key=_master_order)
    return result


def _run_stages(rawdir: str | Path, spec: RunSpec, executor: Any,
                progress: Callable[[str, int, int], None], redo_stale: bool, result: NightResult) -> None:
    env = environment(spec)
    db = env.db
    outdir = Path(spec.outdir)
    outdir.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    log.info("night %s -> %s (%s, caldb %s%s)", rawdir, outdir, executor.description, db.display_url,
             "" if spec.caldb_as_of is None else f" as of {spec.caldb_as_of.isoformat()}")
    frames = _scan(rawdir, spec, executor, result, progress)
    result.seconds["scan"] = time.perf_counter() - start
    if spec.instrument is None:
        result.warnings += unclaimed(env.manager, Counter(f.instrument for f in frames))

    _save_config(outdir / "config.yaml", env, frames)

    start = time.perf_counter()
    if not redo_stale:
        planned = plan_masters(frames, match_rules(env))
        for kind in master_frame_types().values():
            groups = [g for g in planned if g[0] == kind]
            if not groups:
                continue
            with stage(f"{kind} masters", len(groups), "group(s)") as masters:
                for done, entry in enumerate(executor.map_unordered(
                        master_task, [(spec, k, name, metas) for k, name, metas in groups]), 1):
                    register_master(db, env, entry)
                    masters.master(entry)
                    result.masters.append(entry)
                    result.warnings += [f"{entry['name']}: {w}" for w in entry.get("night_warnings", [])]
                    progress(f"{kind} masters", done, len(groups))
        _bpm_stage(spec, executor, result, progress)
    result.seconds["masters"] = time.perf_counter() - start

    start = time.perf_counter()
    science = [f for f in frames if f.frame_type == "science"]
    if redo_stale:
        result.stale = stale_products(db, env)
        stale_raw = {str(s["raw"]) for s in result.stale}
        science = [f for f in science if str(f.path) in stale_raw]
    products = plan_products(science, rawdir)
    with stage("science", len(products), "frame(s)" + (" (stale)" if redo_stale else "")) as reduced:
        for done, entry in enumerate(executor.map_unordered(
                science_task, [(spec, m, rel) for m, rel in products]), 1):
            reduced.frame(entry)
            result.science.append(entry)
            progress("science", done, len(products))
    result.seconds["science"] = time.perf_counter() - start


def require_fits_files(rawdir: str | Path) -> None:
    """UnprocessableInputError before any work when nothing under RAWDIR even looks like FITS.
    (FITS-named entries that cannot be read, such as dangling links, are the night's to report.)"""
    from ccdflow.framework.engine.errors import UnprocessableInputError
    from ccdflow.framework.headers.scan import COMPRESSED, FITS_SUFFIXES

    files, problems = discover_fits_files([rawdir])
    if not files and not problems:
        raise UnprocessableInputError(
            f"no FITS files under {rawdir} (names ending in {', '.join(FITS_SUFFIXES)}, or those "
            f"with {', '.join(c for c in COMPRESSED if c)}): nothing to do; is this the night's "
            f"raw folder?")


def register_master(db: Any, env: Any, entry: dict[str, Any]) -> None:
    """Register a master this run built (or found built but unregistered) in the caldb, after
    its QA (a suspect one is registered, never chosen; the report says why). A run that reads
    the caldb as of a past time registers nothing: the master is written, not chosen, and the
    next run without --caldb-as-of finds it on disk and registers it then."""
    if entry["status"] != "built":
        return
    if env.spec.caldb_as_of is not None:
        entry["warnings"] = [w for w in entry.get("warnings", []) if "registered now" not in w] + [
            f"written, not registered: this run reads the caldb as of "
            f"{env.spec.caldb_as_of.isoformat()} (the next run without --caldb-as-of registers it)"]
        return
    added = db.add(entry["path"], env.manager)
    entry["caldb_id"] = added.id
    if added.qa is not None:
        entry["quality"], entry["qa"] = added.quality, added.qa


def bpm_min_frames(env: Any) -> Callable[[str], int]:
    """The fewest frames a BPM's masters need, per instrument (``masters: {bpm: {min_frames}}``)."""
    return lambda inst: env.config(inst).instrument.master_settings("bpm", env.manager).min_frames


def _bpm_stage(spec: RunSpec, executor: Any, result: NightResult,
               progress: Callable[[str, int, int], None]) -> None:
    env = environment(spec)
    skipped: list[str] = []
    todo = plan_bpms(result.masters, skipped, bpm_min_frames(env))
    result.warnings += skipped
    for reason in skipped:
        log.warning("%s", reason)
    if not todo:
        return
    with stage("bad-pixel masks", len(todo), "mask(s)") as masks:
        for done, entry in enumerate(executor.map_unordered(bpm_task, [(spec, *t) for t in todo]), 1):
            register_master(env.db, env, entry)
            masks.master(entry)
            result.masters.append(entry)
            progress("bad-pixel masks", done, len(todo))


def stale_products(db: Any, env: Any) -> list[dict[str, Any]]:
    """Products whose best calibration today differs from the one they used."""
    from ccdflow.caldb.rules import rule_for

    return db.stale(lambda inst, kind: rule_for({inst: env.config(inst).instrument}, inst, kind))


def _scan(rawdir: str | Path, spec: RunSpec, executor: Any, result: NightResult,
          progress: Callable[[str, int, int], None]) -> list[FrameMeta]:
    paths, problems = discover_fits_files([rawdir])
    paths = [p for p in paths if not spec.made_here(p)]
    result.unknown += [{"path": p, "reason": r} for p, r in problems if not spec.made_here(p)]
    start = time.perf_counter()
    log.info("scan: start, %d FITS file(s) in %s", len(paths), rawdir)
    size = max(1, min(50, len(paths) // 8 or 1))
    chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
    frames: list[FrameMeta] = []
    for done, part in enumerate(executor.map_unordered(scan_chunk, [(spec, c) for c in chunks]), 1):
        frames += part["frames"]
        result.unknown += [{"path": p, "reason": one_line(r)} for p, r in part["unknown"]]
        progress("scan", done, len(chunks))
    frames.sort(key=lambda m: str(m.path))
    result.unknown.sort(key=lambda u: u["path"])
    types = Counter(m.frame_type for m in frames)
    log.info("scan: done in %.1f s: %s; %d file(s) not used", time.perf_counter() - start,
             ", ".join(f"{n} {t}" for t, n in sorted(types.items())) or "no frame", len(result.unknown))
    for entry in result.unknown:
        log.info("not used %s: %s", entry["path"], entry["reason"], extra=FILE_ONLY)
    reduced = imaging_types()
    for meta in frames:
        result.frames.append({
            "path": str(meta.path), "type": meta.frame_type, "instrument": meta.instrument,
            "filter": meta.filter, "exposure_time": meta.exposure_time,
            "date_obs": meta.date_obs.isoformat(), "temperature": meta.temperature,
            "note": None if meta.frame_type in reduced else
            f"{meta.frame_type} frames are not part of the imaging reduction; left alone",
        })
    return frames


def _save_config(path: Path, env: Any, frames: list[FrameMeta]) -> None:
    """The merged config of every instrument seen, beside the outputs."""
    names: list[str | None] = [*sorted({f.instrument for f in frames})] or [None]
    data = {"configs": {str(n): {**env.config(n).as_dict(), "config_hash": env.config(n).config_hash()}
                        for n in names}}
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
