"""The bad-input matrix (issue 7): every command answers every mistake with one line, the right exit
code, no traceback, and nothing left on disk. The machinery is in ``badinput.py``.

One table, ``CASES``, drives the test and the table in ``tests/README.md`` (``python
tests/cli/test_bad_inputs.py`` rewrites it; ``test_readme_lists_the_matrix`` fails when they differ).

A row's ``argv`` is a command line whose ``{name}`` fields are the fixture paths built once per module
(``paths``) plus ``{work}``, a fresh folder per row where outputs go. ``expect`` lists substrings of the
one-line message: first what it names (file, option, value), then the fix it suggests. For every failing
row the file listing (names, sizes, mtimes, hidden temps included) of ``{work}`` and of every module
fixture must be unchanged. Rows with code 0 must WORK (odd-sized images are padded, not refused).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script (it rewrites tests/README.md): the helpers live in tests/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest
from helpers.badinput import (
    BLUR,
    DEBLUR,
    EVAL,
    PAIR,
    PREP,
    README,
    SYNTH,
    TRAIN,
    Case,
    all_cases,
    readme_section,
    readme_table,
    run_case,
    write_readme,
)

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
        ("empty: holds neither BBBC006_v1_images_z_XX", "pass a folder with one of those"),
    ),
    Case(
        "prepare-stacks-no-focus",
        "z-stack folder without --focus",
        "prepare {bad}/stacks {work}/store --crop 32 --workers 1",
        2,
        ("--focus: not given", "auto"),
    ),
    Case(
        "prepare-stacks-bad-focus",
        "--focus neither auto nor a plane",
        "prepare {bad}/stacks {work}/store --focus sharp --crop 32 --workers 1",
        2,
        ("--focus 'sharp'", "use auto or a plane number"),
    ),
    Case(
        "prepare-stacks-both-sides",
        "relative --planes on both sides of focus",
        "prepare {bad}/stacks {work}/store --focus auto --planes -2:2 --crop 32 --workers 1",
        2,
        ("--planes '-2:2' lie on both sides of focus", "give one side"),
    ),
    Case(
        "prepare-stacks-too-short",
        "focus leaves too few planes (--strict)",
        "prepare {bad}/stacks {work}/store --focus auto --planes -4:0:2 --crop 32 --workers 1 --strict",
        2,
        ("leaves no plane -1 for planes -4:0:2", "drop --strict"),
    ),
    Case(
        "prepare-stacks-not-tiff",
        "a .tif z-stack that is not a TIFF",
        "prepare {bad}/stacks_text {work}/store --focus auto --planes -2:0 --crop 32 --workers 1",
        2,
        ("field one.tif", "re-copy or re-export"),
    ),
    Case(
        "prepare-bbbc-with-focus",
        "--focus on BBBC006 folders",
        f"prepare {{src}} {{work}}/store --focus auto {PREP}",
        2,
        ("--focus auto: BBBC006 folders are in focus at plane 16", "leave --focus out"),
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
        ("'--reg'", "'bogus' is not one of 'none', 'weak', 'strong'"),
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
        "blur-rgb-tiff", "RGB TIFF", f"blur {{bad}}/rgb.tif {{bad}}/blurry.tif {BLUR}", 2,
        ("rgb.tif: holds colour samples", "save one grayscale channel per file"),
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
        "deblur-pixel-size-zero",
        "--pixel-size 0 (issue 26: the inputs' µm per pixel)",
        f"deblur {PAIR} {DEBLUR} --pixel-size 0",
        2,
        ("--pixel-size 0.0", "a number > 0"),
    ),
    Case(
        "blur-pixel-size-negative",
        "--pixel-size negative",
        f"blur {PAIR} {BLUR} --pixel-size=-0.325",
        2,
        ("--pixel-size -0.325", "a number > 0"),
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
        f"deblur {PAIR} {DEBLUR.replace('--alpha 0.5', '--planes 8 0 --target 16')}",
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
        "no --output",
        "blur {bad}/sharp.tif {bad}/blurry.tif --alpha 0.5 -c {ckpt}",
        2,
        ("--output", "--help"),
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




@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, paths, tmp_path, monkeypatch):
    run_case(case, paths, tmp_path, monkeypatch)


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


def test_readme_lists_the_matrix():
    assert README.is_file(), "tests/README.md is missing; run: python tests/cli/test_bad_inputs.py"
    assert readme_section(README.read_text()) == readme_table(), (
        "tests/README.md is stale; run: python tests/cli/test_bad_inputs.py"
    )




if __name__ == "__main__":
    write_readme()
    sys.stdout.write(f"{README}: {len(all_cases())} rows\n")
