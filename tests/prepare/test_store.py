"""store.py: ``Store.verify`` trusts an array only when it is what prepare wrote — cheaply (size, mtime and
sampled blocks) when nothing changed, by its sha256 when its mtime differs (a copy or a change) — and
``prepare`` no longer calls a changed store "up to date" (issue 11)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import blurlatent.prepare.store as store_module
from blurlatent.errors import UsageError
from blurlatent.prepare.store import SAMPLE_BLOCKS, SAMPLE_BYTES, Store, write_store


def make(path: Path, channels=("w1", "w2"), crops=40) -> Path:
    rng = np.random.default_rng(0)
    arrays = {f"{c}_{s}": rng.integers(0, 256, (crops, 3, 32, 32), dtype=np.uint8)
              for c in channels for s in ("train", "val", "test")}
    write_store(path, {"planes": [0, 8, 16], "channels": list(channels), "fields": []}, arrays)
    return path


def flip(file: Path, offset: int, keep_mtime: bool) -> None:
    """Change one byte in place (same size), as a bad disk, a stray `dd` or another program would."""
    st = file.stat()
    data = bytearray(file.read_bytes())
    data[offset] ^= 0xFF
    with open(file, "r+b") as handle:
        handle.write(data)
    if keep_mtime:
        os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_an_unchanged_store_is_verified_without_reading_its_arrays_whole(tmp_path, monkeypatch):
    store = Store(make(tmp_path / "s"))
    manifest = store.manifest
    assert set(manifest["stamps"]) == set(manifest["samples"]) == set(manifest["checksums"])
    monkeypatch.setattr(store_module, "sha256_file", lambda f: pytest.fail(f"read {f} whole"))
    store.verify()


def test_a_changed_byte_is_caught_naming_the_file_and_the_fix(tmp_path):
    path = make(tmp_path / "s")
    size = (path / "w1_train.npy").stat().st_size
    flip(path / "w1_train.npy", size // 2 + 7, keep_mtime=False)  # not on a sampled block: the sha256 finds it
    with pytest.raises(UsageError, match=r"w1_train.npy: store array is missing or damaged \(sha256 differs.*"
                                         r"rerun `blurlatent prepare` with force=True"):
        Store(path).verify()


def test_a_changed_sampled_block_is_caught_even_with_the_mtime_put_back(tmp_path):
    path = make(tmp_path / "s")
    size = (path / "w1_val.npy").stat().st_size
    flip(path / "w1_val.npy", (size - SAMPLE_BYTES) * 5 // (SAMPLE_BLOCKS - 1) + 3, keep_mtime=True)
    with pytest.raises(UsageError, match="w1_val.npy: .*its bytes differ from what prepare wrote"):
        Store(path).verify()


def test_a_copied_store_passes_by_its_checksums(tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(make(tmp_path / "s"), copy, copy_function=shutil.copyfile)  # new mtimes, same bytes
    hashed = []
    real = store_module.sha256_file
    monkeypatch.setattr(store_module, "sha256_file", lambda f: hashed.append(Path(f).name) or real(f))
    Store(copy).verify(["w1"])
    assert sorted(hashed) == ["w1_test.npy", "w1_train.npy", "w1_val.npy"]  # only the channel asked for


def test_truncated_missing_and_special_arrays_are_named(tmp_path):
    path = make(tmp_path / "s")
    data = (path / "w2_test.npy").read_bytes()
    (path / "w2_test.npy").write_bytes(data[:-100])
    with pytest.raises(UsageError, match=rf"w2_test.npy: .*\({len(data) - 100} bytes, prepare wrote {len(data)}\)"):
        Store(path).verify()
    Store(path).verify(["w1"])  # w1 alone is intact
    (path / "w2_test.npy").unlink()
    with pytest.raises(UsageError, match=r"w2_test.npy: store array is missing or damaged \(missing\)"):
        Store(path).verify()
    os.mkfifo(path / "w2_test.npy")
    with pytest.raises(UsageError, match="w2_test.npy: .*not a regular file"):
        Store(path).verify()


def test_an_older_store_without_stamps_gets_the_header_and_size_check(tmp_path):
    path = make(tmp_path / "s", channels=("w1",))
    manifest = json.loads((path / "manifest.json").read_text())
    for key in ("stamps", "samples"):
        manifest.pop(key)
    (path / "manifest.json").write_text(json.dumps(manifest))
    Store(path).verify()
    data = (path / "w1_train.npy").read_bytes()
    (path / "w1_train.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match="w1_train.npy: store array is missing or damaged"):
        Store(path).verify()


def test_prepare_refuses_a_changed_store_it_would_call_up_to_date_and_force_rebuilds_it(tmp_path):
    from blurlatent.prepare.builder import prepare
    from blurlatent.synth.generator import synthesize

    src = tmp_path / "src"
    synthesize(src, fields=4, channels=["w1"], planes=[0, 8, 16], size=(48, 40), seed=1, workers=1)
    options = dict(channels=["w1"], planes=[0, 8, 16], crop=32, workers=1)
    out = prepare(src, tmp_path / "store", **options).path
    assert prepare(src, out, **options).up_to_date
    checksums = json.loads((out / "manifest.json").read_text())["checksums"]
    size = (out / "w1_train.npy").stat().st_size
    flip(out / "w1_train.npy", size // 2 + 11, keep_mtime=False)
    with pytest.raises(UsageError, match=r"w1_train.npy: store array is missing or damaged.*with force=True"):
        prepare(src, out, **options)
    again = prepare(src, out, force=True, **options)
    assert not again.up_to_date
    assert json.loads((out / "manifest.json").read_text())["checksums"] == checksums


def test_the_manifest_records_the_images_scale_and_older_stores_get_bbbc006s(tmp_path):
    """Issue 26: what training copies into the checkpoint, so inference resamples inputs to it."""
    import tifffile

    from blurlatent.bbbc006 import FieldKey
    from blurlatent.prepare.discover import Inventory, Source
    from blurlatent.prepare.store import source_scale
    from blurlatent.synth.generator import TOOL

    stack = tmp_path / "cells.ome.tif"
    tifffile.imwrite(stack, np.zeros((3, 8, 8), np.uint16), metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325, "PhysicalSizeZ": 0.5})
    key = FieldKey("cells", 0, "w1")
    own = Inventory({16: {key: Source(16, key, str(stack), None, 2, 0)}}, {16: "stacks"}, [], layout="stacks")
    assert source_scale(tmp_path, own) == {"pixel_size_um": 0.325, "z_step_um": 0.5, "optics": None}
    bbbc = Inventory({}, {}, [])
    assert source_scale(tmp_path, bbbc) == {"pixel_size_um": 0.645, "z_step_um": 2.0, "optics": None}
    record = {"tool": TOOL, "optics": {"pixel_um": 0.645, "na": 0.55, "z_step_um": 1.8,
                                       "changed": {"na": 0.55, "wavelength_um": 0.52, "z_step_um": 1.8}}}
    (tmp_path / "synth.json").write_text(json.dumps(record))
    assert source_scale(tmp_path, bbbc) == {"pixel_size_um": 0.645, "z_step_um": 1.8,
                                            "optics": {"na": 0.55, "wavelength_um": 0.52}}
    old = Store(make(tmp_path / "old"))  # prepared before the scale was recorded: BBBC006's layout
    assert old.scale == {"pixel_size_um": 0.645, "z_step_um": 2.0, "optics": None}
    manifest = json.loads((tmp_path / "old" / "manifest.json").read_text())
    (tmp_path / "old" / "manifest.json").write_text(json.dumps({**manifest, "source_kinds": ["stacks"]}))
    assert Store(tmp_path / "old").scale == {"pixel_size_um": None, "z_step_um": None, "optics": None}
