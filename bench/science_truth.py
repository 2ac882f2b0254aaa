"""The issue-14 'done when' figures: a faint-sky simulated night with amplifier glow, odd set
points and warm science frames, reduced by `ccdflow night` (the real path), against the truth.

    python bench/science_truth.py [--out DIR] [--json] [-p STEP.PARAM=VALUE ...]

Prints one table (or JSON): pull width and mean additive residual of the 20 s and 120 s
science frames, residual / error-plane RMS of the masters, dark masters per set point, the
BPM's false flags and recall, and cosmic-ray recall above S/N 10. The night is
ccdflow.simulator.scenarios.SCIENCE_NIGHT; tests/test_science_truth.py asserts the issue's
thresholds on it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from ccdflow.simulator import simulate_night
from ccdflow.simulator.scenarios import SCIENCE_NIGHT, run_night_cli
from ccdflow.simulator.scorecard import scorecard


def run(root: Path, params: list[str]) -> tuple[dict, float, subprocess.CompletedProcess]:
    sim = simulate_night(root / "sim", SCIENCE_NIGHT)
    t0 = time.perf_counter()
    done = run_night_cli(sim.raw_dir, root / "out", *[a for p in params for a in ("-p", p)])
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 1):
        raise SystemExit(f"ccdflow night exited {done.returncode}:\n{done.stderr[-3000:]}")
    return scorecard(sim, root / "out"), seconds, done


def rows(card: dict) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows of the table."""
    out = []
    for t, s in card["science"].items():
        out += [(f"pull width (std) {t}", f"{s['pull_std']:.3f}", "0.97-1.05"),
                (f"pull width (MAD) {t}", f"{s['pull_mad']:.3f}", ""),
                (f"mean residual {t}", f"{s['mean_residual_e']:+.3f} e- = "
                 f"{s['mean_residual_se']:+.1f} SE", "|SE| <= 3"),
                (f"glow-corner mean residual {t}", f"{s['glow_mean_residual_e']:+.2f} e-", ""),
                (f"row-mean residual scatter / UNCERT {t}", f"{s['row_scatter_ratio']:.2f}", "1")]
    for t, darks in card["choices"]["darks"].items():
        out.append((f"dark used for {t} (master exptime x scale)", ", ".join(darks), ""))
    methods = ", ".join(f"{k} {v}" for k, v in card["choices"]["combine"].items())
    out.append(("master combine", methods, "sigma-clipped mean"))
    m = card["masters"]
    for kind, ratio in m["residual_over_error"].items():
        out.append((f"master {kind} residual / error RMS", f"{ratio:.3f}", "0.95-1.05"))
    groups = ", ".join(f"{k}: {v}" for k, v in sorted(m["dark_masters_per_group"].items()))
    out.append(("dark masters per (exptime, set point)", groups, "1 each"))
    b = card["bpm"]
    if b:
        out += [("BPM false flags / good pixels", f"{100 * b['false_flag_fraction']:.2f} % "
                 f"({b['n_false']}, {b.get('false_in_glow', 0)} in glow)", "<= 0.3 %"),
                ("BPM hot recall", f"{100 * b['hot_recall']:.1f} % of {b['n_hot']}", ">= 99 %"),
                ("BPM dead recall", f"{100 * b['dead_recall']:.1f} % of {b['n_dead']}", ">= 99 %")]
    c = card["cosmic_rays"]
    if c:
        out += [("CR pixel recall, S/N > 10", f"{100 * c['recall']:.1f} % of {c['hits']}", ">= 95 %"),
                ("  beside bad/saturated pixels", f"{100 * c['recall_beside_bad']:.1f} % of "
                 f"{c['hits_beside_bad']}", ">= 95 %")]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep the night here (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("-p", "--param", action="append", default=[],
                        help="passed to `ccdflow night -p` (e.g. dark.scale_temperature=true)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        card, seconds, _ = run(root, args.param)
    card["night_seconds"] = round(seconds, 1)
    if args.json:
        print(json.dumps(card, indent=1))
        return
    print("| figure | value | target |\n|---|---|---|")
    for name, value, target in rows(card):
        print(f"| {name} | {value} | {target} |")
    print(f"\n`ccdflow night` took {seconds:.0f} s.")


if __name__ == "__main__":
    main()
