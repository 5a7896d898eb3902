"""imageio: decoding refuses what is not an image, naming the source; the real BBBC006 sample files
decode (LZW TIFFs) and their names parse."""

from pathlib import Path

import numpy as np
import pytest

from blurlatent.bbbc006 import parse_bbbc_name
from blurlatent.errors import UsageError
from blurlatent.imageio import decode_image, read_image

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "bbbc006-samples"


def test_decode_rejects_non_image_bytes_naming_the_source():
    with pytest.raises(UsageError, match="member.tif: not a TIFF"):
        decode_image(b"hello world", "archive.zip:member.tif")


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="real BBBC006 samples not present beside the repository")
def test_real_bbbc006_samples_decode_and_names_parse():
    files = sorted(SAMPLES.glob("*.tif"))
    assert len(files) >= 20
    for file in files:
        key = parse_bbbc_name(file.name)
        assert key is not None and key.channel == "w1", file.name
        image = read_image(file)  # LZW: needs imagecodecs
        assert image.dtype == np.uint16 and image.shape == (520, 696)
        # a strongly defocused plane: a camera offset/background near 100-150, maxima of a few hundred to ~1700
        assert 90 <= image.min() <= 160 and 400 <= image.max() <= 2000, file.name
