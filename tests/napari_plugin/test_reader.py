"""The napari reader (blurlatent/napari/reader.py, the manifest's ``readers``): OME-TIFF, ImageJ TIFF and OME-Zarr
z-stacks open as one ZYX layer per channel, named from the file, scaled (z, y, x) in µm from its pixel size —
where napari's own reader gives scale (1, 1, 1) and one 4-D layer. The reader needs neither napari nor Qt; one
test opens the files through napari's ``ViewerModel.open`` (no OpenGL canvas), skipped without napari."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
import tifffile
from helpers.stack_data import make_stack

from blurlatent.files.stacks import write_stack
from blurlatent.napari.reader import get_reader

PX, DZ = 0.325, 2.0  # µm


@pytest.fixture
def ome(tmp_path):
    """A 2-channel OME-TIFF (CZYX, channels named DAPI and GFP, PhysicalSize 0.325 x 0.325 x 2 µm)."""
    stack = make_stack(4, planes=7, channels=2, size=(32, 40))
    path = tmp_path / "cells 1.ome.tif"
    tifffile.imwrite(path, stack, metadata={"axes": "CZYX", "PhysicalSizeX": PX, "PhysicalSizeY": PX,
                                            "PhysicalSizeZ": DZ, "Channel": {"Name": ["DAPI", "GFP"]}})
    return path, stack


@pytest.fixture
def imagej(tmp_path):
    """A 2-channel ImageJ hyperstack (TZCYX, 0.5 µm pixels, 1.5 µm spacing, no channel names)."""
    stack = make_stack(3, planes=6, channels=2, size=(32, 32), seed=1)
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, stack.transpose(1, 0, 2, 3)[None], imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "TZCYX", "spacing": 1.5, "unit": "um"})
    return path, stack


def read(path) -> list[tuple]:
    reader = get_reader(str(path))
    assert callable(reader), path
    return reader(str(path))


def test_ome_tiff_opens_one_layer_per_channel_named_and_scaled(ome):
    path, stack = ome
    layers = read(path)
    assert [kind for _, _, kind in layers] == ["image", "image"]
    assert [kw["name"] for _, kw, _ in layers] == ["cells 1 DAPI", "cells 1 GFP"]
    for c, (data, kw, _) in enumerate(layers):
        np.testing.assert_array_equal(data, stack[c])
        assert kw["scale"] == pytest.approx((DZ, PX, PX)) and kw["units"] == ("micrometer",) * 3
        assert kw["axis_labels"] == ("z", "y", "x") and kw["blending"] == "additive"
        assert kw["metadata"]["channel_index"] == c and kw["metadata"]["pixel_size_um"] == {"x": PX, "y": PX, "z": DZ}
    assert layers[0][1]["colormap"] != layers[1][1]["colormap"]


def test_imagej_two_channel_file_opens_as_two_layers(imagej):
    path, stack = imagej
    layers = read(path)
    assert [kw["name"] for _, kw, _ in layers] == ["field c0", "field c1"]
    for c, (data, kw, _) in enumerate(layers):
        assert data.shape == (6, 32, 32)
        np.testing.assert_array_equal(data, stack[c])
        assert kw["scale"] == pytest.approx((1.5, 0.5, 0.5))


def test_a_file_without_pixel_size_is_one_layer_in_pixels(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, make_stack(2, planes=4, channels=1)[0], photometric="minisblack")
    [(data, kw, _)] = read(path)
    assert data.shape[0] == 4 and kw["name"] == "plain"
    assert kw["scale"] == (1.0, 1.0, 1.0) and kw["units"] == ("pixel",) * 3 and "blending" not in kw


def test_omezarr_stack_opens_scaled(tmp_path):
    pytest.importorskip("zarr", reason="OME-Zarr needs the zarr extra: pip install -e '.[zarr]'")
    data = make_stack(2, planes=5, channels=1, size=(32, 32))[0]
    path = tmp_path / "field.zarr"
    write_stack(path, data, pixel_size=(PX, PX, DZ))
    [(layer, kw, _)] = read(path)
    np.testing.assert_array_equal(np.asarray(layer), data)
    assert kw["scale"] == pytest.approx((DZ, PX, PX)) and kw["name"] == "field"


def test_paths_that_are_no_stack_get_no_reader(tmp_path, ome):
    tifffile.imwrite(tmp_path / "plane.png", np.zeros((8, 8), np.uint8))  # napari's own reader opens a PNG
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "folder").mkdir()
    for path in ("plane.png", "notes.txt", "folder", "missing.tif"):
        assert get_reader(str(tmp_path / path)) is None, path
    assert get_reader([str(ome[0]), str(tmp_path / "notes.txt")]) is None
    assert len(get_reader([str(ome[0])])([str(ome[0])])) == 2


def test_napari_opens_the_files_with_the_plugin(ome, imagej):
    """Through napari itself (npe2 finds the manifest's reader): layers in µm, not the builtin's scale 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # npe2/napari's pydantic-1 idioms
        pytest.importorskip("napari", reason="napari is not installed: pip install -e '.[napari]'")
        from napari.components import ViewerModel
        from npe2 import PluginManager

        PluginManager.instance().discover()
        viewer = ViewerModel()
        layers = viewer.open(str(ome[0]), plugin="blurlatent") + viewer.open(str(imagej[0]), plugin="blurlatent")
    assert [layer.name for layer in layers] == ["cells 1 DAPI", "cells 1 GFP", "field c0", "field c1"]
    assert all(layer.ndim == 3 for layer in layers)
    assert tuple(layers[1].scale) == pytest.approx((DZ, PX, PX)) and str(layers[1].units[0]) == "micrometer"
    assert tuple(layers[3].scale) == pytest.approx((1.5, 0.5, 0.5))


def test_a_layer_from_the_reader_is_deblurred_at_the_models_pixel_size(ome, tmp_path_factory):
    """The pixel size the reader records goes with the job: a 0.325 µm/px layer is deblurred as the API deblurs it
    at pixel_size=0.325 (resampled to the model's 0.645 and back), not as a layer of unknown scale."""
    napari = pytest.importorskip("napari", reason="napari is not installed: pip install -e '.[napari]'")
    from helpers.infer_model import tiny_checkpoint

    from blurlatent.inference.predictor import Predictor
    from blurlatent.napari.jobs import DeblurRequest
    from blurlatent.napari.panel import placement

    path, stack = ome
    data, kwargs, _ = get_reader(str(path))(str(path))[0]
    layer = napari.layers.Image(data, **{k: v for k, v in kwargs.items() if k in ("name", "scale", "metadata")})
    where = placement(layer)
    assert where.pixel_size_um == pytest.approx(PX)
    ckpt = tiny_checkpoint(tmp_path_factory)
    ticker = type("Ticker", (), {"check": lambda self: None, "__call__": lambda self, *a: None})()
    out, meta, _ = DeblurRequest(data[0], data[3], ckpt, alpha=0.5, target=None, placement=where)(ticker)
    model = Predictor.from_checkpoint(ckpt)
    np.testing.assert_array_equal(out, model.deblur(data[0], data[3], 0.5, pixel_size=PX))
    assert not np.array_equal(out, model.deblur(data[0], data[3], 0.5))
