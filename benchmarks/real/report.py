"""The real-content benchmark's outputs: per-field records → means (``tables``), ``bench_real.md`` and the plots.

A record is one (family, field, k, method) with its metrics; ``tables`` gives, per family, method and k, every
metric's mean over the fields and the per-field values; ``overall`` the mean of the family means.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from blurlatent.files.atomic import atomic_write_bytes
from blurlatent.files.pictures import save_line_plot

DEBLUR_METRICS = ("psnr", "ssim", "f1", "count_error", "intensity_error")
BLUR_METRICS = ("psnr", "ssim")
PLOTTED = {"psnr": "calibrated PSNR (dB)", "ssim": "calibrated SSIM", "f1": "nucleus F1 (IoU > 0.5)"}
SEEDED = re.compile(r"^(?P<base>.+)-s(?P<seed>\d+)$")  # a trained model's name with its seed: paper-s0, paper-s1


def finite(value) -> bool:
    return value is not None and math.isfinite(value)


def summary(per_field: dict[str, float | None]) -> dict:
    """{"mean": mean of the finite values (None when none), "n": how many, "per_field": the values}."""
    values = [v for v in per_field.values() if finite(v)]
    return {"mean": sum(values) / len(values) if values else None, "n": len(values), "per_field": per_field}


def ordered(records: list[dict], key: str) -> list:
    """The distinct values of ``key`` in the order the records first show them."""
    return list(dict.fromkeys(r[key] for r in records))


def tables(records: list[dict], metrics: tuple[str, ...]) -> dict:
    """{family: {method: {k (str): {metric: summary}}}} over the records' fields."""
    out: dict = {}
    for r in records:
        cell = out.setdefault(r["family"], {}).setdefault(r["method"], {}).setdefault(str(r["k"]), {})
        for m in metrics:
            cell.setdefault(m, {})[r["field"]] = r.get(m)
    return {fam: {meth: {k: {m: summary(v) for m, v in cell.items()} for k, cell in by_k.items()}
                  for meth, by_k in by_method.items()} for fam, by_method in out.items()}


def overall(table: dict, metrics: tuple[str, ...]) -> dict:
    """{method: {k: {metric: mean over families of the family means}}} for the methods every family has."""
    families = list(table.values())
    methods = [m for m in (families[0] if families else {}) if all(m in f for f in families)]
    out: dict = {}
    for method in methods:
        for k in families[0][method]:
            for metric in metrics:
                means = [f[method][k][metric]["mean"] for f in families if k in f[method]]
                means = [v for v in means if finite(v)]
                out.setdefault(method, {}).setdefault(k, {})[metric] = sum(means) / len(means) if means else None
    return out


def seed_groups(methods: list[str]) -> dict[str, list[str]]:
    """{base: [its seeded methods]} for the bases that come with two or more seeds (``paper-s0``, ``paper-s1``)."""
    groups: dict[str, list[str]] = {}
    for method in methods:
        found = SEEDED.match(method)
        if found:
            groups.setdefault(found["base"], []).append(method)
    return {base: members for base, members in groups.items() if len(members) >= 2}


def seed_means(rows: dict) -> dict:
    """``rows`` ({method: {k: {metric: value}}}, e.g. ``overall``) with each seed group replaced, where its first
    member stood, by ``<base> (n seeds)``: per k and metric the mean over the seeds and their ``<metric>_min`` /
    ``<metric>_max``. A value one seed lacks leaves the mean empty."""
    groups = seed_groups(list(rows))
    member_of = {m: base for base, members in groups.items() for m in members}
    out: dict = {}
    for method, by_k in rows.items():
        base = member_of.get(method)
        if base is None:
            out[method] = by_k
            continue
        name = f"{base} ({len(groups[base])} seeds)"
        if name in out:
            continue
        members = [rows[m] for m in groups[base]]
        out[name] = {}
        for k in by_k:
            cell = {}
            for metric in by_k[k]:
                values = [m.get(k, {}).get(metric) for m in members]
                ok = all(finite(v) for v in values)
                cell[metric] = sum(values) / len(values) if ok else None
                cell[f"{metric}_min"], cell[f"{metric}_max"] = (min(values), max(values)) if ok else (None, None)
            out[name][k] = cell
    return out


def fmt(value, digits: int) -> str:
    return "–" if not finite(value) else f"{value:.{digits}f}"


def markdown_table(rows: dict, methods: list[str], ks: list[str], cell) -> list[str]:
    """Lines of one Markdown table: a row per k, a column per method, ``cell(rows[method][k])`` in each."""
    lines = ["| k | " + " | ".join(methods) + " |", "|---:|" + "---:|" * len(methods)]
    for k in ks:
        lines.append(f"| {k} | " + " | ".join(cell(rows[m][k]) if k in rows.get(m, {}) else "–" for m in methods)
                     + " |")
    return lines


def family_section(name: str, deblur: dict, blur: dict, ks: list[str], spec: dict) -> list[str]:
    grid = spec["grid"]
    lines = [f"## {name}{' (held out)' if spec['held_out'] else ''}", "",
             f"{spec['model']} PSF, NA {spec['na'][0]}–{spec['na'][1]}, plane 0 at {grid['defocus_um']} µm defocus "
             f"(geometric blur radius {grid['blur_radius_px'][0]}–{grid['blur_radius_px'][1]} px; 80 % of the "
             f"light within {spec['plane0_r80_px']} px, mean over fields), {spec['fields']} field(s).", "",
             "PSNR dB / SSIM / F1:", ""]
    methods = list(deblur)

    def first(cell):
        return " / ".join(fmt(cell[m]["mean"], d) for m, d in (("psnr", 2), ("ssim", 3), ("f1", 3)))

    lines += markdown_table(deblur, methods, ks, first)
    lines += ["", "Intensity fidelity (median |Σ out − Σ truth| / Σ truth per nucleus) / count error "
                  "(found − true)/true:", ""]
    lines += markdown_table(deblur, methods, ks, lambda c: f"{fmt(c['intensity_error']['mean'], 3)} / "
                                                           f"{fmt(c['count_error']['mean'], 3)}")
    if blur:
        lines += ["", "Blur synthesis, Eq. 2 (z16, z0) at plane k vs the real plane k, PSNR dB / SSIM:", ""]
        lines += markdown_table(blur, list(blur), ks, lambda c: f"{fmt(c['psnr']['mean'], 2)} / "
                                                                 f"{fmt(c['ssim']['mean'], 3)}")
    return lines + [""]


def markdown(result: dict) -> str:
    """bench_real.md: the settings, the mean over families, and one section per family."""
    ks = [str(k) for k in result["ks"]]
    s = result["settings"]
    smoke = "; SMOKE (a pipeline check, not a measurement)" if s["smoke"] else ""
    lines = [f"# Real-content benchmark: {result['split']} split", "",
             f"{result['date']} on {result['machine']['cpu']} (torch {result['machine']['torch']}, device "
             f"{s['device']}); seed {s['seed']}; {s['fields']} field(s) per family, classical fits on "
             f"{s['fit_fields']} train field(s){smoke}.",
             "", "Pairs (0, k) → 16. PSNR and SSIM after a per-image least-squares gain/offset fit to the true "
             "in-focus field (scaled to [0, 1] by its min and max), mean per field. F1: the fixed classical "
             f"segmentation (Otsu + watershed) matched to the masks at IoU > 0.5; on the truth itself it scores "
             f"{fmt(result['truth_segmentation']['f1']['mean'], 3)} (the ceiling).", "",
             "## All families (mean of the family means): PSNR dB / SSIM / F1", ""]
    every = result["overall"]
    lines += markdown_table(every, list(every), ks, lambda c: " / ".join(
        fmt(c[m], d) for m, d in (("psnr", 2), ("ssim", 3), ("f1", 3))))
    lines.append("")
    means = seed_means(every)
    seeded = [m for m in means if m not in every]
    if seeded:
        lines += ["## Trained models, mean over seeds: PSNR dB (lowest–highest seed) / SSIM", ""]
        lines += markdown_table(means, seeded, ks, lambda c: f"{fmt(c['psnr'], 2)} ({fmt(c['psnr_min'], 2)}–"
                                                             f"{fmt(c['psnr_max'], 2)}) / {fmt(c['ssim'], 3)}")
        lines.append("")
    for name in result["deblur"]:
        lines += family_section(name, result["deblur"][name], result["blur"].get(name, {}), ks,
                                result["families"][name])
    return "\n".join(lines)


def write_markdown(path: Path, result: dict) -> Path:
    atomic_write_bytes(path, markdown(result).encode())
    return path


def write_plots(out: Path, result: dict) -> list[str]:
    """<metric>_vs_k.png (mean over families; a trained model's seeds as their mean) and <family>/<metric>_vs_k.png
    (every method) for PSNR, SSIM and F1."""
    ks = result["ks"]
    paths = []
    every = seed_means(result["overall"])
    for metric, ylabel in PLOTTED.items():
        series = {m: [every[m][str(k)][metric] for k in ks] for m in every}
        paths.append(save_line_plot(ks, series, out / f"{metric}_vs_k.png", xlabel="k (pair (0, k) → 16)",
                                    ylabel=ylabel, title=f"real fields, {result['split']} split, mean over families"))
        for family, by_method in result["deblur"].items():
            series = {m: [by_k.get(str(k), {}).get(metric, {}).get("mean") for k in ks]
                      for m, by_k in by_method.items()}
            paths.append(save_line_plot(ks, series, out / family / f"{metric}_vs_k.png", xlabel="k (pair (0, k) → 16)",
                                        ylabel=ylabel, title=f"real fields, {result['split']} split, {family}"))
    return [str(p.relative_to(out)) for p in paths]  # relative to the report's folder: no path of this machine
