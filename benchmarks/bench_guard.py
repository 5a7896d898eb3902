"""The deblur self-check as a guard (issue 25, item 3): does ``inference.selfcheck`` flag outputs worse than the input?

    python benchmarks/bench_guard.py --out bench-guard/                    # test split: born-wolf + synth
    python benchmarks/bench_guard.py --out bench-guard-val/ --split val --families vectorial,gibson-lanni

A stress set from ``bench_real``'s stacks (``real/degrade.py``; central crops of ``--crop`` px, ``--fields`` fields
of the split): for each field and optics family, the built-in model (``--builtin``, ``intensity='conserve'``)
deblurs the pair (0, k) toward plane 16, α = (16 − k)/16, as a user would give it, and as users get it wrong:

* ``normal``: k = 2 … 14 (on test the optics are unseen: born-wolf is held out of train and val);
* ``swapped``: the two planes in the wrong order; ``hot``: 6 hot pixels (8× the maximum) in each plane;
* ``zoom``: both planes resampled ×2, as if the pixel size were half the model's and nothing rescaled them;
* ``wrong-k``: α of the pair (0, k + 4) instead of (0, k).

Each output is labelled *worse* when its calibrated PSNR against the true in-focus field (``real/scores.py``) is
below the less-blurry clean input's (plane k). The self-check's score (``selfcheck.self_check``, run by
``Predictor.deblur`` on every output) is then judged as a detector of worse outputs: ROC AUC over all outputs and
within the normal cases, and its threshold's hit and false-alarm rates. Outputs are cached under ``--out``/cache,
so rescoring is quick. Writes ``--out``/bench_guard.json (records, AUCs, rates, machine, date).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real.degrade import FAMILIES, PLANES, degrade
from real.fields import DEFAULT_DATA, entries_of, load_field, read_manifest
from real.scores import quality, unit_range

from blurlatent.inference.alphas import alpha_from_planes
from blurlatent.inference.predictor import load_model
from blurlatent.inference.selfcheck import WARN_ABOVE, self_check

KS = (2, 4, 6, 8, 10, 12, 14)
STRESS_KS = {"swapped": (4, 8, 12), "hot": (4, 8, 12), "zoom": (4, 12), "wrong-k": (4, 8)}
HOT_PIXELS = 6


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--families", default=None, help="comma-separated (default: the split's, synth last)")
    p.add_argument("--fields", type=int, default=4)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--builtin", default="w1")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    return p.parse_args(argv)


def with_hot_pixels(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hot = image.copy()
    hot[rng.integers(0, image.shape[0], HOT_PIXELS), rng.integers(0, image.shape[1], HOT_PIXELS)] = image.max() * 8
    return hot


def zoomed(image: np.ndarray) -> np.ndarray:
    return ndi.zoom(image, 2, order=1)


def cases(planes: dict[int, np.ndarray], k: int, rng: np.random.Generator) -> dict[str, tuple]:
    """The stress cases of pair (0, k): name → (blurriest, less_blurry, α, zoomed truth?)."""
    z0, zk, alpha = planes[0], planes[k], alpha_from_planes(0, k, 16)
    made = {"normal": (z0, zk, alpha, False)}
    if k in STRESS_KS["swapped"]:
        made["swapped"] = (zk, z0, alpha, False)
    if k in STRESS_KS["hot"]:
        made["hot"] = (with_hot_pixels(z0, rng), with_hot_pixels(zk, rng), alpha, False)
    if k in STRESS_KS["zoom"]:
        made["zoom"] = (zoomed(z0), zoomed(zk), alpha, True)
    if k in STRESS_KS["wrong-k"]:
        made["wrong-k"] = (z0, zk, alpha_from_planes(0, min(k + 4, 14), 16), False)
    return made


def outputs(args: argparse.Namespace, families: list[str]) -> list[dict]:
    """Every case's record (cached .npz of its inputs and output under ``--out``/cache)."""
    predictor = load_model(builtin=args.builtin, device="cpu").with_options(intensity="conserve", out_dtype="float32")
    cache = args.out / "cache"
    records = []
    for entry in entries_of(read_manifest(args.data), args.split, args.fields):
        field = load_field(args.data, entry, (args.crop, args.crop))
        for family in families:
            stack, _ = degrade(field.image, field.labels, FAMILIES[family], 0, field.stem, cache / "stacks")
            planes = {p: stack.plane(p).astype(np.float32) for p in PLANES}
            rng = np.random.default_rng(0)
            for k in KS:
                for case, (z0, zk, alpha, zoom) in cases(planes, k, rng).items():
                    path = cache / "outputs" / f"{field.stem}-{family}-k{k}-{case}.npz"
                    if not path.is_file():
                        path.parent.mkdir(parents=True, exist_ok=True)
                        np.savez_compressed(path, z0=z0, zk=zk, out=predictor.deblur(z0, zk, alpha))
                    truth = zoomed(field.image) if zoom else field.image
                    clean_k = zoomed(planes[k]) if zoom else planes[k]
                    with np.load(path) as npz:
                        out = npz["out"]
                    records.append(dict(field=field.stem, family=family, k=k, case=case, alpha=alpha,
                                        path=str(path), input_psnr=quality(clean_k, unit_range(truth))[0],
                                        out_psnr=quality(out, unit_range(truth))[0]))
    return records


def roc_auc(scores, labels) -> float | None:
    """The probability that a worse output scores above a not-worse one (ties half); None without both kinds."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if not n1 or not n0:
        return None
    return float((rankdata(s)[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def judged(records: list[dict]) -> dict:
    """AUC (all outputs, normal cases, per case vs the normal not-worse ones) and the threshold's rates."""
    worse = [r["out_psnr"] < r["input_psnr"] for r in records]
    scores = [r["score"] for r in records]
    flagged = [s > WARN_ABOVE or not np.isfinite(s) for s in scores]
    normal = [i for i, r in enumerate(records) if r["case"] == "normal"]
    hits = sum(f and w for f, w in zip(flagged, worse, strict=True))
    false = sum(f and not w for f, w in zip(flagged, worse, strict=True))
    return {"outputs": len(records), "worse": sum(worse), "auc": roc_auc(scores, worse),
            "auc_normal": roc_auc([scores[i] for i in normal], [worse[i] for i in normal]),
            "threshold": WARN_ABOVE, "hit_rate": hits / max(sum(worse), 1),
            "false_alarm_rate": false / max(len(worse) - sum(worse), 1),
            "per_case": {case: {"n": sum(r["case"] == case for r in records),
                                "worse": sum(w for r, w in zip(records, worse, strict=True) if r["case"] == case),
                                "flagged": sum(f for r, f in zip(records, flagged, strict=True) if r["case"] == case)}
                         for case in dict.fromkeys(r["case"] for r in records)}}


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the self-check's and hot-pixel warnings: thousands of lines
    families = args.families.split(",") if args.families else [f for f, fam in FAMILIES.items()
                                                                if args.split in fam.splits]
    start = time.time()
    records = outputs(args, families)
    made = time.time() - start
    for r in records:
        with np.load(r["path"]) as npz:
            t0 = time.perf_counter()
            check = self_check(npz["out"], npz["z0"], npz["zk"], r["alpha"])
            r.update(score=check.score, check_s=time.perf_counter() - t0, sigma0=check.out0.sigma,
                     sigmak=check.outk.sigma, out0=check.out0.ratio, outk=check.outk.ratio)
    result = {"split": args.split, "families": families, "fields": args.fields, "crop": args.crop,
              "builtin": args.builtin, **judged(records), "seconds": {"deblur_and_load": made,
                                                                      "checks": time.time() - start - made},
              "machine": {"cpu": platform.processor() or platform.machine(), "platform": platform.platform()},
              "date": datetime.date.today().isoformat(), "records": records}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_guard.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "records"}, indent=1))
    return result


if __name__ == "__main__":
    main()
