"""The provenance every output carries (issue 26), written by ``write_stack`` in each format and read back by
``read_provenance``; several levels go on T (ImageJ frames, OME SizeT, an NGFF time axis), never on Z."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from blurlatent.errors import UsageError
from blurlatent.files.provenance import Provenance, read_provenance
from blurlatent.files.stacks import Stack, alpha_labels, read_stack, write_stack


def ramp(*shape, dtype=np.uint16):
    return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape).astype(dtype)


RECORD = Provenance("deblur", (0.25, 0.5), "tiny.pt", "ab" * 32, "0.2.0", planes=(0.0, 8.0), z_um=(0.0, 16.0),
                    target=16.0, channel=1, channel_name="DAPI", inputs=("cells.ome.tif",), self_check=(1.25, 9.5))


@pytest.mark.parametrize("name, kind", [("o.ome.tif", "ome"), ("o.tif", "imagej"), ("o.ome.zarr", "zarr")])
def test_levels_and_their_provenance_read_back(tmp_path, name, kind):
    if kind == "zarr":
        pytest.importorskip("zarr")
    like = Stack(ramp(2, 32, 32), "ZYX", (0.5, 0.5, 2.0), "DAPI", kind="imagej" if kind == "imagej" else "ome")
    levels = ramp(2, 32, 32, dtype=np.int16)  # ImageJ holds int16 too (tifffile's imagej rule; issue 28, cause 6)
    write_stack(tmp_path / name, levels, like=like, labels=alpha_labels(RECORD.alphas), provenance=RECORD)
    assert read_provenance(tmp_path / name) == RECORD.as_dict()
    with pytest.raises(UsageError, match="holds 2 time points"):  # levels are no z-stack to deblur again
        read_stack(tmp_path / name)
    if kind == "ome":
        with tifffile.TiffFile(tmp_path / name) as tif:
            pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
            assert tif.series[0].axes == "TYX" and (pixels["SizeT"], pixels["SizeZ"]) == (2, 1)
            assert pixels["PhysicalSizeZ"] == 2.0  # the stack's z step, kept
    elif kind == "imagej":
        with tifffile.TiffFile(tmp_path / name) as tif:
            meta = tif.imagej_metadata
            assert tif.series[0].axes == "TYX" and meta["frames"] == 2 and "slices" not in meta
            assert tif.series[0].dtype == np.int16
            assert meta["Labels"] == ["alpha=0.250", "alpha=0.500"] and meta["spacing"] == 2.0
    else:
        attrs = json.loads((tmp_path / name / ".zattrs").read_text())
        axes = attrs["multiscales"][0]["axes"]
        assert [(a["name"], a["type"]) for a in axes] == [("t", "time"), ("y", "space"), ("x", "space")]
        assert attrs["blurlatent"]["labels"] == ["alpha=0.250", "alpha=0.500"]
        models = pytest.importorskip("ome_zarr_models")
        assert models.open_ome_zarr(str(tmp_path / name)).attributes.multiscales[0].axes[0].type == "time"  # NGFF


def test_one_plane_plain_tiff_and_png_carry_it_too(tmp_path):
    one = Provenance("blur", (0.5,), "w1", "cd" * 32, "0.2.0", inputs=("a.tif", "b.tif"))
    write_stack(tmp_path / "p.tif", ramp(32, 32, dtype=np.uint16), provenance=one)
    write_stack(tmp_path / "p.png", ramp(32, 32, dtype=np.uint8), provenance=one)
    for name in ("p.tif", "p.png"):
        assert read_provenance(tmp_path / name) == one.as_dict()
    with tifffile.TiffFile(tmp_path / "p.tif") as tif:
        assert not tif.is_imagej and not tif.is_ome and tif.series[0].shape == (32, 32)
    assert read_stack(tmp_path / "p.tif").data.shape == (1, 32, 32)  # still a plane blurlatent reads


def test_files_without_provenance_and_bad_calls(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", ramp(32, 32))
    assert read_provenance(tmp_path / "plain.tif") == {}
    write_stack(tmp_path / "stack.ome.tif", ramp(3, 32, 32))  # no provenance: planes stay Z
    assert read_provenance(tmp_path / "stack.ome.tif") == {}
    assert read_stack(tmp_path / "stack.ome.tif").data.shape == (3, 32, 32)
    (tmp_path / "text.tif").write_text("not an image")
    with pytest.raises(UsageError, match="text.tif: cannot read its metadata"):
        read_provenance(tmp_path / "text.tif")
    with pytest.raises(UsageError, match="missing.tif: file not found"):
        read_provenance(tmp_path / "missing.tif")
    with pytest.raises(UsageError, match="provenance: 2 alphas for 3 levels"):
        write_stack(tmp_path / "x.tif", ramp(3, 32, 32), provenance=RECORD)
