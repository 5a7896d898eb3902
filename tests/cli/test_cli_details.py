"""The command line's details (issue 26 item 6): value hints in --help that show the form an option takes, inputs
checked before the model line and before torch is imported, --channel all as one multi-channel output equal per
channel to single-channel runs, and --axes for a TIFF that does not say its own."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tifffile
from helpers.infer_model import tiny_checkpoint
from helpers.stack_data import make_stack
from typer.testing import CliRunner

from blurlatent.cli import app
from blurlatent.files.provenance import read_provenance

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(tiny_checkpoint(tmp_path_factory))


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("command", ["blur", "deblur", "export", "prepare", "train"])
def test_help_shows_the_form_options_take(command):
    """Tuple options say ``P1 P2`` (``<int,int>...`` invited ``--z 4,12``), flags say nothing (not ``<bool>``),
    repeatable options their element (``<float>``, not ``<list[float]>``)."""
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for hint in ("<bool>", "<int,int>", "<float,float>", "list["):
        assert hint not in result.output, f"{command} --help shows {hint!r}"
    if command in ("blur", "deblur", "export"):
        assert "P1 P2" in result.output
    if command in ("blur", "deblur"):
        assert "--axes" in result.output and "all: every channel" in " ".join(result.output.split())


def test_commas_in_a_two_value_option_answer_with_the_form_it_takes():
    result = run("deblur", "stack.tif", "--z", "4,12", "-o", "out.tif")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --z 4,12: give 2 values separated by spaces, e.g. --z 4 12 ")
    assert lines[0].endswith(" deblur --help)")


def test_a_missing_input_is_answered_before_the_model_line_and_without_torch(tmp_path):
    """The built-in model's line ("using the built-in w1 model") and torch's import (~1.5 s) come after the
    inputs are checked: a typo is one line at once."""
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom blurlatent.cli import app\n"
            "r = CliRunner().invoke(app, ['deblur', 'missing.tif', 'other.tif', '-o', 'x.tif'])\n"
            "print(r.exit_code, 'torch' in sys.modules)\nprint(r.output)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    status, *lines = [line for line in out.splitlines() if line.strip()]
    assert status == "2 False", out
    assert lines == ["error: missing.tif: file not found; check the path"], out


def two_channel_stack(path):
    """A 2-channel OME-TIFF z-stack (ZCYX) of channels DAPI and GFP, in focus at plane 4 of 7."""
    data = make_stack(4, planes=7, channels=2, seed=5)  # CZYX
    tifffile.imwrite(path, data.transpose(1, 0, 2, 3), ome=True, photometric="minisblack",
                     metadata={"axes": "ZCYX", "Channel": {"Name": ["DAPI", "GFP"]}})
    return data


@pytest.mark.parametrize("command, options", [("deblur", ["--z", 0, 2]), ("blur", ["--z", 4, 0, "--steps", 2])])
def test_channel_all_is_one_output_equal_per_channel_to_single_channel_runs(tmp_path, ckpt, command, options):
    two_channel_stack(tmp_path / "s.ome.tif")
    result = run(command, tmp_path / "s.ome.tif", *options, "--channel", "all", "-c", ckpt, "-o", tmp_path / "all.tif")
    assert result.exit_code == 0, result.output
    singles = []
    for channel in ("DAPI", "GFP"):
        one = run(command, tmp_path / "s.ome.tif", *options, "--channel", channel, "-c", ckpt, "-o",
                  tmp_path / f"{channel}.tif")
        assert one.exit_code == 0, one.output
        singles.append(tifffile.imread(tmp_path / f"{channel}.tif"))
    with tifffile.TiffFile(tmp_path / "all.tif") as tif:
        both, axes = tif.asarray(), tif.series[0].axes
        names = [c.get("Name") for c in ET.fromstring(tif.ome_metadata).iter() if c.tag.endswith("}Channel")]
    assert names == ["DAPI", "GFP"]
    if command == "deblur":  # one level: CYX
        assert axes == "CYX" and np.array_equal(both, np.stack(singles))
    else:  # two levels, the channels of each: TCYX; a single channel's levels are TYX
        assert axes == "TCYX" and np.array_equal(both, np.stack(singles, axis=1))
    record = read_provenance(tmp_path / "all.tif")
    assert record["channel"] == [0, 1] and record["channel_name"] is None


def test_axes_read_a_plain_tiff_as_its_ome_twin(tmp_path, ckpt):
    """A plain CZYX TIFF (no axes metadata: tifffile's QQYX) with --axes CZYX deblurs as the same stack in OME."""
    data = two_channel_stack(tmp_path / "s.ome.tif")
    tifffile.imwrite(tmp_path / "plain.tif", data, photometric="minisblack")
    common = ["--z", 0, 2, "--target", 4, "-c", ckpt, "--channel", 1]
    refused = run("deblur", tmp_path / "plain.tif", *common[:-2], "-o", tmp_path / "x.tif")
    assert refused.exit_code == 2 and "could each be z" in refused.output
    given = run("deblur", tmp_path / "plain.tif", *common, "--axes", "CZYX", "-o", tmp_path / "plain_out.tif")
    ome = run("deblur", tmp_path / "s.ome.tif", *common, "-o", tmp_path / "ome_out.tif")
    assert given.exit_code == 0 and ome.exit_code == 0, given.output + ome.output
    assert np.array_equal(tifffile.imread(tmp_path / "plain_out.tif"), tifffile.imread(tmp_path / "ome_out.tif"))
