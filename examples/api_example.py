"""The Python API on one pair of planes of a field: synthesize blur levels, then deblur.

    python examples/api_example.py runs/weak/best.pt z00/field.tif z08/field.tif

Any size and dtype works (8/16-bit or float grayscale); outputs keep the input's dtype and scale.
"""

import sys

import numpy as np

import blurlatent
from blurlatent.files.images import read_image, write_image
from blurlatent.intensity import total_above_background
from blurlatent.nets.latent import alpha_from_planes

ckpt, blurriest_path, less_blurry_path = sys.argv[1:4]
model = blurlatent.load_model(ckpt)  # an inference.Predictor on CUDA when there is one; knows the normalization
blurriest, less_blurry = read_image(blurriest_path), read_image(less_blurry_path)

# Eq. 3: planes 0 and 8 toward focus 16 -> alpha = (16 - 8) / (16 - 0) = 0.5
alpha = alpha_from_planes(0, 8, 16)
sharp = blurlatent.deblur(model, blurriest, less_blurry, alpha)  # [H, W], same dtype, light conserved
write_image("deblurred.tif", sharp, force=True)

# Eq. 2: three levels between the recovered focus (alpha = 1) and the blurriest plane (alpha = 0)
levels = blurlatent.blur(model, sharp, blurriest, [0.25, 0.5, 0.75])  # [3, H, W]
write_image("levels.tif", levels, force=True)  # one page per level

print(f"deblurred {sharp.shape} {sharp.dtype}: max {sharp.max()} (blurriest max {blurriest.max()}); "
      f"levels {levels.shape}, totals above background "
      + ", ".join(f"{total_above_background(x):.3g}" for x in np.concatenate([[sharp], levels, [blurriest]])))
