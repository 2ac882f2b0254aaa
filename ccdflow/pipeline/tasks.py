"""The units of a night's work, run in a worker process: scan a chunk of files, build one master,
reduce one science frame. Each returns a plain dict for the report and never raises for a bad
frame: the reason is reported and the night goes on."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ccdflow.framework.engine.errors import CcdflowError, DiskFullError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.io import cards
from ccdflow.pipeline.naming import inside
from ccdflow.pipeline.spec import RunSpec, environment


def scan_chunk(spec: RunSpec, paths: Sequence[str]) -> dict[str, Any]:
    """Headers only: frames classified, and (path, reason) for files that were not."""
    from ccdflow.framework.headers.scan import scan_paths

    env = environment(spec)
    frames, unknown = scan_paths(paths, env.manager, instrument=spec.instrument)
    return {"frames": frames, "unknown": unknown}


def failed(entry: dict[str, Any], exc: BaseException, start: float) -> dict[str, Any]:
    """The report entry of a failed task: the error's class and a one-line reason. ccdflow's own
    errors say what is wrong; anything else is a bug, whose traceback also goes into the entry's
    ``detail`` (report.json). Every failure's traceback rides in ``traceback`` to the process
    driving the run, which writes it to the debug log and drops it (see
    :mod:`ccdflow.pipeline.runlog`): never onto the console. Errors that no later frame can
    escape (caldb gone, disk full) are raised: they stop the run."""
    if is_fatal(exc):
        raise exc
    out = {**entry, "status": "failed", "error": type(exc).__name__,
           "seconds": time.perf_counter() - start,
           "traceback": "".join(traceback.format_exception(exc))}
    if isinstance(exc, CcdflowError):
        out["reason"] = one_line(str(exc))
    else:
        out["reason"] = one_line(f"unexpected {type(exc).__name__}: {exc}")
        out["detail"] = out["traceback"]
    return out


def one_line(text: str) -> str:
    """Multi-line messages (pydantic, astropy) folded onto one line for tables and logs."""
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def is_fatal(exc: BaseException) -> bool:
    """Errors after which no later frame can succeed either: the caldb is unreachable or the
    output disk is full. They stop the run (the report of what was done is still written)."""
    from ccdflow.caldb.errors import CaldbUnavailableError

    return isinstance(exc, CaldbUnavailableError | DiskFullError)


def choose_calibrations(env: Any, config: Any, frame_type: str, meta: FrameMeta
                        ) -> tuple[dict[str, tuple[dict, Any]], dict[str, str]]:
    """The caldb's best record and receipt for each calibration the frame type's recipe looks
    for, and why each other one is absent, under the instrument's ``calibrations:`` policy
    (see :mod:`ccdflow.framework.engine.calibration_policy`): a missing required one raises."""
    from ccdflow.framework.engine.calibration_policy import choose
    from ccdflow.framework.engine.recipe import calibration_needs

    def best(kind: str) -> tuple[dict, Any]:
        return env.db.best(kind, meta, config.instrument.match_rule(kind, env.manager),
                           as_of=env.spec.caldb_as_of)

    return choose(calibration_needs(config, frame_type), best, config)


def master_task(spec: RunSpec, kind: str, group: str, metas: Sequence[FrameMeta]) -> dict[str, Any]:
    """Build one master, or find the same build (same inputs, recipe, calibrations) done already.

    The file is named ``<group>_<identity>.fits`` (see :mod:`ccdflow.pipeline.immutable`) and
    never written over: a changed parameter or input gives a new name beside the old one."""
    from ccdflow.framework.builders.masters import build_master, few_inputs_warning, write_master
    from ccdflow.framework.io.fitsio import sha256_file
    from ccdflow.pipeline.immutable import master_identity, write_new

    start = time.perf_counter()
    entry: dict[str, Any] = {"type": kind, "name": f"{group}.fits", "group": group, "n": len(metas),
                             "inputs": [str(m.path) for m in metas]}
    try:
        env = environment(spec)
        config = env.config(metas[0].instrument)
        with ThreadPoolExecutor(2) as pool:  # hashlib releases the GIL: read one file, hash another
            checksums = list(pool.map(sha256_file, [m.path for m in metas]))
        frame_type = metas[0].frame_type  # the raw frames' type: its recipe preprocesses them
        chosen, absent = choose_calibrations(env, config, frame_type, group_meta(metas))
        entry["calibrations_absent"] = absent
        settings = config.instrument.master_settings(kind, env.manager)  # type < instrument < night
        options = settings.combine
        # the hash of the recipe that preprocesses the inputs: the raw frame type's (a fringe
        # master's night-sky frames), which for bias, dark and flat is the type's own name
        identity = master_identity(kind, checksums, config.recipe_hash(frame_type),
                                   {k: r["sha256"] for k, (r, _) in chosen.items()}, dict(options))
        out = inside(spec.outdir, spec.masters_dir / f"{group}_{identity}.fits")
        entry.update(name=out.name, path=str(out), identity=identity)
        calibrations = {k: {"id": r["id"], "name": Path(r["path"]).name, **rc.summary()}
                        for k, (r, rc) in chosen.items()}
        if not spec.force:
            done = _existing_master(env.db, out)
            if done is not None:
                few = ([few_inputs_warning(kind, len(metas), settings.warn_below)]
                       if len(metas) < settings.warn_below else [])
                return {**entry, **done, "calibrations": calibrations, "night_warnings": few,
                        "warnings": [*few, *done["warnings"]], "seconds": time.perf_counter() - start}
        cals = {k: env.master(k, record) for k, (record, _) in chosen.items()}
        excluded: list[tuple[str, str]] = []  # frames left out (no finite pixel, dead readout...)
        entry["excluded"] = excluded
        ccd = build_master(kind, list(metas), env.manager, config, {k: m.ccd for k, m in cals.items()},
                           clip=options["clip"], fallback=options["fallback"],
                           method=options["method"], sigma_low=options["sigma_low"],
                           sigma_high=options["sigma_high"], scratch_dir=spec.masters_dir,
                           calibration_paths={k: str(m.path) for k, m in cals.items()},
                           calibration_checksums={k: m.checksum for k, m in cals.items()},
                           input_checksums=checksums, excluded=excluded, absent=absent,
                           warn_below=settings.warn_below, min_frames=settings.min_frames)
        cards.MKEY.put(ccd.header, identity)
        warnings = [str(ccd.header[c.keyword]) for c in (cards.FEWIN, cards.FALLB)
                    if c.keyword in ccd.header]
        # a master of too few frames adds its noise to every frame it calibrates: a night warning
        # (logged with the entry by the process driving the run: see ccdflow.pipeline.runlog)
        entry["night_warnings"] = warnings[:1] if cards.FEWIN.keyword in ccd.header else []
        path, sha, new = write_new(out, lambda tmp: write_master(ccd, tmp))
        if not new:
            warnings.append(f"rebuilt with identical bytes to {path.name}; nothing added")
        return {**entry, "name": path.name, "path": str(path), "status": "built" if new else "up-to-date",
                "sha256": sha, "warnings": warnings, **master_summary(ccd.header),
                "calibrations": calibrations, "seconds": time.perf_counter() - start}
    except Exception as exc:  # one bad group never stops the night
        return failed(entry, exc, start)


Summary = Callable[[Any], dict[str, Any]]


def master_summary(header: Any) -> dict[str, Any]:
    """What a night's entry says of a master (the summary, the report and the demo show it),
    from its header: the same whether this run built the master or found it built."""
    return {"clip": cards.CLIP.get(header), "median": cards.MED.get(header),
            "noise": cards.NOISE.get(header),
            "assumed": cards.assumptions(header)}  # a gain or read noise nobody measured


def bpm_summary(header: Any) -> dict[str, Any]:
    """:func:`master_summary` of a bad-pixel mask: the fraction flagged, no level."""
    return {"median": None, "noise": None, "flagged": cards.MASKF.get(header)}


def _existing_master(db: Any, out: Path, summary: Summary = master_summary) -> dict[str, Any] | None:
    """The entry for a master already at ``out``: registered and intact -> up to date; on disk
    but not registered (a run killed between writing and registering) -> handed back as built,
    so the caller registers it; registered but changed -> CalibrationChangedError. Its summary
    (median, noise...) is read from its header, as a build gives it."""
    from astropy.io import fits

    from ccdflow.framework.engine.errors import CalibrationChangedError
    from ccdflow.framework.io.fitsio import sha256_file
    from ccdflow.pipeline.immutable import registered

    record = registered(db, out)
    if record is None:
        if out.is_file():
            return {"status": "built", "sha256": sha256_file(out), **summary(fits.getheader(out)),
                    "warnings": ["found on disk unregistered (an interrupted run): registered now"]}
        return None
    if not out.is_file() or sha256_file(out) != record["sha256"]:
        raise CalibrationChangedError(
            f"{out} is caldb record {record['id']} but its bytes are gone or changed; not rebuilt "
            "over it (see `ccdflow caldb verify`)")
    notes = ([f"caldb {record['id']} is marked {record['quality']}"
              f" ({record['quality_reason']})"] if record["quality"] != "good" else [])
    return {"status": "up-to-date", "caldb_id": record["id"], "sha256": record["sha256"],
            "quality": record["quality"], "warnings": notes, **summary(fits.getheader(out))}


def bpm_task(spec: RunSpec, group: str, dark: dict[str, Any], flat: dict[str, Any],
             min_frames: int = 3) -> dict[str, Any]:
    """A bad-pixel mask from the master dark and master flat plan_bpms chose for a setup (hot
    pixels from the dark's rate, low pixels from the flat), named by the two masters' checksums
    and the thresholds: the same pair is found again, a new pair gives a new file.
    ``min_frames`` is the instrument's (masters.bpm.min_frames), the one the plan checked."""
    from ccdflow.framework.builders.badpixels import BpmThresholds, build_bpm, write_bpm
    from ccdflow.framework.builders.reduction import MasterRef
    from ccdflow.pipeline.immutable import write_new
    from ccdflow.pipeline.naming import short_hash

    start = time.perf_counter()
    thresholds = BpmThresholds(min_frames=min_frames)
    identity = short_hash("bpm", dark["sha256"], flat["sha256"], thresholds, length=10)
    entry: dict[str, Any] = {"type": "bpm", "name": f"{group}_{identity}.fits", "group": group, "n": 2,
                             "identity": identity, "inputs": [dark["path"], flat["path"]]}
    try:
        env = environment(spec)
        out = inside(spec.outdir, spec.masters_dir / f"{group}_{identity}.fits")
        entry["path"] = str(out)
        if not spec.force:
            done = _existing_master(env.db, out, bpm_summary)
            if done is not None:
                return {**entry, **done, "seconds": time.perf_counter() - start}
        # MasterRef.load hashes the bytes it reads and refuses ones that changed since the build
        d, f = (MasterRef.load(kind, m["path"], m.get("caldb_id"), m["sha256"]).ccd
                for kind, m in (("dark", dark), ("flat", flat)))
        mask, header = build_bpm(d.header, d.data, f.header, f.data, dark_mask=d.mask, flat_mask=f.mask,
                                 dark_path=dark["path"], flat_path=flat["path"], thresholds=thresholds)
        cards.MKEY.put(header, identity, "build identity: the dark and flat used")
        path, sha, new = write_new(out, lambda tmp: write_bpm(mask, header, tmp))
        return {**entry, "name": path.name, "path": str(path), "status": "built" if new else "up-to-date",
                "sha256": sha, **bpm_summary(header), "seconds": time.perf_counter() - start}
    except Exception as exc:  # a night without a BPM is still a night
        return failed(entry, exc, start)


def group_meta(metas: Sequence[FrameMeta]) -> FrameMeta:
    """The group as the master will describe itself: mean time and mean temperature. Calibrations
    for the whole group are chosen for it, so a set of flats taken while the cooler settles gets
    the dark that suits the set, not the one that suits its first frame."""
    from datetime import UTC, datetime
    from statistics import mean

    temps = [m.temperature for m in metas if m.temperature is not None]
    when = datetime.fromtimestamp(mean(m.date_obs.timestamp() for m in metas), UTC)
    return metas[0].model_copy(update={"date_obs": when, "temperature": mean(temps) if temps else None})


def science_task(spec: RunSpec, meta: FrameMeta, product: str) -> dict[str, Any]:
    """Reduce one science frame into ``reduced/<product>`` with the caldb's best calibrations,
    unless the ledger says the same product (same raw checksum, config and calibration ids) is
    already there. The raw file is read once: its checksum and its pixels are the same bytes."""
    from ccdflow.caldb.ledger import find_product
    from ccdflow.framework.builders.reduction import reduce_frame
    from ccdflow.framework.io.fitsio import read_file_hashed
    from ccdflow.framework.numerics.memory import retain_freed_memory

    retain_freed_memory()  # frame after frame reuses the same arrays: keep them, see its docstring
    start = time.perf_counter()
    entry: dict[str, Any] = {"raw": str(meta.path), "product": product,
                             "path": str(spec.reduced_dir / product), "filter": meta.filter,
                             "exposure_time": meta.exposure_time}
    try:
        out = inside(spec.outdir, spec.reduced_dir / product)
        env = environment(spec)
        config = env.config(meta.instrument)
        content, raw_sha = read_file_hashed(str(meta.path))
        chosen, absent = choose_calibrations(env, config, "science", meta)
        entry["calibrations"] = {k: {"id": r["id"], "name": Path(r["path"]).name, **rc.summary()}
                                 for k, (r, rc) in chosen.items()}
        entry["calibrations_absent"] = absent
        ids = {k: r["id"] for k, (r, _) in chosen.items()}
        if not spec.force:
            done = find_product(env.db, raw_sha, config.recipe_hash(meta.frame_type), ids, out)
            if done is not None:
                return {**entry, "status": "up-to-date", "product_id": done["product_id"],
                        **quality(out, meta, config), "seconds": time.perf_counter() - start}
        masters = {k: env.master(k, record) for k, (record, _) in chosen.items()}
        receipts = {k: rc for k, (_, rc) in chosen.items()}
        context_timings: dict[str, float] = {}
        ccd, checksum = reduce_frame(meta, env.manager, config, masters, out, receipts=receipts,
                                     raw_checksum=raw_sha, raw_content=content,
                                     timings=context_timings, absent=absent)
        del content
        product_id = env.db.record_product(out, meta, receipts, sha256=checksum, raw_sha256=raw_sha,
                                           config_hash=config.recipe_hash(meta.frame_type))
        # keywords first: a raw card astropy cannot parse (a decimal comma) must not be parsed here
        statuses = {k[3:]: v for k in ccd.header if k.startswith("CF_")
                    and (v := ccd.header[k]) in ("DONE", "SKIPPED")}
        return {**entry, "status": "reduced", "product_id": product_id, "sha256": checksum,
                "steps": statuses, "step_seconds": context_timings,
                **quality(out, meta, config, ccd.header),
                "assumed": cards.assumptions(ccd.header), "seconds": time.perf_counter() - start}
    except Exception as exc:  # one bad frame never stops the night
        return failed(entry, exc, start)


def quality(path: Path, meta: FrameMeta, config: Any, header: Any = None) -> dict[str, Any]:
    """``qa`` (the product's figures) and ``qa_flags`` (those beyond the instrument's
    ``frame_qa:`` limits) of a science entry. The figures are the product's ``CF_Q`` cards,
    from ``header`` (just written) or the file's; a product made before ccdflow measured them
    is measured from the file (it is never rewritten: its checksum is recorded)."""
    from astropy.io import fits

    from ccdflow.framework.builders import frame_qa
    from ccdflow.framework.io.fitsio import read_product

    header = fits.getheader(path, 0) if header is None else header
    figures = frame_qa.read_cards(header)
    if figures is None:
        figures = frame_qa.measure(read_product(path))
    qa, flags = frame_qa.figures_and_flags(header, config.instrument.frame_qa, meta.binning, figures)
    return {"qa": qa, "qa_flags": flags}  # logged by the driving process (pipeline.runlog)
