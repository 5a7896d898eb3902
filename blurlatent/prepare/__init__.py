"""From plane files or one's own z-stacks to the memory-mapped store training reads: finding fields (``discover``),
splits and crops (``crops``), focus measures (``focus``), own stacks (``own_stacks``), the builder (``builder``)
and the store itself (``store``).

The modules are imported where they are used (torch stays out of ``blurlatent --help``)."""

__all__ = ["discover", "crops", "focus", "own_stacks", "builder", "store"]
