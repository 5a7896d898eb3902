"""Sample data: a small synthetic nuclei z-stack, made on the fly by ``synth`` (nothing on disk).

All 34 BBBC006 planes (z00 … z33, 2 µm apart, in focus at z16) of one 256x256 field of the w1 (nuclei)
channel, uint16 with the calibrated camera noise, quick enough to make on demand. Its scale is the
dataset's (2 µm, 0.645 µm, 0.645 µm), so the widgets' defaults (planes 0 and 8 toward 16) apply.
"""

from __future__ import annotations

from blurlatent.bbbc006 import IN_FOCUS_PLANE, N_PLANES, PLANE_STEP_UM
from blurlatent.synth.generator import render_field
from blurlatent.synth.optics import PIXEL_UM

SIZE = (256, 256)  # (width, height) px
SEED = 0  # 18 nuclei in the field


def synthetic_stack() -> list[tuple]:
    """[(stack [34, 256, 256] uint16, layer kwargs)] for napari's File > Open Sample."""
    planes = list(range(N_PLANES))
    images, truth = render_field(SEED, 0, SIZE, planes, ["w1"])
    meta = {"planes": planes, "in_focus_plane": IN_FOCUS_PLANE, "channel": "w1", "seed": SEED, "truth": truth,
            "made_by": "blurlatent.synth.generator.render_field"}
    kwargs = {"name": "synthetic z-stack (w1)", "scale": (PLANE_STEP_UM, PIXEL_UM, PIXEL_UM),
              "axis_labels": ("z", "y", "x"), "metadata": meta}
    return [(images["w1"], kwargs, "image")]
