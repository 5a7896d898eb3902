"""The two dock widgets: Deblur (Eq. 3) and Blur synthesis (Eq. 2), both on ``inference.Predictor``.

Each takes its two planes either from two image layers or from one z-stack layer and two z indices
(``PairInputs``), a checkpoint file, and folded Advanced options (tile, device); the run itself is
``panel.JobPanel``'s thread worker. The deblurred image lands on the input's scale and translate; the
blur levels form one stack whose slider walks α (the α values are in its name and metadata).
"""

from __future__ import annotations

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import Container, FileEdit, FloatSpinBox, LineEdit, RadioButtons, SpinBox

from blurlatent.bbbc006 import IN_FOCUS_PLANE
from blurlatent.errors import UsageError
from blurlatent.inference.alphas import AUTO
from blurlatent.napari.jobs import BlurRequest, DeblurRequest, checkpoint_path, layer_plane, parse_alphas
from blurlatent.napari.panel import JobPanel, image_choice, layer_data, placement

TWO_LAYERS, STACK = "two layers", "stack"
MAX_Z = 9999


class PairInputs:
    """Two planes of one field: two image layers, or one [Z, H, W] stack layer and two z indices."""

    def __init__(self, viewer, first: str, second: str, z_first: int, z_second: int):
        self.names = (first, second)
        # the choice is set after construction: magicgui's typed keywords leave ``value`` out of RadioButtons'
        self.source = RadioButtons(label="input", choices=[STACK, TWO_LAYERS], orientation="horizontal")
        self.source.value = STACK
        self.first = image_choice(viewer, f"{first} layer")
        self.second = image_choice(viewer, f"{second} layer")
        self.stack = image_choice(viewer, "stack layer")
        self.z_first = SpinBox(label=f"{first} z", value=z_first, min=0, max=MAX_Z)
        self.z_second = SpinBox(label=f"{second} z", value=z_second, min=0, max=MAX_Z)
        self.widgets = [self.source, self.stack, self.first, self.second, self.z_first, self.z_second]

    def from_stack(self) -> bool:
        return self.source.value == STACK

    def show(self, z_needed: bool = False) -> None:
        """Show the stack or the two layer drop-downs; the z boxes for a stack or when ``z_needed``."""
        self.stack.visible = self.from_stack()
        self.first.visible = self.second.visible = not self.from_stack()
        self.z_first.visible = self.z_second.visible = self.from_stack() or z_needed

    def read(self):
        """(first plane, second plane, the layer whose placement the output takes, a description)."""
        if self.from_stack():
            layer = chosen(self.stack, "stack layer")
            data = layer_data(layer)
            za, zb = self.z_first.value, self.z_second.value
            a = layer_plane(data, za, f"{self.names[0]} z")
            b = layer_plane(data, zb, f"{self.names[1]} z")
            return a, b, layer, f"{layer.name} z={za}, z={zb}"
        la = chosen(self.first, f"{self.names[0]} layer")
        lb = chosen(self.second, f"{self.names[1]} layer")
        return np.asarray(layer_data(la)), np.asarray(layer_data(lb)), lb, f"{la.name}, {lb.name}"


def chosen(combo, what: str):
    if combo.value is None:
        raise UsageError(f"{what}: open an image first (e.g. File > Open Sample > blurlatent)")
    return combo.value


def checkpoint_field() -> FileEdit:
    return FileEdit(label="checkpoint", mode=FileDialogMode.EXISTING_FILE, filter="*.pt", nullable=True,
                    tooltip="A .pt written by `blurlatent train`, or a built-in model's name (w1); empty: the "
                            "built-in w1 model (`blurlatent models`)")


class DeblurWidget(JobPanel):
    """Recover the in-focus plane from two defocused ones (Eq. 3), as ``blurlatent deblur`` does."""

    action = "deblur"

    def __init__(self, napari_viewer):
        self.inputs = PairInputs(napari_viewer, "blurriest", "less-blurry", 0, 8)
        self.alpha_from = RadioButtons(label="α from", choices=["planes", "value"], orientation="horizontal")
        self.alpha_from.value = "planes"
        self.target = LineEdit(label="target z", value=AUTO, tooltip="The in-focus plane, α = (target − less-blurry) "
                               "/ (target − blurriest): auto, the focus found in the stack layer, or a plane number "
                               "(two layers need a number)")
        self.alpha = FloatSpinBox(label="α", value=0.5, min=0.0, max=0.999, step=0.05,
                                  tooltip="Eq. 3's α, 0 <= α < 1")
        self.checkpoint = checkpoint_field()
        form = Container(widgets=[*self.inputs.widgets, self.alpha_from, self.target, self.alpha, self.checkpoint])
        super().__init__(napari_viewer, form)
        self.inputs.source.changed.connect(self.update_form)
        self.alpha_from.changed.connect(self.update_form)
        self.update_form()

    def update_form(self, _value=None) -> None:
        by_planes = self.alpha_from.value == "planes"
        self.inputs.show(z_needed=by_planes)
        self.target.visible = by_planes
        self.alpha.visible = not by_planes

    def make_job(self) -> DeblurRequest:
        a, b, where, source = self.inputs.read()
        by_planes, in_stack = self.alpha_from.value == "planes", self.inputs.from_stack()
        planes = (self.inputs.z_first.value, self.inputs.z_second.value) if by_planes else None
        return DeblurRequest(a, b, checkpoint_path(self.checkpoint.value),
                             alpha=None if by_planes else self.alpha.value, planes=None if in_stack else planes,
                             target=self.target.value if by_planes else None, z=planes if in_stack else None,
                             stack=layer_data(where) if in_stack and by_planes else None, config=self.config(),
                             placement=placement(where), source=source)


class BlurWidget(JobPanel):
    """Synthesize defocus between a sharp and a blurry plane (Eq. 2), as ``blurlatent blur`` does."""

    action = "blur"

    def __init__(self, napari_viewer):
        self.inputs = PairInputs(napari_viewer, "sharp", "blurry", IN_FOCUS_PLANE, 0)
        self.levels = RadioButtons(label="levels", choices=["number", "α list"], orientation="horizontal")
        self.levels.value = "number"
        self.steps = SpinBox(label="number", value=7, min=1, max=64,
                             tooltip="N evenly spaced levels α = 1/(N+1) … N/(N+1)")
        self.alphas = LineEdit(label="α list", value="0.25, 0.5, 0.75", tooltip="1 = sharp, 0 = blurry")
        self.checkpoint = checkpoint_field()
        form = Container(widgets=[*self.inputs.widgets, self.levels, self.steps, self.alphas, self.checkpoint])
        super().__init__(napari_viewer, form)
        self.inputs.source.changed.connect(self.update_form)
        self.levels.changed.connect(self.update_form)
        self.update_form()

    def update_form(self, _value=None) -> None:
        self.inputs.show()
        self.steps.visible = self.levels.value == "number"
        self.alphas.visible = not self.steps.visible

    def make_job(self) -> BlurRequest:
        a, b, where, source = self.inputs.read()
        by_list = self.levels.value == "α list"
        return BlurRequest(a, b, checkpoint_path(self.checkpoint.value),
                           alphas=parse_alphas(self.alphas.value) if by_list else None,
                           steps=None if by_list else self.steps.value,
                           config=self.config(),
                           placement=placement(where), source=source)
