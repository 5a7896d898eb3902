"""blurlatent: defocus blur synthesis and deblurring by linear interpolation in an autoencoder's latent space.

The small public API (numpy in, numpy out, the input's dtype kept)::

    import blurlatent
    model = blurlatent.load_model("runs/weak/best.pt")      # an inference.Predictor
    blurred = blurlatent.blur(model, sharp, blurry, alpha=0.25)
    sharp = blurlatent.deblur(model, blurriest, less_blurry, alpha=0.5)
    sharp = blurlatent.deblur(model, stack, z=(0, 8), axes="ZYX")   # two planes of a z-stack, toward its focus

Heavy modules (torch) are imported lazily so that ``blurlatent --help`` stays instant.
"""

__version__ = "0.2.0"

__all__ = ["__version__", "load_model", "blur", "deblur"]


def __getattr__(name):
    # Lazy: `import blurlatent` must not import torch.
    if name in ("load_model", "blur", "deblur"):
        from blurlatent.inference import predictor as inference
        return getattr(inference, name)
    raise AttributeError(f"module 'blurlatent' has no attribute {name!r}")
