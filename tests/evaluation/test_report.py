"""report: the typed report as report.json, report.md and rich tables, and the report folder's policy."""

import json

import pytest
from helpers.eval_data import small_report
from rich.console import Console

from blurlatent.errors import UsageError
from blurlatent.evaluation.columns import ROWS
from blurlatent.evaluation.plan import Examples, LatentSamples
from blurlatent.evaluation.report import format_value as fmt
from blurlatent.evaluation.report import markdown, rich_tables
from blurlatent.evaluation.report_folder import write_report_folder


@pytest.fixture(scope="module")
def report():
    return small_report()


def test_to_dict_is_plain_json_with_string_keys_and_no_infinities(report):
    d = report.to_dict()
    text = json.dumps(d, allow_nan=False)  # inf (identical images) became null
    assert json.loads(text) == d
    assert list(d) == ["format_version", "config", "checkpoints", "columns", "rows", "summary", "best", "per_plane",
                       "per_field", "figures"]
    assert report.column("perfect").summary["psnr_deblur_quality_mean"] == float("inf")
    assert d["summary"]["perfect"]["psnr_deblur_quality_mean"] is None
    assert d["config"]["planes"] == {"target": 16, "far": 0, "between": [8, 12]}
    assert d["config"]["alpha_synth"] == {"8": 0.5, "12": 0.75}
    assert d["config"]["alpha_deblur"] == {"8": 0.5, "12": 0.25}
    assert d["config"]["baselines"]["12"]["sigma"] == 1.0 and d["config"]["image_size"] == [16, 16]
    assert d["columns"][1] == {"name": "less-blurry input x_k", "kind": "baseline", "tasks": ["deblur"]}
    assert [r["key"] for r in d["rows"]] == [r.key for r in ROWS]
    assert set(d["per_field"]["weak"]["f0"]) == {"blur", "deblur", "lds", "apd", "psnr_recon_sharp"}
    assert set(d["per_field"]["less-blurry input x_k"]["f0"]) == {"deblur"}
    assert "psnr_deblur" not in d["per_field"]["less-blurry input x_k"]["f0"]["deblur"]["8"]
    assert d["per_plane"]["weak"]["deblur_per_k"]["12"]["alpha"] == 0.25
    assert d["per_plane"]["less-blurry input x_k"]["blur_per_plane"] == {}
    assert d["best"]["psnr_deblur_quality_mean"] and "perfect" not in d["best"]["psnr_deblur_quality_mean"]


def test_fmt():
    assert fmt(None) == "n/a"
    assert fmt(12.345) == "12.35" and fmt(0.5) == "0.5000" and fmt(0.0) == "0.0000"
    assert fmt(1.234e-5) == "1.23e-05"
    ffl = next(r for r in ROWS if r.key == "ffl_blur")
    assert fmt(2e-4, ffl) == "2.0000"  # FFL is shown ×10⁴


def test_markdown_and_rich_tables_show_the_same_cells(report):
    md = markdown(report)
    assert "> FID unavailable: no weights here" in md
    assert "| 12 | 0.250 | " in md  # per-k table: k, α
    assert "`weak` = `runs/weak/best.pt` (epoch 3, sha256 abababababab)" in md
    assert "| 12 | 1.000 | 0.900 | 0.050 | 10 | 0.01 |" in md  # fitted baselines
    lds = next(line for line in md.splitlines() if "LDS (Eq. 6)" in line and line.startswith("|"))
    assert lds.split("|")[3].strip() == f"**{fmt(report.column('weak').summary['lds'])}**"
    assert lds.split("|")[4].strip() == "n/a"
    console = Console(record=True, width=250)
    for table in rich_tables(report):
        console.print(table)
    screen = console.export_text()
    assert "LDS (Eq. 6) ↑" in screen and "0.250" in screen and fmt(report.column("weak").summary["lds"]) in screen


def test_report_folder_policy(report, tmp_path):
    out = tmp_path / "report"
    write_report_folder(out, report, Examples(0), LatentSamples(), force=False)
    assert report.figures == ["figures/psnr_deblur_quality_vs_k.png"]
    assert json.loads((out / "report.json").read_text()) == report.to_dict()
    assert "![psnr_deblur_quality_vs_k](figures/psnr_deblur_quality_vs_k.png)" in (out / "report.md").read_text()
    with pytest.raises(UsageError, match="already exists .*pass force=True"):
        write_report_folder(out, report, Examples(0), LatentSamples(), force=False)
    (out / "report.md").write_text("old")
    write_report_folder(out, report, Examples(0), LatentSamples(), force=True)  # an earlier report: replaced
    assert (out / "report.md").read_text() != "old"
    (out / "data.csv").write_text("mine")
    with pytest.raises(UsageError, match="is not a blurlatent report .*data.csv"):
        write_report_folder(out, report, Examples(0), LatentSamples(), force=True)
    assert (out / "data.csv").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    write_report_folder(tmp_path / "empty", report, Examples(0), LatentSamples(), force=False)  # empty: fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="exists and is a file"):
        write_report_folder(tmp_path / "file", report, Examples(0), LatentSamples(), force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "report"]  # no temp folders left
