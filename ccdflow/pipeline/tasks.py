"""The units of a night's work, run in a worker process: scan a chunk of files, build one master,
reduce one science frame. Each returns a plain dict for the report and never raises for a bad
frame: the reason is reported and the night goes on."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ccdflow.framework.errors import CcdflowError
from ccdflow.framework.frame import FrameMeta
from ccdflow.pipeline.spec import RunSpec, environment

log = logging.getLogger("ccdflow.night")


def scan_chunk(spec: RunSpec, paths: Sequence[str]) -> dict[str, Any]:
    """Headers only: frames classified, and (path, reason) for files that were not."""
    from ccdflow.framework.scan import scan_paths

    env = environment(spec)
    frames, unknown = scan_paths(paths, env.manager, instrument=spec.instrument)
    return {"frames": frames, "unknown": unknown}


def _failure(exc: BaseException) -> str:
    if isinstance(exc, CcdflowError):
        return str(exc)
    log.error("unexpected error:\n%s", "".join(traceback.format_exception(exc)))
    return f"unexpected {type(exc).__name__}: {exc}"


def choose_calibrations(env: Any, config: Any, kind_needed: Sequence[str], meta: FrameMeta,
                        optional: Sequence[str] = ()) -> dict[str, tuple[dict, Any]]:
    """Best caldb record and receipt for each calibration a recipe needs; a missing optional
    calibration (e.g. a BPM) is simply left out, a missing required one raises."""
    from ccdflow.caldb import NoCalibrationError

    chosen = {}
    for kind in kind_needed:
        try:
            chosen[kind] = env.db.best(kind, meta, config.instrument.caldb[kind])
        except NoCalibrationError:
            if kind in optional:
                continue
            raise
    return chosen


def master_task(spec: RunSpec, kind: str, name: str, metas: Sequence[FrameMeta]) -> dict[str, Any]:
    """Build one master (or find it already built from the same inputs and config)."""
    from ccdflow.caldb.ledger import find_master
    from ccdflow.framework.fitsio import sha256_file
    from ccdflow.framework.masters import build_master, write_master
    from ccdflow.framework.recipe import needed_calibrations, optional_calibrations

    start = time.perf_counter()
    out = spec.masters_dir / name
    entry: dict[str, Any] = {"type": kind, "name": name, "path": str(out), "n": len(metas),
                             "inputs": [Path(m.path).name for m in metas]}
    try:
        env = environment(spec)
        config = env.config(metas[0].instrument)
        with ThreadPoolExecutor(2) as pool:  # hashlib releases the GIL: read one file, hash another
            checksums = list(pool.map(sha256_file, [m.path for m in metas]))
        if not spec.force:
            done = find_master(env.db, kind, checksums, config.config_hash())
            if done is not None:
                bad = done["quality"] != "good"
                notes = [f"caldb {done['id']} is marked {done['quality']}"] if bad else []
                return {**entry, "status": "up-to-date", "path": done["path"], "caldb_id": done["id"],
                        "sha256": done["sha256"], "warnings": notes,
                        "seconds": time.perf_counter() - start}
        needed = needed_calibrations(config, kind)
        chosen = choose_calibrations(env, config, needed, group_meta(metas),
                                     optional=optional_calibrations(config, kind))
        spec.masters_dir.mkdir(parents=True, exist_ok=True)
        cals = {k: env.master(k, record) for k, (record, _) in chosen.items()}
        ccd = build_master(kind, list(metas), env.manager, config, {k: m.ccd for k, m in cals.items()},
                           clip="sigma", fallback="none", scratch_dir=spec.masters_dir,
                           calibration_paths={k: str(m.path) for k, m in cals.items()},
                           input_checksums=checksums)
        warnings = [str(ccd.header["CF_FALLB"])] if "CF_FALLB" in ccd.header else []
        sha = write_master(ccd, out)
        return {**entry, "status": "built", "sha256": sha, "clip": ccd.header.get("CF_CLIP"),
                "warnings": warnings,
                "calibrations": {k: {"id": r["id"], "name": Path(r["path"]).name, **rc.summary()}
                                 for k, (r, rc) in chosen.items()},
                "median": ccd.header.get("CF_MED"), "noise": ccd.header.get("CF_NOISE"),
                "seconds": time.perf_counter() - start}
    except Exception as exc:  # one bad group never stops the night
        return {**entry, "status": "failed", "reason": _failure(exc),
                "seconds": time.perf_counter() - start}


def bpm_task(spec: RunSpec, name: str, dark: dict[str, Any], flat: dict[str, Any]) -> dict[str, Any]:
    """A bad-pixel mask from the night's longest master dark and a master flat of the same setup
    (hot pixels from the dark's rate, low pixels from the flat). Up to date when the file there
    was made from the same two masters."""
    from astropy.io import fits

    from ccdflow.framework.badpixels import build_bpm, write_bpm
    from ccdflow.framework.fitsio import read_product

    start = time.perf_counter()
    out = spec.masters_dir / name
    entry: dict[str, Any] = {"type": "bpm", "name": name, "path": str(out), "n": 2,
                             "inputs": [Path(dark["path"]).name, Path(flat["path"]).name]}
    try:
        if out.is_file() and not spec.force:
            header = fits.getheader(out)
            if header.get("CF_DARKS") == dark["sha256"] and header.get("CF_FLATS") == flat["sha256"]:
                return {**entry, "status": "up-to-date", "seconds": time.perf_counter() - start}
        d, f = read_product(dark["path"]), read_product(flat["path"])
        mask, header = build_bpm(d.header, d.data, f.header, f.data, dark_mask=d.mask, flat_mask=f.mask,
                                 dark_path=dark["path"], flat_path=flat["path"])
        write_bpm(mask, header, out)
        return {**entry, "status": "built", "median": None, "noise": None,
                "flagged": header.get("CF_MASKF"), "seconds": time.perf_counter() - start}
    except Exception as exc:  # a night without a BPM is still a night
        return {**entry, "status": "failed", "reason": _failure(exc),
                "seconds": time.perf_counter() - start}


def group_meta(metas: Sequence[FrameMeta]) -> FrameMeta:
    """The group as the master will describe itself: mean time and mean temperature. Calibrations
    for the whole group are chosen for it, so a set of flats taken while the cooler settles gets
    the dark that suits the set, not the one that suits its first frame."""
    from datetime import UTC, datetime
    from statistics import mean

    temps = [m.temperature for m in metas if m.temperature is not None]
    when = datetime.fromtimestamp(mean(m.date_obs.timestamp() for m in metas), UTC)
    return metas[0].model_copy(update={"date_obs": when, "temperature": mean(temps) if temps else None})


def science_task(spec: RunSpec, meta: FrameMeta) -> dict[str, Any]:
    """Reduce one science frame with the caldb's best calibrations, unless the ledger says the
    same product (same raw checksum, config and calibration ids) is already on disk."""
    from ccdflow.caldb.ledger import find_product
    from ccdflow.framework.fitsio import sha256_file
    from ccdflow.framework.memory import retain_freed_memory
    from ccdflow.framework.recipe import needed_calibrations, optional_calibrations
    from ccdflow.framework.reduction import reduce_frame

    retain_freed_memory()  # frame after frame reuses the same arrays: keep them, see its docstring
    start = time.perf_counter()
    out = spec.reduced_dir / Path(meta.path).name
    entry: dict[str, Any] = {"raw": str(meta.path), "path": str(out), "filter": meta.filter,
                             "exposure_time": meta.exposure_time}
    try:
        env = environment(spec)
        config = env.config(meta.instrument)
        raw_sha = sha256_file(meta.path)
        needed = needed_calibrations(config, "science")
        chosen = choose_calibrations(env, config, needed, meta,
                                     optional=optional_calibrations(config, "science"))
        entry["calibrations"] = {k: {"id": r["id"], "name": Path(r["path"]).name, **rc.summary()}
                                 for k, (r, rc) in chosen.items()}
        ids = {k: r["id"] for k, (r, _) in chosen.items()}
        if not spec.force:
            done = find_product(env.db, raw_sha, config.config_hash(), ids, out)
            if done is not None:
                return {**entry, "status": "up-to-date", "product_id": done["product_id"],
                        "seconds": time.perf_counter() - start}
        masters = {k: env.master(k, record) for k, (record, _) in chosen.items()}
        receipts = {k: rc for k, (_, rc) in chosen.items()}
        context_timings: dict[str, float] = {}
        ccd, checksum = reduce_frame(meta, env.manager, config, masters, out, receipts=receipts,
                                     raw_checksum=raw_sha, timings=context_timings)
        product_id = env.db.record_product(out, meta, receipts, sha256=checksum, raw_sha256=raw_sha,
                                           config_hash=config.config_hash())
        statuses = {k[3:]: v for k, v in ccd.header.items()
                    if k.startswith("CF_") and v in ("DONE", "SKIPPED")}
        return {**entry, "status": "reduced", "product_id": product_id, "sha256": checksum,
                "steps": statuses, "step_seconds": context_timings,
                "seconds": time.perf_counter() - start}
    except Exception as exc:  # one bad frame never stops the night
        return {**entry, "status": "failed", "reason": _failure(exc),
                "seconds": time.perf_counter() - start}
