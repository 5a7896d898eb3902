"""The real-content benchmark (issue 24): deblurring and blur synthesis on REAL in-focus fields of nuclei, degraded
into through-focus stacks by PSF models that blurlatent's synth does not use, scored by image quality, a fixed
nucleus segmentation against the real masks, and intensity fidelity.

    python benchmarks/bench_real.py --out bench-real/                         # test split, the built-in model
    python benchmarks/bench_real.py --out bench-real-val/ --split val --fields 3
    python benchmarks/bench_real.py --out br/ --checkpoint mine=runs/x/best.pt --care care-preds/
    python benchmarks/bench_real.py --out /tmp/br --smoke                     # 2 fields, 2 k, 1 family, cropped

Data: ``--data DIR`` (default benchmarks/data/real): BBBC039v1 fields (0.645 µm/px) with nucleus label masks,
split by well in ``manifest.json``, each file's sha256 checked. The images and masks are not committed: when they
are missing the bench says how to rebuild them (``make_real_set.py``) and exits with status 2.

1. degrade (``real/degrade.py``): each field becomes planes 0, 2, …, 16 (16 in focus) under each optics family of
   the split — val: vectorial, gibson-lanni, synth; test: born-wolf (a PSF family and NA range no train/val data
   uses: HELD OUT) and synth (blurlatent's own optics, the reference) — with a depth per nucleus, noise and
   background; cached under ``--out``/cache as .npz (keyed by recipe and pixels), so reruns are fast.
2. fit (``real/methods.py``): per family, on ``--fit-fields`` TRAIN fields (central crops): a Gaussian σ per plane
   (least squares of the blurred truth against the plane), RL iterations, Wiener balance, and the λ of the
   two-plane filter and of its oracle; cached as JSON beside the stacks.
3. score, per field and pair (0, k) → 16, k = 2…14: identity (z_k), rl, wiener, two-plane (multi-frame Wiener of
   z_0 and z_k), oracle (the same with the true PSFs), every model (built-in ones with ``--builtin``, the default
   w1 when no model is named; ``--checkpoint NAME=PATH``) through ``Predictor.deblur`` at α = (16 − k)/16 in
   ``intensity='conserve'`` mode, and CARE. Metrics (``real/scores.py``): calibrated PSNR and SSIM against the
   true field, F1 at IoU 0.5 and count error of a fixed Otsu + watershed segmentation against the masks, and the
   median per-nucleus relative error of the integrated intensity. Blur synthesis: each model's Eq. 2 between z16
   and z0 at plane k's level, and a Gaussian of σ fitted (train) from z16 to plane k, vs the real plane k.
4. report in ``--out``: bench_real.json (every method × family × k with its mean and per-field values; the split,
   settings, machine, date, torch), bench_real.md, <metric>_vs_k.png (mean over families) and
   <family>/<metric>_vs_k.png for PSNR, SSIM and F1.

CARE (``--care DIR``, written by benchmarks/care/): one file per field, family and k,
``DIR/<family>/<field-stem>_k<k>.npy``, float32 [H, W] in the input's scale (counts), the prediction of the
in-focus field from the pair (0, k) of the stack this bench made (same seed, same crop); <field-stem> is the
image name up to the site, e.g. ``IXMtest_C09_s7``. A missing file leaves that value empty; no folder, no column.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_name
from real import report
from real.degrade import FAMILIES, PLANES, check_grid, degrade
from real.fields import DEFAULT_DATA, MissingData, center_crop, entries_of, load_field, read_manifest
from real.methods import (
    TWO_PLANE_BALANCES,
    FamilyFit,
    FitSample,
    care_prediction,
    classical_outputs,
    fit_family,
    gaussian_blur_synthesis,
    load_predictors,
    model_blur,
    model_deblur,
)
from real.scores import (
    intensity_error,
    match,
    nucleus_regions,
    nucleus_totals,
    quality,
    segment_nuclei,
    unit_range,
)

from blurlatent.bbbc006 import IN_FOCUS_PLANE
from blurlatent.evaluation.baselines import RL_ITERATIONS, WIENER_BALANCES
from blurlatent.files.atomic import sha256_file, write_json
from blurlatent.progress import progress_bar

KS = [p for p in PLANES if 0 < p < IN_FOCUS_PLANE]
SPLIT_FAMILIES = {"val": ("vectorial", "gibson-lanni", "synth"), "test": ("born-wolf", "synth")}
FIT_CROP = (256, 256)
SMOKE = dict(fields=2, ks=[2, 8], fit_fields=1, crop=(160, 208))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for the report, plots and the cache")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the real fields: manifest.json, images/, masks/")
    p.add_argument("--split", choices=("val", "test"), default="test", help="the fields scored (default test)")
    p.add_argument("--families", default=None,
                   help=f"comma-separated optics families (default per split: {SPLIT_FAMILIES})")
    p.add_argument("--fields", type=int, default=None, help="at most this many fields of the split (default all)")
    p.add_argument("--fit-fields", type=int, default=4, help="train fields the classical fits use (default 4)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH", help="a model to score (repeat)")
    p.add_argument("--builtin", action="append", default=[], metavar="NAME",
                   help="a built-in model to score (repeat); default w1 when no --checkpoint is given")
    p.add_argument("--care", type=Path, default=None, help="CARE predictions DIR/<family>/<stem>_k<k>.npy")
    p.add_argument("--seed", type=int, default=0, help="degradation seed (per field and family)")
    p.add_argument("--device", default="auto", help="model device: auto, cpu, cuda, mps")
    p.add_argument("--smoke", action="store_true", help="2 fields, k 2 and 8, one family, cropped: a pipeline check")
    args = p.parse_args(argv)
    args.checkpoints = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not name.strip():
            p.error(f"--checkpoint {item!r}: give NAME=PATH")
        args.checkpoints[name.strip()] = Path(path)
    args.builtin = args.builtin or ([] if args.checkpoints else ["w1"])
    families = args.families.split(",") if args.families else list(SPLIT_FAMILIES[args.split])
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        p.error(f"--families {','.join(unknown)}: unknown; choose from {', '.join(FAMILIES)}")
    args.families, args.ks, args.crop = families, KS, None
    if args.smoke:
        args.families, args.ks, args.crop = families[:1], SMOKE["ks"], SMOKE["crop"]
        args.fields, args.fit_fields = min(args.fields or SMOKE["fields"], SMOKE["fields"]), SMOKE["fit_fields"]
    return args


class Stages:
    """One log line per stage, with the seconds since the start and since the stage before."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def done(self, name: str, what: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self.last, 2)
        print(f"[bench_real {now - self.start:7.1f} s] {name}: {what} ({now - self.last:.1f} s)", flush=True)
        self.last = now


def fitted(args, family, fit_fields: list) -> tuple[FamilyFit, int]:
    """The family's classical fits on the train fields (cached as JSON) and how many stacks came from the cache."""
    hits, samples, keys = 0, [], []
    for f in fit_fields:
        stack, hit = degrade(f.image, f.labels, family, args.seed, f.stem, args.out / "cache")
        hits += hit
        planes = {p: center_crop(stack.plane(p), FIT_CROP) for p in PLANES}
        psfs = {p: stack.true_psfs[i] for i, p in enumerate(PLANES)}
        samples.append(FitSample(center_crop(f.image, FIT_CROP), planes, psfs, center_crop(stack.floor, FIT_CROP)))
        keys.append(hashlib.sha256(stack.stack.tobytes()).hexdigest())
    grids = [TWO_PLANE_BALANCES, RL_ITERATIONS, WIENER_BALANCES]  # a change of a search grid refits
    key = hashlib.sha256(json.dumps([keys, args.ks, FIT_CROP, grids]).encode()).hexdigest()[:12]
    path = args.out / "cache" / f"fits-{family.name}-s{args.seed}-{key}.json"
    if path.is_file():
        return FamilyFit.from_dict(json.loads(path.read_text())), hits
    fit = fit_family(family.name, samples, [f.stem for f in fit_fields], args.ks)
    write_json(path, fit.to_dict())
    return fit, hits


def evaluate_field(args, field, family, fit: FamilyFit, predictors: dict) -> tuple[list[dict], list[dict], dict]:
    """(deblur records, blur records, the stack's params with ``cached``) of one field under one family: every
    method at every k."""
    stack, hit = degrade(field.image, field.labels, family, args.seed, field.stem, args.out / "cache")
    planes = {p: stack.plane(p) for p in PLANES}
    psfs = {p: stack.true_psfs[i] for i, p in enumerate(PLANES)}
    truth = unit_range(field.image)
    regions = nucleus_regions(field.labels)
    totals = nucleus_totals(field.image, regions)
    deblur, blur = [], []
    base = {"family": family.name, "field": field.stem}
    for k in args.ks:
        outputs = classical_outputs(planes, psfs, stack.floor, k, fit)
        for name, predictor in predictors.items():
            outputs[name] = model_deblur(predictor, planes[0], planes[k], k)
        care = care_prediction(args.care, family.name, field.stem, k, field.image.shape)
        if args.care is not None:
            outputs["care"] = care
        for method, out in outputs.items():
            record = {**base, "k": k, "method": method}
            if out is not None:
                psnr, ssim = quality(out, truth)
                found = match(segment_nuclei(out), field.labels)
                record.update(psnr=psnr, ssim=ssim, f1=found["f1"], count_error=found["count_error"],
                              intensity_error=intensity_error(out, totals, regions))
            deblur.append(record)
    synthesized = {"gaussian": gaussian_blur_synthesis(planes[IN_FOCUS_PLANE], fit, args.ks)}
    for name, predictor in predictors.items():
        synthesized[name] = model_blur(predictor, planes[IN_FOCUS_PLANE], planes[0], args.ks)
    for method, by_k in synthesized.items():
        for k, out in by_k.items():
            psnr, ssim = quality(out, unit_range(planes[k]))
            blur.append({**base, "k": k, "method": method, "psnr": psnr, "ssim": ssim})
    return deblur, blur, {**stack.params, "cached": hit}


def machine(device: str) -> dict:
    cuda = torch.cuda.get_device_name(0) if device != "cpu" and torch.cuda.is_available() else None
    return {"cpu": cpu_name(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": str(torch.__version__), "threads": torch.get_num_threads(),
            "cuda": cuda}


def shown(path: Path) -> str:
    """``path`` as the JSON records it: relative to the repository when inside it, else its name alone (the JSON
    is published; it holds no path of the machine that made it)."""
    try:
        return str(Path(path).resolve().relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        return Path(path).name


def family_specs(args, params: dict) -> dict:
    """Each scored family as plain data: its model, splits, ranges, grid and the mean measured plane-0 blur
    radius (80 % of the light) over the scored fields."""
    grids = check_grid()
    r80 = {name: float(np.mean([p["plane0_r80_px"] for p in by_field.values()])) for name, by_field in params.items()}
    return {name: {"model": FAMILIES[name].model, "splits": list(FAMILIES[name].splits),
                   "held_out": FAMILIES[name].splits == ("test",), "na": list(FAMILIES[name].na),
                   "wavelength_um": list(FAMILIES[name].wavelength_um),
                   "depth_spread_um": FAMILIES[name].depth_spread_um, "grid": grids[name], "fields": len(params[name]),
                   "plane0_r80_px": round(r80[name], 2)}
            for name in args.families}


def load_data(args) -> tuple[list, list]:
    """(scored fields, fit fields); prints the rebuild line and exits 2 when the data are missing or altered."""
    try:
        entries = read_manifest(args.data)
        scored = [load_field(args.data, e, args.crop) for e in entries_of(entries, args.split, args.fields)]
        fits = [load_field(args.data, e, args.crop) for e in entries_of(entries, "train", args.fit_fields)]
    except MissingData as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    if not scored or not fits:
        print(f"{args.data}/manifest.json has no {'train' if scored else args.split} fields; the bench scores the "
              f"{args.split} split and fits the classical methods on train", file=sys.stderr)
        raise SystemExit(2)
    return scored, fits


def main(argv=None) -> dict:
    args = parse_args(argv)
    stages = Stages()
    scored, fit_fields = load_data(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stages.done("data", f"{len(scored)} {args.split} field(s) {scored[0].image.shape}, {len(fit_fields)} train "
                        f"field(s) for the fits, sha256 checked")
    fits = {}
    for name in args.families:
        fits[name], hits = fitted(args, FAMILIES[name], fit_fields)
        stages.done(f"fit {name}", f"σ per plane {[round(fits[name].deconv[p].sigma, 2) for p in (0, *args.ks)]} px "
                                   f"({hits}/{len(fit_fields)} stacks cached)")
    predictors = load_predictors(args.checkpoints, args.builtin, args.device)
    stages.done("models", ", ".join(predictors) or "none")
    deblur, blur, params = [], [], {}
    total = len(args.families) * len(scored)
    with progress_bar("scoring fields", total, enabled=sys.stderr.isatty()) as advance:
        for name in args.families:
            for field in scored:
                d, b, params.setdefault(name, {})[field.stem] = evaluate_field(args, field, FAMILIES[name],
                                                                               fits[name], predictors)
                deblur, blur = deblur + d, blur + b
                advance()
    hits = sum(p["cached"] for by_field in params.values() for p in by_field.values())
    stages.done("score", f"{total} field × family stacks ({hits} cached), k {args.ks}, "
                         f"{len(report.ordered(deblur, 'method'))} methods")
    ceiling = {f.stem: match(segment_nuclei(f.image), f.labels) for f in scored}
    deblur_table = report.tables(deblur, report.DEBLUR_METRICS)
    result = {
        "split": args.split, "ks": args.ks, "methods": report.ordered(deblur, "method"),
        "blur_methods": report.ordered(blur, "method"), "families": family_specs(args, params),
        "deblur": deblur_table, "blur": report.tables(blur, report.BLUR_METRICS),
        "overall": report.overall(deblur_table, report.DEBLUR_METRICS),
        "seed_means": report.seed_means(report.overall(deblur_table, report.DEBLUR_METRICS)),
        "truth_segmentation": {m: report.summary({s: c[m] for s, c in ceiling.items()}) for m in ("f1", "count_error")},
        "fits": {name: fit.to_dict() for name, fit in fits.items()},
        "field_params": params,
        "machine": machine(args.device), "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "settings": {"data": shown(args.data), "seed": args.seed, "fields": len(scored), "fit_fields": len(fit_fields),
                     "fit_crop": list(FIT_CROP), "crop": args.crop, "smoke": args.smoke, "device": args.device,
                     "checkpoints": {k: {"file": v.name, "sha256": sha256_file(v)}
                                     for k, v in args.checkpoints.items()},
                     "builtin": args.builtin, "care": args.care.name if args.care else None, "planes": list(PLANES)},
    }
    result["plots"] = report.write_plots(args.out, result)
    report.write_markdown(args.out / "bench_real.md", result)
    stages.done("report", f"{args.out / 'bench_real.json'}, bench_real.md, {len(result['plots'])} plots")
    result["seconds"] = stages.seconds
    write_json(args.out / "bench_real.json", result)
    print(report.markdown(result), flush=True)
    return result


if __name__ == "__main__":
    main()
