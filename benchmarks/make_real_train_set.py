"""Real content for TRAINING (issue 25): the real-content benchmark's train (or val) fields, degraded by the bench's
own optics families, written as BBBC006-style plane folders that ``blurlatent prepare`` reads like BBBC006.

    python benchmarks/make_real_train_set.py --out real-train/                 # train fields, train families
    blurlatent prepare real-train/ real-store/ --channels w1 --crop 64 --split 90:10:0

Each (family, field) becomes one BBBC006 field,
``BBBC006_v1_images_z_XX/mcf-z-stacks-<n>_<well>_s<n><site>_w1<uuid>.tif`` for planes XX = 00, 02, …, 16 (16 in
focus), uint16 camera counts as the bench made them (``real.degrade``, the bench's seed and cache, so the stacks are
the bench's bytes). <n> numbers the family (a field under two families is two fields), the well and site are the
source field's, the UUID is derived from family and stem, so reruns write the same names. Only families whose
splits include the chosen split are used: the held-out ``born-wolf``
never reaches training. No file of the test split can be written (refused).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import uuid
from pathlib import Path

import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from real.degrade import FAMILIES, PLANES, degrade
from real.fields import DEFAULT_DATA, MissingData, entries_of, load_field, read_manifest


def field_name(family_index: int, family: str, stem: str) -> str:
    """BBBC006's file name for one (family, field): IXMtest_C07_s5 under family 1 → mcf-z-stacks-1_c07_s15_w1<uuid>
    (the family's number leads the site: BBBC006's field key is well, site and channel, so two families of one
    field must differ there)."""
    _, well, site = stem.split("_")[:3]
    token = uuid.UUID(hashlib.sha256(f"{family}/{stem}".encode()).hexdigest()[:32])
    return f"mcf-z-stacks-{family_index}_{well.lower()}_s{family_index}{site[1:]}_w1{token}.tif"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the BBBC006_v1_images_z_XX/ folders")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--split", choices=("train", "val"), default="train", help="the fields used (never test)")
    p.add_argument("--families", default=None, help="comma-separated (default: every family of the split)")
    p.add_argument("--fields", type=int, default=None, help="at most this many fields (default all)")
    p.add_argument("--seed", type=int, default=0, help="the bench's degradation seed")
    p.add_argument("--cache", type=Path, default=None, help="the bench's stack cache (default OUT/cache)")
    args = p.parse_args(argv)
    names = args.families.split(",") if args.families else [n for n, f in FAMILIES.items() if args.split in f.splits]
    refused = [n for n in names if n not in FAMILIES or args.split not in FAMILIES[n].splits]
    if refused:
        p.error(f"--families {','.join(refused)}: unknown or not a {args.split} family (held out)")
    try:
        fields = [load_field(args.data, e) for e in entries_of(read_manifest(args.data), args.split, args.fields)]
    except MissingData as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    cache = args.cache or args.out / "cache"
    written = []
    for index, name in enumerate(names, start=1):
        for field in fields:
            stack, _ = degrade(field.image, field.labels, FAMILIES[name], args.seed, field.stem, cache)
            file = field_name(index, name, field.stem)
            for plane in PLANES:
                folder = args.out / f"BBBC006_v1_images_z_{plane:02d}"
                folder.mkdir(parents=True, exist_ok=True)
                tifffile.imwrite(folder / file, stack.plane(plane), compression="zlib")
            written.append({"family": name, "field": field.stem, "file": file})
            print(f"[real-train] {name} {field.stem} -> {file}", flush=True)
    summary = {"split": args.split, "families": names, "fields": len(fields), "seed": args.seed, "written": written}
    (args.out / "real_train_set.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
