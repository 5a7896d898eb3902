"""A z-stack read for two planes reads those two (issue 28 cause 11): TIFF pages by index, OME-Zarr chunks one plane
deep, equal to the planes of the whole read; deblur --z reads two planes when the target is given, the whole stack
once when it is found (--target auto), never twice."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from helpers.infer_model import tiny_checkpoint
from helpers.stack_data import make_stack
from helpers.stack_data import write_stack as write_zyx
from typer.testing import CliRunner

from blurlatent.cli import app
from blurlatent.errors import UsageError
from blurlatent.files.stacks import read_stack, write_stack
from blurlatent.inference.inputs import read_inputs

RNG = np.random.default_rng(11)
STACK = RNG.integers(100, 60000, (10, 2, 32, 40)).astype(np.uint16)  # ZCYX


@pytest.fixture
def page_reads(monkeypatch):
    """Every ``key`` tifffile's series were read with (None: the whole series)."""
    keys: list = []
    original = tifffile.TiffPageSeries.asarray

    def spy(self, *args, **kwargs):
        keys.append(kwargs.get("key"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", spy)
    return keys


@pytest.mark.parametrize("kind", ["plain", "imagej", "ome"])
def test_two_planes_of_a_tiff_are_two_pages(tmp_path, page_reads, kind):
    path = tmp_path / ("z.ome.tif" if kind == "ome" else "z.tif")
    if kind == "plain":
        tifffile.imwrite(path, STACK[:, 1], photometric="minisblack")
    else:
        tifffile.imwrite(path, STACK, imagej=kind == "imagej", ome=kind == "ome", metadata={"axes": "ZCYX"})
    channel = None if kind == "plain" else 1
    whole = read_stack(path, channel=channel)
    assert page_reads == [None] and np.array_equal(whole.data, STACK[:, 1])
    inputs = read_inputs(path, z=(0, 8), channel=channel)
    pages = [0, 8] if kind == "plain" else [1, 17]  # ZC order: page z·2 + c
    assert page_reads == [None, pages]  # those two pages, nothing else
    np.testing.assert_array_equal(inputs.first, whole.data[0])
    np.testing.assert_array_equal(inputs.second, whole.data[8])
    picked = inputs.sources[0]
    assert (picked.planes, picked.plane_count, picked.channel_index) == ((0, 8), 10, channel or 0)
    facts = read_stack(path, channel=channel, planes=())  # the stack's facts, no plane
    assert facts.data.shape == (0, 32, 40) and facts.plane_count == 10
    with pytest.raises(UsageError, match=r"z 0 10: plane 10 is out of range: .* has 10 planes"):
        read_inputs(path, z=(0, 10), channel=channel)
    assert page_reads == [None, pages]  # neither the facts nor a plane out of range read a page


def test_two_planes_of_an_ome_zarr_are_their_chunks(tmp_path):
    pytest.importorskip("zarr")
    path = tmp_path / "z.ome.zarr"
    write_stack(path, STACK[:, 0])  # chunks one plane deep
    chunks = sorted(p for p in (path / "0").rglob("*") if p.is_file() and not p.name.startswith("."))
    assert len(chunks) == 10
    for chunk in chunks:  # every plane but 0 and 8 unreadable: only a read of those two can succeed
        if chunk.relative_to(path / "0").parts[0] not in ("0", "8"):
            chunk.write_bytes(b"not a zarr chunk")
    with pytest.raises(UsageError, match="cannot read OME-Zarr"):
        read_stack(path)
    inputs = read_inputs(path, z=(8, 0))
    np.testing.assert_array_equal(inputs.first, STACK[8, 0])
    np.testing.assert_array_equal(inputs.second, STACK[0, 0])


def test_deblur_reads_two_planes_or_the_whole_stack_once(tmp_path_factory, tmp_path, page_reads):
    ckpt = tiny_checkpoint(tmp_path_factory)
    write_zyx(tmp_path / "s.tif", make_stack(6, planes=12, channels=1))  # in focus at z6
    common = ["-c", str(ckpt), "--device", "cpu"]
    given = CliRunner().invoke(app, ["deblur", str(tmp_path / "s.tif"), "--z", "0", "3", "--target", "9",
                                     "-o", str(tmp_path / "given.tif"), *common])
    assert given.exit_code == 0, given.output
    assert page_reads == [[0, 3]]  # the target and z checked on the stack's facts; two pages read
    found = CliRunner().invoke(app, ["deblur", str(tmp_path / "s.tif"), "--z", "0", "3", "-o",
                                     str(tmp_path / "auto.tif"), *common])
    assert found.exit_code == 0, found.output
    assert page_reads[1:] == [None, [0, 3]]  # the whole stack once for its focus, then the two planes
    assert "target = z6 (focus found by normvar)" in found.output
