"""imageio: decoding refuses what is not an image, naming the source; the real BBBC006 sample files
decode (LZW TIFFs) and their names parse."""

from pathlib import Path

import numpy as np
import pytest

from blurlatent.bbbc006 import parse_bbbc_name
from blurlatent.errors import UsageError
from blurlatent.files.images import decode_image, read_image

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "bbbc006"  # three real planes (README there)


def test_decode_rejects_non_image_bytes_naming_the_source():
    with pytest.raises(UsageError, match="member.tif: not a TIFF"):
        decode_image(b"hello world", "archive.zip:member.tif")


def test_real_bbbc006_samples_decode_and_names_parse():
    files = sorted(SAMPLES.glob("*.tif"))
    assert len(files) == 3
    for file in files:
        key = parse_bbbc_name(file.name)
        assert key is not None and key.channel == "w1", file.name
        image = read_image(file)  # LZW: needs imagecodecs
        assert image.dtype == np.uint16 and image.shape == (520, 696)
        # a strongly defocused plane: a camera offset/background near 100-150, maxima of a few hundred to ~1700
        assert 90 <= image.min() <= 160 and 400 <= image.max() <= 2000, file.name


# --- crafted inputs (issue 11): refused before they can hang, exhaust memory or be half-read ---------------


def finishes_within(seconds: float, fn, release: Path | None = None):
    """``fn()``'s exception (or None) if it returns within ``seconds``; fails the test when it blocks.
    ``release``: a FIFO whose blocked reader is set free afterwards (a writer opens and closes it)."""
    import threading

    outcome = {}

    def run():
        try:
            fn()
            outcome["error"] = None
        except Exception as exc:  # handed to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if release is not None:
            import os

            os.close(os.open(release, os.O_WRONLY | os.O_NONBLOCK))  # EOF for the blocked reader
        pytest.fail(f"blocked for more than {seconds} s")
    return outcome["error"]


@pytest.mark.parametrize("name", ["fifo.tif", "fifo.zip"])
def test_a_fifo_is_refused_instead_of_blocking_the_read(tmp_path, name):
    import os

    from blurlatent.files.images import read_zip_member, zip_listing

    fifo = tmp_path / name
    os.mkfifo(fifo)
    calls = [lambda: read_image(fifo)] if name.endswith(".tif") else [lambda: zip_listing(fifo),
                                                                      lambda: read_zip_member(fifo, "a.tif")]
    for call in calls:
        error = finishes_within(3, call, release=fifo)
        assert isinstance(error, UsageError) and "is a FIFO (named pipe), not a regular file" in str(error), error
        assert name in str(error)


def test_a_tiff_with_a_second_series_is_refused_not_half_read(tmp_path):
    import tifffile

    path = tmp_path / "two.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.ones((48, 64), np.uint16))
        tif.write(np.zeros((20, 30), np.uint16))  # a second image, e.g. a thumbnail or another channel
    with pytest.raises(UsageError, match=r"two.tif: TIFF holds 2 image series \[\(48, 64\), \(20, 30\)\].*"
                                         "save each series to its own file"):
        read_image(path)
    tifffile.imwrite(tmp_path / "one.tif", np.ones((48, 64), np.uint16))
    assert read_image(tmp_path / "one.tif").shape == (48, 64)


def test_a_zip_bomb_member_is_refused_before_it_is_inflated(tmp_path):
    import tracemalloc
    import zipfile

    from blurlatent.files.images import close_zips, read_zip_member

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("z/x.tif", "w") as member:
        for _ in range(70):
            member.write(bytes(1 << 20))  # 70 MiB of zeros: ~70 KB deflated
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match=r"bomb.zip:z/x.tif: zip member would inflate to 70 MB .*zip bomb"):
            read_zip_member(bomb, "z/x.tif")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        close_zips()
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB allocated: the member was inflated before the check"
