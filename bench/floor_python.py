"""The least a Python process does for bench_vs_siril's tasks: the floor under ccdflow's figures.

    python bench/floor_python.py start
    python bench/floor_python.py science OUT BIAS DARK FLAT RAW...
    python bench/floor_python.py io OUT RAW...
    python bench/floor_python.py master OUT RAW...

``start``: what any numba-based Python tool pays before its first pixel: the interpreter,
numpy, astropy.io.fits and numba imported, and one cached ``njit`` function called (numba
loads LLVM and its cache on the first call). No master can be built in less time or memory by
such a tool; Siril, in C, pays almost none of it.

``science``: each raw frame read and hashed (SHA-256, as provenance needs), calibrated with
numpy (bias and dark subtracted, gain applied, divided by the flat; Poisson plus read noise as
UNCERT; saturated pixels as MASK) and written as SCI, UNCERT and MASK with astropy, then the
product hashed. No headers beyond astropy's, no checks, no frame QA, one process: what a
product with ccdflow's planes and checksums costs in plain numpy. Masters are ccdflow's
(``SCI`` extension) or any single-image FITS file.

``master``: ``start``, then what any master of RAW obliges a tool to do beside combining: the
inputs read and hashed (the cores' threads) and a master of ccdflow's planes written and hashed.

``io``: only what provenance and the three planes oblige any tool to do, in any language: each
raw file read and hashed, and a product of ccdflow's size (SCI and UNCERT float32, MASK int16,
their headers) written to a temporary name, renamed and hashed, two frames at a time (the
machine's cores). No numpy, no arithmetic, the bytes prepared once: a floor under any
implementation of `reduce` with UNCERT, MASK and SHA-256 on this machine.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time


def start() -> None:
    t0 = time.perf_counter()
    import numba
    import numpy as np
    from astropy.io import fits  # noqa: F401

    @numba.njit(cache=True, nogil=True)
    def total(values: np.ndarray) -> float:
        s = 0.0
        for v in values:
            s += v
        return s

    total(np.ones(4, np.float32))
    print(f"start: {time.perf_counter() - t0:.3f} s")


def science(out: str, bias_path: str, dark_path: str, flat_path: str, raws: list[str]) -> None:
    import numpy as np
    from astropy.io import fits

    def image(path: str) -> np.ndarray:
        with fits.open(path) as hdul:
            hdu = hdul["SCI"] if "SCI" in hdul else hdul[0]
            return np.asarray(hdu.data, np.float32)

    bias, dark, flat = image(bias_path), image(dark_path), image(flat_path)
    gain, read_noise = np.float32(1.5), np.float32(3.5)
    for path in raws:
        with open(path, "rb") as fh:
            hashlib.sha256(fh.read()).hexdigest()
        raw = fits.getdata(path).astype(np.float32)
        electrons = (raw - bias - dark) * gain
        uncert = np.sqrt(np.maximum(electrons, 0) + read_noise**2) / flat
        sci = electrons / flat
        mask = (raw >= 65535).astype(np.uint8)
        target = os.path.join(out, os.path.basename(path))
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI"), fits.ImageHDU(uncert, name="UNCERT"),
                      fits.ImageHDU(mask, name="MASK")]).writeto(target + ".tmp", overwrite=True)
        os.replace(target + ".tmp", target)
        with open(target, "rb") as fh:
            hashlib.sha256(fh.read()).hexdigest()


def _product_bytes(raw: str) -> bytes:
    """Zero bytes the size of ccdflow's product (or master) of ``raw``'s image: a primary
    header, SCI and UNCERT float32 and an int16 plane, each with a header block."""
    block = 2880
    with open(raw, "rb") as fh:  # the image's size from the first header's NAXISn cards
        head = fh.read(block * 4).decode("ascii", "replace")
    cards = {head[i:i + 8].strip(): head[i + 10:i + 80].split("/")[0].strip()
             for i in range(0, len(head), 80)}
    pixels = int(cards["NAXIS1"]) * int(cards["NAXIS2"])

    def padded(n: int) -> int:
        return -(-n // block) * block
    return bytes(2 * block + 2 * (block + padded(4 * pixels)) + block + padded(2 * pixels))


def _hash_file(path: str) -> None:
    with open(path, "rb") as fh:
        hashlib.sha256(fh.read()).hexdigest()


def _write_hashed(target: str, product: bytes) -> None:
    """Written under a temporary name, renamed, its SHA-256 taken on the way."""
    digest = hashlib.sha256()
    with open(target + ".tmp", "wb") as fh:
        for i in range(0, len(product), 1 << 22):
            piece = memoryview(product)[i:i + (1 << 22)]
            fh.write(piece)
            digest.update(piece)
    os.replace(target + ".tmp", target)
    digest.hexdigest()


def io(out: str, raws: list[str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    product = _product_bytes(raws[0])

    def one(path: str) -> None:
        _hash_file(path)
        _write_hashed(os.path.join(out, os.path.basename(path)), product)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(one, raws))


def master(out: str, raws: list[str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    start()
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(_hash_file, raws))
    _write_hashed(os.path.join(out, "master.fits"), _product_bytes(raws[0]))


if __name__ == "__main__":
    if sys.argv[1] == "start":
        start()
    elif sys.argv[1] in ("io", "master"):
        {"io": io, "master": master}[sys.argv[1]](sys.argv[2], sys.argv[3:])
    else:
        science(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
