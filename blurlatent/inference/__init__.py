"""Using a trained model: ``predictor`` holds ``Predictor``, THE forward path every caller uses (CLI, API, napari,
evaluation, training strips); ``inputs`` reads the two planes of a job; ``alphas`` says where Eq. 3's α comes
from (given, or planes toward a target: a plane, or the focus found in the stack); ``jobs`` runs file and folder jobs;
``builtin`` the shipped models; ``shipping`` turns a checkpoint into one; ``memory`` what a job holds, estimated
and checked before work.

The modules are imported where they are used (torch stays out of ``blurlatent --help``)."""

__all__ = ["predictor", "inputs", "alphas", "jobs", "builtin", "shipping", "memory"]
