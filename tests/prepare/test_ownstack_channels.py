"""prepare on own stacks whose files disagree (issue 28 cause 5): channels listed in another order are matched by
name (the manifest names them), a stack without the named channel and stacks of two z steps are refused in one
line naming the files, before any plane is read."""

import numpy as np
import pytest
import tifffile
from helpers.stack_data import make_stack

from blurlatent.errors import UsageError
from blurlatent.prepare.builder import prepare
from blurlatent.prepare.store import Store

FAST = dict(focus=4, planes="-2:0:2", crop=32, split=(0, 0, 1), workers=1, normalize="minmax")


def minmax8(image):
    image = image.astype(np.float64)
    return np.rint((image - image.min()) / (image.max() - image.min()) * 255).astype(np.uint8)


def write_ome(path, czyx, names, z_step=2.0):
    tifffile.imwrite(path, czyx, ome=True, photometric="minisblack",
                     metadata={"axes": "CZYX", "Channel": {"Name": list(names)}, "PhysicalSizeZ": z_step})


def test_channels_in_another_order_are_matched_by_name(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    dapi, gfp = make_stack(4, channels=2, seed=1)  # two ZYX channels of distinct textures
    write_ome(src / "a.ome.tif", np.stack([dapi, gfp]), ["DAPI", "GFP"])
    write_ome(src / "b.ome.tif", np.stack([gfp, dapi]), ["GFP", "DAPI"])  # the same field, channels swapped
    prepare(src, tmp_path / "store", channels=["w1"], **FAST)
    store = Store(tmp_path / "store")
    records = {r["field"]: r for r in store.fields("test", "w1")}
    assert {f: r["channel_name"] for f, r in records.items()} == {"a": "DAPI", "b": "DAPI"}
    assert [p["stack_channel"] for p in records["b"]["planes"]] == [1, 1]  # DAPI is b's second channel
    for i in range(2):  # the test fields in name order, a and b; stored planes 14, 16 = stack planes 2, 4
        for j, z in enumerate((2, 4)):
            np.testing.assert_array_equal(store.full_test("w1")[i, j], minmax8(dapi[z]))


def test_a_stack_without_the_named_channel_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    data = make_stack(4, channels=2, seed=2)
    write_ome(src / "a.ome.tif", data, ["DAPI", "GFP"])
    write_ome(src / "b.ome.tif", data, ["GFP", "RFP"])
    with pytest.raises(UsageError, match=r"b.ome.tif: has no channel named DAPI \(w1: channel 0 of a.ome.tif; its "
                                         r"channels are 0: GFP, 1: RFP\); move it out of the folder, or choose "
                                         "channels that every stack names$"):
        prepare(src, tmp_path / "store", **FAST)
    assert not (tmp_path / "store").exists()


def test_stacks_of_two_z_steps_are_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    data = make_stack(4, channels=1, seed=3)
    write_ome(src / "a.ome.tif", data, ["DAPI"], z_step=0.5)
    write_ome(src / "b.ome.tif", data, ["DAPI"], z_step=2.0)
    with pytest.raises(UsageError, match=r"a.ome.tif and .*b.ome.tif: z steps of 0.5 µm and 2 µm; .* prepare stacks "
                                         "of one z step together"):
        prepare(src, tmp_path / "store", **FAST)
    assert not (tmp_path / "store").exists()
