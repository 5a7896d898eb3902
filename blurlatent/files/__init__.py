"""Files in and out, and the output policy: a command writes atomically, never replaces an input, and replaces only
what it can prove it wrote (``atomic``: temp-then-rename writes, full disk, signals; ``output_folders``: the
marker, locks and --force for folders). ``images`` reads and writes planes (TIFF, PNG), ``stacks`` z-stacks with
their metadata (multi-page, ImageJ, OME-TIFF), ``axes`` a file's axes and channels, ``planes`` which planes of a
file are one z-stack (and reading only some), ``omezarr`` OME-Zarr,
``provenance`` what made an output (and its reader), ``workers`` the decoding processes. Imports nothing of
blurlatent but its errors and version.

The modules are imported where they are used (torch stays out of ``blurlatent --help``)."""

__all__ = ["atomic", "output_folders", "images", "stacks", "axes", "planes", "omezarr", "provenance", "workers"]
