"""The bad-input matrix, z-stacks (issue 12): `blur`/`deblur` on one stack file with --z, --channel and --series,
and deblur's folder modes. A stack without --z, --z on a single plane or beside a second file, a plane out of
range, a channel or series that is not there: one line naming what to pass, nothing written. The machinery is in
``badinput.py``; ``{bad}/pages.tif`` is a plain 3-page TIFF (a z-stack of three 64x48 planes)."""

from __future__ import annotations

import pytest
from helpers.badinput import Case, run_case

OPTS = "-c {ckpt} -o {work}/out.tif --device cpu"
STACK = "{bad}/pages.tif"

CASES = [
    Case("deblur-stack-works", "3-plane stack with --z 0 1 --target 2 (must work)",
         f"deblur {STACK} --z 0 1 --target 2 {OPTS}", 0, (), makes=("{work}/out.tif", (48, 64))),
    Case("blur-stack-works", "3-plane stack with --z 2 0 --steps 3 (must work)",
         f"blur {STACK} --z 2 0 --steps 3 {OPTS}", 0, (), makes=("{work}/out.tif", (3, 48, 64))),
    Case("deblur-z-out-of-range", "--z past the stack's last plane",
         f"deblur {STACK} --z 0 5 --alpha 0.5 {OPTS}", 2, ("--z 5 is out of range", "pass --z 0..2")),
    Case("deblur-z-single-plane", "--z on a single-plane file",
         f"deblur {{bad}}/sharp.tif --z 0 1 --alpha 0.5 {OPTS}", 2,
         ("sharp.tif: holds one plane", "without --z P1 P2")),
    Case("deblur-stack-without-z", "a stack as one of two files (no --z)",
         f"deblur {STACK} {{bad}}/sharp.tif --alpha 0.5 {OPTS}", 2,
         ("pages.tif: holds 3 planes", "pass --z P1 P2 with this one file")),
    Case("deblur-stack-alone-without-z", "one stack file and no --z",
         f"deblur {STACK} --alpha 0.5 {OPTS}", 2, ("give BLURRIEST and LESS_BLURRY", "with --z P1 P2")),
    Case("deblur-z-with-two-files", "--z beside a second file",
         f"deblur {STACK} {{bad}}/sharp.tif --z 0 1 --alpha 0.5 {OPTS}", 2,
         ("--z chooses two planes of one stack", "two single-plane files without --z")),
    Case("blur-z-equal", "--z naming one plane twice",
         f"blur {STACK} --z 1 1 --alpha 0.5 {OPTS}", 2, ("--z 1 1", "pass two different plane indices")),
    Case("deblur-channel-missing", "2-channel OME-TIFF stack without --channel",
         f"deblur {{work}}/two_channels.ome.tif --z 0 1 --alpha 0.5 {OPTS}", 2,
         ("two_channels.ome.tif: holds 2 channels (0: DAPI, 1: GFP)", "pass --channel 0..1"),
         setup="two_channels"),
    Case("deblur-channel-unknown", "--channel that is not in the file",
         f"deblur {{work}}/two_channels.ome.tif --z 0 1 --channel RFP --alpha 0.5 {OPTS}", 2,
         ("--channel RFP does not exist", "pass --channel 0..1 or a channel name"), setup="two_channels"),
    Case("deblur-series-out-of-range", "--series past the file's last series",
         f"deblur {{work}}/two_series.tif {{bad}}/blurry.tif --series 3 --alpha 0.5 {OPTS}", 2,
         ("--series 3 does not exist", "pass --series 0..1"), setup="two_series"),
    Case("deblur-stack-dir-without-z", "folder of stacks without --z",
         "deblur --stack-dir {bad}/empty --alpha 0.5 -c {ckpt} -o {work}/out --device cpu", 2,
         ("empty: a folder of stacks needs the two planes", "pass --z P1 P2")),
    Case("deblur-stack-dir-empty", "folder of stacks that holds none",
         "deblur --stack-dir {bad}/empty --z 0 1 --alpha 0.5 -c {ckpt} -o {work}/out --device cpu", 2,
         ("empty: holds no z-stacks", ".ome.zarr folders")),
    Case("deblur-folder-modes-mixed", "--stack-dir and --blurriest-dir together",
         "deblur --stack-dir {bad}/empty --blurriest-dir {bad}/empty --z 0 1 -c {ckpt} -o {work}/out --device cpu",
         2, ("--stack-dir, or --blurriest-dir and --less-blurry-dir", "not both")),
    Case("deblur-stack-dir-bad-last", "folder of stacks whose last is a single plane: no output of any stack",
         "deblur --stack-dir {work}/stacks --z 0 1 --alpha 0.5 -c {ckpt} -o {work}/out --device cpu --batch-size 1",
         2, ("z.tif: holds one plane", "without --z P1 P2"), setup="stacks_bad_last"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, paths, tmp_path, monkeypatch):
    run_case(case, paths, tmp_path, monkeypatch)
