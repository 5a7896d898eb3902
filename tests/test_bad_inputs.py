"""The bad-input matrix (issue 7): every command answers every mistake with one line, the right exit
code, no traceback, and nothing left on disk.

One table, ``CASES``, drives the test and the table in ``tests/README.md`` (``python
tests/test_bad_inputs.py`` rewrites it; ``test_readme_lists_the_matrix`` fails when they differ).

A row's ``argv`` is a command line whose ``{name}`` fields are the fixture paths built once per module
(``paths``) plus ``{work}``, a fresh folder per row where outputs go. ``expect`` lists substrings of the
one-line message: first what it names (file, option, value), then the fix it suggests. For every failing
row the file listing (names, sizes, mtimes, hidden temps included) of ``{work}`` and of every module
fixture must be unchanged. Rows with code 0 must WORK (odd-sized images are padded, not refused).
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
PLANES = list(range(0, 17, 2))
SUBSET = [0, 8, 16]  # the planes the bad-source variants carry (rows pass --planes 0,8,16)
TINY = [4, 8, 8]


@dataclass(frozen=True)
class Case:
    id: str
    input: str  # what is wrong, in words (README)
    argv: str  # command line after `blurlatent`, with {placeholders}
    code: int  # 2 usage error, 1 runtime failure, 0 must work
    expect: tuple[str, ...]  # in the message: the thing named, then the fix
    setup: str | None = None  # a function of SETUPS that puts something into {work} first
    makes: tuple[str, tuple[int, ...]] | None = None  # code-0 rows: (output path, its array shape)


PREP = "--planes 0,8,16 --crop 32 --workers 1 --channels w1"
TRAIN = "--device cpu --epochs 1 --widths 4,8,8 --batch-size 4 --amp off"
PAIR = "{bad}/sharp.tif {bad}/blurry.tif"
BLUR = "-c {ckpt} --alpha 0.5 -o {work}/out.tif --device cpu"
DEBLUR = "-c {ckpt} --alpha 0.5 -o {work}/out.tif --device cpu"
EVAL = "-c {ckpt} --out {work}/report --device cpu"
SYNTH = "--fields 1 --planes 16 --size 32x32 --channels w1 --workers 1"

CASES = [
    # --- synth ---------------------------------------------------------------------------------------
    Case(
        "synth-out-is-file",
        "output folder is an existing file",
        f"synth {{bad}}/text.tif {SYNTH}",
        2,
        ("text.tif: exists and is a file", "choose a folder name"),
    ),
    Case(
        "synth-out-under-file",
        "output folder below an existing file",
        f"synth {{bad}}/text.tif/out {SYNTH}",
        2,
        ("text.tif is a file", "choose another output location"),
    ),
    Case(
        "synth-out-exists",
        "existing folder synth did not write, without --force",
        f"synth {{work}}/out {SYNTH}",
        2,
        ("'notes.txt'", "nothing there is replaced even with --force"),
        setup="user_folder",
    ),
    Case(
        "synth-force-foreign",
        "--force on a folder synth did not write",
        f"synth {{work}}/out {SYNTH} --force",
        2,
        ("'notes.txt'", "choose another output folder"),
        setup="user_folder",
    ),
    Case(
        "synth-unknown-channel",
        "unknown channel",
        "synth {work}/out --fields 1 --planes 16 --size 32x32 --channels w5",
        2,
        ("'w5'", "use w1"),
    ),
    Case(
        "synth-plane-out-of-range",
        "plane beyond z33",
        "synth {work}/out --fields 1 --planes 0:40 --size 32x32",
        2,
        ("'0:40'", "START:STOP"),
    ),
    Case(
        "synth-size-1x1",
        "1x1 image size",
        "synth {work}/out --fields 1 --planes 16 --size 1x1",
        2,
        ("'1x1'", "at least 16x16"),
    ),
    Case(
        "synth-size-not-a-size",
        "size not WIDTHxHEIGHT",
        "synth {work}/out --fields 1 --planes 16 --size axb",
        2,
        ("'axb'", "use e.g. 696x520"),
    ),
    Case(
        "synth-zero-fields",
        "no fields",
        "synth {work}/out --fields 0 --planes 16 --size 32x32",
        2,
        ("--fields 0", "1..768"),
    ),
    # --- prepare -------------------------------------------------------------------------------------
    Case(
        "prepare-missing-src",
        "missing source folder",
        f"prepare {{bad}}/does-not-exist {{work}}/store {PREP}",
        2,
        ("does-not-exist", "pass the folder"),
    ),
    Case(
        "prepare-src-is-file",
        "file where the source folder is expected",
        f"prepare {{bad}}/text.tif {{work}}/store {PREP}",
        2,
        ("text.tif: not a folder", "pass the folder"),
    ),
    Case(
        "prepare-empty-src",
        "empty source folder",
        f"prepare {{bad}}/empty {{work}}/store {PREP}",
        2,
        ("plane 0 not found", "complete the download"),
    ),
    Case(
        "prepare-non-image",
        "a .tif that is not an image",
        f"prepare {{bad}}/src_text {{work}}/store {PREP}",
        2,
        ("_a02_s1_w1", "pass a .tif/.tiff/.png file"),
    ),
    Case(
        "prepare-truncated-tiff",
        "truncated TIFF",
        f"prepare {{bad}}/src_trunc {{work}}/store {PREP}",
        2,
        ("_a02_s1_w1", "re-copy or re-export"),
    ),
    Case(
        "prepare-rgb", "RGB TIFF", f"prepare {{bad}}/src_rgb {{work}}/store {PREP}", 2, ("_a02_s1_w1", "split channels")
    ),
    Case(
        "prepare-nan",
        "float TIFF holding NaN",
        f"prepare {{bad}}/src_nan {{work}}/store {PREP}",
        2,
        ("NaN", "re-export"),
    ),
    Case("prepare-1x1", "1x1 image", f"prepare {{bad}}/src_1x1 {{work}}/store {PREP}", 2, ("_a01_s1_w1", "too small")),
    Case(
        "prepare-size-mismatch",
        "one field of another size",
        f"prepare {{bad}}/src_size {{work}}/store {PREP}",
        2,
        ("other fields are 64x48", "one size"),
    ),
    Case(
        "prepare-zip-wrong-members",
        "zips holding no BBBC006 files",
        f"prepare {{bad}}/zip_wrong {{work}}/store {PREP}",
        2,
        ("BBBC006", "pass the BBBC006_v1 download"),
    ),
    Case(
        "prepare-zip-missing-member",
        "zip lacking one field's plane (--strict)",
        f"prepare {{bad}}/zip_missing {{work}}/store {PREP} --strict",
        2,
        ("a01_s1: missing w1 planes 8", "drop --strict"),
    ),
    Case(
        "prepare-zip-corrupt",
        "a plane zip that is not a zip",
        f"prepare {{bad}}/zip_corrupt {{work}}/store {PREP}",
        2,
        ("BBBC006_v1_images_z_00.zip", "re-download"),
    ),
    Case(
        "prepare-unknown-channel",
        "channel the data lacks",
        "prepare {src} {work}/store --planes 0,8,16 --crop 32 --workers 1 --channels w2",
        2,
        ("no w2 files", "choose --channels"),
    ),
    Case(
        "prepare-plane-missing",
        "plane the data lacks",
        "prepare {src} {work}/store --planes 0:18:2 --crop 32 --workers 1 --channels w1",
        2,
        ("plane 18 not found", "choose --planes"),
    ),
    Case(
        "prepare-plane-out-of-range",
        "plane beyond z33",
        "prepare {src} {work}/store --planes 0:40 --channels w1",
        2,
        ("'0:40'", "START:STOP"),
    ),
    Case(
        "prepare-planes-not-a-range",
        "plane list not a number",
        "prepare {src} {work}/store --planes zero --channels w1",
        2,
        ("'zero'", "START:STOP"),
    ),
    Case(
        "prepare-crop-too-large",
        "crop larger than the images",
        "prepare {src} {work}/store --planes 0,8,16 --crop 100 --workers 1 --channels w1",
        2,
        ("crop 100", "--crop <= 48"),
    ),
    Case(
        "prepare-store-exists",
        "existing store of other options without --force",
        "prepare {src} {work}/store --planes 0,8,16 --crop 16 --workers 1 --channels w1",
        2,
        ("store", "pass --force"),
        setup="store_copy",
    ),
    Case(
        "prepare-out-under-file",
        "output folder below an existing file",
        f"prepare {{src}} {{bad}}/text.tif/store {PREP}",
        2,
        ("text.tif is a file", "choose another output location"),
    ),
    Case(
        "prepare-bad-split",
        "split not TRAIN:VAL:TEST",
        f"prepare {{src}} {{work}}/store {PREP} --split 1:2",
        2,
        ("'1:2'", "70:10:20"),
    ),
    # --- train ---------------------------------------------------------------------------------------
    Case(
        "train-missing-store",
        "missing store",
        f"train {{bad}}/does-not-exist --out {{work}}/run {TRAIN}",
        2,
        ("does-not-exist", "run `blurlatent prepare"),
    ),
    Case(
        "train-store-is-file",
        "file where the store folder is expected",
        f"train {{bad}}/text.tif --out {{work}}/run {TRAIN}",
        2,
        ("text.tif: not a prepared store", "run `blurlatent prepare"),
    ),
    Case(
        "train-empty-store",
        "empty folder as store",
        f"train {{bad}}/empty --out {{work}}/run {TRAIN}",
        2,
        ("empty: not a prepared store", "run `blurlatent prepare"),
    ),
    Case(
        "train-store-damaged",
        "store whose train array is truncated",
        f"train {{store_damaged}} --out {{work}}/run {TRAIN}",
        2,
        ("w1_train.npy: store array is missing or damaged", "rerun `blurlatent prepare` with --force"),
    ),
    Case(
        "train-nan-loss",
        "a learning rate that makes the loss NaN (runtime failure)",
        f"train {{store}} --out {{work}}/run {TRAIN} --lr 1e30",
        1,
        ("non-finite loss at epoch 1", "lower --lr"),
    ),
    Case(
        "train-unknown-channel",
        "channel the store lacks",
        f"train {{store}} --channel w3 --out {{work}}/run {TRAIN}",
        2,
        ("--channel w3", "use one of them"),
    ),
    Case(
        "train-unknown-plane",
        "triplet plane the store lacks",
        f"train {{store}} --config {{bad}}/plane20.yaml --out {{work}}/run {TRAIN}",
        2,
        ("plane 20", "prepare with --planes"),
    ),
    Case(
        "train-config-unknown-key",
        "config with an unknown key",
        f"train {{store}} --config {{bad}}/unknown_key.yaml --out {{work}}/run {TRAIN}",
        2,
        ("'lrate'", "known keys"),
    ),
    Case(
        "train-config-wrong-type",
        "config value of the wrong type",
        f"train {{store}} --config {{bad}}/wrong_type.yaml --out {{work}}/run {TRAIN}",
        2,
        ("epochs", "expected an integer"),
    ),
    Case(
        "train-config-not-yaml",
        "config that is not YAML",
        f"train {{store}} --config {{bad}}/not_yaml.yaml --out {{work}}/run {TRAIN}",
        2,
        ("not_yaml.yaml: not valid YAML", "fix the syntax"),
    ),
    Case(
        "train-config-missing",
        "missing config file",
        f"train {{store}} --config {{bad}}/nope.yaml --out {{work}}/run {TRAIN}",
        2,
        ("nope.yaml", "pass an existing YAML file"),
    ),
    Case(
        "train-too-many-gpus",
        "more GPUs than exist",
        "train {store} --gpus 64 --out {work}/run --epochs 1 --widths 4,8,8",
        2,
        ("--gpus 64", "use"),
    ),
    Case(
        "train-no-such-device",
        "a CUDA device that does not exist",
        "train {store} --out {work}/run --device cuda:7 --epochs 1 --widths 4,8,8",
        2,
        ("cuda:7", "use"),
    ),
    Case(
        "train-init-other-shape",
        "--init checkpoint of another model shape",
        f"train {{store}} --init {{ckpt}} --out {{work}}/run {TRAIN.replace('4,8,8', '4,8')}",
        2,
        ("--init", "pass matching --widths"),
    ),
    Case(
        "train-init-truncated",
        "--init checkpoint truncated",
        f"train {{store}} --init {{ckpt_trunc}} --out {{work}}/run {TRAIN}",
        2,
        ("tiny_trunc.pt", "use another copy"),
    ),
    Case(
        "train-init-pickle",
        "--init checkpoint carrying a pickled object",
        f"train {{store}} --init {{ckpt_pickle}} --out {{work}}/run {TRAIN}",
        2,
        ("refused to load", "only load checkpoints written by blurlatent"),
    ),
    Case(
        "train-out-exists",
        "existing run folder without --force",
        f"train {{store}} --out {{work}}/run {TRAIN}",
        2,
        ("holds a training run", "--force"),
        setup="run_folder",
    ),
    Case(
        "train-out-under-file",
        "run folder below an existing file",
        f"train {{store}} --out {{bad}}/text.tif/run {TRAIN}",
        2,
        ("text.tif is a file", "choose another output location"),
    ),
    Case(
        "train-bad-reg",
        "unknown regularization",
        f"train {{store}} --reg bogus --out {{work}}/run {TRAIN}",
        2,
        ("--reg bogus", "none, weak, strong"),
    ),
    Case(
        "train-strong-without-init",
        "--reg strong without --init",
        f"train {{store}} --reg strong --out {{work}}/run {TRAIN}",
        2,
        ("--init", "--from-scratch"),
    ),
    Case(
        "train-crop-not-divisible",
        "model deeper than the crops allow",
        "train {store} --out {work}/run --device cpu --epochs 1 --widths 4,4,4,4,4,4",
        2,
        ("2**depth = 64", "use fewer --widths"),
    ),
    Case(
        "train-zero-epochs",
        "zero epochs",
        "train {store} --out {work}/run --device cpu --epochs 0 --widths 4,8,8",
        2,
        ("epochs 0", "at least 1"),
    ),
    Case(
        "train-resume-no-run",
        "--resume on a folder without last.pt",
        "train --resume {bad}/empty",
        2,
        ("no last.pt", "pass a run folder"),
    ),
    Case(
        "train-resume-unstarted",
        "--resume on a run killed before its first checkpoint",
        "train --resume {work}/run",
        2,
        ("no last.pt", "rerun its `blurlatent train` command with --force"),
        setup="unstarted_run",
    ),
    # --- blur and deblur -----------------------------------------------------------------------------
    Case(
        "blur-missing-image",
        "missing image",
        f"blur {{bad}}/does-not-exist.tif {{bad}}/blurry.tif {BLUR}",
        2,
        ("does-not-exist.tif", "check the path"),
    ),
    Case(
        "blur-folder-as-image",
        "folder where an image file is expected",
        f"blur {{bad}}/empty {{bad}}/blurry.tif {BLUR}",
        2,
        ("empty: is a folder", "pass an image file"),
    ),
    Case(
        "blur-non-image",
        "a .tif that is not an image",
        f"blur {{bad}}/text.tif {{bad}}/blurry.tif {BLUR}",
        2,
        ("text.tif", "pass a .tif/.tiff/.png file"),
    ),
    Case(
        "blur-truncated-tiff",
        "truncated TIFF",
        f"blur {{bad}}/trunc.tif {{bad}}/blurry.tif {BLUR}",
        2,
        ("trunc.tif", "re-copy or re-export"),
    ),
    Case("blur-rgb-png", "RGB PNG", f"blur {{bad}}/rgb.png {{bad}}/blurry.tif {BLUR}", 2, ("rgb.png", "grayscale")),
    Case(
        "blur-rgb-tiff", "RGB TIFF", f"blur {{bad}}/rgb.tif {{bad}}/blurry.tif {BLUR}", 2, ("rgb.tif", "split channels")
    ),
    Case(
        "blur-multichannel",
        "multi-channel (3-page) TIFF",
        f"blur {{bad}}/sharp.tif {{bad}}/pages.tif {BLUR}",
        2,
        ("pages.tif", "split channels"),
    ),
    Case(
        "blur-nan", "float TIFF holding NaN", f"blur {{bad}}/nan.tif {{bad}}/blurry.tif {BLUR}", 2, ("nan.tif", "NaN")
    ),
    Case("blur-1x1", "1x1 image", f"blur {{bad}}/px1.tif {{bad}}/px1.tif {BLUR}", 2, ("px1.tif", "too small")),
    Case(
        "blur-shape-mismatch",
        "pair of different shapes",
        f"blur {{bad}}/sharp.tif {{bad}}/small.tif {BLUR}",
        2,
        ("small.tif", "two planes of one field"),
    ),
    Case(
        "blur-odd-size-works",
        "odd-sized 61x45 pair (padded, must work)",
        f"blur {{bad}}/odd_a.tif {{bad}}/odd_b.tif {BLUR}",
        0,
        (),
        makes=("{work}/out.tif", (45, 61)),
    ),
    Case(
        "deblur-odd-size-works",
        "odd-sized 61x45 pair (padded, must work)",
        f"deblur {{bad}}/odd_b.tif {{bad}}/odd_a.tif {DEBLUR}",
        0,
        (),
        makes=("{work}/out.tif", (45, 61)),
    ),
    Case(
        "blur-alpha-not-number",
        "alpha not a number",
        f"blur {PAIR} {BLUR.replace('0.5', 'abc')}",
        2,
        ("--alpha", "--help"),
    ),
    Case(
        "blur-alpha-above-1",
        "alpha > 1 without --extrapolate",
        f"blur {PAIR} {BLUR.replace('--alpha 0.5', '--alpha 1.5')}",
        2,
        ("alpha 1.5", "pass --extrapolate"),
    ),
    Case(
        "blur-alpha-negative",
        "alpha < 0 without --extrapolate",
        f"blur {PAIR} {BLUR.replace('--alpha 0.5', '--alpha=-0.5')}",
        2,
        ("alpha -0.5", "pass --extrapolate"),
    ),
    Case(
        "deblur-alpha-1",
        "alpha = 1 (Eq. 3 divides by 1 - alpha)",
        f"deblur {PAIR} {DEBLUR.replace('0.5', '1')}",
        2,
        ("alpha 1.0", "0 <= alpha < 1"),
    ),
    Case(
        "deblur-alpha-negative",
        "alpha < 0",
        f"deblur {PAIR} {DEBLUR.replace('--alpha 0.5', '--alpha=-0.2')}",
        2,
        ("alpha -0.2", "0 <= alpha < 1"),
    ),
    Case(
        "deblur-alpha-not-number",
        "alpha not a number",
        f"deblur {PAIR} {DEBLUR.replace('0.5', 'half')}",
        2,
        ("--alpha", "--help"),
    ),
    Case(
        "deblur-planes-miss-target",
        "planes that do not lead to the target",
        f"deblur {PAIR} {DEBLUR.replace('--alpha 0.5', '--planes 8 0')}",
        2,
        ("do not lead to target 16", "must lie between"),
    ),
    Case(
        "deblur-no-alpha",
        "no alpha and no planes in the paths",
        f"deblur {PAIR} {DEBLUR.replace('--alpha 0.5 ', '')}",
        2,
        ("--alpha or --planes: give one", "BBBC006_v1_images_z_XX"),
    ),
    Case(
        "blur-ckpt-other-shape",
        "checkpoint whose weights do not fit its model",
        f"blur {PAIR} {BLUR.replace('{ckpt}', '{ckpt_shape}')}",
        2,
        ("weights do not fit", "use a checkpoint of the same model config"),
    ),
    Case(
        "blur-ckpt-truncated",
        "truncated checkpoint",
        f"blur {PAIR} {BLUR.replace('{ckpt}', '{ckpt_trunc}')}",
        2,
        ("tiny_trunc.pt", "use another copy"),
    ),
    Case(
        "blur-ckpt-pickle",
        "checkpoint carrying a pickled object",
        f"blur {PAIR} {BLUR.replace('{ckpt}', '{ckpt_pickle}')}",
        2,
        ("refused to load", "only load checkpoints written by blurlatent"),
    ),
    Case(
        "blur-ckpt-bare-state-dict",
        "bare state dict, not a checkpoint",
        f"blur {PAIR} {BLUR.replace('{ckpt}', '{ckpt_bare}')}",
        2,
        ("not a blurlatent checkpoint", "pass a .pt written by `blurlatent train`"),
    ),
    Case(
        "blur-ckpt-missing",
        "missing checkpoint",
        f"blur {PAIR} {BLUR.replace('{ckpt}', '{bad}/nope.pt')}",
        2,
        ("nope.pt: checkpoint not found", "pass a .pt"),
    ),
    Case(
        "blur-ckpt-is-folder",
        "folder where the checkpoint is expected",
        f"blur {PAIR} {BLUR.replace('{ckpt}', '{bad}/empty')}",
        2,
        ("is a folder", "pass the checkpoint file"),
    ),
    Case(
        "blur-out-exists",
        "existing output without --force",
        f"blur {PAIR} {BLUR}",
        2,
        ("out.tif: already exists", "pass --force"),
        setup="existing_out",
    ),
    Case(
        "deblur-out-exists",
        "existing output without --force",
        f"deblur {PAIR} {DEBLUR}",
        2,
        ("out.tif: already exists", "pass --force"),
        setup="existing_out",
    ),
    Case(
        "blur-out-under-file",
        "output below an existing file",
        f"blur {PAIR} {BLUR.replace('{work}', '{bad}/text.tif')}",
        2,
        ("text.tif is a file", "choose another output location"),
    ),
    Case(
        "blur-out-unwritable",
        "output in a read-only folder (skipped as root)",
        f"blur {PAIR} {BLUR.replace('{work}', '{work}/ro')}",
        2,
        ("ro: folder is not writable", "choose another output location"),
        setup="read_only",
    ),
    Case(
        "blur-out-bad-suffix",
        "output neither .tif nor .png",
        f"blur {PAIR} {BLUR.replace('out.tif', 'out.jpg')}",
        2,
        ("out.jpg", "must end in .tif"),
    ),
    Case(
        "blur-no-such-device",
        "a CUDA device that does not exist",
        f"blur {PAIR} {BLUR.replace('--device cpu', '--device cuda:7')}",
        2,
        ("cuda:7", "use"),
    ),
    Case(
        "blur-missing-option",
        "no --checkpoint",
        "blur {bad}/sharp.tif {bad}/blurry.tif --alpha 0.5 -o {work}/out.tif",
        2,
        ("--checkpoint", "--help"),
    ),
    # --- evaluate ------------------------------------------------------------------------------------
    Case(
        "evaluate-missing-store",
        "missing store",
        f"evaluate {{bad}}/does-not-exist {EVAL}",
        2,
        ("does-not-exist", "run `blurlatent prepare"),
    ),
    Case(
        "evaluate-store-is-file",
        "file where the store folder is expected",
        f"evaluate {{bad}}/text.tif {EVAL}",
        2,
        ("text.tif: not a prepared store", "run `blurlatent prepare"),
    ),
    Case(
        "evaluate-store-damaged",
        "store whose train array is truncated",
        f"evaluate {{store_damaged}} {EVAL}",
        2,
        ("w1_train.npy: store array is missing or damaged", "rerun `blurlatent prepare` with --force"),
    ),
    Case(
        "evaluate-unknown-channel",
        "channel the store lacks",
        f"evaluate {{store}} {EVAL} --channel w3",
        2,
        ("'w3'", "use one of them"),
    ),
    Case(
        "evaluate-no-target-plane",
        "store planes that do not reach the in-focus plane",
        f"evaluate {{store_no16}} {EVAL}",
        2,
        ("in-focus plane 16", "prepare with --planes"),
    ),
    Case(
        "evaluate-ckpt-other-shape",
        "checkpoint whose weights do not fit its model",
        f"evaluate {{store}} {EVAL.replace('{ckpt}', '{ckpt_shape}')}",
        2,
        ("weights do not fit", "use a checkpoint of the same model config"),
    ),
    Case(
        "evaluate-ckpt-truncated",
        "truncated checkpoint",
        f"evaluate {{store}} {EVAL.replace('{ckpt}', '{ckpt_trunc}')}",
        2,
        ("tiny_trunc.pt", "use another copy"),
    ),
    Case(
        "evaluate-ckpt-pickle",
        "checkpoint carrying a pickled object",
        f"evaluate {{store}} {EVAL.replace('{ckpt}', '{ckpt_pickle}')}",
        2,
        ("refused to load", "only load checkpoints written by blurlatent"),
    ),
    Case(
        "evaluate-out-exists",
        "existing report without --force",
        f"evaluate {{store}} {EVAL}",
        2,
        ("already exists and holds a blurlatent report", "pass --force"),
        setup="report_folder",
    ),
    Case(
        "evaluate-out-under-file",
        "report folder below an existing file",
        f"evaluate {{store}} {EVAL.replace('{work}', '{bad}/text.tif')}",
        2,
        ("text.tif is a file", "choose another output location"),
    ),
    Case(
        "evaluate-no-such-device",
        "a CUDA device that does not exist",
        f"evaluate {{store}} {EVAL.replace('--device cpu', '--device cuda:7')}",
        2,
        ("cuda:7", "use"),
    ),
    Case(
        "evaluate-zero-batch",
        "batch size 0",
        f"evaluate {{store}} {EVAL} --batch-size 0",
        2,
        ("--batch-size 0", "at least 1"),
    ),
    # --- demo ----------------------------------------------------------------------------------------
    Case(
        "demo-out-exists",
        "earlier demo folder without --force",
        "demo --fast --out {work}/demo --device cpu",
        2,
        ("demo: already exists", "pass --force"),
        setup="demo_folder",
    ),
    Case(
        "demo-force-foreign",
        "--force on a folder that is not a demo",
        "demo --fast --out {work}/out --device cpu --force",
        2,
        ("not a blurlatent demo folder", "choose an empty or new --out"),
        setup="user_folder",
    ),
    Case(
        "demo-out-is-file",
        "output folder is an existing file",
        "demo --fast --out {bad}/text.tif --device cpu",
        2,
        ("text.tif: exists and is a file", "choose a folder name"),
    ),
    Case(
        "demo-out-under-file",
        "output folder below an existing file",
        "demo --fast --out {bad}/text.tif/demo --device cpu",
        2,
        ("text.tif is a file", "choose another output location"),
    ),
    Case(
        "demo-no-such-device",
        "a CUDA device that does not exist",
        "demo --fast --out {work}/demo --device cuda:7",
        2,
        ("cuda:7", "use"),
    ),
]


# --- per-row setups: what a row needs in {work} before it runs --------------------------------------


def _user_folder(work: Path, paths: dict) -> None:
    (work / "out").mkdir()
    (work / "out" / "notes.txt").write_text("the user's own notes\n")


def _existing_out(work: Path, paths: dict) -> None:
    shutil.copy(paths["bad"] / "sharp.tif", work / "out.tif")


def _store_copy(work: Path, paths: dict) -> None:
    shutil.copytree(paths["store"], work / "store")


def _run_folder(work: Path, paths: dict) -> None:
    (work / "run").mkdir()
    (work / "run" / "metrics.jsonl").write_text('{"epoch": 1}\n')


def _unstarted_run(work: Path, paths: dict) -> None:
    (work / "run").mkdir()
    # what a run writes before its first checkpoint: its marker (an empty metrics.jsonl) and its config
    (work / "run" / "metrics.jsonl").write_text("")
    (work / "run" / "config.yaml").write_text("seed: 0\n")


def _report_folder(work: Path, paths: dict) -> None:
    (work / "report").mkdir()
    (work / "report" / "report.json").write_text("{}\n")


def _demo_folder(work: Path, paths: dict) -> None:
    (work / "demo").mkdir()
    (work / "demo" / "demo.json").write_text("{}\n")


def _read_only(work: Path, paths: dict) -> None:
    if os.geteuid() == 0:
        pytest.skip(
            "running as root: folder permissions do not stop root; the *-under-file rows cover unwritable targets"
        )
    (work / "ro").mkdir()
    (work / "ro").chmod(0o555)


SETUPS = {
    "user_folder": _user_folder,
    "existing_out": _existing_out,
    "store_copy": _store_copy,
    "run_folder": _run_folder,
    "unstarted_run": _unstarted_run,
    "report_folder": _report_folder,
    "demo_folder": _demo_folder,
    "read_only": _read_only,
}


# --- module fixtures: good data once, and every bad input beside it ----------------------------------


def _tif(path: Path, array) -> None:
    import tifffile

    tifffile.imwrite(path, array)


def _field_file(folder: Path, plane: int, field: str) -> Path:
    return next((folder / f"BBBC006_v1_images_z_{plane:02d}").glob(f"*_{field}_w1*.tif"))


def _source_variant(src: Path, dst: Path, plane: int, field: str, mutate) -> None:
    """A copy of planes 0, 8, 16 of ``src`` with one file of ``field`` at ``plane`` replaced."""
    for p in SUBSET:
        shutil.copytree(src / f"BBBC006_v1_images_z_{p:02d}", dst / f"BBBC006_v1_images_z_{p:02d}")
    mutate(_field_file(dst, plane, field))


def _zip_planes(src: Path, dst: Path, drop: str | None = None) -> None:
    dst.mkdir()
    for p in SUBSET:
        folder = src / f"BBBC006_v1_images_z_{p:02d}"
        with zipfile.ZipFile(dst / f"{folder.name}.zip", "w") as archive:
            for file in sorted(folder.iterdir()):
                if drop and p == 8 and drop in file.name:
                    continue  # the member a broken download lost
                archive.write(file, f"{folder.name}/{file.name}")


class _Plant:
    """Unpickling this opens (creates) a file: the stand-in for code hidden in a checkpoint."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    import tifffile
    import torch
    from PIL import Image

    from blurlatent.checkpoint import save_checkpoint
    from blurlatent.config import ModelConfig
    from blurlatent.model import Autoencoder
    from blurlatent.prepare import prepare
    from blurlatent.synth import synthesize

    root = tmp_path_factory.mktemp("matrix")
    src = root / "bbbc"
    synthesize(src, fields=6, channels=["w1"], planes=PLANES, size=(64, 48), seed=3, workers=1)
    prepare(src, root / "store", channels=["w1"], planes=PLANES, crop=32, workers=1)
    prepare(src, root / "store_no16", channels=["w1"], planes=[0, 2, 4, 6, 8], crop=32, workers=1)
    shutil.copytree(root / "store", root / "store_damaged")
    array = (root / "store_damaged" / "w1_train.npy").read_bytes()
    (root / "store_damaged" / "w1_train.npy").write_bytes(array[: len(array) // 2])  # a disk that filled up

    torch.manual_seed(0)
    ckpt = root / "tiny.pt"
    config = {"model": {"widths": TINY}, "data": {"normalize": "minmax"}}
    state = Autoencoder(ModelConfig(widths=TINY)).state_dict()
    save_checkpoint(ckpt, {"config": config, "model": state, "epoch": 0})
    save_checkpoint(
        root / "tiny_shape.pt",
        {"config": config, "model": Autoencoder(ModelConfig(widths=[4, 8, 16])).state_dict(), "epoch": 0},
    )
    data = ckpt.read_bytes()
    (root / "tiny_trunc.pt").write_bytes(data[: len(data) // 2])
    torch.save(
        {"format_version": 1, "config": config, "model": state, "note": _Plant(str(root / "planted.txt"))},
        root / "tiny_pickle.pt",
    )
    torch.save(state, root / "tiny_bare.pt")

    bad = root / "bad"
    bad.mkdir()
    (bad / "empty").mkdir()
    (bad / "text.tif").write_text("not an image\n")
    rng = np.random.default_rng(0)
    good = (100 + 900 * rng.random((48, 64))).astype(np.uint16)
    _tif(bad / "sharp.tif", good)
    _tif(bad / "blurry.tif", good[::-1].copy())
    _tif(bad / "small.tif", good[:40])
    _tif(bad / "odd_a.tif", good[:45, :61])
    _tif(bad / "odd_b.tif", good[3:48, 2:63])
    _tif(bad / "rgb.tif", np.stack([good // 16] * 3, axis=-1).astype(np.uint8))
    Image.fromarray(np.stack([good // 16] * 3, axis=-1).astype(np.uint8), "RGB").save(bad / "rgb.png")
    tifffile.imwrite(bad / "pages.tif", np.stack([good] * 3), photometric="minisblack")  # 3 channels as 3 pages
    nan = good.astype(np.float32)
    nan[5, 7] = np.nan
    _tif(bad / "nan.tif", nan)
    _tif(bad / "px1.tif", np.ones((1, 1), np.uint16))
    full = (bad / "sharp.tif").read_bytes()
    (bad / "trunc.tif").write_bytes(full[: len(full) // 3])
    (bad / "unknown_key.yaml").write_text("optim:\n  lrate: 0.1\n")
    (bad / "wrong_type.yaml").write_text("optim:\n  epochs: ten\n")
    (bad / "not_yaml.yaml").write_text("optim: [1, 2\n  epochs: : 3\n")
    (bad / "plane20.yaml").write_text("data:\n  triplets: [[0, 8, 20]]\n")

    def truncate(f):
        f.write_bytes(f.read_bytes()[:300])

    _source_variant(src, bad / "src_text", 8, "a02_s1", lambda f: f.write_text("<html>quota exceeded</html>"))
    _source_variant(src, bad / "src_trunc", 8, "a02_s1", truncate)
    _source_variant(
        src,
        bad / "src_rgb",
        8,
        "a02_s1",
        lambda f: tifffile.imwrite(f, np.stack([good // 16] * 3, -1).astype(np.uint8)),
    )
    _source_variant(src, bad / "src_nan", 8, "a02_s1", lambda f: tifffile.imwrite(f, nan))
    _source_variant(src, bad / "src_1x1", 0, "a01_s1", lambda f: tifffile.imwrite(f, np.ones((1, 1), np.uint16)))
    _source_variant(src, bad / "src_size", 8, "a02_s1", lambda f: tifffile.imwrite(f, good[:40]))
    _zip_planes(src, bad / "zip_missing", drop="_a01_s1_w1")
    (bad / "zip_wrong").mkdir()
    for p in SUBSET:
        with zipfile.ZipFile(bad / "zip_wrong" / f"BBBC006_v1_images_z_{p:02d}.zip", "w") as archive:
            archive.writestr("README.txt", "not the microscopy images")
            archive.writestr(f"BBBC006_v1_images_z_{p:02d}/image_{p:04d}.tif", full)
    _zip_planes(src, bad / "zip_corrupt")
    (bad / "zip_corrupt" / "BBBC006_v1_images_z_00.zip").write_bytes(b"PK\x03\x04 truncated download")

    return {
        "root": root,
        "src": src,
        "store": root / "store",
        "store_no16": root / "store_no16",
        "store_damaged": root / "store_damaged",
        "ckpt": ckpt,
        "ckpt_shape": root / "tiny_shape.pt",
        "ckpt_trunc": root / "tiny_trunc.pt",
        "ckpt_pickle": root / "tiny_pickle.pt",
        "ckpt_bare": root / "tiny_bare.pt",
        "bad": bad,
    }


def _listing(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folders``, hidden temps included: path → (size, mtime_ns)."""
    seen = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                seen[str(p)] = (st.st_size if name in filenames else 0, st.st_mtime_ns if name in filenames else 0)
    return seen


def _argv(case: Case, fields: dict) -> list[str]:
    # split before formatting, so a path with spaces stays one argument
    return [token.format(**fields) for token in case.argv.split()]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, paths, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from blurlatent.cli import app

    work = tmp_path / "work"
    work.mkdir()
    cwd = tmp_path / "cwd"  # every path below is absolute: nothing may land in the working folder
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    fields = {**{k: str(v) for k, v in paths.items()}, "work": str(work)}
    if case.setup:
        SETUPS[case.setup](work, paths)
    before = _listing(work, paths["root"])

    result = CliRunner().invoke(app, _argv(case, fields))
    output = result.output
    assert "Traceback" not in output, output
    assert not any(cwd.iterdir()), f"wrote into the working folder: {sorted(p.name for p in cwd.iterdir())}"

    if case.code == 0:
        assert result.exit_code == 0, output
        import tifffile

        target, shape = case.makes
        assert tifffile.imread(target.format(**fields)).shape == shape
        return

    assert result.exit_code == case.code, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{output}"
    assert lines[0].startswith("error:"), output
    try:  # typer's CliRunner keeps stderr apart (click >= 8.2 semantics); older click mixes it unless told
        stderr = result.stderr
    except ValueError:
        stderr = None
    if stderr is not None:
        assert lines[0] in stderr, "the error belongs on stderr"
    for needle in case.expect:
        assert needle.format(**fields) in lines[0], f"{needle!r} not in: {lines[0]}"
    after = _listing(work, paths["root"])
    assert after == before, (
        f"files changed: added {sorted(set(after) - set(before))}, removed {sorted(set(before) - set(after))}, "
        f"modified {sorted(k for k in set(after) & set(before) if after[k] != before[k])}"
    )


def test_debug_lets_the_exception_through(paths, tmp_path):
    """The flip side of "no traceback": with --debug the error is raised, not summarized."""
    from typer.testing import CliRunner

    from blurlatent.cli import app
    from blurlatent.errors import UsageError

    bad = paths["bad"]
    argv = [
        "--debug",
        "blur",
        str(bad / "text.tif"),
        str(bad / "blurry.tif"),
        "-c",
        str(paths["ckpt"]),
        "--alpha",
        "0.5",
        "-o",
        str(tmp_path / "out.tif"),
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code != 0 and isinstance(result.exception, UsageError)
    assert "text.tif" in str(result.exception)
    assert not (tmp_path / "out.tif").exists()


def test_matrix_is_large_and_distinct():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.argv for c in CASES}) == len(CASES)  # no row repeats another's command line
    commands = {c.argv.split()[0] for c in CASES}
    assert commands == {"synth", "prepare", "train", "blur", "deblur", "evaluate", "demo"}
    assert all(len(c.expect) >= 2 for c in CASES if c.code != 0)  # the thing named and the fix


# --- the README table, generated from CASES ------------------------------------------------------------

BEGIN, END = "<!-- matrix:begin (generated by `python tests/test_bad_inputs.py`) -->", "<!-- matrix:end -->"


def readme_table() -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| input | command | expected message contains | exit |", "|---|---|---|---|"]
    for c in CASES:
        message = " … ".join(f"`{e}`" for e in c.expect) if c.code else "works: writes the output at the input's size"
        rows.append(f"| {cell(c.input)} | `blurlatent {cell(c.argv)}` | {cell(message)} | {c.code} |")
    return "\n".join(rows)


def _readme_section(text: str) -> str:
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip() if BEGIN in text and END in text else ""


def test_readme_lists_the_matrix():
    assert README.is_file(), "tests/README.md is missing; run: python tests/test_bad_inputs.py"
    assert _readme_section(README.read_text()) == readme_table(), (
        "tests/README.md is stale; run: python tests/test_bad_inputs.py"
    )


def write_readme() -> None:
    text = README.read_text() if README.is_file() else ""
    section = f"{BEGIN}\n{readme_table()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + ("\n\n" if text else "") + section + "\n"
    README.write_text(text)


if __name__ == "__main__":
    write_readme()
    sys.stdout.write(f"{README}: {len(CASES)} rows\n")
