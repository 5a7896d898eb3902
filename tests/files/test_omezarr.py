"""omezarr: OME-Zarr read from folders the reference writer (ome-zarr-py) and plain zarr made, written as NGFF 0.4
checked by reading the JSON itself, ome-zarr-py's reader and the spec's validator (ome-zarr-models); the
missing extra is one line naming the file and the install command; a folder we did not write is never replaced."""

import json
import sys

import numpy as np
import pytest
import tifffile

from blurlatent.errors import UsageError
from blurlatent.files.stacks import alpha_labels, read_stack, write_stack

zarr = pytest.importorskip("zarr")


def ramp(*shape, dtype=np.uint16):
    return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape).astype(dtype)


def ngff_image(group, data, axes, scale, units=None, version="0.4", **extra):
    """A hand-made NGFF image group (no ome-zarr-py): one level "0" with a scale transform."""
    group.create_array("0", data=data, chunks=data.shape)
    axes_meta = [{"name": a, **({"unit": units[a]} if units and a in units else {})} for a in axes]
    ms = {"axes": axes_meta, "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale",
                                                                                        "scale": scale}]}]}
    if version == "0.4":
        group.attrs.update({"multiscales": [{"version": "0.4", **ms}], **extra})
    else:
        group.attrs.update({"ome": {"version": version, "multiscales": [ms], **extra}})


def test_reads_what_the_reference_writer_wrote_and_asks_for_the_channel(tmp_path):
    writer = pytest.importorskip("ome_zarr.writer")
    data = ramp(2, 3, 32, 32)  # CZYX
    window = {"min": 0, "max": 65535, "start": 0, "end": 6143}
    path = tmp_path / "cells.ome.zarr"
    writer.write_image(data, zarr.open_group(str(path), mode="w"), axes="czyx", scale_factors=(),
                       scale={"c": 1.0, "z": 250.0, "y": 100.0, "x": 100.0},
                       axes_units={"z": "nanometer", "y": "nanometer", "x": "nanometer"},
                       omero={"channels": [{"label": name, "color": "FFFFFF", "window": window}
                                           for name in ("DAPI", "GFP")]})
    with pytest.raises(UsageError, match=r"cells.ome.zarr: holds 2 channels \(0: DAPI, 1: GFP\); pass channel=0..1"):
        read_stack(path)
    stack = read_stack(path, channel="GFP")
    assert stack.kind == "zarr" and stack.axes == "CZYX" and stack.channel == "GFP"
    assert np.array_equal(stack.data, data[1]) and stack.data.dtype == np.uint16
    assert stack.pixel_size == pytest.approx((0.1, 0.1, 0.25))  # nanometer → µm


def test_plain_zarr_bioformats2raw_series_and_level_scale(tmp_path):
    root = zarr.open_group(str(tmp_path / "b2r.zarr"), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    ngff_image(root.create_group("0"), ramp(32, 32), "yx", [0.5, 0.5], {"x": "micrometer", "y": "micrometer"})
    one = root.create_group("1")
    ngff_image(one, ramp(1, 4, 32, 32, dtype=np.uint8), "tzyx", [1, 2, 1, 1],
               {"z": "millimeter", "y": "micrometer", "x": "micrometer"})
    meta = one.attrs.asdict()
    meta["multiscales"][0]["coordinateTransformations"] = [{"type": "scale", "scale": [1, 1, 3, 3]}]
    one.attrs.put(meta)
    with pytest.raises(UsageError, match=r"b2r.zarr: holds 2 image series; pass series=0..1 to choose one"):
        read_stack(tmp_path / "b2r.zarr")
    plane = read_stack(tmp_path / "b2r.zarr", series=0)
    assert plane.data.shape == (1, 32, 32) and plane.pixel_size == (0.5, 0.5, None)
    stack = read_stack(tmp_path / "b2r.zarr", series=1)
    assert stack.data.shape == (4, 32, 32) and stack.axes == "TZYX"
    assert stack.pixel_size == pytest.approx((3.0, 3.0, 2000.0))  # dataset × multiscale scale; mm → µm
    with pytest.raises(UsageError, match="series 2 does not exist"):
        read_stack(tmp_path / "b2r.zarr", series=2)


def test_ngff_05_and_a_scale_without_unit(tmp_path):
    group = zarr.open_group(str(tmp_path / "v5.zarr"), mode="w", zarr_format=3)
    ngff_image(group, ramp(3, 32, 32), "zyx", [2.0, 0.3, 0.3], version="0.5")
    stack = read_stack(tmp_path / "v5.zarr")
    assert stack.data.shape == (3, 32, 32) and stack.pixel_size == (None, None, None)  # unit unknown: no size


def test_written_ome_zarr_checked_by_its_json_the_reference_reader_and_the_spec(tmp_path):
    tifffile.imwrite(tmp_path / "in.ome.tif", ramp(3, 32, 32), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.645, "PhysicalSizeY": 0.645, "PhysicalSizeZ": 2.0,
                               "Channel": {"Name": ["DAPI"]}})
    like = read_stack(tmp_path / "in.ome.tif")
    out = tmp_path / "levels.ome.zarr"
    levels = like.data.astype(np.float32) / 7
    write_stack(out, levels, like=like, labels=alpha_labels([0, 0.5, 1]))
    attrs = json.loads((out / ".zattrs").read_text())  # the oracle: the NGFF 0.4 JSON itself
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert {a["unit"] for a in ms["axes"]} == {"micrometer"}
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 0.645, 0.645]
    assert attrs["omero"]["channels"][0]["label"] == "DAPI"
    assert attrs["blurlatent"]["labels"] == ["alpha=0.000", "alpha=0.500", "alpha=1.000"]
    assert attrs["blurlatent"]["source"] == "in.ome.tif"  # its name, never the machine's path (issue 26)
    assert json.loads((out / "0" / ".zarray").read_text())["dimension_separator"] == "/"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    back = read_stack(out)
    assert np.array_equal(back.data, levels) and back.pixel_size == (0.645, 0.645, 2.0)
    assert back.channel == "DAPI" and back.labels == ("alpha=0.000", "alpha=0.500", "alpha=1.000")
    reader = pytest.importorskip("ome_zarr.reader")
    node = next(iter(reader.Reader(pytest.importorskip("ome_zarr.io").parse_url(str(out)))()))
    assert np.array_equal(np.asarray(node.data[0]), levels)
    models = pytest.importorskip("ome_zarr_models")
    image = models.open_ome_zarr(str(out))  # validates the metadata against the NGFF spec
    assert image.attributes.multiscales[0].axes[2].name == "x"


def test_ome_zarr_in_gives_ome_tiff_out_for_a_tif_name(tmp_path):
    group = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=2)
    ngff_image(group, ramp(2, 32, 32), "zyx", [1.5, 0.2, 0.2], dict.fromkeys("zyx", "micrometer"))
    write_stack(tmp_path / "out.tif", read_stack(tmp_path / "in.zarr").data, like=read_stack(tmp_path / "in.zarr"))
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert tif.is_ome and pixels["PhysicalSizeX"] == 0.2 and pixels["PhysicalSizeZ"] == 1.5


def test_existing_output_replaced_only_when_ours_and_forced(tmp_path):
    out = tmp_path / "o.ome.zarr"
    write_stack(out, ramp(32, 32))
    with pytest.raises(UsageError, match="o.ome.zarr: already exists; pass force=True"):
        write_stack(out, ramp(32, 32))
    write_stack(out, ramp(2, 32, 32), force=True)
    assert read_stack(out).data.shape == (2, 32, 32)
    theirs = tmp_path / "theirs.zarr"
    group = zarr.open_group(str(theirs), mode="w", zarr_format=2)
    ngff_image(group, ramp(32, 32), "yx", [1, 1])
    before = sorted(p.relative_to(theirs) for p in theirs.rglob("*"))
    with pytest.raises(UsageError, match="theirs.zarr: exists and is not an OME-Zarr written by blurlatent"):
        write_stack(theirs, ramp(32, 32), force=True)
    assert sorted(p.relative_to(theirs) for p in theirs.rglob("*")) == before
    like = read_stack(out)
    with pytest.raises(UsageError, match="o.ome.zarr: is the input"):
        write_stack(out, like.data, like=like, force=True)


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("device lost")

    monkeypatch.setattr(zarr.Group, "create_array", boom)
    with pytest.raises(OSError, match="device lost"):
        write_stack(tmp_path / "x.ome.zarr", ramp(32, 32))
    assert list(tmp_path.iterdir()) == []


def test_not_an_image_is_one_line(tmp_path):
    plate = zarr.open_group(str(tmp_path / "plate.zarr"), mode="w", zarr_format=2)
    plate.attrs["plate"] = {"wells": []}
    with pytest.raises(UsageError, match="plate.zarr: is an OME-Zarr plate; pass one well or image inside it"):
        read_stack(tmp_path / "plate.zarr")
    zarr.open_group(str(tmp_path / "bare.zarr"), mode="w", zarr_format=2)
    with pytest.raises(UsageError, match="bare.zarr: holds no OME-Zarr image"):
        read_stack(tmp_path / "bare.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(UsageError, match="empty.zarr: not a zarr group"):
        read_stack(tmp_path / "empty.zarr")
    (tmp_path / "folder").mkdir()
    with pytest.raises(UsageError, match="folder: is a folder without zarr metadata; pass an image file"):
        read_stack(tmp_path / "folder")
    with pytest.raises(UsageError, match="gone.zarr: file not found"):
        read_stack(tmp_path / "gone.zarr")


def test_missing_extra_names_the_file_and_the_install(tmp_path, monkeypatch):
    group = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=2)
    ngff_image(group, ramp(32, 32), "yx", [1, 1])
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr now raises ImportError
    with pytest.raises(UsageError, match=r"in.zarr: reading OME-Zarr needs the zarr package; "
                                         r"pip install 'blurlatent\[zarr\]'$"):
        read_stack(tmp_path / "in.zarr")
    with pytest.raises(UsageError, match=r"out.ome.zarr: writing OME-Zarr needs .*pip install 'blurlatent\[zarr\]'"):
        write_stack(tmp_path / "out.ome.zarr", ramp(32, 32))
    assert not (tmp_path / "out.ome.zarr").exists()
