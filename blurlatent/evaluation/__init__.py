"""Scoring models against the truth and against classical baselines: the plane plan (``plan``), metrics, baselines,
per-column scoring (``columns``), the report and its figures, and the loop (``loop``).

The modules are imported where they are used (torch stays out of ``blurlatent --help``)."""

__all__ = ["plan", "metrics", "baselines", "columns", "report", "report_figures", "loop"]
