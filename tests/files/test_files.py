"""files: the output policy for files (never an input, also behind links; a dangling link exists; two
outputs never share a path) and all-or-nothing writes of many files (``staged_files``)."""

from __future__ import annotations

import os

import pytest

from blurlatent.errors import UsageError
from blurlatent.files.atomic import atomic_write_bytes, check_outputs, check_writable, staged_files


def test_an_input_is_never_an_output_even_through_links(tmp_path):
    source = tmp_path / "in.tif"
    source.write_bytes(b"the only copy")
    os.link(source, tmp_path / "hard.tif")
    (tmp_path / "soft.tif").symlink_to(source)
    for out in ("in.tif", "hard.tif", "soft.tif"):
        with pytest.raises(UsageError, match=rf"{out}: is the input .*in.tif; .*even with force=True"):
            check_writable(tmp_path / out, True, inputs=[tmp_path / "other.tif", source])
    check_writable(tmp_path / "hard.tif", True, inputs=[tmp_path / "other.tif"])  # not an input: --force replaces it
    assert source.read_bytes() == b"the only copy"


def test_a_dangling_link_exists_and_force_replaces_the_link_not_its_target(tmp_path):
    link = tmp_path / "out.tif"
    link.symlink_to(tmp_path / "missing.tif")
    with pytest.raises(UsageError, match=r"out.tif: already exists \(a symbolic link to .*missing.tif\); pass force"):
        check_writable(link, False)
    atomic_write_bytes(link, b"new", force=True)
    assert not link.is_symlink() and link.read_bytes() == b"new" and not (tmp_path / "missing.tif").exists()


def test_outputs_are_checked_together(tmp_path):
    (tmp_path / "b.tif").write_bytes(b"x")
    with pytest.raises(UsageError, match="a.tif: two outputs would be written to this path"):
        check_outputs([tmp_path / "a.tif", tmp_path / "a.tif"], False)
    with pytest.raises(UsageError, match="b.tif: already exists"):
        check_outputs([tmp_path / "a.tif", tmp_path / "b.tif"], False)
    for force in (False, True):  # not "pass --force" first, then "is a folder"
        with pytest.raises(UsageError, match="is a folder, expected a file path"):
            check_outputs([tmp_path], force)
    check_outputs([tmp_path / "a.tif", tmp_path / "b.tif"], True)


def test_staged_files_are_all_or_nothing(tmp_path):
    (tmp_path / "old.tif").write_bytes(b"old")
    outs = [tmp_path / "new" / "deeper" / "a.tif", tmp_path / "old.tif"]
    with pytest.raises(RuntimeError, match="pair 2 failed"):
        with staged_files() as stage:
            for out in outs:
                stage(out).write_bytes(b"written")
            raise RuntimeError("pair 2 failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.tif"]  # no temp, no folder it made
    assert (tmp_path / "old.tif").read_bytes() == b"old"
    with staged_files() as stage:
        for out in outs:
            tmp = stage(out)
            assert tmp.name == out.name and tmp.parent.parent == out.parent  # same name, in a temp beside it
            tmp.write_bytes(b"written")
        assert not outs[0].exists() and (tmp_path / "old.tif").read_bytes() == b"old"  # nothing before the end
    assert [p.read_bytes() for p in outs] == [b"written", b"written"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "old.tif"]
    assert [p.name for p in outs[0].parent.iterdir()] == ["a.tif"]
