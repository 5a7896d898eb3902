"""The two dock widgets: Deblur (Eq. 3) and Blur synthesis (Eq. 2), both on ``inference.Predictor``.

Each takes its two planes either from two image layers or from one z-stack layer — [Z, Y, X], or [C, Z, Y, X]
and a channel — and two z indices (``PairInputs``), a checkpoint file, and folded Advanced options (tile, device);
the run itself is ``panel.JobPanel``'s thread worker. Deblur's target defaults to auto, the focus found in the
stack (``inference.alphas``, as ``blurlatent deblur``), which it shows after the run. The deblurred image lands on
the input's scale and translate; the blur levels form one stack whose slider walks α (the α values are in its
name and metadata).
"""

from __future__ import annotations

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, LineEdit, RadioButtons, SpinBox

from blurlatent.bbbc006 import IN_FOCUS_PLANE
from blurlatent.errors import UsageError
from blurlatent.inference.alphas import AUTO
from blurlatent.napari.jobs import (
    BlurRequest,
    DeblurRequest,
    channel_axis,
    checkpoint_path,
    layer_channel,
    layer_plane,
    parse_alphas,
)
from blurlatent.napari.panel import JobPanel, image_choice, layer_data, placement

TWO_LAYERS, STACK = "two layers", "stack"
MAX_Z = 9999


class PairInputs:
    """Two planes of one field: two image layers, or one stack layer — [Z, H, W], or [C, Z, H, W] and a channel —
    and two z indices."""

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
        self.channel = ComboBox(label="channel", choices=self.channel_choices, nullable=False,
                                tooltip="The channel of a 4-D stack layer: its axis labelled c, else its first axis "
                                        "[C, Z, Y, X]. The blurlatent reader (File > Open with Plugin) opens each "
                                        "channel of a file as its own layer, scaled in µm")
        self.stack.changed.connect(self.on_stack)
        self.widgets = [self.source, self.stack, self.channel, self.first, self.second, self.z_first, self.z_second]

    def channel_choices(self, _widget=None) -> list[tuple[str, int]]:
        """``c0``, ``c1``, … of the chosen stack layer when it is 4-D; none otherwise."""
        layer = self.stack.value
        if layer is None or layer.ndim != 4:
            return []
        return [(f"c{c}", c) for c in range(layer_data(layer).shape[channel_axis(layer.axis_labels)])]

    def on_stack(self, _value=None) -> None:
        self.channel.reset_choices()
        self.channel.visible = self.from_stack() and bool(self.channel.choices)

    def from_stack(self) -> bool:
        return self.source.value == STACK

    def show(self, z_needed: bool = False) -> None:
        """Show the stack or the two layer drop-downs; the z boxes for a stack or when ``z_needed``."""
        self.stack.visible = self.from_stack()
        self.first.visible = self.second.visible = not self.from_stack()
        self.z_first.visible = self.z_second.visible = self.from_stack() or z_needed
        self.on_stack()

    def stack_data(self):
        """The stack layer and its [Z, H, W] data: the chosen channel of a 4-D layer (a view: nothing is read)."""
        layer = chosen(self.stack, "stack layer")
        data = layer_data(layer)
        channel = self.channel.value if data.ndim == 4 else None
        return layer, layer_channel(data, channel_axis(layer.axis_labels), channel or 0), channel

    def read(self):
        """(first plane, second plane, the layer whose placement the output takes, a description)."""
        if self.from_stack():
            layer, data, channel = self.stack_data()
            za, zb = self.z_first.value, self.z_second.value
            a = layer_plane(data, za, f"{self.names[0]} z")
            b = layer_plane(data, zb, f"{self.names[1]} z")
            return a, b, layer, f"{layer.name}{'' if channel is None else f' c{channel}'} z={za}, z={zb}"
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
        # the last run's target (the focus found, for auto) and α, as `blurlatent deblur` prints them
        self.found = Label(label="last run", value="target auto: the focus is found in the stack when run")
        form = Container(widgets=[*self.inputs.widgets, self.alpha_from, self.target, self.alpha, self.checkpoint,
                                  self.found])
        super().__init__(napari_viewer, form)
        self.inputs.source.changed.connect(self.update_form)
        self.alpha_from.changed.connect(self.update_form)
        self.update_form()

    def update_form(self, _value=None) -> None:
        by_planes = self.alpha_from.value == "planes"
        self.inputs.show(z_needed=by_planes)
        self.target.visible = by_planes
        self.alpha.visible = not by_planes

    def report(self, outcome):
        """``JobPanel.report``, and the focus found and α of a run that added a layer, in ``found``."""
        layer = super().report(outcome)
        if layer is not None:
            self.found.value = "; ".join(layer.metadata.get("summary", []))
        return layer

    def make_job(self) -> DeblurRequest:
        a, b, where, source = self.inputs.read()
        by_planes, in_stack = self.alpha_from.value == "planes", self.inputs.from_stack()
        planes = (self.inputs.z_first.value, self.inputs.z_second.value) if by_planes else None
        return DeblurRequest(a, b, checkpoint_path(self.checkpoint.value),
                             alpha=None if by_planes else self.alpha.value, planes=None if in_stack else planes,
                             target=self.target.value if by_planes else None, z=planes if in_stack else None,
                             stack=self.inputs.stack_data()[1] if in_stack and by_planes else None,
                             config=self.config(),
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
