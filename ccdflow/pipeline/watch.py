"""`ccdflow watch`: reduce science frames as they land, rebuild masters as calibration sets complete.

A file is taken once it is complete: its size and modification time have not changed for
``settle`` seconds (the camera or rsync has stopped writing) and its headers promise no more
bytes than it has. A calibration group is built into a master once it has been quiet for
``calibration_quiet`` seconds, or as soon as a science frame arrives after it (observers take
calibrations in blocks). Each science frame uses the best masters the caldb has at that moment.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.headers.scan import discover_fits_files, scan_file
from ccdflow.pipeline.night import NightResult, bpm_min_frames, register_master
from ccdflow.pipeline.plan import master_frame_types, match_rules, plan_bpms, plan_masters, plan_products
from ccdflow.pipeline.runlog import log_frame, log_master
from ccdflow.pipeline.spec import RunSpec, environment
from ccdflow.pipeline.tasks import bpm_task, master_task, science_task

log = logging.getLogger("ccdflow.watch")


@dataclass
class Watcher:
    """State of a watch: what was seen, what is waiting, what was done."""

    rawdir: Path
    spec: RunSpec
    executor: Any
    settle: float = 2.0
    calibration_quiet: float = 60.0
    result: NightResult = field(init=False)
    sizes: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # path -> size, mtime, since
    taken: set[str] = field(default_factory=set)
    #: path -> (size, mtime) when it could not be read: tried again once either changes
    refused: dict[str, tuple[int, int]] = field(default_factory=dict)
    calibrations: list[FrameMeta] = field(default_factory=list)
    built_inputs: set[frozenset[str]] = field(default_factory=set)
    products: set[str] = field(default_factory=set)
    last_calibration: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)
    on_master: Callable[[dict[str, Any]], None] = lambda entry: None

    def __post_init__(self) -> None:
        env = environment(self.spec)
        self.result = NightResult(str(self.rawdir), self.spec.outdir, self.executor.description,
                                  env.db.display_url)

    def ready_files(self, now: float) -> list[str]:
        """Files whose size and mtime have been stable for ``settle`` seconds (and, for a file
        that could not be read before, have changed since)."""
        ready = []
        files, problems = discover_fits_files([self.rawdir])
        known = {u["path"] for u in self.result.unknown}
        self.result.unknown += [{"path": p, "reason": r} for p, r in problems
                                if p not in known and not self.spec.made_here(p)]
        for path in (f for f in files if not self.spec.made_here(f)):
            if path in self.taken:
                continue
            try:
                stat = Path(path).stat()
            except OSError:
                continue
            key = (stat.st_size, stat.st_mtime_ns)
            if self.refused.get(path) == key:
                continue  # same bytes as when it failed: wait for the copy to go on
            seen = self.sizes.get(path)
            if seen is None or seen[:2] != key:
                self.sizes[path] = (*key, now)
            elif now - seen[2] >= self.settle:
                ready.append(path)
        return sorted(ready)

    def _take(self, path: str, env: Any) -> FrameMeta | None:
        """Scan one settled file. A file that cannot be read is listed as unused with its
        reason and tried again when its size or mtime changes (a copy that stalled longer
        than ``settle`` and then went on): it is never dropped."""
        try:
            meta = scan_file(path, env.manager, instrument=self.spec.instrument)
        except UnprocessableInputError as exc:
            size, mtime = self.sizes[path][:2]
            self.refused[path] = (size, mtime)
            self.result.unknown = [u for u in self.result.unknown if u["path"] != path]
            self.result.unknown.append({"path": path, "reason": str(exc)})
            log.warning("not used (tried again if the file changes): %s", exc)
            return None
        self.taken.add(path)
        self.refused.pop(path, None)
        self.result.unknown = [u for u in self.result.unknown if u["path"] != path]
        return meta

    def poll(self, now: float | None = None) -> int:
        """One pass: take complete files, build due masters, reduce new science. Returns work done."""
        now = time.monotonic() if now is None else now
        env = environment(self.spec)
        science: list[FrameMeta] = []
        for path in self.ready_files(now):
            meta = self._take(path, env)
            if meta is None:
                continue
            self.result.frames.append({"path": path, "type": meta.frame_type, "filter": meta.filter,
                                       "exposure_time": meta.exposure_time, "note": None})
            if meta.frame_type in master_frame_types():
                self.calibrations.append(meta)
                self.last_calibration = now
            elif meta.frame_type == "science":
                science.append(meta)
        work = 0
        if self.calibrations and (science or now - self.last_calibration >= self.calibration_quiet):
            work += self.build_masters()
        planned = plan_products(science, self.rawdir, self.products)
        for entry in self.executor.map_unordered(science_task, [(self.spec, m, rel) for m, rel in planned]):
            log_frame(entry)
            self.result.science.append(entry)
            work += 1
        return work

    def build_masters(self) -> int:
        """Build every calibration group not yet built with exactly its current inputs (a
        grown set gives a new master beside the old one), then the bad-pixel masks."""
        env = environment(self.spec)
        built = 0
        planned = plan_masters(self.calibrations, match_rules(env))
        for kind in master_frame_types().values():
            todo = [g for g in planned if g[0] == kind
                    and frozenset(str(m.path) for m in g[2]) not in self.built_inputs]
            for entry in self.executor.map_unordered(master_task, [(self.spec, *g) for g in todo]):
                register_master(env.db, env, entry)  # with its QA, as the night does
                self._record_master(entry)
                built += 1
            self.built_inputs |= {frozenset(str(m.path) for m in g[2]) for g in todo}
        if built:  # bad-pixel masks: the one type made from other masters (see plan_bpms)
            latest = {}
            for entry in self.result.masters:  # the newest master of each group makes the masks
                if entry["type"] in ("dark", "flat") and entry["status"] in ("built", "up-to-date"):
                    latest[entry.get("group", entry["name"])] = entry
            done = {e["name"] for e in self.result.masters if e["type"] == "bpm"}
            skipped: list[str] = []
            todo_bpm = plan_bpms(list(latest.values()), skipped, bpm_min_frames(env))
            for reason in skipped:
                if reason not in self.result.warnings:  # said once, not on every new master
                    self.result.warnings.append(reason)
                    log.warning("%s", reason)
            for entry in self.executor.map_unordered(bpm_task, [(self.spec, *t) for t in todo_bpm]):
                if entry["status"] == "up-to-date" and entry["name"] in done:
                    continue
                register_master(env.db, env, entry)
                self._record_master(entry)
        return built

    def _record_master(self, entry: dict[str, Any]) -> None:
        log_master(entry)
        self.result.masters.append(entry)
        self.on_master(entry)

    def run(self, interval: float = 1.0, on_poll: Callable[[Watcher], None] = lambda w: None) -> NightResult:
        """Poll until stopped (SIGINT/SIGTERM or ``stop.set()``); finishes the task in hand first.
        A caldb that goes away or a full disk stops the watch (``result.stopped`` says why)."""
        from ccdflow.pipeline.tasks import is_fatal

        while not self.stop.is_set():
            try:
                self.poll()
            except Exception as exc:
                if not is_fatal(exc):
                    raise
                self.result.stopped = f"{type(exc).__name__}: {exc}"
                log.error("watch stopped: %s", self.result.stopped)
                break
            on_poll(self)
            self.stop.wait(interval)
        return self.result


def stop_on_signals(watcher: Watcher) -> None:
    """SIGINT and SIGTERM end the watch cleanly after the current poll."""
    def handler(signum: int, _frame: Any) -> None:
        log.warning("%s received: stopping after the current work", signal.Signals(signum).name)
        watcher.stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
