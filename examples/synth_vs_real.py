"""Real BBBC006 w1 samples vs synthetic fields: numbers and a PNG montage.

    python examples/synth_vs_real.py --samples tests/data/bbbc006 [--out docs/images/synth_vs_real.png]

The real samples are one strongly defocused plane (probably z00) per field, so the comparison is made at
z00: background (1st percentile), mean, 99.9th percentile and maximum (ADU), and two size measures:
the half width at half maximum of the image's autocorrelation, and the median σ (FWHM/2.355) of the
profiles through bright blobs (px). At z00 both mix nucleus size with the defocus blur.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from blurlatent.files.images import read_image
from blurlatent.files.pictures import save_grid
from blurlatent.synth import generator as synth

HERE = Path(__file__).resolve().parent
DEFAULT_SAMPLES = HERE.parent / "tests" / "data" / "bbbc006"  # three real defocused planes


def acf_hwhm(image: np.ndarray) -> float:
    """Half width at half maximum (px) of the radially averaged autocorrelation of the mean-removed image."""
    x = image.astype(np.float64) - image.mean()
    power = np.abs(np.fft.rfft2(x)) ** 2
    acf = np.fft.fftshift(np.fft.irfft2(power, s=x.shape))
    acf /= acf.max()
    cy, cx = np.array(acf.shape) // 2
    yy, xx = np.indices(acf.shape)
    r = np.hypot(yy - cy, xx - cx).astype(int)
    profile = np.bincount(r.ravel(), acf.ravel()) / np.bincount(r.ravel())
    below = np.flatnonzero(profile < 0.5)
    k = below[0]
    return float(k - 1 + (profile[k - 1] - 0.5) / (profile[k - 1] - profile[k]))


def blob_sigma(image: np.ndarray) -> float:
    """Median width (σ = FWHM / 2.355, px) of the horizontal profile through each bright local maximum."""
    smooth = ndi.gaussian_filter(image.astype(np.float64), 2) - np.percentile(image, 1)
    peaks = (smooth == ndi.maximum_filter(smooth, 41)) & (smooth > 0.3 * smooth.max())
    widths = []
    for y, x in zip(*np.nonzero(peaks), strict=True):
        if 45 < y < image.shape[0] - 45 and 45 < x < image.shape[1] - 45:
            profile = smooth[y, x - 40 : x + 41]
            half = profile[40] / 2
            left, right = profile[40::-1] < half, profile[40:] < half
            if left.any() and right.any():
                widths.append((np.argmax(left) + np.argmax(right)) / 2.355)
    return float(np.median(widths)) if widths else float("nan")


def stats(images) -> dict[str, np.ndarray]:
    rows = [(np.percentile(a, 1), a.mean(), np.percentile(a, 99.9), a.max(), acf_hwhm(a), blob_sigma(a))
            for a in images]
    names = ("background (p1)", "mean", "p99.9", "max", "ACF HWHM px", "blob sigma px")
    return dict(zip(names, np.array(rows).T, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "images" / "synth_vs_real.png")
    parser.add_argument("--fields", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    real = [read_image(f) for f in sorted(args.samples.glob("*.tif"))]
    if not real:
        raise SystemExit(f"{args.samples}: no real samples found; pass --samples")
    z00, truth = [], []
    for i in range(args.fields):
        stacks, t = synth.render_field(args.seed, i, (696, 520), [0], ["w1"])
        z00.append(stacks["w1"][0])
        truth.append(t)
    focus_planes = [0, 4, 8, 12, 16, 20, 24, 28, 33]
    stack, _ = synth.render_field(args.seed, 1, (696, 520), focus_planes, ["w1", "w2"])

    r, s = stats(real), stats(z00)
    real_label, synth_label = f"real (n={len(real)})", f"synthetic (n={len(z00)})"
    print(f"{'at z00':18s} {real_label:>26s} {synth_label:>26s}")
    for key in r:
        fmt = lambda v: f"{np.nanmedian(v):7.1f} [{np.nanmin(v):6.1f}-{np.nanmax(v):6.1f}]"
        print(f"{key:18s} {fmt(r[key]):>26s} {fmt(s[key]):>26s}")
    cells = [t["cells_in_field"] for t in truth]
    print(f"synthetic nuclei per field: {min(cells)}-{max(cells)}, in-focus diameter 15-30 px (mean 23 px)")
    picks = np.linspace(0, len(real) - 1, 5).astype(int)
    rows = [
        [real[i] for i in picks],
        z00[:5],
        [stack["w1"][focus_planes.index(z)] for z in (0, 4, 8, 12, 16)],
        [stack["w1"][focus_planes.index(z)] for z in (16, 20, 24, 28, 33)],
        [stack["w2"][focus_planes.index(z)] for z in (0, 8, 16, 24, 33)],
    ]
    labels = ["real w1 (z00?)", "synthetic w1 z00", "synth w1 z0,4,8,12,16", "synth w1 z16,20,24,28,33",
              "synth w2 z0,8,16,24,33"]
    save_grid(rows, args.out, row_labels=labels, cell_inches=2.2,
              title="Real BBBC006 (top row) vs synthetic (each image min-max scaled)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
