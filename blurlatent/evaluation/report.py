"""The evaluation report: a typed object, and its JSON, Markdown, rich tables and folder.

``Report`` holds every number ``evaluate`` measures: what was evaluated (``ReportConfig``), the
checkpoints, one ``scores.ColumnResult`` per model or baseline (its summary, one value per
``scores.ROWS`` key, per-plane and per-k rows, per-field scores) and the best column of each row.
``Report.to_dict()`` is report.json; ``markdown`` is report.md; ``rich_tables`` are the screen tables;
``write_report_folder`` writes all three (and the figures) under THE output-folder policy of ``files``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from blurlatent.errors import Message
from blurlatent.evaluation.baselines import BlurFit
from blurlatent.evaluation.columns import ROWS, ColumnResult, Row
from blurlatent.evaluation.plan import PlanePlan
from blurlatent.files.atomic import json_safe

FORMAT_VERSION = 1
PSNR_NOTE = ("'pooled' = the paper's torchmetrics PSNR (one figure over the set, range = max−min of the targets); "
             "'mean per image' = mean of per-image PSNRs with range 1 (images in [0, 1])")


# --- the report ---------------------------------------------------------------------------------------


@dataclass
class FidInfo:
    available: bool
    note: str | Message | None  # why FID is unavailable, with the fix (a Message naming fid_weights)
    extractor: str
    weights: str | None


@dataclass
class CheckpointInfo:
    name: str  # the column name
    path: str
    sha256: str
    epoch: int | None
    config: dict
    normalize: str | None  # the training data's normalization


@dataclass
class ReportConfig:
    """What was evaluated and how: ``plan`` gives the planes and α; ``baselines`` the fits per plane."""

    store: str
    channel: str
    whole: bool
    device: str
    batch_size: int
    plan: PlanePlan
    fields: int
    image_size: tuple[int, int]  # (H, W)
    store_normalize: str | None
    fid: FidInfo
    baselines: dict[int, BlurFit]
    baseline_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "store": self.store, "channel": self.channel, "whole": self.whole, "device": self.device,
            "batch_size": self.batch_size,
            "planes": {"target": plan.target, "far": plan.far, "between": list(plan.between)},
            "alpha_synth": {n: plan.synth_alpha(n) for n in plan.between},
            "alpha_deblur": {k: plan.deblur_alpha(k) for k in plan.between},
            "fields": self.fields, "image_size": list(self.image_size), "store_normalize": self.store_normalize,
            "fid": {**asdict(self.fid), "note": None if self.fid.note is None else str(self.fid.note)},
            "baselines": {k: asdict(v) for k, v in self.baselines.items()},
            "baseline_note": self.baseline_note, "psnr": PSNR_NOTE,
        }


@dataclass
class Report:
    """The whole evaluation. ``best``: ROWS key → names of the columns holding the best value (ties all);
    ``figures``: paths relative to the report folder, set when the folder is written."""

    config: ReportConfig
    checkpoints: list[CheckpointInfo]
    columns: list[ColumnResult]
    best: dict[str, list[str]]
    figures: list[str] = field(default_factory=list)

    def column(self, name: str) -> ColumnResult:
        """The column called ``name``; KeyError when there is none."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def columns_for(self, task: str) -> list[ColumnResult]:
        """The columns that score ``task`` ("blur", "deblur" or "latent"), in table order."""
        return [c for c in self.columns if task in c.tasks]

    def to_dict(self) -> dict[str, Any]:
        """report.json: plain JSON data (int keys as strings, non-finite numbers as None)."""
        return json_safe({
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "checkpoints": [asdict(c) for c in self.checkpoints],
            "columns": [{"name": c.name, "kind": c.kind, "tasks": list(c.tasks)} for c in self.columns],
            "rows": [asdict(r) for r in ROWS],
            "summary": {c.name: c.summary for c in self.columns},
            "best": self.best,
            "per_plane": {c.name: {"blur_per_plane": {n: asdict(r) for n, r in c.blur_per_plane.items()},
                                   "deblur_per_k": {k: asdict(r) for k, r in c.deblur_per_k.items()}}
                          for c in self.columns},
            "per_field": {c.name: {f: s.to_dict() for f, s in c.per_field.items()} for c in self.columns},
            "figures": list(self.figures),
        })


# --- tables -----------------------------------------------------------------------------------------


def format_value(value: float | None, row: Row | None = None) -> str:
    """A table cell: 'n/a' for None, else the value (× ``row.scale``) with digits by magnitude."""
    if value is None:
        return "n/a"
    value = value * (row.scale if row else 1.0)
    if abs(value) >= 10:
        return f"{value:.2f}"
    if abs(value) >= 0.01 or value == 0:
        return f"{value:.4f}"
    return f"{value:.3g}"  # APD and near-perfect FFL live at 1e-4..1e-6


def table_rows(report: Report) -> list[tuple[str, str, list[tuple[str, bool]]]]:
    """(group, label with arrow, [(cell text, is best)] per column) for every row of the main table."""
    rows = []
    for row in ROWS:
        cells = []
        for col in report.columns:
            v = col.summary.get(row.key)
            cells.append((format_value(v, row), col.name in report.best.get(row.key, []) and v is not None))
        if all(t == "n/a" for t, _ in cells) and not row.key.startswith("fid"):
            continue
        rows.append((row.group, f"{row.label} {'↑' if row.higher_is_better else '↓'}", cells))
    return rows


def per_k_cells(report: Report, k: int, pooled: bool = False) -> list[str]:
    """The per-k table's cells for input plane ``k``: PSNR-deblur-quality (mean, and pooled in brackets)."""
    cells = []
    for col in report.columns_for("deblur"):
        r = col.deblur_per_k.get(k)
        if r is None:
            cells.append("n/a")
        else:
            mean = format_value(r.psnr_deblur_quality)
            cells.append(f"{mean} ({format_value(r.psnr_deblur_quality_pooled)})" if pooled else mean)
    return cells


def rich_tables(report: Report) -> list:
    """Rich tables for the screen: the main table (best bold) and the per-k PSNR-deblur-quality table."""
    # rich is only needed when a table is shown; the library path (and `--help`) does without it.
    from rich.markup import escape  # channel and column (checkpoint) names are the user's: never markup
    from rich.table import Table

    cfg = report.config
    main = Table(title=f"blurlatent evaluate — {escape(cfg.channel)}, {cfg.fields} test "
                       f"{'fields' if cfg.whole else 'crops'}")
    main.add_column("group", style="dim")
    main.add_column("metric")
    for col in report.columns:
        main.add_column(escape(col.name), justify="right")
    last = None
    for group, label, cells in table_rows(report):
        main.add_row(group if group != last else "", label, *[f"[bold green]{t}[/]" if b else t for t, b in cells])
        last = group
    perk = Table(title="PSNR-deblur-quality (mean per image) vs k")
    perk.add_column("k")
    perk.add_column("α")
    for col in report.columns_for("deblur"):
        perk.add_column(escape(col.name), justify="right")
    for k in cfg.plan.between:
        perk.add_row(str(k), f"{cfg.plan.deblur_alpha(k):.3f}", *per_k_cells(report, k))
    return [main, perk]


# --- report.md --------------------------------------------------------------------------------------


def _md_table(header: list[str], lines: list[list[str]]) -> list[str]:
    """A Markdown table: two left-aligned columns, the rest right-aligned."""
    out = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    return out + ["| " + " | ".join(cells) + " |" for cells in lines]


def _md_head(report: Report) -> list[str]:
    cfg, plan = report.config, report.config.plan
    lines = ["# blurlatent evaluation report", "",
             f"Store `{cfg.store}`, channel `{cfg.channel}`, {cfg.fields} test "
             f"{'whole fields' if cfg.whole else 'crops'} of {cfg.image_size[1]}×{cfg.image_size[0]} px; "
             f"far plane {plan.far}, target plane {plan.target}, between {list(plan.between)}.", "",
             "Checkpoints: " + "; ".join(f"`{c.name}` = `{c.path}` (epoch {c.epoch}, sha256 {c.sha256[:12]})"
                                         for c in report.checkpoints), ""]
    if not cfg.fid.available:
        lines += [f"> {cfg.fid.note}", ""]
    if cfg.baseline_note:
        lines += [f"> {cfg.baseline_note}", ""]
    return lines


def _md_tables(report: Report) -> list[str]:
    plan = report.config.plan
    lines = ["## Table 1 and 2 — one column per model and baseline, best in **bold**", ""]
    rows, last = [], None
    for group, label, cells in table_rows(report):
        rows.append([group if group != last else "", label, *(f"**{t}**" if b else t for t, b in cells)])
        last = group
    lines += _md_table(["group", "metric", *(c.name for c in report.columns)], rows)
    lines += ["", "n/a: the figure does not apply (e.g. baselines have no reconstruction G(z_n)) or could not be "
              "computed.", ""]
    lines += ["## PSNR-deblur-quality vs k (Fig. 6), mean per image; pooled in brackets", ""]
    rows = [[str(k), f"{plan.deblur_alpha(k):.3f}", *per_k_cells(report, k, pooled=True)] for k in plan.between]
    lines += _md_table(["k", "α", *(c.name for c in report.columns_for("deblur"))], rows)
    lines += ["", "## PSNR-blur-quality per plane n, mean per image", ""]
    blur_cols = report.columns_for("blur")
    rows = [[str(n), f"{plan.synth_alpha(n):.3f}",
             *(format_value(c.blur_per_plane[n].psnr_blur_quality) if n in c.blur_per_plane else "n/a"
               for c in blur_cols)]
            for n in plan.between]
    return lines + _md_table(["n", "α", *(c.name for c in blur_cols)], rows)


def _md_definitions(report: Report) -> list[str]:
    lines = ["", "## Definitions", "",
             "x_n: the real image of plane n (store uint8 / 255, in [0, 1]); z_n = E(x_n); G the decoder.",
             "Blur synthesis, Eq. 2: z'_n = α_n z_16 + (1 − α_n) z_0 with α_n = (n − far)/(16 − far) "
             "for the planes between.",
             "Deblurring, Eq. 3: ẑ_16 = z_k/(1 − α) − α/(1 − α)·z_0 with α = (16 − k)/(16 − far), "
             "for every k between.",
             "PSNR 'pooled' is the paper's (torchmetrics PeakSignalNoiseRatio() with no data range): one figure "
             "over all images, MSE pooled over all pixels and range = max − min of the targets. 'mean per image' "
             "averages per-image PSNRs with range 1. Calibrated figures first fit a·output + b to the truth per "
             "image by least squares.", ""]
    for row in ROWS:
        better = "higher" if row.higher_is_better else "lower"
        lines.append(f"- **{row.label}** ({better} is better): {row.definition}.")
    lines += ["", "Baselines (fitted on the train split, per plane): x_n ≈ gain·Gaussian_σ(x_16) + offset; "
              "Richardson–Lucy and Wiener (scikit-image) deconvolve (x_k − offset)/gain with that Gaussian PSF, "
              "iterations/balance chosen on train.",
              "Two-plane Wiener: the classical counterpart of Eq. 3, one least-squares (multi-frame Wiener) filter "
              f"of both planes (x_{report.config.plan.far} and x_k, each mapped by its gain/offset) with their two "
              "fitted Gaussian PSFs and Wiener's Laplacian prior, balance λ chosen per k on train (best mean PSNR). "
              "Fitted values:", ""]
    lines.append("| plane | σ (px) | gain | offset | RL iterations | Wiener balance | two-plane λ |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for plane, f in report.config.baselines.items():
        cells = [f"{v:.3g}" if v is not None else "—" for v in (f.wiener_balance, f.two_plane_balance)]
        lines.append(f"| {plane} | {f.sigma:.3f} | {f.gain:.3f} | {f.offset:.3f} | {f.rl_iterations or '—'} "
                     f"| {' | '.join(cells)} |")
    return lines


def markdown(report: Report) -> str:
    """report.md: the tables, the per-k and per-plane tables, definitions, fitted baselines, figures."""
    lines = _md_head(report) + _md_tables(report) + _md_definitions(report)
    lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in report.figures] + [""]
    return "\n".join(lines)


# --- the report folder ------------------------------------------------------------------------------







