"""Issue 25's targets, checked on a ``bench_real.json`` (the test split, as frozen by issue 24): one row per target
with the measured value, the bar it must clear, and pass/fail.

A model is a column of the result: a built-in (``builtin-w1``) or a trained family's seeds (``paper`` for
``paper-s0``, ``paper-s1``, …: every figure is the mean over its seeds, and the per-field rule is taken over every
seed's fields). "Fitted classical" is the best of rl, wiener and two-plane at that k (their PSFs fitted on train
fields); the oracle (true PSFs) is not a user's method and is left out. Values are the mean over the result's
families (``overall``), as the benchmarks page shows them.
"""

from __future__ import annotations

from real.report import SEEDED, finite, overall

FITTED = ("rl", "wiener", "two-plane")
NEAR_INPUT_DB, NEAR_INPUT_SHARE = 0.3, 0.95  # per field: no more than 0.3 dB below the input on 95 % of fields


def members(result: dict, model: str) -> list[str]:
    """The result's columns that make up ``model``: itself, or its seeded runs ``model-sN``."""
    if model in result["overall"]:
        return [model]
    found = [m for m in result["overall"] if (s := SEEDED.match(m)) and s["base"] == model]
    if not found:
        raise KeyError(f"{model}: not a column of this result (columns: {', '.join(result['overall'])})")
    return found


def mean_of(rows: dict, columns: list[str], k: str, metric: str) -> float | None:
    """The mean over ``columns`` of ``rows``' (``report.overall``'s shape) ``metric`` at ``k``; None if one lacks it."""
    values = [rows.get(column, {}).get(k, {}).get(metric) for column in columns]
    return sum(values) / len(values) if values and all(finite(v) for v in values) else None


def near_input_share(result: dict, columns: list[str]) -> float:
    """The share of (seed, family, field) whose PSNR is within 0.3 dB of the input's (identity) at EVERY k."""
    ok = total = 0
    for by_method in result["deblur"].values():
        for column in columns:
            fields = by_method["identity"][str(result["ks"][0])]["psnr"]["per_field"]
            for field in fields:
                gaps = [by_method[column][str(k)]["psnr"]["per_field"][field]
                        - by_method["identity"][str(k)]["psnr"]["per_field"][field] for k in result["ks"]]
                total += 1
                ok += all(finite(g) and g >= -NEAR_INPUT_DB for g in gaps)
    return ok / total if total else float("nan")


def row(target: str, value: float | None, bar: float | None, unit: str = "dB", higher: bool = True) -> dict:
    passed = finite(value) and finite(bar) and (value >= bar if higher else value <= bar)
    return {"target": target, "value": value, "bar": bar, "unit": unit, "pass": bool(passed)}


def check(result: dict, model: str, gflop: float | None = None) -> list[dict]:
    """Every target of issue 25 for ``model`` on ``result`` (see the module docstring)."""
    cols, ks = members(result, model), [str(k) for k in result["ks"]]
    deblur, blur = result["overall"], overall(result["blur"], ("psnr",))  # the targets use blur PSNR only
    rows = []
    for k in ks:
        best = max((v for v in (mean_of(deblur, [m], k, "psnr") for m in FITTED) if finite(v)), default=None)
        rows.append(row(f"k={k}: PSNR ≥ best fitted classical", mean_of(deblur, cols, k, "psnr"), best))
        rows.append(row(f"k={k}: SSIM ≥ identity", mean_of(deblur, cols, k, "ssim"),
                        mean_of(deblur, ["identity"], k, "ssim"), unit=""))
        if int(k) <= 8:
            identity = mean_of(deblur, ["identity"], k, "psnr")
            rows.append(row(f"k={k}: PSNR ≥ identity + 1 dB", mean_of(deblur, cols, k, "psnr"),
                            identity + 1 if finite(identity) else None))
    rows.append(row("fields within 0.3 dB of their input at every k", near_input_share(result, cols),
                    NEAR_INPUT_SHARE, unit="share"))
    if "8" in ks:
        ours = mean_of(deblur, cols, "8", "psnr")
        two_plane = mean_of(deblur, ["two-plane"], "8", "psnr")
        rows.append(row("(0, 8): PSNR ≥ fitted two-plane + 1 dB", ours, two_plane + 1 if finite(two_plane) else None))
        care = mean_of(deblur, ["care"], "8", "psnr") if "care" in result["overall"] else None
        rows.append(row("(0, 8): PSNR ≥ CARE + 0.5 dB", ours, care + 0.5 if finite(care) else None))
        f1_in, f1_truth = mean_of(deblur, ["identity"], "8", "f1"), result["truth_segmentation"]["f1"]["mean"]
        f1_out = mean_of(deblur, cols, "8", "f1")
        closed = (f1_out - f1_in) / (f1_truth - f1_in) if finite(f1_out) and finite(f1_in) and finite(f1_truth) \
            and f1_truth != f1_in else None
        rows.append(row("(0, 8): nuclei F1 closes ≥ 70 % of the input → truth gap", closed, 0.7, unit="share"))
        rows.append(row("(0, 8): per-nucleus intensity (conserve), median error ≤ 10 %",
                        mean_of(deblur, cols, "8", "intensity_error"), 0.10, unit="share", higher=False))
    for k in ks:
        gaussian = mean_of(blur, ["gaussian"], k, "psnr")
        rows.append(row(f"k={k}: blur synthesis ≥ fitted Gaussian + 0.5 dB", mean_of(blur, cols, k, "psnr"),
                        gaussian + 0.5 if finite(gaussian) else None))
    if gflop is not None:
        rows.append(row("cost per 696×520 deblur ≤ 50 GFLOP", gflop, 50.0, unit="GFLOP", higher=False))
    return rows


def markdown(rows: list[dict], model: str, seeds: int) -> str:
    lines = [f"Targets for **{model}** ({seeds} seed{'s' if seeds > 1 else ''}):", "",
             "| target | measured | bar | |", "|---|---:|---:|---|"]
    for r in rows:
        digits = 3 if r["unit"] in ("", "share") else 2
        value = "–" if not finite(r["value"]) else f"{r['value']:.{digits}f}"
        bar = "–" if not finite(r["bar"]) else f"{r['bar']:.{digits}f}"
        lines.append(f"| {r['target']} | {value} | {bar} | {'pass' if r['pass'] else '**fail**'} |")
    passed = sum(r["pass"] for r in rows)
    return "\n".join(lines + ["", f"{passed} of {len(rows)} targets met."])
