"""prepare on a folder of one's own z-stacks: layout detection, planes relative to focus on either side, the
focus per stack in the manifest, skipped stacks, channels, up-to-date detection."""

import json
import logging

import numpy as np
import pytest
import tifffile
from helpers.stack_data import make_stack, write_stack, write_stacks

from blurlatent.errors import UsageError
from blurlatent.prepare.builder import prepare
from blurlatent.prepare.own_stacks import parse_focus, parse_offsets, source_layout, stored_plane
from blurlatent.prepare.store import Store
from blurlatent.synth import generator as synth

FOCUSES = [4, 5, 3, 4, 6, 4]
FAST = dict(crop=32, split=(4, 1, 1), workers=1)


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    root = tmp_path_factory.mktemp("own") / "stacks"
    return root, write_stacks(root, FOCUSES)


def _minmax8(image):
    image = image.astype(np.float64)
    return np.rint((image - image.min()) / (image.max() - image.min()) * 255).astype(np.uint8)


def test_layout_is_detected_and_neither_is_one_line(tmp_path, stacks):
    assert source_layout(stacks[0]) == "stacks"
    synth.synthesize(tmp_path / "bbbc", fields=1, channels=["w1"], planes=[16], size=(32, 32), seed=0, workers=1)
    assert source_layout(tmp_path / "bbbc") == "bbbc006"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("no images\n")
    with pytest.raises(UsageError, match="holds neither BBBC006_v1_images_z_XX folders/zips nor z-stack files"):
        prepare(tmp_path / "other", tmp_path / "store", focus="auto")
    with pytest.raises(UsageError, match="^focus 3: BBBC006 folders are in focus at plane 16"):
        prepare(tmp_path / "bbbc", tmp_path / "store", focus=3)
    assert not (tmp_path / "store").exists()


def test_offsets_and_focus_parsing():
    assert parse_offsets("-16:0:2") == list(range(-16, 1, 2))
    assert parse_offsets("0:16:4") == [0, 4, 8, 12, 16]
    assert parse_offsets([-4, 0, -2]) == [-4, -2, 0]
    assert [stored_plane(o) for o in (-16, -2, 0, 2, 16)] == [0, 14, 16, 14, 0]
    with pytest.raises(UsageError, match="^planes '-4:4:2' lie on both sides of focus; give one side"):
        parse_offsets("-4:4:2")
    with pytest.raises(UsageError, match="^planes '-20:0:4': plane -20 is outside -16..16"):
        parse_offsets("-20:0:4")
    assert parse_focus("auto") == "auto" and parse_focus(" AUTO ") == "auto" and parse_focus("12") == 12
    with pytest.raises(UsageError, match="^focus: not given"):
        parse_focus(None)
    with pytest.raises(UsageError, match="^focus 'sharp': use auto or a plane number"):
        parse_focus("sharp")


def test_auto_focus_before_focus_stores_bbbc_numbering(stacks, tmp_path):
    root, truth = stacks
    result = prepare(root, tmp_path / "store", focus="auto", planes="-3:0", **FAST)
    assert result.focus == truth and result.planes == [13, 14, 15, 16]
    store = Store(tmp_path / "store")
    m = store.manifest
    assert m["focus"] == "auto" and m["focus_measure"] == "normvar" and m["planes_from_focus"] == [-3, -2, -1, 0]
    assert m["focus_planes"] == truth and m["source_kinds"] == ["stacks"] and store.channels == ["w1", "w2"]
    assert sorted(r["field"] for r in store.fields(channel="w1")) == sorted(truth)
    record = store.fields("test", "w2")[0]  # the first name sorted: the test field
    name = record["field"]
    assert [p["z"] for p in record["planes"]] == [truth[name] - 3 + i for i in range(4)]
    stack = tifffile.imread(record["planes"][0]["file"])  # ImageJ: ZCYX (T of 1 dropped), OME: CZYX
    expected = stack[:, 1] if name.endswith(" ij") else stack[1]  # channel w2 as ZYX
    f = truth[name]
    for i, z in enumerate(range(f - 3, f + 1)):
        np.testing.assert_array_equal(store.full_test("w2")[0, i], _minmax8(expected[z]))
        # the 16-bit original of a stored plane comes back from its stack (the demo's figures read it so)
        np.testing.assert_array_equal(store.source_image(record, 13 + i), expected[z])


def test_after_focus_is_mirrored_and_fixed_focus(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    for i in range(3):
        write_stack(root / f"s{i}.ome.tif", make_stack(2, planes=7, seed=i))
    result = prepare(root, tmp_path / "store", focus=2, planes="0:4:2", crop=32, split=(1, 1, 1), workers=1)
    store = Store(result.path)
    assert store.planes == [12, 14, 16] and result.focus == {"s0": 2, "s1": 2, "s2": 2}
    record = store.fields("test", "w1")[0]
    # plane 12 is stack plane focus + 4, plane 16 the focus: mirrored, the blurriest first as in BBBC006
    assert [(p["plane"], p["z"]) for p in record["planes"]] == [(12, 6), (14, 4), (16, 2)]
    data = tifffile.imread(root / "s0.ome.tif")[0]
    np.testing.assert_array_equal(store.full_test("w1")[0, 0], _minmax8(data[6]))
    assert store.manifest["focus"] == "2" and "focus_measure" not in store.manifest


def test_stacks_too_short_for_the_planes_are_skipped_or_fail_with_strict(stacks, tmp_path, caplog):
    root, truth = stacks
    with caplog.at_level(logging.WARNING):
        result = prepare(root, tmp_path / "store", focus="auto", planes="-4:0:2", crop=32, split=(3, 1, 0), workers=1)
    short = sorted(name for name, f in truth.items() if f < 4)
    assert short and [line.split(":")[0] for line in result.skipped] == [f"stack {n}" for n in short]
    assert "leaves no plane -1 for planes -4:0:2" in result.skipped[0] and "; skipped" in caplog.text
    assert sorted(result.focus) == sorted(set(truth) - set(short))
    with pytest.raises(UsageError, match=r"1 stack\(s\)\); choose planes nearer the focus or drop strict=True"):
        prepare(root, tmp_path / "strict", focus="auto", planes="-4:0:2", strict=True, **FAST)
    with pytest.raises(UsageError, match="no stack has planes 0:16:4 around its focus"):
        prepare(root, tmp_path / "none", focus=0, planes="0:16:4", **FAST)
    assert not (tmp_path / "strict").exists() and not (tmp_path / "none").exists()


def test_channels_single_channel_stacks_and_missing_channels(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    for i in range(3):
        write_stack(root / f"plain{i}.tif", make_stack(3, planes=6, channels=1, seed=i))
    result = prepare(root, tmp_path / "store", focus="auto", planes="-2:0", crop=32, split=(1, 1, 1), workers=1)
    assert Store(result.path).channels == ["w1"] and set(result.focus.values()) == {3}
    write_stack(root / "two ij.tif", make_stack(3, planes=6, channels=2, seed=9))
    result = prepare(root, tmp_path / "w2", channels=["w1", "w2"], focus="auto", planes="-2:0", crop=32,
                     split=(1, 0, 0), workers=1)
    assert list(result.focus) == ["two ij"] and len(result.skipped) == 3
    assert "no channel w2 (channel 1 of the file)" in result.skipped[0]


def test_rerun_is_up_to_date_and_other_focus_needs_force(stacks, tmp_path):
    root, truth = stacks
    first = prepare(root, tmp_path / "store", focus="auto", planes="-2:0", **FAST)
    again = prepare(root, tmp_path / "store", focus="auto", planes="-2:0", **FAST)
    assert again.up_to_date and again.focus == first.focus == truth and again.counts == first.counts
    with pytest.raises(UsageError, match="force"):
        prepare(root, tmp_path / "store", focus=4, planes="-2:0", **FAST)
    fixed = prepare(root, tmp_path / "store", focus=4, planes="-2:0", force=True, **FAST)
    assert not fixed.up_to_date and set(fixed.focus.values()) == {4}
    assert json.loads((tmp_path / "store" / "manifest.json").read_text())["focus"] == "4"


def test_auto_focus_ignores_a_speck_and_skips_a_focus_past_the_stack(tmp_path):
    """Issue 28, cause 4: `prepare --focus auto` took the plane of a 2x2 saturated speck, and the last plane of a
    stack whose focus lies past it, as focus planes."""
    root = tmp_path / "src"
    root.mkdir()
    for i in range(3):
        write_stack(root / f"s{i}.tif", make_stack(4, planes=9, channels=1, seed=i))
    speck = make_stack(4, planes=9, channels=1, seed=7)
    speck[0, 1, 10:12, 20:22] = 65535  # plane 1
    write_stack(root / "speck.tif", speck)
    write_stack(root / "past.tif", make_stack(11, planes=9, channels=1, seed=8))  # in focus 3 planes past its end
    result = prepare(root, tmp_path / "store", focus="auto", planes="-2:0", crop=32, split=(2, 1, 1), workers=1)
    assert result.focus == {"s0": 4, "s1": 4, "s2": 4, "speck": 4}
    assert result.skipped == ["stack past: the focus measure peaks at its last plane, z8 of 9, so the focus lies "
                              "outside the stack"]
