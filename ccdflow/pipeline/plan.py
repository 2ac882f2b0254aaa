"""Planning a night: which masters to build from which frames (grouped by setup and by the
instrument's tolerances, named readably), which bad-pixel masks from which masters, and where
each science frame's product goes. Pure functions of the frames and the run's configuration,
shared by `ccdflow night` and `ccdflow watch`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ccdflow.framework.builders.reduction import group_frames, observing_night
from ccdflow.framework.calibrations import calibration_type, master_types
from ccdflow.framework.engine.frame import FrameMeta, binning_text
from ccdflow.framework.engine.instrument import MatchRule
from ccdflow.framework.io import cards
from ccdflow.pipeline.naming import product_relpath, safe_component, short_hash


def master_frame_types() -> dict[str, str]:
    """Raw frame type -> calibration type whose masters are combined from it, in build order
    (bias before dark before flat, then any plugin type by its order)."""
    return {t.frame_type: t.name for t in master_types() if t.frame_type is not None}


def master_group_name(kind: str, metas: list[FrameMeta]) -> str:
    """Readable name of a calibration group, e.g. ``2026-03-01_dark_120s_-20C_1x1``; every part
    from a header goes through :func:`safe_component` (a DETECTOR of ``../x`` stays a name).
    The master's file name adds its build identity (see :func:`master_task`)."""
    meta = metas[0]
    caltype = calibration_type(kind)
    means = {}
    for name in ("temperature", *caltype.numeric_group):
        values = [getattr(m, name) for m in metas if getattr(m, name) is not None]
        if values:
            means[name] = sum(values) / len(values)
    # the group's mean temperature and exposure, as its master's CF_TEMP and CF_EXPT: a group
    # clustered within a tolerance (59.99 and 60.01 s) is named for what it is, not its first frame
    named = meta.model_copy(update=means)
    parts: list[object] = [observing_night(meta), kind, *caltype.name_parts(named)]
    parts.append(binning_text(meta.binning))
    if meta.detector not in ("", "default", None):
        parts.append(meta.detector)
    if meta.readout_mode not in ("", "default", None):
        parts.append(meta.readout_mode)
    parts += camera_parts(meta.camera, meta.gain_setting, meta.offset)
    return "_".join(safe_component(str(p).replace("_", "-")) for p in parts)


def camera_parts(camera: str | None, gain_setting: str | None, offset: str | None) -> list[str]:
    """Name parts of a master's camera and CMOS settings (``ZWO ASI120MC``, ``gain120``,
    ``offset9``), those known only: two cameras' masters of one night get two names."""
    return [p for p in (camera, gain_setting and f"gain{gain_setting}", offset and f"offset{offset}")
            if p]


def plan_masters(frames: Iterable[FrameMeta],
                 rule_of: Callable[[FrameMeta], MatchRule | None] | None = None
                 ) -> list[tuple[str, str, list[FrameMeta]]]:
    """(calibration type, group name, frames) per calibration group, in build order, names made
    unique deterministically. ``rule_of(frame)``: the caldb rule of the type made from the
    frame (see :func:`match_rules`), so groups follow the instrument's tolerances."""
    kinds = master_frame_types()
    order = {kind: i for i, kind in enumerate(kinds.values())}
    groups = sorted(
        ((kinds[metas[0].frame_type], master_group_name(kinds[metas[0].frame_type], metas), metas)
         for metas in group_frames((f for f in frames if f.frame_type in kinds), rule_of).values()),
        key=lambda g: (order[g[0]], g[1], str(g[2][0].path)),
    )
    seen: dict[str, int] = {}
    out = []
    for kind, name, metas in groups:
        seen[name] = seen.get(name, 0) + 1
        suffix = "" if seen[name] == 1 else f"-{seen[name]}"
        out.append((kind, f"{name}{suffix}", sorted(metas, key=lambda m: str(m.path))))
    return out


def match_rules(env: Any) -> Callable[[FrameMeta], MatchRule | None]:
    """frame -> its instrument's caldb rule for the calibration type made from such frames."""
    kinds = master_frame_types()

    def rule_of(meta: FrameMeta) -> MatchRule | None:
        kind = kinds.get(meta.frame_type)
        if kind is None:
            return None
        return env.config(meta.instrument).instrument.match_rule(kind, env.manager)

    return rule_of


def plan_products(science: Iterable[FrameMeta], rawdir: str | Path | None,
                  taken: set[str] | None = None) -> list[tuple[FrameMeta, str]]:
    """(frame, product path under reduced/) for each science frame: the raw file's path relative
    to RAWDIR, made safe (see :func:`product_relpath`); a frame whose name is already in
    ``taken`` (this batch's, or what a watch planned before; updated here) gets its raw path's
    hash added, so no product is ever written twice."""
    taken = set() if taken is None else taken
    out = []
    for meta in sorted(science, key=lambda m: str(m.path)):
        rel = product_relpath(str(meta.path), rawdir)
        if rel in taken:
            rel = rel.removesuffix(".fits") + f".{short_hash(meta.path, length=6)}.fits"
        taken.add(rel)
        out.append((meta, rel))
    return out


def plan_bpms(masters: list[dict[str, Any]], skipped: list[str] | None = None,
              min_frames: Callable[[str], int] | None = None
              ) -> list[tuple[str, dict[str, Any], dict[str, Any], int]]:
    """(group name, dark, flat, min_frames) per setup of this night that has both: the master
    dark made from the most frames (then the longest total exposure, then the name: the same
    choice whatever order the masters finished in) and the master flat of the most frames (then
    the name), among the
    masters whose QA passed (a suspect or bad master is not chosen for frames, so neither for
    the mask they get).

    The most frames, not the longest or warmest dark: hot pixels are found against the dark's
    noise, and a dark of 1-4 frames keeps cosmic rays and noise that look hot (the 1-frame
    master the old "longest, then warmest" rule chose flagged 3618 false hot pixels against
    826 true ones). A setup whose best dark has fewer frames than ``min_frames(instrument)``
    (the bpm type's ``min_frames``, 3, as the instrument's ``masters: {bpm: ...}`` sets it) gets
    no mask: ``skipped`` receives why, for the night's warnings.

    The bad-pixel mask is the one type made from other masters rather than from raw frames;
    its planning names dark and flat here until a second such type needs a contract for it."""
    from astropy.io import fits

    setups: dict[tuple, dict[str, list[tuple[dict[str, Any], Any]]]] = {}
    for entry in masters:
        if entry["status"] not in ("built", "up-to-date") or entry["type"] not in ("dark", "flat"):
            continue
        if entry.get("quality", "good") != "good":  # a suspect or bad master is not used
            if skipped is not None:
                skipped.append(f"{entry['name']} is {entry['quality']}: not used for a bad-pixel mask")
            continue
        header = fits.getheader(entry["path"])
        key = tuple(str(header.get(c.keyword, "")) for c in cards.SETUP)
        setups.setdefault(key, {"dark": [], "flat": []})[entry["type"]].append((entry, header))
    out = []
    for key, found in sorted(setups.items()):
        if found["dark"] and found["flat"]:
            dark, header = max(found["dark"], key=lambda d: (
                int(d[1].get("NCOMBINE", 0)), int(d[1].get("NCOMBINE", 0)) * cards.EXPT.get(d[1], 0.0),
                d[0]["name"]))
            needed = calibration_type("bpm").min_frames if min_frames is None else min_frames(key[0])
            flat, flat_header = max(found["flat"], key=lambda f: (int(f[1].get("NCOMBINE", 0)), f[0]["name"]))
            night = dark["name"].split("_")[0]  # the observing night, as in every master's name
            counts = [(kind, m["name"], int(h.get("NCOMBINE", 0)))
                      for kind, m, h in (("dark", dark, header), ("flat", flat, flat_header))]
            short = [c for c in counts if c[2] < needed]
            if short:
                if skipped is not None:
                    skipped.append(
                        f"no bad-pixel mask for {night} {' '.join(p for p in key if p)}: its best master "
                        + " and ".join(f"{kind} {name} has {n} frame(s)" for kind, name, n in short)
                        + f", fewer than {needed} (masters.bpm.min_frames); hot pixels from so few are "
                        "mostly noise and cosmic rays")
                continue
            parts = [night, "bpm", key[2], key[1], *camera_parts(*key[5:8])]
            out.append(("_".join(safe_component(str(p).replace("_", "-")) for p in parts
                             if p not in ("None", "", "default")),
                        dark, flat, needed))
    return out
