"""Build the real in-focus image set for the real-content benchmark from a local copy of BBBC039v1.

    python benchmarks/data/real/make_real_set.py SOURCE_DIR [--out DIR] [--check]

SOURCE_DIR is the folder that holds ``cell nuclei/images/*.tif`` and ``cell nuclei/masks/*.png``: a checkout of
the public GitHub repository DeepTrackAI/cell_counting_dataset (a CC0 copy of BBBC039v1; commit
d460149beb419c92785edcdef0628c5bf66f3325 was used), e.g. ``git clone`` it, or ``git --git-dir=REPO archive HEAD |
tar -x -C SOURCE_DIR`` from a bare copy. Nothing is downloaded: this script only reads SOURCE_DIR and writes
``images/``, ``masks/`` and ``manifest.json`` under ``--out`` (default: the folder this script is in).
``--check`` rebuilds nothing: it verifies the files under ``--out`` against ``manifest.json`` (sha256, shape, dtype).

What it does (README.md beside this file says why):

1. Every source field is read; a field is unusable when it is empty (normalized variance var/mean < 10: three
   fields with no nuclei, all other fields are > 60) or listed in ``EXCLUDED`` (an obvious artifact, by eye).
2. Fields are grouped by WELL NAME (e.g. ``F12``) across all plates: every field of one physical well (plate,
   well) is in one group whatever plate it came from; the 82 fields whose metadata says ``Barcode:NOCODE`` come
   from several unidentified plates, so grouping by well name alone is the conservative choice.
3. The groups are put in the order of sha256("BBBC039v1/" + well) (hex, ascending); whole groups are taken in
   that order until at least ``N_FIELDS`` fields are in (whole wells only, so a few more may come in).
4. The taken groups, in the same order, are dealt to the splits one whole well at a time: each goes to the split
   furthest below its share of the fields dealt so far (train 0.6, val 0.2, test 0.2; ties: train, val, test).
   This keeps the FIELD counts near 60/20/20 although some wells have 2 or 3 fields; fixed once.
5. Each image is written unchanged (same uint16 pixels) as an LZW TIFF with horizontal predictor; each mask
   (the red channel of the source RGBA PNG: a 4-colouring, 0 = background, touching nuclei have different
   values) becomes a uint16 label image: connected components of equal value, 8-connectivity, numbered in
   raster order (as skimage.measure.label does it; the BBBC039 authors label the masks this way), LZW TIFF.
   Every written file is read back and compared with the array it came from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from skimage.measure import label

SOURCE = "BBBC039v1"
SOURCE_REPO_COMMIT = "d460149beb419c92785edcdef0628c5bf66f3325"  # DeepTrackAI/cell_counting_dataset, the copy used
N_FIELDS = 56  # at least this many fields (whole wells); ~0.42 MB each (image + mask) keeps the set under ~25 MB
MIN_NORMALIZED_VARIANCE = 10.0  # var/mean of the raw counts; the three empty fields are < 0.5, the rest > 60
# fields left out by eye although not empty: (well, site) -> why
EXCLUDED = {
    ("E05", 2): "a bright out-of-focus fibre (debris) lies across the field: not an in-focus reference",
}
SPLIT_TARGET = {"train": 0.6, "val": 0.2, "test": 0.2}
NAME_RE = re.compile(r"^IXMtest_(?P<well>[A-P]\d\d)_s(?P<site>\d+)_w1[0-9A-F-]+\.tif$")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def well_rank(well: str) -> str:
    return hashlib.sha256(f"{SOURCE}/{well}".encode()).hexdigest()


def pixel_size_um(tif: tifffile.TiffFile) -> float:
    """The MetaMorph calibration stored in the source TIFF (UIC1 tag: XCalibration/YCalibration in um)."""
    uic = tif.pages[0].tags["UIC1tag"].value
    assert uic["CalibrationUnits"] == "um" and uic["XCalibration"] == uic["YCalibration"], uic
    return float(uic["XCalibration"])


def read_field(img_path: Path) -> dict:
    m = NAME_RE.match(img_path.name)
    if m is None:
        raise ValueError(f"unexpected file name {img_path.name}")
    well, site = m["well"], int(m["site"])
    with tifffile.TiffFile(img_path) as tif:
        arr = tif.pages[0].asarray()
        desc = tif.pages[0].description
        uic = tif.pages[0].tags["UIC1tag"].value
        stage = uic["StageLabel"][0]
        if stage.replace(" ", "") != f"{well}:Site{site}":  # the file name and the stage label agree
            raise ValueError(f"{img_path.name}: stage label {stage!r}")
        barcode = re.search(r"Barcode:(\S+)", desc).group(1)
        acquired = str(tif.pages[0].tags["DateTime"].value).replace(":", "-", 2).replace(" ", "T")
        px = pixel_size_um(tif)
    if arr.dtype != np.uint16 or arr.ndim != 2:
        raise ValueError(f"{img_path.name}: {arr.dtype} {arr.shape}")
    a = arr.astype(np.float64)
    return {
        "path": img_path, "well": well, "site": site, "plate": barcode, "acquired": acquired,
        "pixel_size_um": px, "normalized_variance": float(a.var() / a.mean()),
        "n_saturated": int((arr >= 4095).sum()),  # 12-bit camera (MetaMorph 'Camera Bit Depth' 12)
    }


def mask_labels(png_path: Path) -> np.ndarray:
    rgba = np.asarray(Image.open(png_path))
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba[..., 1:3].any():
        raise ValueError(f"{png_path.name}: expected RGBA with the classes in red only")
    lab = label(rgba[..., 0], background=0, connectivity=2)
    if lab.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"{png_path.name}: too many objects")
    return lab.astype(np.uint16)


def write_tiff(path: Path, arr: np.ndarray, description: str, px_um: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    px_per_cm = 1e4 / px_um
    tifffile.imwrite(path, arr, compression="lzw", predictor=True, photometric="minisblack", metadata=None,
                     description=description, resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER")
    back = tifffile.imread(path)
    if back.dtype != arr.dtype or back.shape != arr.shape or not np.array_equal(back, arr):
        raise RuntimeError(f"{path} does not read back identical")


def select(fields: list[dict]) -> tuple[list[list[dict]], dict]:
    usable, dropped = [], {}
    for f in fields:
        if f["normalized_variance"] < MIN_NORMALIZED_VARIANCE:
            dropped[f["path"].name] = f"empty (normalized variance {f['normalized_variance']:.2f})"
        elif (f["well"], f["site"]) in EXCLUDED:
            dropped[f["path"].name] = EXCLUDED[(f["well"], f["site"])]
        else:
            usable.append(f)
    groups: dict[str, list[dict]] = {}
    for f in usable:
        groups.setdefault(f["well"], []).append(f)
    chosen, n = [], 0
    for well in sorted(groups, key=well_rank):
        if n >= N_FIELDS:
            break
        g = sorted(groups[well], key=lambda f: (f["plate"], f["site"], f["path"].name))
        chosen.append(g)
        n += len(g)
    return chosen, dropped


def assign_splits(chosen: list[list[dict]]) -> list[str]:
    dealt = dict.fromkeys(SPLIT_TARGET, 0)
    out = []
    for g in chosen:
        total = sum(dealt.values()) + len(g)
        s = max(SPLIT_TARGET, key=lambda k: SPLIT_TARGET[k] * total - dealt[k])  # first of equals wins
        dealt[s] += len(g)
        out.append(s)
    return out


def build(source: Path, out: Path) -> None:
    src_img = source / "cell nuclei" / "images"
    src_mask = source / "cell nuclei" / "masks"
    paths = sorted(src_img.glob("*.tif"))
    if len(paths) != 200:
        raise SystemExit(f"expected the 200 BBBC039v1 fields under {src_img}, found {len(paths)}")
    fields = [read_field(p) for p in paths]
    chosen, dropped = select(fields)
    splits = assign_splits(chosen)
    manifest = []
    for group, split in zip(chosen, splits, strict=True):
        for f in group:
            name = f["path"].name
            png = src_mask / (f["path"].stem + ".png")
            img = tifffile.imread(f["path"])
            lab = mask_labels(png)
            if lab.shape != img.shape:
                raise ValueError(f"{name}: mask {lab.shape} vs image {img.shape}")
            rel_img, rel_mask = f"images/{name}", f"masks/{f['path'].stem}.tif"
            desc = f"{SOURCE} {name} (CC0); pixels unchanged; {f['pixel_size_um']} um/px"
            write_tiff(out / rel_img, img, desc, f["pixel_size_um"])
            write_tiff(out / rel_mask, lab, f"{SOURCE} nucleus labels for {name} (CC0); from {png.name}",
                       f["pixel_size_um"])
            manifest.append({
                "file": rel_img, "mask": rel_mask, "source": SOURCE, "content": "nuclei",
                "plate": f["plate"], "well": f["well"], "site": f["site"], "split": split,
                "pixel_size_um": f["pixel_size_um"],
                "sha256": sha256_file(out / rel_img), "mask_sha256": sha256_file(out / rel_mask),
                "shape": list(img.shape), "dtype": "uint16", "bit_depth": 12,
                "n_nuclei": int(lab.max()), "n_saturated": f["n_saturated"],
                "normalized_variance": round(f["normalized_variance"], 2), "acquired": f["acquired"],
                "original_file": f"cell nuclei/images/{name}", "original_sha256": sha256_file(f["path"]),
                "original_mask": f"cell nuclei/masks/{png.name}", "original_mask_sha256": sha256_file(png),
            })
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    counts: dict[str, list[int]] = {}
    for e in manifest:
        c = counts.setdefault(e["split"], [0, 0, 0])
        c[0] += 1
        c[2] += e["n_nuclei"]
    for split in splits:
        counts[split][1] += 1
    print(f"left out: {json.dumps(dropped, indent=1)}")
    for s in ("train", "val", "test"):
        print(f"{s:5s}: {counts[s][0]} fields, {counts[s][1]} wells, {counts[s][2]} nuclei")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{len(manifest)} fields; {total / 1e6:.2f} MB under {out}")


def check(out: Path) -> int:
    manifest = json.loads((out / "manifest.json").read_text())
    bad = 0
    for e in manifest:
        for key, hkey in (("file", "sha256"), ("mask", "mask_sha256")):
            if e.get(key) is None:
                continue
            p = out / e[key]
            if not p.is_file() or sha256_file(p) != e[hkey]:
                print(f"MISMATCH {e[key]}")
                bad += 1
                continue
            a = tifffile.imread(p)
            if list(a.shape) != e["shape"] or a.dtype != np.uint16:
                print(f"SHAPE/DTYPE {e[key]}")
                bad += 1
    wells = {}
    for e in manifest:
        wells.setdefault((e["plate"], e["well"]), set()).add(e["split"])
        wells.setdefault(("*", e["well"]), set()).add(e["split"])
    leaks = [k for k, v in wells.items() if len(v) > 1]
    if leaks:
        print(f"wells in more than one split: {leaks}")
        bad += len(leaks)
    print(f"{len(manifest)} entries checked, {bad} problems")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, nargs="?", help="folder holding 'cell nuclei/images' and 'cell nuclei/masks'")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--check", action="store_true", help="only verify --out against its manifest.json")
    args = ap.parse_args(argv)
    if args.check:
        return check(args.out)
    if args.source is None:
        ap.error("SOURCE_DIR is required unless --check")
    build(args.source, args.out)
    return check(args.out)


if __name__ == "__main__":
    sys.exit(main())
