"""Before/after figure: hits injected beside flagged pixels of an EFOSC2 frame, the cosmic-ray
flags of the old way (mask as astroscrappy's inmask) and of the step (flagged pixels replaced).

Reduces the frames like bench_cosmicray_stars.py (cached in --out), writes
docs/images/cosmicray-beside-flags.png:

    python bench/figure_cosmicray_beside_flags.py --out /tmp/efosc-cr
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_cosmicray_stars import inject, load, new_way, old_way, reduce_frames

COLUMNS = (("data; red: flagged before the step", None), ("before: mask as inmask", "old"),
           ("now: flagged pixels replaced", "new"))


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/efosc-cr"))
    parser.add_argument("--png", type=Path, default=Path("docs/images/cosmicray-beside-flags.png"))
    args = parser.parse_args()
    frame = load(reduce_frames(args.out)[0])
    data, mask, charge, beside = inject(frame, np.random.default_rng(7))
    masks = {"old": old_way(data, mask, frame["err"], frame["rn"], {"objlim": 5.0}),
             "new": new_way(data, mask, frame["err"], frame["rn"], {"objlim": 8.0})}
    strong = (charge > 10 * frame["err"]) & beside
    ys, xs = np.nonzero(strong & masks["new"] & ~masks["old"])
    picks = list(zip(ys, xs, strict=True))[:: max(1, len(ys) // 3)][:3]
    fig, axes = plt.subplots(len(picks), 3, figsize=(9, 3 * len(picks)), squeeze=False)
    for row, (y, x) in enumerate(picks):
        box = (slice(max(y - 7, 0), y + 8), slice(max(x - 7, 0), x + 8))
        cut = data[box]
        lo, hi = np.percentile(cut, [5, 99])
        for col, (title, which) in enumerate(COLUMNS):
            ax = axes[row, col]
            ax.imshow(cut, origin="lower", cmap="gray", vmin=lo, vmax=hi)
            ax.imshow(np.ma.masked_where(mask[box] == 0, np.ones_like(cut)), origin="lower",
                      cmap="autumn", alpha=0.6)
            if which is not None:
                ax.contour(masks[which][box].astype(float), levels=[0.5], colors="cyan", linewidths=1.5)
            ax.contour(strong[box].astype(float), levels=[0.5], colors="lime", linewidths=0.8,
                       linestyles="dotted")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
    fig.suptitle("EFOSC2 g: injected hits beside flagged pixels (red); green dotted: hit > 10 sigma; "
                 "cyan: cosmic-ray flags", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.png, dpi=80)
    print(f"{len(ys)} strong hit pixels beside flags found now and missed before -> {args.png}")


if __name__ == "__main__":
    main()
