"""stacks: z-stacks read from files tifffile itself wrote (multi-page, ImageJ, OME), ambiguity refused with one
line naming the parameter, and metadata written back, checked by tifffile's own parser."""

import numpy as np
import pytest
import tifffile

from blurlatent.errors import UsageError
from blurlatent.files.stacks import alpha_labels, read_stack, stack_plane, write_stack


def ramp(*shape, dtype=np.uint16):
    return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape).astype(dtype)


def test_multipage_tiff_is_a_zyx_stack_and_a_plane_is_z1(tmp_path):
    data = ramp(5, 32, 32)
    tifffile.imwrite(tmp_path / "z.tif", data, photometric="minisblack")
    stack = read_stack(tmp_path / "z.tif")
    assert stack.data.shape == (5, 32, 32) and np.array_equal(stack.data, data) and stack.data.dtype == np.uint16
    assert stack.kind == "tiff" and stack.pixel_size == (None, None, None) and stack.channel is None
    assert np.array_equal(stack_plane(stack, 3), data[3])
    with pytest.raises(UsageError, match=r"z 5 is out of range: .*z.tif has 5 planes; pass z=0..4"):
        stack_plane(stack, 5)
    tifffile.imwrite(tmp_path / "p.tif", data[0])
    assert read_stack(tmp_path / "p.tif").data.shape == (1, 32, 32)


def test_imagej_hyperstack_needs_a_channel_and_keeps_resolution(tmp_path):
    data = ramp(4, 2, 32, 32)  # ZCYX
    labels = [f"z{z}c{c}" for z in range(4) for c in range(2)]
    tifffile.imwrite(tmp_path / "h.tif", data, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"axes": "ZCYX", "spacing": 2.0, "unit": "um", "Labels": labels})
    with pytest.raises(UsageError, match=r"h.tif: holds 2 channels; pass channel=0..1$") as err:
        read_stack(tmp_path / "h.tif")
    assert err.value.render({"channel": "--channel"}).endswith("pass --channel 0..1")  # as the command line says it
    stack = read_stack(tmp_path / "h.tif", channel=1)
    assert stack.kind == "imagej" and stack.axes == "ZCYX"
    assert np.array_equal(stack.data, data[:, 1]) and stack.pixel_size == (0.5, 0.5, 2.0)
    assert stack.labels == tuple(f"z{z}c1" for z in range(4))
    assert np.array_equal(read_stack(tmp_path / "h.tif", channel="0").data, data[:, 0])  # as the CLI passes it
    with pytest.raises(UsageError, match="channel 2 does not exist"):
        read_stack(tmp_path / "h.tif", channel=2)


def test_ome_tiff_pixel_size_read_exactly_and_written_back(tmp_path):
    data = ramp(3, 2, 32, 32)
    tifffile.imwrite(tmp_path / "in.ome.tif", data, ome=True,
                     metadata={"axes": "ZCYX", "PhysicalSizeX": 0.645, "PhysicalSizeY": 0.645, "PhysicalSizeZ": 2.5,
                               "PhysicalSizeZUnit": "nm", "Channel": {"Name": ["DAPI", "GFP"]}})
    with pytest.raises(UsageError, match=r"holds 2 channels \(0: DAPI, 1: GFP\); pass channel=0..1 or a channel"):
        read_stack(tmp_path / "in.ome.tif")
    stack = read_stack(tmp_path / "in.ome.tif", channel="GFP")
    assert stack.kind == "ome" and stack.channel == "GFP" and np.array_equal(stack.data, data[:, 1])
    assert stack.pixel_size == (0.645, 0.645, 0.0025)  # nm converted to µm
    out = tmp_path / "out.ome.tif"
    write_stack(out, stack.data[:2].astype(np.float32), like=stack, labels=["alpha=0.000", "alpha=0.250"])
    with tifffile.TiffFile(out) as tif:  # the independent reference: tifffile's own OME parser
        assert tif.is_ome and tif.series[0].axes == "ZYX"
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        assert pixels["Pixels"]["PhysicalSizeX"] == 0.645 and pixels["Pixels"]["PhysicalSizeY"] == 0.645
        assert pixels["Pixels"]["PhysicalSizeXUnit"] == "µm" and pixels["Pixels"]["Channel"]["Name"] == "GFP"
        assert pixels["Pixels"]["PhysicalSizeZ"] == pytest.approx(0.0025)  # a stack keeps its z spacing
        assert "source: in.ome.tif" in pixels["Description"] and str(tmp_path) not in pixels["Description"]
        assert "alpha=0.250" in tif.ome_metadata
        assert np.array_equal(tif.asarray(), stack.data[:2].astype(np.float32))
    back = read_stack(out)
    assert back.pixel_size == (0.645, 0.645, 0.0025) and back.channel == "GFP"
    assert back.labels == ("alpha=0.000", "alpha=0.250")


def test_ome_name_always_gets_ome_metadata_and_imagej_in_gives_imagej_out(tmp_path):
    write_stack(tmp_path / "plain.ome.tiff", ramp(32, 32))
    with tifffile.TiffFile(tmp_path / "plain.ome.tiff") as tif:
        assert tif.is_ome
    tifffile.imwrite(tmp_path / "ij.tif", ramp(3, 32, 32), imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"axes": "ZYX", "spacing": 1.5, "unit": "um"})
    like = read_stack(tmp_path / "ij.tif")
    with pytest.raises(UsageError, match="o.tif: an ImageJ TIFF .* not float64; .* or write a .ome.tif"):
        write_stack(tmp_path / "o.tif", like.data[:2].astype(np.float64), like=like, labels=["a", "b"])  # issue 28
    assert not (tmp_path / "o.tif").exists()  # never converted to float32 behind the caller's back
    write_stack(tmp_path / "o.tif", like.data[:2].astype(np.float32), like=like, labels=["a", "b"])
    with tifffile.TiffFile(tmp_path / "o.tif") as tif:
        assert tif.is_imagej and not tif.is_ome and tif.series[0].dtype == np.float32
        meta = tif.imagej_metadata
        assert meta["unit"] == "um" and meta["spacing"] == 1.5 and meta["Labels"] == ["a", "b"]
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.25)
    with pytest.raises(UsageError, match="already exists; pass force=True"):
        write_stack(tmp_path / "o.tif", like.data, like=like)
    with pytest.raises(UsageError, match="labels: 1 given for 3 planes"):
        write_stack(tmp_path / "o2.tif", like.data, labels=["x"])


def test_labels_written_to_a_plain_name_read_back(tmp_path):
    write_stack(tmp_path / "levels.tif", ramp(3, 32, 32, dtype=np.float32), labels=["alpha=0", "alpha=0.5", "alpha=1"])
    assert read_stack(tmp_path / "levels.tif").labels == ("alpha=0", "alpha=0.5", "alpha=1")


def test_several_series_need_series(tmp_path):
    with tifffile.TiffWriter(tmp_path / "two.tif") as tif:
        tif.write(ramp(32, 32))
        tif.write(ramp(2, 16, 16, dtype=np.uint8))
    with pytest.raises(UsageError, match=r"two.tif: holds 2 image series; pass series=0..1 to choose one") as err:
        read_stack(tmp_path / "two.tif")
    assert "pass --series 0..1" in err.value.render({"series": "--series"})
    assert read_stack(tmp_path / "two.tif", series=1).data.shape == (2, 16, 16)
    with pytest.raises(UsageError, match="series 2 does not exist"):
        read_stack(tmp_path / "two.tif", series=2)


def test_time_series_refused_unless_one_time_point(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", ramp(3, 2, 32, 32), imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(UsageError, match=r"t.tif: holds 3 time points \(axes TZYX"):
        read_stack(tmp_path / "t.tif")
    tifffile.imwrite(tmp_path / "t1.ome.tif", ramp(1, 4, 32, 32), ome=True, metadata={"axes": "TZYX"})
    assert read_stack(tmp_path / "t1.ome.tif").data.shape == (4, 32, 32)


def test_unreadable_files_are_one_line_naming_the_file(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(UsageError, match="bad.tif: TIFF holds no readable image; re-copy"):
        read_stack(tmp_path / "bad.tif")
    (tmp_path / "text.tif").write_text("not an image")
    with pytest.raises(UsageError, match="text.tif: cannot read TIFF"):
        read_stack(tmp_path / "text.tif")
    with pytest.raises(UsageError, match="missing.tif: file not found"):
        read_stack(tmp_path / "missing.tif")
    tifffile.imwrite(tmp_path / "rgb.tif", ramp(32, 32, 3, dtype=np.uint8), photometric="rgb")
    with pytest.raises(UsageError, match="colour samples"):
        read_stack(tmp_path / "rgb.tif")


def test_imagej_tzcyx_with_one_time_point_and_nm_units(tmp_path):
    data = ramp(1, 3, 2, 32, 32)  # TZCYX, ImageJ's own order
    tifffile.imwrite(tmp_path / "h.tif", data, imagej=True, resolution=(1 / 200, 1 / 200),
                     metadata={"axes": "TZCYX", "spacing": 500, "unit": "nm"})
    stack = read_stack(tmp_path / "h.tif", channel=0)
    assert stack.axes == "ZCYX" and np.array_equal(stack.data, data[0, :, 0])  # tifffile drops the T of 1
    assert stack.pixel_size == pytest.approx((0.2, 0.2, 0.5))  # nm → µm
    tifffile.imwrite(tmp_path / "px.tif", data[0, :, 0], imagej=True, metadata={"axes": "ZYX", "unit": "pixel"})
    assert read_stack(tmp_path / "px.tif").pixel_size[2] is None  # a unit we cannot convert is no size


def test_ome_czyx_order_and_a_plane_written_with_its_z_step(tmp_path):
    data = ramp(2, 3, 32, 32)
    tifffile.imwrite(tmp_path / "c.ome.tif", data, ome=True,
                     metadata={"axes": "CZYX", "PhysicalSizeX": 645, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 645,
                               "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 1, "Channel": {"Name": ["a", "b"]}})
    stack = read_stack(tmp_path / "c.ome.tif", channel=1)
    assert stack.axes == "CZYX" and np.array_equal(stack.data, data[1]) and stack.channel == "b"
    assert stack.pixel_size == pytest.approx((0.645, 0.645, 1.0))
    write_stack(tmp_path / "plane.tif", stack_plane(stack, 2), like=stack)  # OME in → OME out, any name
    with tifffile.TiffFile(tmp_path / "plane.tif") as tif:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert tif.is_ome and tif.series[0].axes == "YX" and pixels["PhysicalSizeX"] == pytest.approx(0.645)
        # OME images always have a Z axis (here of size 1): the plane keeps the z step of its stack (issue 26)
        assert pixels["PhysicalSizeZ"] == pytest.approx(1.0) and pixels["Channel"]["Name"] == "b"


def test_pixel_sizes_and_alpha_labels_without_a_source(tmp_path):
    levels = ramp(3, 32, 32, dtype=np.float32)
    labels = alpha_labels([0, 0.25, 1])
    assert labels == ["alpha=0.000", "alpha=0.250", "alpha=1.000"]
    write_stack(tmp_path / "l.tif", levels, labels=labels, pixel_size=(0.5, 0.5, 2.0))
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:  # a plain name: ImageJ carries sizes and labels
        assert tif.is_imagej and tif.imagej_metadata["Labels"] == labels and tif.imagej_metadata["spacing"] == 2.0
        num, den = tif.pages[0].tags["YResolution"].value
        assert den / num == pytest.approx(0.5)
    write_stack(tmp_path / "l.ome.tiff", levels, labels=labels, pixel_size=(0.5, 0.5, 2.0))
    with tifffile.TiffFile(tmp_path / "l.ome.tiff") as tif:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert pixels["PhysicalSizeZ"] == 2.0 and all(s in tif.ome_metadata for s in labels)
    assert read_stack(tmp_path / "l.ome.tiff").labels == tuple(labels)
    write_stack(tmp_path / "p.png", ramp(1, 32, 32, dtype=np.uint8))
    assert read_stack(tmp_path / "p.png").data.shape == (1, 32, 32)
    with pytest.raises(UsageError, match="p2.png: PNG holds one plane, data has 3"):
        write_stack(tmp_path / "p2.png", levels)


def test_imagej_slice_labels_name_the_channels(tmp_path):
    """ImageJ keeps channel names only as slice labels: the label every plane of a channel shares is its name
    (issue 26), as OME's Channel Name is; labels that differ within a channel name nothing."""
    data = ramp(3, 2, 32, 32)  # ZCYX
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, metadata={"axes": "ZCYX", "Labels": ["DAPI", "GFP"] * 3})
    stack = read_stack(tmp_path / "ij.tif", channel="GFP")
    assert stack.channel == "GFP" and stack.channel_index == 1 and np.array_equal(stack.data, data[:, 1])
    with pytest.raises(UsageError, match=r"channel RFP does not exist: .*ij.tif holds 2 channels \(0: DAPI, 1: GFP\)"):
        read_stack(tmp_path / "ij.tif", channel="RFP")
    tifffile.imwrite(tmp_path / "cyx.tif", data[0], imagej=True, metadata={"axes": "CYX", "Labels": ["a", "b"]})
    assert read_stack(tmp_path / "cyx.tif", channel="b").channel_index == 1
    per_plane = [f"z{z} c{c}" for z in range(3) for c in range(2)]  # slice labels, not channel names
    tifffile.imwrite(tmp_path / "planes.tif", data, imagej=True, metadata={"axes": "ZCYX", "Labels": per_plane})
    assert read_stack(tmp_path / "planes.tif", channel=1).channel is None


def test_axes_given_for_a_file_without_them(tmp_path):
    """A plain 4-D TIFF has no axes (tifffile: QQYX): ``axes`` says them; a count that does not fit is refused."""
    data = ramp(2, 3, 32, 32)  # CZYX
    tifffile.imwrite(tmp_path / "plain.tif", data, photometric="minisblack")
    with pytest.raises(UsageError, match=r"2 axes \(QQ\) could each be z"):
        read_stack(tmp_path / "plain.tif")
    stack = read_stack(tmp_path / "plain.tif", channel=1, axes="czyx")
    assert stack.axes == "CZYX" and stack.channel_count == 2 and np.array_equal(stack.data, data[1])
    with pytest.raises(UsageError, match=r"axes ZYX: .*plain.tif has 4 dimensions .*QQYX.*axes=CZYX"):
        read_stack(tmp_path / "plain.tif", axes="ZYX")
    with pytest.raises(UsageError, match="axes ZXY: give one letter of TCZYX per dimension, each once, ending in YX"):
        read_stack(tmp_path / "plain.tif", axes="ZXY")


def test_channels_written_as_one_ome_tiff_with_their_names(tmp_path):
    levels = ramp(2, 3, 32, 32)  # C × planes × YX (without a provenance, planes are z: ZCYX in OME's order)
    write_stack(tmp_path / "c.tif", levels, labels=alpha_labels([0.25, 0.5, 0.75]), channels=["DAPI", "GFP"])
    with tifffile.TiffFile(tmp_path / "c.tif") as tif:
        assert tif.is_ome and tif.series[0].axes == "ZCYX"
        assert np.array_equal(tif.asarray(), levels.transpose(1, 0, 2, 3))
    write_stack(tmp_path / "one.tif", levels[:, 0], channels=["DAPI", "GFP"])
    assert np.array_equal(read_stack(tmp_path / "one.tif", channel="GFP").data[0], levels[1, 0])
    with pytest.raises(UsageError, match="2 channels go into one .tif or .ome.tif"):
        write_stack(tmp_path / "c.png", levels[:, 0], channels=["DAPI", "GFP"])
