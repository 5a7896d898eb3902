"""A checkpoint as a bioimage.io model package: its spec description (``description``) and the package (``package``;
needs the ``export`` extra).

The modules are imported where they are used (torch stays out of ``blurlatent --help``)."""

__all__ = ["description", "package"]
