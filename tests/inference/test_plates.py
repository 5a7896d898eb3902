"""Plates: an OME-Zarr HCS plate in (written by the reference writer, ome-zarr-py), a plate out with its layout and
metadata (checked with ome-zarr-py's reader and the NGFF validator, ome-zarr-models), each field's levels equal to
the Predictor on that field's planes; a two-worker LocalCluster and two local processes give the same bits as one
process; a failing task or Ctrl-C leaves no output and no temp folder; the one-line refusals."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import time

import numpy as np
import pytest
from helpers.cli_output import one_line_error
from helpers.infer_model import tiny_checkpoint
from helpers.stack_data import make_stack
from typer.testing import CliRunner

from blurlatent.cli import app
from blurlatent.config import InferenceConfig
from blurlatent.errors import UsageError
from blurlatent.files.provenance import read_provenance
from blurlatent.files.stacks import read_stack
from blurlatent.inference import plates
from blurlatent.inference.alphas import alpha_source
from blurlatent.inference.predictor import Predictor
from blurlatent.nets.latent import alpha_from_planes

zarr = pytest.importorskip("zarr")
pytest.importorskip("dask")
writer = pytest.importorskip("ome_zarr.writer")
FormatV04 = pytest.importorskip("ome_zarr.format").FormatV04

runner = CliRunner()
WELLS = {"A/1": 2, "A/2": 1, "B/1": 1, "B/2": 2}  # fields per well
FOCUS = (5, 6)  # alternately, per field
Z = (1, 3)
SIZE = (48, 64)  # H, W
WINDOW = {"min": 0, "max": 65535, "start": 0, "end": 2000}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def make_plate(path) -> dict[str, int]:
    """A 2x2-well plate of CZYX uint16 fields (DAPI, GFP; 9 planes; 0.645 µm pixels, 2 µm z) as ome-zarr-py writes
    NGFF 0.4; returns {field: its focus plane}."""
    fmt = FormatV04()
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    writer.write_plate_metadata(root, ["A", "B"], ["1", "2"], list(WELLS), fmt=fmt, field_count=2, name="tiny",
                                acquisitions=[{"id": 0, "name": "first"}])
    truth, seed = {}, 0
    for well, count in WELLS.items():
        group = root.require_group(well)
        writer.write_well_metadata(group, [{"path": str(i), "acquisition": 0} for i in range(count)], fmt=fmt)
        for i in range(count):
            focus = FOCUS[seed % 2]
            writer.write_image(make_stack(focus, 9, 2, seed=seed, size=SIZE), group.require_group(str(i)),
                               axes="czyx", scale_factors=(), fmt=fmt,
                               scale={"c": 1.0, "z": 2.0, "y": 0.645, "x": 0.645},
                               axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"},
                               omero={"channels": [{"label": n, "color": "FFFFFF", "window": WINDOW}
                                                   for n in ("DAPI", "GFP")]})
            truth[f"{well}/{i}"], seed = focus, seed + 1
    return truth


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    path = tmp_path_factory.mktemp("plates") / "in.ome.zarr"
    return path, make_plate(path)


def deblur_plate(ckpt, plate_path, out, **options):
    source = alpha_source(None, None, "auto", z=Z)
    return plates.run_plate(ckpt, InferenceConfig(), plate_path, out, "deblur", z=Z, source=source, channel="GFP",
                            **options)


def field_levels(out, truth) -> dict[str, np.ndarray]:
    return {name: read_stack(out / name).data for name in truth}


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_plate_in_plate_out_with_its_metadata_and_the_predictors_values(tmp_path, ckpt, plate):
    plate_path, truth = plate
    out = tmp_path / "out.ome.zarr"
    run = deblur_plate(ckpt, plate_path, out)
    assert [r.name for r in run.results] == list(truth) and not leftovers(tmp_path)
    attrs_in = json.loads((plate_path / ".zattrs").read_text())["plate"]
    attrs = json.loads((out / ".zattrs").read_text())
    assert {k: attrs["plate"][k] for k in ("rows", "columns", "wells", "name", "field_count", "acquisitions")} == \
        {k: attrs_in[k] for k in ("rows", "columns", "wells", "name", "field_count", "acquisitions")}
    assert json.loads((out / "A/1/.zattrs").read_text())["well"]["images"] == [
        {"path": "0", "acquisition": 0}, {"path": "1", "acquisition": 0}]
    assert read_provenance(out)["command"] == "deblur"  # the job's, at the root
    predictor = Predictor.from_checkpoint(ckpt, InferenceConfig())
    for name, focus in truth.items():
        field = read_stack(plate_path / name, channel="GFP")
        alpha = alpha_from_planes(*Z, focus)
        expected = predictor.deblur(field.data[Z[0]], field.data[Z[1]], [alpha], pixel_size=0.645)
        back = read_stack(out / name)
        np.testing.assert_array_equal(back.data, expected)
        assert back.channel == "GFP" and back.pixel_size[:2] == pytest.approx((0.645, 0.645))
        record = read_provenance(out / name)
        assert record["target"] == focus and record["alphas"] == [pytest.approx(alpha)]
        assert record["inputs"] == [f"in.ome.zarr/{name}"] and record["planes"] == list(Z)
    reader, io = pytest.importorskip("ome_zarr.reader"), pytest.importorskip("ome_zarr.io")
    node = next(iter(reader.Reader(io.parse_url(str(out)))()))
    assert [type(spec).__name__ for spec in node.specs] == ["Plate"]  # its wells' first fields, tiled 2x2
    assert node.metadata["metadata"]["plate"]["rows"] == [{"name": "A"}, {"name": "B"}]
    assert np.asarray(node.data[0]).shape[-2:] == (2 * SIZE[0], 2 * SIZE[1])
    models = pytest.importorskip("ome_zarr_models.v04")
    models.HCS.from_zarr(zarr.open_group(str(out), mode="r"))  # the NGFF 0.4 plate and its wells validate
    models.Image.from_zarr(zarr.open_group(str(out / "B/2/1"), mode="r"))


def test_two_workers_and_a_local_cluster_give_the_bits_of_one_process(tmp_path, ckpt, plate):
    distributed = pytest.importorskip("distributed")
    plate_path, truth = plate
    deblur_plate(ckpt, plate_path, tmp_path / "one.ome.zarr")
    one = field_levels(tmp_path / "one.ome.zarr", truth)
    pool = deblur_plate(ckpt, plate_path, tmp_path / "pool.ome.zarr", workers=2)
    broken = tmp_path / "broken.ome.zarr"  # its last field has 3 planes: z 1 3 fails there, on a worker
    shutil.copytree(plate_path, broken)
    shutil.rmtree(broken / "B/2/1")
    writer.write_image(make_stack(1, 3, 2, size=SIZE), zarr.open_group(str(broken / "B/2"), mode="a").require_group(
        "1"), axes="czyx", scale_factors=(), fmt=FormatV04(), omero={"channels": [
            {"label": n, "color": "FFFFFF", "window": WINDOW} for n in ("DAPI", "GFP")]})
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        run = deblur_plate(ckpt, plate_path, tmp_path / "cluster.ome.zarr", scheduler=cluster.scheduler_address)
        with pytest.raises(UsageError, match="plane 3 is out of range: B/2/1 has 3 planes"):
            deblur_plate(ckpt, broken, tmp_path / "failed.ome.zarr", scheduler=cluster.scheduler_address)
    assert not (tmp_path / "failed.ome.zarr").exists() and not leftovers(tmp_path)
    for other in ("pool", "cluster"):
        levels = field_levels(tmp_path / f"{other}.ome.zarr", truth)
        for name in truth:
            np.testing.assert_array_equal(levels[name], one[name])
    for done in (pool, run):  # one model load per worker process, not per field
        workers = {r.worker for r in done.results}
        assert 1 <= len(workers) <= 2 and sum(r.load_s > 0 for r in done.results) == len(workers)


def test_a_bar_over_the_fields_and_a_log_line_per_field(tmp_path, ckpt, plate, monkeypatch, caplog):
    plate_path, truth = plate
    bars: list[list] = []

    @contextlib.contextmanager
    def bar(description, total, enabled=True):
        bars.append([description, total, enabled, 0])
        yield lambda n=1: bars[-1].__setitem__(3, bars[-1][3] + n)

    monkeypatch.setattr(plates, "progress_bar", bar)
    with caplog.at_level(logging.INFO, logger=plates.__name__):
        deblur_plate(ckpt, plate_path, tmp_path / "out.ome.zarr", progress_enabled=True)
    assert bars == [["deblur (fields)", len(truth), True, len(truth)]]  # advanced once per field, as each ended
    lines = {r.getMessage().split(":")[0]: r.getMessage() for r in caplog.records if r.name == plates.__name__}
    assert sorted(lines) == sorted(truth)
    for name, focus in truth.items():
        alpha = alpha_from_planes(*Z, focus)
        assert re.fullmatch(rf"{name}: alpha = {alpha:.4g} \(target z{focus} found by \w+\), [0-9.]+ s on \S+:\d+",
                            lines[name]), lines[name]


@pytest.mark.parametrize("stop", [RuntimeError("task failed"), KeyboardInterrupt()])
def test_a_failing_task_or_ctrl_c_leaves_no_output_and_no_temp(tmp_path, ckpt, plate, monkeypatch, stop):
    plate_path, truth = plate
    out = tmp_path / "out.ome.zarr"
    real, calls = plates.field_task, []

    def third_fails(job, field):
        calls.append(field.name)
        if len(calls) == 3:
            raise stop
        return real(job, field)

    monkeypatch.setattr(plates, "field_task", third_fails)
    with pytest.raises(type(stop)):
        deblur_plate(ckpt, plate_path, out)
    assert len(calls) == 3 and sorted(p.name for p in tmp_path.iterdir()) == []  # no output, temp or lock
    monkeypatch.undo()
    deblur_plate(ckpt, plate_path, out)  # an earlier plate is replaced only with force, and kept when a rerun fails
    before = field_levels(out, truth)
    with pytest.raises(UsageError, match="already exists and holds a plate blurlatent deblur wrote"):
        deblur_plate(ckpt, plate_path, out)
    calls.clear()
    monkeypatch.setattr(plates, "field_task", third_fails)
    with pytest.raises(type(stop)):
        deblur_plate(ckpt, plate_path, out, force=True)
    assert not leftovers(tmp_path) and all(np.array_equal(v, before[k]) for k, v in field_levels(out, truth).items())


def test_existing_folder_not_ours_is_never_replaced(tmp_path, ckpt, plate):
    plate_path, _ = plate
    theirs = tmp_path / "theirs.ome.zarr"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="is not a plate blurlatent deblur wrote .*'notes.txt'"):
        deblur_plate(ckpt, plate_path, theirs, force=True)
    with pytest.raises(UsageError, match="is not an OME-Zarr HCS plate"):
        deblur_plate(ckpt, plate_path / "A/1/0", tmp_path / "x.ome.zarr")


def test_cli_deblurs_and_blurs_a_plate_and_refuses_in_one_line(tmp_path, ckpt, plate, monkeypatch):
    plate_path, truth = plate
    out = tmp_path / "cli.ome.zarr"
    result = runner.invoke(app, ["deblur", str(plate_path), "--z", "1", "3", "--channel", "GFP", "-c", str(ckpt),
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "A/1/0: target = z5" in result.output and f"({len(truth)} fields of in.ome.zarr" in result.output
    result = runner.invoke(app, ["blur", str(plate_path), "--z", "6", "1", "--channel", "1", "--alpha", "0.5",
                                 "-c", str(ckpt), "-o", str(tmp_path / "blur.ome.zarr")])
    assert result.exit_code == 0, result.output
    assert read_stack(tmp_path / "blur.ome.zarr" / "B/2/1").data.shape == (1, *SIZE)
    base = ["deblur", str(plate_path), "-c", str(ckpt), "-o", str(tmp_path / "no.ome.zarr")]
    one_line_error(runner.invoke(app, base), "--z P1 P2")
    one_line_error(runner.invoke(app, [*base[:2], str(plate_path), *base[2:], "--z", "1", "3"]), "is a plate",
                   "pass it alone with --z P1 P2")
    one_line_error(runner.invoke(app, [*base, "--z", "1", "3", "--channel", "all"]), "a plate takes one channel")
    one_line_error(runner.invoke(app, [*base, "--z", "1", "3", "--channel", "GFP", "--scheduler", "nowhere"]),
                   "--scheduler 'nowhere': give the Dask scheduler's address")
    start = time.monotonic()
    one_line_error(runner.invoke(app, [*base, "--z", "1", "3", "--channel", "GFP", "--scheduler",
                                       "tcp://127.0.0.1:9"]), "no Dask scheduler answers")
    assert time.monotonic() - start < 20
    one_line_error(runner.invoke(app, ["deblur", str(plate_path / "A/1/0"), "--z", "1", "3", "--channel", "GFP",
                                       "-c", str(ckpt), "-o", str(tmp_path / "f.tif"), "--workers", "2"]),
                   "--workers and --scheduler spread the fields of an OME-Zarr plate")
    monkeypatch.setitem(__import__("sys").modules, "dask", None)  # without the extra
    one_line_error(runner.invoke(app, [*base, "--z", "1", "3", "--channel", "GFP"]),
                   "pip install 'blurlatent[dask]'")
    assert not (tmp_path / "no.ome.zarr").exists()
