"""The report folder: report.json, report.md and figures/*.png, written into a temp folder and swapped into place
under THE output-folder policy (``files.output_folders``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from blurlatent.evaluation.plan import Examples, LatentSamples
from blurlatent.evaluation.report import Report, markdown
from blurlatent.evaluation.report_figures import write_report_figures
from blurlatent.files.atomic import make_temp_dir, replace_folder, write_json
from blurlatent.files.output_folders import check_output_folder, write_marker

FIGURES_DIR = "figures"
COMMAND = "evaluate"  # the report folder's output marker signature (``outputs``)


def check_report_folder(out: str | Path, force: bool, inputs=()) -> bool:
    """``outputs.check_output_folder`` for a report: True when an earlier report at ``out`` gets replaced.

    Raises UsageError when ``out`` is a file, an earlier report without ``force``, a folder holding
    anything a report does not (never replaced, even with ``force``), or is or holds one of ``inputs``.
    """
    return check_output_folder(out, COMMAND, force, "a blurlatent report", inputs=inputs)


def write_report_folder(out: str | Path, report: Report, examples: Examples, latents: LatentSamples,
                        force: bool) -> None:
    """Write report.json, report.md and figures/ into a temp folder beside ``out``, then swap it into place.

    Sets ``report.figures``. The folder is checked again just before the swap: it may have appeared
    while the numbers were computed.
    """
    out = Path(out).resolve()
    tmp = make_temp_dir(out)
    try:
        figdir = tmp / FIGURES_DIR
        figdir.mkdir()
        report.figures = [f"{FIGURES_DIR}/{name}" for name in write_report_figures(figdir, report, examples, latents)]
        write_json(tmp / "report.json", report.to_dict())
        (tmp / "report.md").write_text(markdown(report))
        write_marker(tmp, COMMAND)
        check_report_folder(out, force)
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
