"""The report folder: report.json, report.md and figures/*.png, written into a temp folder and swapped into place
under THE output-folder policy (``files.output_folders``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from blurlatent.evaluation.plan import Examples, LatentSamples
from blurlatent.evaluation.report import Report, markdown
from blurlatent.evaluation.report_figures import write_report_figures
from blurlatent.files.atomic import make_temp_dir, replace_folder, write_json
from blurlatent.files.output_folders import check_output_folder, write_marker

REPORT_FILES = ("report.json", "report.md")


FIGURES_DIR = "figures"


COMMAND = "evaluate"  # the report folder's output marker signature (``outputs``)


def foreign_entry(out: Path) -> str | None:
    """The migration path for a report folder without an output marker (``outputs``; written before markers
    existed): the first thing in ``out`` that ``evaluate`` did not write, None when it holds only report.json
    (a JSON object with a format_version), report.md and figures/*.png."""
    try:
        if "format_version" not in json.loads((Path(out) / "report.json").read_text()):
            return "report.json"
    except (OSError, ValueError, TypeError):
        return "report.json" if (Path(out) / "report.json").exists() else sorted(Path(out).iterdir())[0].name
    for entry in sorted(Path(out).iterdir()):
        if entry.name in REPORT_FILES and entry.is_file() and not entry.is_symlink():
            continue
        if entry.name == FIGURES_DIR and entry.is_dir() and not entry.is_symlink():
            stray = next((f for f in sorted(entry.iterdir()) if not (f.is_file() and f.suffix == ".png")), None)
            if stray is None:
                continue
            return f"{FIGURES_DIR}/{stray.name}"
        return entry.name
    return None


def check_report_folder(out: str | Path, force: bool, inputs=()) -> bool:
    """``outputs.check_output_folder`` for a report: True when an earlier report at ``out`` gets replaced.

    Raises UsageError when ``out`` is a file, an earlier report without ``force``, a folder holding
    anything a report does not (never replaced, even with ``force``), or is or holds one of ``inputs``.
    """
    return check_output_folder(out, COMMAND, force, "a blurlatent report", legacy=foreign_entry, inputs=inputs)


def write_report_folder(out: str | Path, report: Report, examples: "Examples", latents: "LatentSamples",
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
