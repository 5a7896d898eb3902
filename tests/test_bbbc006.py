"""bbbc006: file names (whatever the UUID), plane folders and plane ranges."""

import pytest

from blurlatent.bbbc006 import FieldKey, format_planes, parse_bbbc_name, parse_planes, plane_from_path
from blurlatent.errors import UsageError


def test_bbbc_name_has_no_separator_before_the_uuid():
    name = "mcf-z-stacks-03212011_a01_s1_w1a571d43d-5554-47fd-bb54-5db68290e5a7.tif"
    assert parse_bbbc_name(name) == FieldKey("a01", 1, "w1")
    assert parse_bbbc_name("00_" + name) == FieldKey("a01", 1, "w1")  # the google/microscopeimagequality copies
    assert parse_bbbc_name(name.replace("_w1a571", "_w1_a571")) is None  # a separator is not the real layout
    other = "mcf-z-stacks-03212011_p24_s2_w2" + "0" * 8 + "-0000-4000-8000-" + "0" * 12 + ".tif"
    assert parse_bbbc_name(other) == FieldKey("p24", 2, "w2")
    assert parse_bbbc_name("notes.txt") is None


def test_plane_from_path_reads_folder_or_zip_name():
    assert plane_from_path("x/BBBC006_v1_images_z_07/a.tif") == 7
    assert plane_from_path("BBBC006_v1_images_z_33.zip/BBBC006_v1_images_z_33/a.tif") == 33
    assert plane_from_path("elsewhere/a.tif") is None


@pytest.mark.parametrize(
    "text, planes",
    [("0:16:2", [0, 2, 4, 6, 8, 10, 12, 14, 16]), ("16:32:2", list(range(16, 33, 2))), ("0:33", list(range(34))),
     ("8", [8]), ("16,0,8", [0, 8, 16])],
)
def test_parse_planes_inclusive_stop(text, planes):
    assert parse_planes(text) == planes
    assert parse_planes(format_planes(planes)) == planes


@pytest.mark.parametrize("text", ["16:0", "0:16:0", "0:34", "a:b", "", "1:2:3:4", "-1"])
def test_parse_planes_rejects_bad_ranges(text):
    with pytest.raises(UsageError, match="plane"):
        parse_planes(text)


def test_focus_triplets_are_every_pair_of_even_planes_before_focus_then_focus():
    from itertools import combinations

    from blurlatent.bbbc006 import FOCUS_TRIPLETS, PAPER_TRIPLETS

    expected = {(a, b, 16) for a, b in combinations(range(0, 16, 2), 2)}  # C(8, 2) = 28 pairs
    assert len(FOCUS_TRIPLETS) == 28 and set(FOCUS_TRIPLETS) == expected
    assert {t for t in PAPER_TRIPLETS if t[2] == 16} <= set(FOCUS_TRIPLETS)
