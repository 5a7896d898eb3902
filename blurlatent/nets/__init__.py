"""The networks and what they need to run: Eq. 2, Eq. 3 and α (``latent``), the paper's autoencoder and the arch
dispatch (``autoencoder``), the multiscale autoencoder (``multiscale``), tiling, device and precision
(``device``), and the checkpoint format (``checkpoint``). Imports nothing from training, inference or evaluation.

The modules are imported where they are used (torch stays out of ``blurlatent --help``)."""

__all__ = ["latent", "autoencoder", "multiscale", "tiling", "device", "checkpoint"]
