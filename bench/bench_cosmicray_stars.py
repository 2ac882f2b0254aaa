"""Cosmic-ray defaults measured on real undersampled star fields (EFOSC2) with injected hits.

1. The six EFOSC2 g-band science frames of ../shared/data/real/efosc-ntt are reduced (bias, flat,
   gain, uncertainty; no cosmicray step) into OUT.
2. Real stars: DAOStarFinder peaks (5 sigma) found again, after the dither offset, in another
   frame of the same field (a cosmic ray is in one frame only). A star counts when its peak
   pixel and its 5x5 box hold no flagged pixel and the peak is below 50,000 e-. Its peak
   pixel (the brightest within 1 px of the centroid) is "flagged" when the detector flags it.
3. Recall: hits injected with numpy into the same frames (tracks of 1-8 px, 30-30,000 e- per
   pixel, log-uniform, Poisson noise added), a third of them beside a flagged pixel (a real
   one, or one of 300 injected hot pixels flagged HOT). A hit pixel is "strong" when its charge
   exceeds 10 times the frame's uncertainty there.

Each parameter set runs the old way (mask to astroscrappy's inmask, no invar, satlevel) and the
step's way (flagged pixels replaced, invar = UNCERT^2). Prints one table row per set.

    python bench/bench_cosmicray_stars.py --out /tmp/efosc-cr [--quick]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "efosc-ntt"


def reduce_frames(out: Path) -> list[Path]:
    """The g-band science frames reduced without the cosmicray step (cached in ``out``)."""
    from ccdflow.framework.builders.masters import build_master
    from ccdflow.framework.builders.reduction import MasterRef, reduce_frame
    from ccdflow.framework.engine.config import build
    from ccdflow.framework.engine.plugins import get_plugin_manager
    from ccdflow.framework.headers.scan import scan_paths
    from ccdflow.framework.io.fitswrite import write_ccd

    done = sorted(out.glob("*.red.fits"))
    if len(done) == 6:
        return done
    out.mkdir(parents=True, exist_ok=True)
    manager = get_plugin_manager(reload=True)
    frames, _ = scan_paths(sorted(REAL.glob("*.fits.gz")), manager)
    config = build(manager, instrument="efosc2", params=["cosmicray.skip=true"])
    g = [m for m in frames if "g#782" in str(m.filter)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bias = build_master("bias", [m for m in frames if m.frame_type == "bias"], manager, config)
        write_ccd(bias, out / "bias.fits")
        flat = build_master("flat", [m for m in g if m.frame_type == "flat"], manager, config,
                            {"bias": bias})
        write_ccd(flat, out / "flat.fits")
    masters = {k: MasterRef.load(k, out / f"{k}.fits") for k in ("bias", "flat")}
    for meta in (m for m in g if m.frame_type == "science"):
        name = Path(meta.file).name.replace(".fits.gz", ".red.fits")
        reduce_frame(meta, manager, config, masters, out / name)
    return sorted(out.glob("*.red.fits"))


def load(path: Path) -> dict:
    with fits.open(path) as h:
        from ccdflow.framework import dq
        return {"data": h["SCI"].data.astype(np.float32), "err": h["UNCERT"].data.astype(np.float32),
                "mask": dq.from_file(h["MASK"].data, h["MASK"].header), "object": h[0].header["OBJECT"],
                "rn": float(h[0].header.get("CF_RDNS", 7.8)), "path": path}


def find_peaks(frame: dict) -> np.ndarray:
    """(y, x) of DAOStarFinder centroids at 5 sigma."""
    from astropy.stats import sigma_clipped_stats
    from photutils.detection import DAOStarFinder

    _, med, std = sigma_clipped_stats(frame["data"], mask=frame["mask"] != 0, sigma=3)
    table = DAOStarFinder(fwhm=3.0, threshold=5 * std)(frame["data"] - med, mask=frame["mask"] != 0)
    if table is None:
        return np.zeros((0, 2))
    return np.column_stack([np.asarray(table["ycentroid"]), np.asarray(table["xcentroid"])])


def offset(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The shift b - a that matches most peaks (mode of all pairwise differences, 1 px bins)."""
    d = (b[None, :, :] - a[:, None, :]).reshape(-1, 2)
    d = d[(np.abs(d) < 200).all(axis=1)]
    keys, counts = np.unique(np.round(d).astype(int), axis=0, return_counts=True)
    best = keys[np.argmax(counts)]
    near = d[(np.abs(d - best) <= 1.5).all(axis=1)]
    return near.mean(axis=0)


def real_stars(frames: list[dict]) -> list[np.ndarray]:
    """Per frame, the (y, x) peak pixels of stars confirmed in another frame of its field."""
    peaks = [find_peaks(f) for f in frames]
    out = []
    for i, f in enumerate(frames):
        confirmed = np.zeros(len(peaks[i]), bool)
        for j, g in enumerate(frames):
            if j == i or g["object"] != f["object"] or len(peaks[j]) == 0 or len(peaks[i]) == 0:
                continue
            shift = offset(peaks[i], peaks[j])
            moved = peaks[i] + shift
            dist = np.min(np.hypot(*(moved[:, None, :] - peaks[j][None, :, :]).transpose(2, 0, 1)), axis=1)
            confirmed |= dist < 1.5
        out.append(peak_pixels(f["data"], f["mask"], peaks[i][confirmed]))
    return out


def peak_pixels(data: np.ndarray, mask: np.ndarray, centres) -> np.ndarray:
    """The brightest pixel within 1 px of each (y, x) centre, away from the edge, from flagged
    pixels (5x5) and from saturation (> 5e4): the unsaturated star peaks judged."""
    ny, nx = data.shape
    pix = []
    for y, x in centres:
        yi, xi = int(round(y)), int(round(x))
        if not (3 <= yi < ny - 3 and 3 <= xi < nx - 3):
            continue
        box = data[yi - 1:yi + 2, xi - 1:xi + 2]
        dy, dx = np.unravel_index(np.argmax(box), box.shape)
        py, px = yi - 1 + dy, xi - 1 + dx
        if mask[py - 2:py + 3, px - 2:px + 3].any() or data[py, px] > 5e4:
            continue
        pix.append((py, px))
    return np.array(pix, int).reshape(-1, 2)


def inject(frame: dict, rng: np.random.Generator, n_hits: int = 400, n_hot: int = 300):
    """Data with hits, the mask with injected hot pixels, the truth map of hit charge, and
    which hit pixels are beside a flagged pixel."""
    from ccdflow.framework import dq

    data, mask = frame["data"].copy(), frame["mask"].copy()
    ny, nx = data.shape
    hy, hx = rng.integers(10, ny - 10, n_hot), rng.integers(10, nx - 10, n_hot)
    data[hy, hx] += rng.uniform(2000, 20000, n_hot).astype(np.float32)
    mask[hy, hx] |= dq.HOT
    flagged = np.argwhere(mask != 0)
    charge = np.zeros_like(data)
    for k in range(n_hits):
        if k % 3 == 0 and len(flagged):  # start beside a flagged pixel
            y0, x0 = flagged[rng.integers(len(flagged))] + rng.choice([-1, 1], 2)
        else:
            y0, x0 = rng.integers(10, ny - 10), rng.integers(10, nx - 10)
        length = int(rng.integers(1, 9))
        angle = rng.uniform(0, np.pi)
        level = np.exp(rng.uniform(np.log(30), np.log(30000)))
        for t in range(length):
            y = int(round(y0 + t * np.sin(angle)))
            x = int(round(x0 + t * np.cos(angle)))
            if 0 <= y < ny and 0 <= x < nx:
                charge[y, x] += level * rng.uniform(0.5, 1.5)
    hit = charge > 0
    hit &= mask == 0
    noisy = charge + rng.normal(0, np.sqrt(np.maximum(charge, 0)))
    data = data + np.where(hit, noisy, 0).astype(np.float32)
    from scipy.ndimage import binary_dilation
    beside = hit & binary_dilation(mask != 0, np.ones((3, 3), bool))
    return data, mask, np.where(hit, charge, 0), beside


HST = REAL.parent / "cosmic-ray-frames" / "hst-acs-hrc-j8bt06nyq-flt-crflagged.fits.gz"


def hst_frame() -> tuple[dict, np.ndarray]:
    """The HST ACS/HRC frame (undersampled PSF, e-, read noise 4.71 e-) as a frame dict, and
    its star peaks: DAOStarFinder (FWHM 2 px, 5 sigma) peaks whose 5x5 box has no DQ flag at all
    (4096 = the drizzle combination's cosmic rays, others detector defects and saturation)."""
    from ccdflow.framework import dq

    with fits.open(HST) as h:
        data = h["SCI"].data.astype(np.float32)
        err = h["ERR"].data.astype(np.float32)
        hst_dq = h["DQ"].data.astype(np.int32)
    mask = np.zeros(data.shape, dq.DTYPE)
    mask[(hst_dq & (256 | 2048)) != 0] = dq.SATURATED
    mask[((hst_dq & ~(256 | 2048 | 4096)) != 0) & (mask == 0)] = dq.HOT
    frame = {"data": data, "err": err, "mask": mask, "object": "hst", "rn": 4.71, "path": HST}
    from astropy.stats import sigma_clipped_stats
    from photutils.detection import DAOStarFinder

    _, med, std = sigma_clipped_stats(data, sigma=3)
    table = DAOStarFinder(fwhm=2.0, threshold=5 * std)(data - med, mask=hst_dq != 0)
    centres = zip(np.asarray(table["ycentroid"]), np.asarray(table["xcentroid"]), strict=True)
    return frame, peak_pixels(data, hst_dq != 0, centres)


def old_way(data, mask, err, rn, options):
    """The step before this change: the whole mask to inmask, no invar, satlevel 65535 * gain."""
    import astroscrappy

    from ccdflow.plugins.steps.cosmicray import edge_pad_needed, reflected

    pad = edge_pad_needed()
    crmask, _ = astroscrappy.detect_cosmics(reflected(np.nan_to_num(data), pad, np.float32),
                                            inmask=reflected(mask != 0, pad, bool), gain=1.0,
                                            readnoise=rn, satlevel=65535 * 1.1, **options)
    return crmask[pad:-pad, pad:-pad] & (mask == 0)


def new_way(data, mask, err, rn, options):
    from ccdflow.framework import dq
    from ccdflow.plugins.steps.cosmicray import REPLACED, detect_cosmic_rays

    crmask, _ = detect_cosmic_rays(data, (mask & REPLACED) != 0, gain=1.0, read_noise=rn,
                                   satlevel=float("inf"), variance=np.square(err),
                                   saturated=(mask & dq.SATURATED) != 0, **options)
    assert not (crmask & ((mask & dq.SATURATED) != 0)).any()
    return crmask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/efosc-cr"))
    parser.add_argument("--quick", action="store_true", help="only the old and new defaults")
    parser.add_argument("--hst", action="store_true", help="also the HST ACS/HRC cosmic-ray frame")
    args = parser.parse_args()
    frames = [load(p) for p in reduce_frames(args.out)]
    stars = real_stars(frames)
    print(f"{sum(len(s) for s in stars)} unsaturated confirmed star peaks in {len(frames)} frames")
    if args.hst and HST.exists():
        hst, hst_stars = hst_frame()
        frames.append(hst)
        stars.append(hst_stars)
        print(f"+ HST ACS/HRC: {len(hst_stars)} unflagged star peaks (rows 'hst' below)")
    rng = np.random.default_rng(7)
    injected = [inject(f, rng) for f in frames]
    sets = [("old", old_way, {"objlim": 5.0, "sigfrac": 0.3})]
    grid = [(5.0, 0.3), (8.0, 0.3), (10.0, 0.3), (12.0, 0.3), (15.0, 0.3), (10.0, 0.5)]
    if args.quick:
        grid = [(5.0, 0.3)]
    sets += [("new", new_way, {"objlim": o, "sigfrac": f}) for o, f in grid]
    print("| way | objlim | sigfrac | star peaks flagged | hits > 10 sigma found | of them beside a flag |")
    print("|---|---|---|---|---|---|")
    datasets = [("efosc2", [i for i, f in enumerate(frames) if f["object"] != "hst"]),
                ("hst", [i for i, f in enumerate(frames) if f["object"] == "hst"])]
    for (name, way, opts), (label, which) in ((s, d) for s in sets for d in datasets if d[1]):
        n_star = n_star_flag = n_strong = n_found = n_beside = n_beside_found = 0
        for i in which:
            f, s, (data, mask, charge, beside) = frames[i], stars[i], injected[i]
            plain = way(f["data"], f["mask"], f["err"], f["rn"], opts)
            n_star += len(s)
            n_star_flag += int(plain[s[:, 0], s[:, 1]].sum()) if len(s) else 0
            found = way(data, mask, f["err"], f["rn"], opts)
            strong = charge > 10 * f["err"]
            n_strong += int(strong.sum())
            n_found += int((found & strong).sum())
            n_beside += int((strong & beside).sum())
            n_beside_found += int((found & strong & beside).sum())
        print(f"| {label} {name} | {opts['objlim']} | {opts['sigfrac']} | {n_star_flag}/{n_star} "
              f"({100 * n_star_flag / max(n_star, 1):.1f} %) | {n_found}/{n_strong} "
              f"({100 * n_found / max(n_strong, 1):.1f} %) | {n_beside_found}/{n_beside} "
              f"({100 * n_beside_found / max(n_beside, 1):.1f} %) |", flush=True)


if __name__ == "__main__":
    main()
