"""Training a model from a store: batches (``loader``), Eq. 4 and 5 (``losses``), the run folder and resume rules
(``run_folder``), DDP (``distributed``), per-epoch logs and strips (``logs``) and the loop (``trainer``).

The modules are imported where they are used (torch stays out of ``blurlatent --help``)."""

__all__ = ["loader", "losses", "run_folder", "distributed", "logs", "trainer"]
