"""`ccdflow demo`: the whole job on a built-in simulated night."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ccdflow.cli.command_log import command_log
from ccdflow.cli.simulate_cmd import spec_from_options, spec_options


@click.command("demo")
@click.option("--out", "outdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("ccdflow-demo"), show_default=True,
              help="Where to write everything, ccdflow.log included.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@spec_options
@command_log("outdir")
def command(outdir: Path, as_json: bool, **options) -> None:
    """Simulate a night, build master bias/dark/flat, reduce the science frames and
    compare them with the simulator's truth."""
    from ccdflow.demo import run_demo

    spec = spec_from_options(**options)
    total = 1 + spec.nights * (1 + len(spec.dark_exptimes) * len(spec.dark_temperatures)
                               + len(spec.filters) * (1 + spec.n_science))
    console = Console()  # the summary; the progress bar is on stderr
    with Progress(console=Console(stderr=True), transient=True, disable=as_json) as progress:
        task = progress.add_task("demo", total=total)
        result = run_demo(outdir, spec, lambda what: progress.update(task, advance=1, description=what))
    if as_json:
        click.echo(json.dumps(asdict(result), indent=2, default=str))
        return
    console.print(f"raw frames:     {result.raw_dir}", highlight=False)
    console.print(f"masters:        {outdir / 'masters'}", highlight=False)
    console.print(f"reduced frames: {outdir / 'reduced'}", highlight=False)
    console.print(f"caldb:          {result.caldb}  (try: ccdflow caldb list --caldb "
                  f"{outdir / 'caldb.sqlite'})", highlight=False)
    masters = Table("master", "frames", "median (ADU)", "noise (ADU)", title="masters")
    for m in result.masters:
        masters.add_row(Path(m["path"]).name, str(m["n"]), _number(m.get("median"), ".4g"),
                        _number(m.get("noise"), ".3g"))
    console.print(masters)
    reduced = Table("reduced frame", "bias", "dark", "flat", "resid (e-)", "resid/noise",
                    title="science vs. simulator truth")
    for r in result.reduced:
        reduced.add_row(Path(r["path"]).name, r.get("bias", "-"), r.get("dark", "-"), r.get("flat", "-"),
                        f"{r.get('residual_median_e', float('nan')):.2f}",
                        f"{r.get('residual_over_noise_std', float('nan')):.3f}")
    console.print(reduced)
    for path, reason in result.rejected:
        console.print(f"[yellow]not used[/yellow] {path}: {reason}", highlight=False)
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    console.print("resid / noise: robust std of (reduced - truth) / expected noise; 1 means the "
                  "reduction adds nothing but the calibrations' own noise.", highlight=False)
    console.print(f"done in {timing}; log: {outdir / 'ccdflow.log'}", highlight=False)


def _number(value: float | None, spec: str) -> str:
    """A statistic for the table; '-' where a master has none (a bad-pixel mask)."""
    return "-" if value is None else format(value, spec)
