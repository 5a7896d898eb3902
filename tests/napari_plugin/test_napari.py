"""The napari plugin (blurlatent/napari, manifest blurlatent/napari.yaml), headless (QT_QPA_PLATFORM=offscreen).

The widgets are driven with pytest-qt on a ``ViewerModel`` (layers without an OpenGL canvas, so no
display is needed) and the tiny checkpoint: their layers equal ``blurlatent deblur`` / ``blurlatent
blur`` run on the same inputs, carry the input's scale and translate, Cancel stops the worker at the
next tile while the viewer stays usable, and a bad checkpoint gives the CLI's one-line message as an
error notification and no layer. Also: the manifest validates, ``import blurlatent`` and ``--help`` load
no napari or Qt, the sample stack is a defocus series, and ``Predictor``'s per-tile ``progress`` callback.
Nothing needs OpenGL (a test makes PyOpenGL unimportable). Skipped, with the reason, without the napari and test
extras (CI installs them).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import warnings
from importlib import metadata, resources
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

REASON = "napari is not installed: pip install -e '.[napari,test]' (CI installs it)"
# npe2 and napari still use pydantic-1 idioms: dozens of PydanticDeprecatedSince20 warnings, none of ours
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
with warnings.catch_warnings():
    pytest.importorskip("napari", reason=REASON)
    pytest.importorskip("pytestqt", reason=REASON)
    from pydantic.warnings import PydanticDeprecatedSince20

    warnings.simplefilter("ignore", PydanticDeprecatedSince20)
    from napari.components import ViewerModel
    from napari.utils.notifications import NotificationSeverity, notification_manager
    from qtpy.QtCore import Qt

    from blurlatent.napari import jobs
    from blurlatent.napari.sample import synthetic_stack
    from blurlatent.napari.widgets import STACK, TWO_LAYERS, BlurWidget, DeblurWidget

import tifffile  # noqa: E402
from helpers.infer_model import pair, tiny_checkpoint  # noqa: E402
from helpers.stack_data import make_stack  # noqa: E402
from scipy.ndimage import laplace  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from blurlatent.cli import app  # noqa: E402
from blurlatent.config import InferenceConfig  # noqa: E402
from blurlatent.errors import UsageError  # noqa: E402
from blurlatent.inference import builtin  # noqa: E402
from blurlatent.inference.predictor import Predictor  # noqa: E402
from blurlatent.inference.shipping import slim_checkpoint  # noqa: E402

WAIT_MS = 60_000


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(tiny_checkpoint(tmp_path_factory))


@pytest.fixture
def viewer():
    return ViewerModel()


@pytest.fixture
def notes():
    """The notifications shown during the test, as (severity, message)."""
    start = len(notification_manager.records)
    yield lambda: [(n.severity, n.message) for n in notification_manager.records[start:]]


def cli(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.output


def cli_image(tmp_path, command, a, b, *options) -> np.ndarray:
    pa, pb, out = tmp_path / "a.tif", tmp_path / "b.tif", tmp_path / "out.tif"
    tifffile.imwrite(pa, a)
    tifffile.imwrite(pb, b)
    output = cli(command, pa, pb, "--checkpoint", *options, "--output", out, "--force")
    assert out.is_file(), output
    return tifffile.imread(out)


def run_to_end(qtbot, widget, adds: int = 1):
    """Run the widget's job to its end; it must add ``adds`` layers."""
    before = len(widget.viewer.layers)
    widget.run()
    assert widget.worker is not None, "the run did not start a worker"
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    assert len(widget.viewer.layers) == before + adds, widget.status.text()


def make(qtbot, cls, viewer, ckpt, **values):
    widget = cls(viewer)
    qtbot.addWidget(widget)
    widget.checkpoint.value = ckpt
    for name, value in values.items():
        target = widget.inputs if hasattr(widget.inputs, name) else widget
        getattr(target, name).value = value
    return widget


# --- packaging -------------------------------------------------------------------------------------


def test_manifest_validates_and_is_registered():
    npe2 = Path(sys.executable).with_name("npe2")
    out = subprocess.run([str(npe2), "validate", "blurlatent"], capture_output=True, text=True)
    assert out.returncode == 0 and "valid" in out.stdout, out.stdout + out.stderr
    points = {ep.name: ep.value for ep in metadata.entry_points(group="napari.manifest")}
    assert points.get("blurlatent") == "blurlatent:napari.yaml"
    assert resources.files("blurlatent").joinpath("napari.yaml").is_file()


def test_import_and_help_load_no_napari_or_qt():
    code = ("import sys\nimport blurlatent\nfrom blurlatent.cli import main\nsys.argv = ['blurlatent', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'napari', 'qtpy', 'PyQt5', 'magicgui', 'npe2'}),"
            " file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "Usage" in out.stdout
    assert out.stderr.strip().splitlines()[-1] == "[]", out.stderr


def test_widgets_and_reader_need_no_opengl():
    """Headless machines may lack OpenGL: the widgets and the reader load neither napari's Qt window nor its vispy
    canvas, so they work on a ViewerModel with PyOpenGL made unimportable."""
    code = ("import sys\nsys.modules['OpenGL'] = None  # any import of PyOpenGL fails, as without libGL\n"
            "from qtpy.QtWidgets import QApplication\napp = QApplication([])\n"
            "from napari.components import ViewerModel\nfrom blurlatent.napari.reader import get_reader\n"
            "from blurlatent.napari.widgets import BlurWidget, DeblurWidget\n"
            "viewer = ViewerModel()\nDeblurWidget(viewer), BlurWidget(viewer)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('napari._qt', 'napari._vispy'))))")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr[-3000:]


def test_sample_data_is_a_defocus_stack():
    [(stack, kwargs, kind)] = synthetic_stack()
    assert kind == "image" and stack.shape == (34, 256, 256) and stack.dtype == np.uint16
    assert kwargs["scale"] == (2.0, 0.645, 0.645)
    sharpness = [np.var(laplace(stack[z].astype(np.float64))) for z in (0, 8, 16)]
    assert sharpness[0] < sharpness[1] < sharpness[2], sharpness  # z16 in focus, z0 the most defocused


# --- deblur ----------------------------------------------------------------------------------------


def test_deblur_two_layers_equals_the_cli(qtbot, viewer, ckpt, tmp_path):
    sharp, blurry = pair(3, (72, 88))
    far = viewer.add_image(blurry, name="z0", scale=(0.5, 0.25), translate=(10.0, -4.0))
    near = viewer.add_image(0.5 * (sharp + blurry), name="z8", scale=(0.5, 0.25), translate=(10.0, -4.0))
    widget = make(qtbot, DeblurWidget, viewer, ckpt, source=TWO_LAYERS, first=far, second=near)
    widget.alpha_from.value, widget.alpha.value, widget.tile.value = "value", 0.5, "48"
    run_to_end(qtbot, widget)
    layer = viewer.layers[-1]
    expected = cli_image(tmp_path, "deblur", far.data, near.data, ckpt, "--alpha", 0.5, "--tile", 48)
    assert layer.name == "deblurred" and layer.data.dtype == expected.dtype
    np.testing.assert_allclose(layer.data, expected, rtol=0, atol=1e-5)
    assert tuple(layer.scale) == (0.5, 0.25) and tuple(layer.translate) == (10.0, -4.0)
    lo, hi = layer.contrast_limits
    assert layer.data.min() <= lo < hi <= layer.data.max()
    assert layer.metadata["alpha"] == 0.5
    assert f"self-check {layer.metadata['self_check']:.2f}" in widget.found.value  # issue 25's guard, its number
    assert widget.progress.maximum() > 1 and widget.progress.value() == widget.progress.maximum()  # tiles


def test_deblur_stack_alpha_from_planes_equals_the_cli(qtbot, viewer, ckpt, tmp_path):
    sharp, blurry = pair(4, (48, 48))
    stack = np.stack([blurry, 0.5 * (sharp + blurry), sharp])
    viewer.add_image(stack, name="stack", scale=(2.0, 0.65, 0.65))
    widget = make(qtbot, DeblurWidget, viewer, ckpt, source=STACK, z_first=0, z_second=1)
    widget.target.value = "2"
    run_to_end(qtbot, widget)
    expected = cli_image(tmp_path, "deblur", stack[0], stack[1], ckpt, "--planes", 0, 1, "--target", 2)
    layer = viewer.layers[-1]
    np.testing.assert_allclose(layer.data, expected, rtol=0, atol=1e-5)
    assert tuple(layer.scale) == (0.65, 0.65) and layer.metadata["alpha"] == 0.5


def test_deblur_stack_target_auto_is_the_focus_found(qtbot, viewer, ckpt, tmp_path, notes):
    """The target box defaults to auto: the focus found in the stack layer (z5 of 12), as `deblur --target auto`;
    a target outside the stack's planes is refused with the CLI's message and adds no layer (issue 28, cause 3)."""
    stack = make_stack(5, planes=12, channels=1, size=(48, 48))[0]
    viewer.add_image(stack, name="stack")
    widget = make(qtbot, DeblurWidget, viewer, ckpt, source=STACK, z_first=0, z_second=3)
    assert widget.target.value == "auto"
    run_to_end(qtbot, widget)
    layer = viewer.layers[-1]
    assert layer.metadata["target"] == 5.0 and layer.metadata["target_found_by"] == "normvar"
    assert layer.metadata["alpha"] == pytest.approx(0.4)
    expected = cli_image(tmp_path, "deblur", stack[0], stack[3], ckpt, "--planes", 0, 3, "--target", 5)
    np.testing.assert_allclose(layer.data, expected, rtol=0, atol=1e-5)
    widget.target.value = "16"
    run_to_end(qtbot, widget, adds=0)
    assert notes()[-1] == (NotificationSeverity.ERROR, "target 16 is not a plane of the stack layer: it has 12 "
                           "planes, 0..11; pass target inside them, or target=auto for the focus found in the stack")


def test_deblur_4d_layer_channel_choice_and_the_focus_found(qtbot, viewer, ckpt, tmp_path):
    """A [C, Z, Y, X] layer (napari's own reader opens a 2-channel OME-TIFF so): the channel drop-down lists its
    channels; the chosen one is deblurred toward the focus found in it (c0 in focus at z6, c1 at z5), as
    `deblur --target` that plane, and the widget shows the focus found; a 3-D layer hides the drop-down."""
    stack = make_stack(5, planes=12, channels=2, size=(48, 48))
    stack[0] = stack[0][::-1].copy()
    viewer.add_image(stack, name="cells")
    widget = make(qtbot, DeblurWidget, viewer, ckpt, source=STACK, z_first=0, z_second=3)
    channel = widget.inputs.channel
    assert channel.choices == (0, 1) and channel.value == 0 and not channel.native.isHidden()
    for c, focus, alpha in ((1, 5, 0.4), (0, 6, 0.5)):
        channel.value = c
        run_to_end(qtbot, widget)
        layer = viewer.layers[-1]
        assert layer.metadata["target"] == focus and layer.metadata["alpha"] == pytest.approx(alpha)
        assert layer.metadata["inputs"] == f"cells c{c} z=0, z=3"
        assert widget.found.value.startswith(f"target = z{focus} (focus found by normvar); alpha = {alpha:g}")
        expected = cli_image(tmp_path, "deblur", stack[c][0], stack[c][3], ckpt, "--planes", 0, 3, "--target", focus)
        np.testing.assert_allclose(layer.data, expected, rtol=0, atol=1e-5)
    viewer.add_image(stack[1], name="one channel")
    widget.inputs.stack.value = viewer.layers["one channel"]
    assert channel.choices == () and channel.native.isHidden()


def test_channel_axis_and_channel_view():
    """The channel axis of a 4-D layer: the one labelled c, else the first; a channel outside it is refused."""
    assert jobs.channel_axis(("-4", "-3", "-2", "-1")) == 0 and jobs.channel_axis(("z", "C", "y", "x")) == 1
    data = np.arange(2 * 3 * 4 * 5).reshape(3, 2, 4, 5)  # Z, C, Y, X
    np.testing.assert_array_equal(jobs.layer_channel(data, 1, 1), data[:, 1])
    three = data[:, 0]
    assert jobs.layer_channel(three, 0, 5) is three  # a [Z, Y, X] layer: as it is, whatever the channel
    with pytest.raises(UsageError, match="channel 2 is not a channel of the stack layer: it has 2, 0..1"):
        jobs.layer_channel(data, 1, 2)


def test_empty_checkpoint_runs_the_builtin_model(qtbot, viewer, ckpt, tmp_path, monkeypatch):
    """No checkpoint chosen: the built-in model (here the tiny one, shipped into a temporary models folder)."""
    folder = tmp_path / "models"
    folder.mkdir()
    sharp, blurry = pair(5, (48, 48))
    facts = slim_checkpoint(ckpt, folder / "w1.pt", np.stack([np.stack([blurry, sharp])]))
    (folder / "w1.json").write_text(json.dumps({"name": "w1", "channel": "w1", "file": "w1.pt", **facts}))
    monkeypatch.setattr(builtin, "MODELS_DIR", folder)
    stack = np.stack([blurry, 0.5 * (sharp + blurry), sharp])
    viewer.add_image(stack, name="stack")
    widget = make(qtbot, DeblurWidget, viewer, None, source=STACK, z_first=0, z_second=1)
    widget.target.value = "2"
    run_to_end(qtbot, widget)
    expected = cli_image(tmp_path, "deblur", stack[0], stack[1], folder / "w1.pt", "--planes", 0, 1, "--target", 2)
    np.testing.assert_allclose(viewer.layers[-1].data, expected, rtol=0, atol=1e-5)
    assert viewer.layers[-1].metadata["checkpoint"] == str(folder / "w1.pt")


# --- blur ------------------------------------------------------------------------------------------


def test_blur_alpha_list_is_one_stack_equal_to_the_cli(qtbot, viewer, ckpt, tmp_path):
    sharp, blurry = pair(5, (40, 48))
    a = viewer.add_image(sharp, name="sharp", scale=(0.3, 0.3))
    b = viewer.add_image(blurry, name="blurry", scale=(0.3, 0.3))
    widget = make(qtbot, BlurWidget, viewer, ckpt, source=TWO_LAYERS, first=a, second=b)
    widget.levels.value, widget.alphas.value = "α list", "0.25, 0.75"
    run_to_end(qtbot, widget)
    layer = viewer.layers[-1]
    expected = cli_image(tmp_path, "blur", sharp, blurry, ckpt, "--alpha", 0.25, "--alpha", 0.75)
    assert layer.data.shape == (2, 40, 48) == expected.shape
    np.testing.assert_allclose(layer.data, expected, rtol=0, atol=1e-5)
    assert layer.metadata["alpha"] == [0.25, 0.75] and "α=0.25, 0.75" in layer.name
    assert tuple(layer.scale) == (1.0, 0.3, 0.3)


def test_blur_stack_steps_equals_the_cli(qtbot, viewer, ckpt, tmp_path):
    sharp, blurry = pair(6, (32, 40))
    viewer.add_image(np.stack([blurry, sharp]), name="stack")
    widget = make(qtbot, BlurWidget, viewer, ckpt, source=STACK, z_first=1, z_second=0)
    widget.steps.value = 3
    run_to_end(qtbot, widget)
    expected = cli_image(tmp_path, "blur", sharp, blurry, ckpt, "--steps", 3)
    np.testing.assert_allclose(viewer.layers[-1].data, expected, rtol=0, atol=1e-5)
    assert viewer.layers[-1].metadata["alpha"] == [0.25, 0.5, 0.75]


# --- cancel, errors, warnings ----------------------------------------------------------------------


def test_cancel_stops_at_the_next_tile_and_the_viewer_stays_usable(qtbot, viewer, ckpt, notes):
    sharp, blurry = pair(7, (96, 96))
    viewer.add_image(np.stack([blurry, sharp]), name="stack")
    widget = make(qtbot, DeblurWidget, viewer, ckpt, source=STACK, z_first=0, z_second=1)
    widget.alpha_from.value, widget.tile.value = "value", "48"
    seen, first, release = [], threading.Event(), threading.Event()

    def hold(done, total):  # runs in the worker thread (direct connection): holds it after tile 1
        seen.append((done, total))
        first.set()
        release.wait(WAIT_MS / 1000)

    widget.relay.progressed.connect(hold, Qt.DirectConnection)
    widget.run()
    qtbot.waitUntil(first.is_set, timeout=WAIT_MS)
    viewer.add_image(np.zeros((4, 4)), name="meanwhile")  # the main thread is free while the worker runs
    assert "meanwhile" in [layer.name for layer in widget.inputs.stack.choices]
    assert widget.cancel_button.isEnabled() and not widget.run_button.isEnabled()
    qtbot.mouseClick(widget.cancel_button, Qt.LeftButton)
    release.set()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    assert len(seen) == 1 and seen[0][1] > 1, seen  # stopped after tile 1 of several
    assert [layer.name for layer in viewer.layers] == ["stack", "meanwhile"]
    assert (NotificationSeverity.INFO, "blurlatent deblur: cancelled") in notes()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_bad_checkpoint_is_the_cli_message_and_adds_no_layer(qtbot, viewer, ckpt, tmp_path, notes):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    sharp, blurry = pair(8, (32, 32))
    viewer.add_image(np.stack([blurry, sharp]), name="stack")
    widget = make(qtbot, DeblurWidget, viewer, str(bad), source=STACK, z_first=0, z_second=1)
    widget.alpha_from.value = "value"
    run_to_end(qtbot, widget, adds=0)
    tifffile.imwrite(tmp_path / "a.tif", blurry)
    tifffile.imwrite(tmp_path / "b.tif", sharp)
    line = cli("deblur", tmp_path / "a.tif", tmp_path / "b.tif", "-c", bad, "--alpha", 0.5, "-o", tmp_path / "o.tif")
    message = line.strip().removeprefix("error: ")
    assert message.startswith(f"{bad}: ") and "\n" not in message
    assert notes() == [(NotificationSeverity.ERROR, message)]
    assert [layer.name for layer in viewer.layers] == ["stack"]


@pytest.mark.parametrize("field, value, needle", [
    ("checkpoint", None, "no built-in model named w1 (built-in: none in this installation)"),
    ("z_second", 5, "less-blurry z 5 is outside the stack's planes 0..1"),
    ("tile", "big", "tile 'big': give a tile size in pixels"),
])
def test_bad_form_is_reported_at_once(qtbot, viewer, ckpt, notes, field, value, needle, monkeypatch, tmp_path):
    monkeypatch.setattr(builtin, "MODELS_DIR", tmp_path)  # an installation without built-in models
    viewer.add_image(np.zeros((2, 16, 16), np.float32), name="stack")
    widget = make(qtbot, DeblurWidget, viewer, ckpt, source=STACK, z_first=0, z_second=1)
    getattr(widget.inputs if field.startswith("z_") else widget, field).value = value
    widget.run()
    assert widget.worker is None and [layer.name for layer in viewer.layers] == ["stack"]
    [(severity, message)] = notes()
    assert severity == NotificationSeverity.ERROR and message.startswith(needle), message


def test_blur_levels_errors_are_the_library_messages(qtbot, viewer, ckpt, notes):
    viewer.add_image(np.zeros((2, 16, 16), np.float32), name="stack")
    widget = make(qtbot, BlurWidget, viewer, ckpt, source=STACK, z_first=1, z_second=0)
    widget.levels.value, widget.alphas.value = "α list", "0.5, 1.5"
    run_to_end(qtbot, widget, adds=0)
    [(severity, message)] = notes()
    assert severity == NotificationSeverity.ERROR
    assert message.startswith("alpha 1.5 is outside [0, 1]"), message
    assert len(viewer.layers) == 1


def test_jobs_collect_this_threads_warnings_only():
    log = logging.getLogger("blurlatent.test")

    def job(ticker):
        other = threading.Thread(target=lambda: log.warning("from another thread"))
        other.start()
        other.join()
        log.warning("clipped   %d pixels", 3)
        return np.zeros((2, 2)), {}, "image"

    outcome = jobs.guarded(job, jobs.Ticker())
    assert outcome.error is None and outcome.warnings == ["clipped 3 pixels"]
    crashed = jobs.guarded(lambda ticker: 1 / 0, jobs.Ticker())
    assert crashed.layer is None and crashed.error.startswith("internal error: ZeroDivisionError")


def test_predictor_reports_every_tile_and_a_raise_stops_it(ckpt):
    sharp, blurry = pair(9, (96, 96))
    calls = []
    tiled = Predictor.from_checkpoint(ckpt, InferenceConfig(tile=48, device="cpu"))
    tiled.deblur(blurry, sharp, 0.5, progress=lambda done, total: calls.append((done, total)))
    n = calls[-1][1]
    assert n > 1 and calls == [(k, n) for k in range(1, n + 1)]
    calls.clear()
    tiled.with_options(tile=0).deblur(blurry, sharp, 0.5, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1)]

    def stop_at_two(done, total):
        calls.append(done)
        if done == 2:
            raise jobs.Cancelled("cancelled")

    calls.clear()
    with pytest.raises(jobs.Cancelled):
        tiled.blur(sharp, blurry, [0.5], progress=stop_at_two)
    assert calls == [1, 2]
