"""The synthetic data generator: in-focus nuclei and actin scenes (``scene``), a calibrated widefield defocus PSF and
camera (``optics``), and fields written in the BBBC006 layout (``generator``); for training, each field's own
microscope (``random_optics``) and scene style (``random_scene``), drawn from documented ranges.

The modules are imported where they are used (torch stays out of ``blurlatent --help``)."""

__all__ = ["scene", "optics", "random_optics", "random_scene", "generator"]
