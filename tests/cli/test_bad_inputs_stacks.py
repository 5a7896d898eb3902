"""The bad-input matrix, z-stacks (issue 12): `blur`/`deblur` on one stack file with --z, --channel and --series,
and deblur's folder modes. A stack without --z, --z on a single plane or beside a second file, a plane out of
range, a channel or series that is not there: one line naming what to pass, nothing written. Then where Eq. 3's
alpha comes from (issue 28 causes 2, 3, 4, 17, 22): contradictory sources, a target outside the stack, a focus
found past its end (deblur's --target auto and prepare's --focus auto), --z errors named --z and checked first,
--z in the folder mode that pairs single planes. Then issue 26's details: --axes, --channel all, commas in --z, a
missing input answered before the built-in model's line. The machinery is in ``badinput.py``; ``{bad}/pages.tif`` is a
plain 3-page TIFF (a z-stack of three 64x48 planes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.badinput import SETUPS, Case, run_case
from helpers.stack_data import make_stack, write_stack

OPTS = "-c {ckpt} -o {work}/out.tif --device cpu"
DIR_OPTS = "-c {ckpt} -o {work}/out --device cpu"
STACK = "{bad}/pages.tif"
BBBC_PAIR = "{work}/BBBC006_v1_images_z_00/a.tif {work}/BBBC006_v1_images_z_08/a.tif"

CASES = [
    Case("deblur-stack-works", "3-plane stack with --z 0 1 --target 2 (must work)",
         f"deblur {STACK} --z 0 1 --target 2 {OPTS}", 0, (), makes=("{work}/out.tif", (48, 64))),
    Case("blur-stack-works", "3-plane stack with --z 2 0 --steps 3 (must work)",
         f"blur {STACK} --z 2 0 --steps 3 {OPTS}", 0, (), makes=("{work}/out.tif", (3, 48, 64))),
    Case("deblur-z-out-of-range", "--z past the stack's last plane",
         f"deblur {STACK} --z 0 5 --alpha 0.5 {OPTS}", 2,
         ("--z 0 5: plane 5 is out of range", "pass --z P1 P2 within 0..2")),
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
    # issue 28 cause 2: contradictory alpha sources (were: one of them silently used)
    Case("deblur-z-and-planes-disagree", "--z 0 2 beside --planes 0 1 (was: alpha from --planes)",
         f"deblur {STACK} --z 0 2 --planes 0 1 --target 2 {OPTS}", 2, ("--planes 0 1 contradict --z 0 2",
                                                                      "leave --planes out")),
    Case("deblur-planes-contradict-bbbc-names", "--planes 0 4 on files of BBBC006 folders z_00 and z_08 (was: alpha "
         "0.75)", f"deblur {BBBC_PAIR} --planes 0 4 {OPTS}", 2,
         ("--planes 0 4 contradict the BBBC006 folder names", "(planes 0, 8); leave --planes out"), setup="bbbc_pair"),
    Case("deblur-alpha-and-target", "--alpha beside --target (was: the target ignored)",
         f"deblur {{bad}}/sharp.tif {{bad}}/blurry.tif --alpha 0.5 --target 16 {OPTS}", 2,
         ("--alpha or --target 16", "give one")),
    Case("deblur-planes-without-target", "--planes on two plain files, no --target (was: toward BBBC006's 16)",
         f"deblur {{bad}}/sharp.tif {{bad}}/blurry.tif --planes 0 8 {OPTS}", 2,
         ("--planes 0 8 need the in-focus plane", "pass --target P")),
    # cause 3: the target checked against the stack; --target auto (the default) refuses a focus outside it
    Case("deblur-target-outside-stack", "--target 16 on a 3-plane stack (was: deblurred toward 16)",
         f"deblur {STACK} --z 0 1 --target 16 {OPTS}", 2,
         ("--target 16 is not a plane of", "pages.tif: it has 3 planes, 0..2", "or --target auto")),
    Case("deblur-focus-past-the-stack", "--target auto (the default) on a stack in focus past its last plane (was: "
         "toward 16)", f"deblur {{work}}/past.tif --z 0 4 {OPTS}", 2,
         ("past.tif: the focus measure peaks at its last plane, z8 of 9", "pass the in-focus plane as --target P"),
         setup="focus_past"),
    # cause 4: prepare --focus auto refuses the same (was: the last plane taken as the focus)
    Case("prepare-focus-past-the-stack", "prepare --focus auto --strict, a stack in focus past its last plane",
         "prepare {work}/past {work}/store --focus auto --planes -2:0 --crop 32 --workers 1 --strict", 2,
         ("stack past: the focus measure peaks at its last plane, z8 of 9", "drop --strict"), setup="focus_past"),
    # cause 17: --z errors say --z, and the range comes before any alpha
    Case("deblur-z-out-of-range-before-alpha", "--z 0 3 on 3 planes with a target (was: \"--planes … alpha would "
         "be -2\")", f"deblur {STACK} --z 0 3 --target 2 {OPTS}", 2,
         ("--z 0 3: plane 3 is out of range", "pass --z P1 P2 within 0..2")),
    Case("deblur-z-order", "--z 1 0 toward --target 2 (was: reported as --planes)",
         f"deblur {STACK} --z 1 0 --target 2 {OPTS}", 2, ("--z 1 0 do not lead to target 2", "must lie between")),
    # cause 22: folder mode pairs single-plane files; blur and deblur refuse --z there alike
    Case("blur-folders-with-z", "blur --sharp-dir/--blurry-dir with --z (was: ignored, then asked for)",
         f"blur --sharp-dir {{work}}/stacks --blurry-dir {{work}}/stacks --z 2 0 --steps 1 {DIR_OPTS}", 2,
         ("--z chooses two planes of one z-stack", "leave --z out"), setup="stacks_bad_last"),
    Case("blur-folders-of-stacks", "blur --sharp-dir/--blurry-dir of z-stacks (was: pass --z, which it ignores)",
         f"blur --sharp-dir {{work}}/stacks --blurry-dir {{work}}/stacks --steps 1 {DIR_OPTS}", 2,
         ("a.tif: holds 3 planes", "folder mode pairs single-plane files"), setup="stacks_bad_last"),
    Case("deblur-folders-with-z", "deblur --blurriest-dir/--less-blurry-dir with --z",
         f"deblur --blurriest-dir {{work}}/stacks --less-blurry-dir {{work}}/stacks --z 0 1 --alpha 0.5 {DIR_OPTS}",
         2, ("--z chooses two planes of one z-stack", "or deblur a folder of z-stacks with --stack-dir and --z P1 P2"),
         setup="stacks_bad_last"),
    # issue 26 item 6: --axes, --channel all, commas in --z, a missing input before the model line
    Case("deblur-axes-works", "a plain CZYX TIFF (no axes metadata) with --axes CZYX --channel 1 (must work)",
         f"deblur {{work}}/plain.tif --z 0 1 --axes CZYX --channel 1 {OPTS} --alpha 0.5", 0, (),
         setup="plain_czyx", makes=("{work}/out.tif", (48, 64))),
    Case("deblur-axes-letters", "--axes ZXY: not letters of TCZYX ending in YX",
         f"deblur {STACK} --z 0 1 --axes ZXY --alpha 0.5 {OPTS}", 2,
         ("--axes ZXY: give one letter of TCZYX per dimension", "e.g. --axes ZYX or --axes CZYX")),
    Case("deblur-axes-count", "--axes CZYX on a 3-D stack", f"deblur {STACK} --z 0 1 --axes CZYX --alpha 0.5 {OPTS}",
         2, ("--axes CZYX: ", "pages.tif has 3 dimensions", "give one letter per dimension, e.g. --axes ZYX")),
    Case("deblur-z-commas", "--z 0,1 (was: \"Input should be a valid integer\")",
         f"deblur {STACK} --z 0,1 --alpha 0.5 {OPTS}", 2,
         ("--z 0,1: give 2 values separated by spaces", "e.g. --z 0 1")),
    Case("deblur-channel-all-works", "--channel all on a 2-channel OME-TIFF stack: one 2-channel output (must work)",
         f"deblur {{work}}/two_channels.ome.tif --z 0 1 --channel all --alpha 0.5 {OPTS}", 0, (),
         setup="two_channels", makes=("{work}/out.tif", (2, 48, 64))),
    Case("deblur-channel-all-one-channel", "--channel all on a single-channel stack",
         f"deblur {STACK} --z 0 1 --channel all --alpha 0.5 {OPTS}", 2,
         ("--channel all: ", "pages.tif holds one channel", "leave --channel out")),
    Case("deblur-channel-all-folders", "--channel all in folder mode",
         f"deblur --stack-dir {{bad}}/empty --z 0 1 --channel all --alpha 0.5 {DIR_OPTS}", 2,
         ("--channel all writes one multi-channel output", "pass --channel as an index or a name")),
    Case("blur-channel-all-png", "--channel all into a .png",
         "blur {work}/two_channels.ome.tif --z 1 0 --channel all --alpha 0.5 -c {ckpt} -o {work}/out.png --device cpu",
         2, ("out.png: every channel goes into one multi-channel .tif or .ome.tif", "or pass one --channel"),
         setup="two_channels"),
    Case("deblur-missing-before-model-line", "a missing input with the built-in model (was: its line, then the error "
         "after ~2 s of imports)", "deblur {bad}/missing.tif {bad}/blurry.tif --alpha 0.5 -o {work}/out.tif", 2,
         ("missing.tif: file not found", "check the path")),
]


def bbbc_pair(work: Path, paths: dict) -> None:
    """{work}/BBBC006_v1_images_z_00/a.tif and .../z_08/a.tif: one field's planes 0 and 8, by folder name."""
    for plane in (0, 8):
        (work / f"BBBC006_v1_images_z_{plane:02d}").mkdir()
        shutil.copy(paths["bad"] / "sharp.tif", work / f"BBBC006_v1_images_z_{plane:02d}" / "a.tif")


def focus_past(work: Path, paths: dict) -> None:
    """{work}/past.tif, and {work}/past/ with it and two sound stacks: 9 planes, in focus 3 planes past the last."""
    (work / "past").mkdir()
    write_stack(work / "past.tif", make_stack(11, planes=9, channels=1, seed=8))
    for name, focus, seed in (("past", 11, 8), ("s0", 4, 0), ("s1", 4, 1)):
        write_stack(work / "past" / f"{name}.tif", make_stack(focus, planes=9, channels=1, seed=seed))


def plain_czyx(work: Path, paths: dict) -> None:
    """{work}/plain.tif: a CZYX array (2 channels, 3 planes) as a plain TIFF, which says no axes (tifffile: QQYX)."""
    import tifffile

    plane = tifffile.imread(paths["bad"] / "sharp.tif")
    tifffile.imwrite(work / "plain.tif", np.stack([np.stack([plane] * 3), np.stack([plane[::-1]] * 3)]),
                     photometric="minisblack")


SETUPS.update(bbbc_pair=bbbc_pair, focus_past=focus_past, plain_czyx=plain_czyx)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, paths, tmp_path, monkeypatch):
    run_case(case, paths, tmp_path, monkeypatch)
