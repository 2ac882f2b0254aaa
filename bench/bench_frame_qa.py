"""What measuring a product's quality figures costs (ccdflow.framework.builders.frame_qa).

A simulated night is reduced (256 x 256 pixels), and its first product is tiled 8 x 8 into a
2048 x 2048 frame (2,240 sources, its DQ bits and UNCERT tiled alike), then measured five times;
the real EFOSC2 night's first product too when ../shared/data/real is there. Prints CPU and wall
seconds (best and median): CPU is the figure to quote on a shared machine.

    python bench/bench_frame_qa.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow.framework.builders import frame_qa
from ccdflow.framework.io.fitsio import read_product
from ccdflow.simulator import SimulationSpec
from ccdflow.testing.night import reduce_simulated_night


def timed(label: str, ccd: CCDData, repeats: int = 5) -> None:
    frame_qa.measure(ccd)  # imports and first-call costs out of the figure
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        figures = frame_qa.measure(ccd)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    print(f"{label:28s} {ccd.shape[0]}x{ccd.shape[1]}  CPU {min(cpu):.3f}/{statistics.median(cpu):.3f} s"
          f"  wall {min(wall):.3f}/{statistics.median(wall):.3f} s  (best/median)  "
          f"stars {figures['n_stars']}, FWHM {figures['fwhm']} px")


def tiled(ccd: CCDData, n: int) -> CCDData:
    def tile(a):
        return None if a is None else np.tile(np.asarray(a), (n, n))

    return CCDData(tile(ccd.data), unit=ccd.unit, mask=tile(ccd.mask), flags=tile(ccd.flags),
                   uncertainty=StdDevUncertainty(tile(ccd.uncertainty.array)))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = reduce_simulated_night(Path(tmp), SimulationSpec(n_science=1, filters=("V",)))
        product = read_product(run.products[0])
        timed("simulated product", product)
        timed("simulated, tiled 8x8", tiled(product, 8))
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "efosc-ntt"
    if real.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            from ccdflow.simulator.scenarios import run_night_cli

            run_night_cli(real, Path(tmp) / "out")
            timed("EFOSC2 product", read_product(sorted((Path(tmp) / "out" / "reduced").glob("*.fits"))[0]))


if __name__ == "__main__":
    main()
