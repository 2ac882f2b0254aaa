"""`ccdflow simulate`: write a realistic simulated night with its truth."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from ccdflow.cli.command_log import command_log


def spec_options(func):
    """Options shared by `simulate` and `demo`."""
    for option in reversed([
        click.option("--size", type=int, default=None, help="Data area is SIZE x SIZE pixels."),
        click.option("--nights", type=int, default=None, help="Number of nights."),
        click.option("--seed", type=int, default=None, help="Random seed (same seed, same pixels)."),
        click.option("--n-bias", type=int, default=None, help="Bias frames per night."),
        click.option("--n-dark", type=int, default=None,
                     help="Dark frames per exposure time and temperature."),
        click.option("--n-flat", type=int, default=None, help="Flat frames per filter."),
        click.option("--n-science", type=int, default=None, help="Science frames per filter."),
        click.option("--filters", default=None, help="Comma-separated filter names."),
    ]):
        func = option(func)
    return func


def spec_from_options(size, nights, seed, n_bias, n_dark, n_flat, n_science, filters):
    from ccdflow.simulator import SimulationSpec

    values = {"nights": nights, "seed": seed, "n_bias": n_bias, "n_dark": n_dark,
              "n_flat": n_flat, "n_science": n_science}
    values = {k: v for k, v in values.items() if v is not None}
    if size is not None:
        values["shape"] = (size, size)
    if filters:
        values["filters"] = tuple(f.strip() for f in filters.split(",") if f.strip())
    return SimulationSpec(**values)


@click.command("simulate")
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@spec_options
@command_log("outdir")
def command(outdir: Path, **options) -> None:
    """Simulate a night of raw frames (bias, darks, flats, science) and its truth in OUTDIR
    (and OUTDIR/ccdflow.log)."""
    from ccdflow.pipeline.runlog import FILE_ONLY
    from ccdflow.simulator import simulate_night

    night = simulate_night(outdir, spec_from_options(**options))
    counts: dict[str, int] = {}
    for frame in night.frames:
        counts[frame.frame_type] = counts.get(frame.frame_type, 0) + 1
    what = ", ".join(f"{n} {k}" for k, n in counts.items())
    logging.getLogger("ccdflow.simulator").info("raw frames in %s: %s; truth in %s", night.raw_dir, what,
                                                night.truth_dir, extra=FILE_ONLY)  # stdout has it
    click.echo(f"raw frames:  {night.raw_dir}  {what}")
    click.echo(f"truth:       {night.truth_dir}")
