"""The part both widgets share: a form, Run and Cancel, a tile progress bar, and one thread worker.

Run reads the form in the main thread (``make_job``), then a superqt ``FunctionWorker`` (what
``napari.qt.threading``'s workers are; importing that would load napari's window, its vispy canvas and OpenGL,
which headless machines may lack) runs ``jobs.guarded`` so the viewer stays responsive. The Predictor calls
the ``jobs.Ticker`` after every tile: it sends ``(done, total)`` to the progress bar through a Qt signal
(delivered in the main thread) and stops the run at the next tile once Cancel — ``worker.quit()``, napari's
own cancel — was pressed.
Errors become ``napari.utils.notifications.show_error`` with the library's one-line message; a layer
is added only when the job succeeded.
"""

from __future__ import annotations

from collections.abc import Callable

from magicgui.widgets import ComboBox, Container, LineEdit
from napari.layers import Image
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget
from superqt import QCollapsible
from superqt.utils import FunctionWorker

from blurlatent.config import Intensity, choices
from blurlatent.napari.jobs import OUT_DTYPES, Outcome, Placement, Ticker, failure, guarded, inference_config


class Relay(QObject):
    """Carries the tile count from the worker thread to the progress bar in the main thread."""

    progressed = Signal(int, int)


def layer_data(layer: Image):
    """The layer's pixels, full resolution, as stored (numpy, dask, zarr …: a stack's plane is read alone)."""
    return layer.data[0] if layer.multiscale else layer.data


def placement(layer: Image) -> Placement:
    """The layer's last two axes' scale and translate, and its colormap, for the output layer; its pixel size in µm
    where blurlatent's reader recorded one (``reader``: metadata ``pixel_size_um``), for the rescale to the model's."""
    sy, sx = (float(s) for s in layer.scale[-2:])
    ty, tx = (float(t) for t in layer.translate[-2:])
    size = (layer.metadata.get("pixel_size_um") or {}).get("x")
    return Placement((sy, sx), (ty, tx), layer.colormap.name, float(size) if size else None)


def image_choice(viewer, label: str) -> ComboBox:
    """A drop-down of the viewer's image layers (kept current by ``JobPanel.reset_choices``)."""
    def choices(_widget):
        return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Image)]

    return ComboBox(label=label, choices=choices, nullable=False)


class JobPanel(QWidget):
    """Form + Advanced (folded) + Run/Cancel + progress; subclasses build the form and ``make_job``."""

    action = "run"

    def __init__(self, viewer, form: Container):
        super().__init__()
        self.viewer = viewer
        self.form = form
        self.tile = LineEdit(label="tile", value="", tooltip="Tile size in px; empty = auto (whole image up to "
                             "2048 px), 0 = always whole")
        self.device = LineEdit(label="device", value="auto", tooltip="auto, cpu, cuda, cuda:N or mps")
        self.out_dtype = ComboBox(label="output dtype", choices=OUT_DTYPES, value=OUT_DTYPES[0])
        self.intensity = ComboBox(label="intensity", choices=choices(Intensity), value="conserve",
                                  tooltip="conserve: keep the total signal above background; minmax: the input's range")
        self.advanced = QCollapsible("Advanced")
        self.advanced.addWidget(Container(widgets=[self.tile, self.device, self.out_dtype, self.intensity]).native)
        self.run_button = QPushButton(self.action.capitalize())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("tile %v / %m")
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        for widget in (form.native, self.advanced):
            layout.addWidget(widget)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.worker: FunctionWorker[Outcome] | None = None
        self.relay = Relay()
        self.relay.progressed.connect(self.on_progress)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
            event.connect(self.reset_choices)

    def reset_choices(self, _event=None) -> None:
        """Re-read the viewer's layers into the drop-downs (napari also calls this on docked widgets)."""
        self.form.reset_choices()

    def make_job(self) -> Callable[[Ticker], tuple]:
        raise NotImplementedError

    def config(self):
        """The Advanced options as an InferenceConfig (UsageError for a bad tile or option)."""
        return inference_config(self.tile.value, self.device.value, self.out_dtype.value, self.intensity.value)

    def run(self) -> None:
        """Read the form and start the worker; a bad form is reported at once and starts nothing."""
        if self.worker is not None:
            return
        try:
            job = self.make_job()
        except Exception as exc:
            self.report(failure(exc))
            return
        # the ticker runs in the worker thread, after ``worker`` below exists
        ticker = Ticker(self.relay.progressed.emit, lambda: worker.abort_requested)
        worker = FunctionWorker(guarded, job, ticker)  # guarded never raises: errors come back as an Outcome
        worker.returned.connect(self.report)
        worker.finished.connect(self.on_finished)
        self.worker = worker
        self.progress.setRange(0, 0)  # busy until the first tile is done (loading the model)
        self.status.setText(f"{self.action}: running …")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        worker.start()

    def cancel(self) -> None:
        """Stop at the next tile (napari's ``worker.quit``); nothing is added."""
        if self.worker is not None:
            self.worker.quit()
            self.status.setText(f"{self.action}: cancelling …")

    def on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def on_finished(self, _value: object = None) -> None:
        cancelled = self.worker is not None and self.worker.abort_requested
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, max(self.progress.maximum(), 1))
        if cancelled:
            self.status.setText(f"{self.action}: cancelled")
            show_info(f"blurlatent {self.action}: cancelled")

    def report(self, outcome: Outcome) -> Image | None:
        """Add the result as a layer, or show the error; returns the new layer (or None)."""
        for message in outcome.warnings:
            show_warning(message)
        if outcome.cancelled:
            return None
        if outcome.error is not None:
            self.status.setText(f"{self.action}: {outcome.error}")
            show_error(outcome.error)
            return None
        if outcome.layer is None:  # neither a result nor an error: nothing to add
            return None
        data, kwargs, _kind = outcome.layer
        layer = self.viewer.add_image(data, **kwargs)
        self.status.setText(f"{self.action}: added layer {layer.name!r}")
        return layer
