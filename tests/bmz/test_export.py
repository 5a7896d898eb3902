"""`blurlatent export` (issue 15): bioimage.io packages that bioimageio.core tests and runs offline, whose output
matches `blurlatent deblur`/`blur`, whose ONNX weights match their TorchScript weights, of weak and strong
runs; refusals of bad checkpoints and options with one line; atomic writes and --force.

Needs the optional packages of ``blurlatent[export]`` (CI installs them); without them every test here is
skipped, saying which package is missing.
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import socket
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from helpers.infer_model import tiny_checkpoint, train_tiny_checkpoint
from helpers.stack_data import write_stacks
from helpers.train_store import PLANES, tiny_config
from typer.testing import CliRunner

from blurlatent.cli import app
from blurlatent.config import ModelConfig
from blurlatent.intensity import plane_ranges
from blurlatent.nets.autoencoder import Autoencoder
from blurlatent.nets.checkpoint import load_checkpoint, save_checkpoint
from blurlatent.prepare.builder import prepare
from blurlatent.synth.generator import render_field, synthesize
from blurlatent.training.trainer import train


def _missing() -> list[str]:
    names = []
    for name in ("bioimageio.core", "bioimageio.spec", "onnx", "onnxruntime", "onnxscript"):
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            names.append(name)
    return names


MISSING = _missing()
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"blurlatent[export] is not installed ({', '.join(MISSING)} "
                                "missing): pip install -e '.[export]'")
runner = CliRunner()
TOLERANCE = 1e-4


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A weak run and a strong run fine-tuned from it (widths 4, 8, 8), trained on a synthetic store."""
    root = tmp_path_factory.mktemp("export-runs")
    synthesize(root / "synth", fields=6, channels=["w1"], planes=PLANES, size=(64, 48), seed=1, workers=1)
    store = root / "store"
    prepare(root / "synth", store, channels=["w1"], planes=PLANES, crop=32, workers=1)
    train(tiny_config(store, reg="weak", epochs=2), root / "weak", progress=False)
    strong = tiny_config(store, reg="strong", epochs=1, init=str(root / "weak" / "best.pt"))
    train(strong, root / "strong", progress=False)
    return {"weak": root / "weak" / "best.pt", "strong": root / "strong" / "best.pt"}


@pytest.fixture(scope="module")
def packages(runs, tmp_path_factory) -> dict[str, Path]:
    """The weak run exported through the command line (alpha from planes 0, 8), the strong one through the API."""
    from blurlatent.bmz.package import export_package

    root = tmp_path_factory.mktemp("packages")
    result = run("export", runs["weak"], "-o", root / "weak.zip", "--planes", 0, 8, "--target", 16, "--author",
                 "A. Tester")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "alpha = 0.5" in result.output
    strong = export_package(runs["strong"], root / "strong.zip", alpha=0.5)
    assert strong.alpha == 0.5 and max(strong.max_diff.values()) <= TOLERANCE
    return {"weak": root / "weak.zip", "strong": root / "strong.zip"}


def rdf(package: Path) -> dict:
    with zipfile.ZipFile(package) as archive:
        return yaml.safe_load(archive.read("rdf.yaml"))


def member(package: Path, name: str) -> bytes:
    with zipfile.ZipFile(package) as archive:
        return archive.read(name)


# --- the package passes bioimageio.core's own test -------------------------------------------------------


@pytest.fixture
def offline(monkeypatch):
    """No network: every connection and name lookup fails, as on a machine without one."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled by this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("name", ["weak", "strong"])
def test_bioimageio_core_test_model_passes_offline(packages, name, offline):
    from bioimageio.core import test_model

    with pytest.raises(OSError):
        socket.create_connection(("bioimage.io", 443), timeout=1)
    summary = test_model(packages[name])
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status not in ("passed", "skipped")]
    assert not failed, failed
    names = " | ".join(d.name for d in summary.details)
    for check in ("Reproduce test outputs from test inputs (torchscript)", "Reproduce test outputs from test inputs "
                  "(onnx)", "Run onnx inference for inputs with batch_size: 2 and size parameter n: 2"):
        assert check in names
    assert summary.status != "failed"


def test_package_contents_and_description(packages, runs):
    weak = rdf(packages["weak"])
    assert [t["id"] for t in weak["inputs"]] == ["blurriest", "less_blurry"]
    assert [t["id"] for t in weak["outputs"]] == ["deblurred"]
    assert set(weak["weights"]) == {"torchscript", "onnx"} and weak["weights"]["onnx"]["parent"] == "torchscript"
    assert weak["config"]["blurlatent"]["alpha"] == 0.5 and weak["authors"] == [{"name": "A. Tester"}]
    steps = [p["id"] for p in weak["inputs"][0]["preprocessing"]]
    assert "scale_range" in steps and "clip" in steps
    scale = next(p for p in weak["inputs"][0]["preprocessing"] if p["id"] == "scale_range")["kwargs"]
    assert (scale["min_percentile"], scale["max_percentile"]) == (0.0, 100.0)  # minmax, as the store
    assert weak["cite"][0]["doi"] == "10.48550/arXiv.2307.15461" and len(weak["cite"]) == 1  # synthetic: no BBBC006
    readme = member(packages["weak"], "README.md").decode()
    assert "synthetic widefield z-stacks made by `blurlatent synth`" in readme and "## Validation" in readme
    assert "regularization `weak`" in readme
    ours = weak["config"]["blurlatent"]  # issue 26: the scale it was trained at, and what to do at another
    assert (ours["pixel_size_um"], ours["z_step_um"]) == (0.645, 2.0) and "Scale: 0.645 µm/px, 2 µm per plane" in readme
    strong = rdf(packages["strong"])
    assert strong["name"] == "blurlatent deblur w1 strong"
    config = yaml.safe_load(member(packages["strong"], "training_config.yaml"))
    assert config["reg"] == "strong" and config["init"].endswith("best.pt")
    for name in ("cover.png", "weights.onnx", "weights_torchscript.pt", "sample_deblurred.tif"):
        assert member(packages["weak"], name)


# --- the package computes what blurlatent computes ----------------------------------------------------------


def field(shape_wh=(75, 53), planes=(0, 8), seed=7) -> tuple[np.ndarray, np.ndarray]:
    """Two uint16 planes of a synthetic field, not the package's test field, of a size no multiple of 8."""
    stack, _ = render_field(seed, 3, shape_wh, list(planes), ["w1"])
    return stack["w1"][0], stack["w1"][1]


def core_output(package: Path, names: tuple[str, str], first, second, weight_format: str) -> np.ndarray:
    """The package run by bioimageio.core (its preprocessing, then ``weight_format``): [H, W]."""
    from bioimageio.core import create_prediction_pipeline, load_model_description, predict

    descr = load_model_description(package, perform_io_checks=False)
    pipeline = create_prediction_pipeline(bioimageio_model=descr, weight_format=weight_format, devices=["cpu"])
    inputs = {name: image.astype(np.float32)[None, None] for name, image in zip(names, (first, second), strict=True)}
    sample = predict(model=pipeline, inputs=inputs)
    return np.asarray(next(iter(sample.members.values())).data).squeeze()


def cli_unit(tmp_path, ckpt, task, first, second, alpha, normalize) -> np.ndarray:
    """`blurlatent TASK ... --intensity minmax --out-dtype float32` mapped back to [0, 1] by its output scale."""
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    tifffile.imwrite(a, first)
    tifffile.imwrite(b, second)
    out = tmp_path / f"{task}.tif"
    result = run(task, a, b, "-c", ckpt, "--alpha", alpha, "--intensity", "minmax", "--out-dtype", "float32",
                 "-o", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    ranges = plane_ranges([first, second], normalize, reference=1 if task == "deblur" else 0)
    lo, hi = ranges[1] if task == "deblur" else [alpha * x + (1 - alpha) * y for x, y in zip(*ranges, strict=True)]
    return (tifffile.imread(out).astype(np.float64) - lo) / (hi - lo)


@pytest.mark.parametrize("case", ["deblur-weak", "deblur-percentile", "deblur-stack", "blur-minmax"])
def test_package_run_by_bioimageio_core_matches_the_command_line(case, packages, runs, tmp_path, tmp_path_factory):
    """The package on a new synthetic field (75x53, so padded inside) gives what `blurlatent deblur`/`blur`
    gives, to 1e-4 on the [0, 1] scale, with both weight formats; percentile and stack checkpoints exercise
    the clip and the reference_tensor preprocessing."""
    from blurlatent.bmz.package import export_package

    task, kind = case.split("-")
    if kind == "weak":
        ckpt, package, alpha, normalize = runs["weak"], packages["weak"], 0.5, "minmax"
    else:
        normalize = kind
        ckpt = tiny_checkpoint(tmp_path_factory, normalize)
        alpha = 0.5 if task == "deblur" else 0.25
        package = export_package(ckpt, tmp_path / "model.zip", task=task, alpha=alpha).path
    names = ("blurriest", "less_blurry") if task == "deblur" else ("sharp", "blurry")
    first, second = field(planes=(0, 8) if task == "deblur" else (16, 0))
    expected = cli_unit(tmp_path, ckpt, task, first, second, alpha, normalize)
    assert expected.std() > 0.01  # a real image, not a constant
    for weight_format in ("torchscript", "onnx"):
        got = core_output(package, names, first, second, weight_format)
        assert got.shape == first.shape
        assert np.abs(got - expected).max() <= TOLERANCE, (weight_format, np.abs(got - expected).max())


def test_onnx_weights_match_torchscript(packages, tmp_path):
    """Both weight files of the strong package on a batch of 2 at a size neither the test field's nor a multiple
    of 8: ONNX (onnxruntime) and TorchScript agree to 1e-4."""
    import onnxruntime

    with zipfile.ZipFile(packages["strong"]) as archive:
        archive.extractall(tmp_path)
    rng = np.random.default_rng(0)
    a, b = (rng.random((2, 1, 41, 70), dtype=np.float32) for _ in range(2))
    net = torch.jit.load(str(tmp_path / "weights_torchscript.pt"))
    with torch.no_grad():
        ts = net(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    session = onnxruntime.InferenceSession(str(tmp_path / "weights.onnx"), providers=["CPUExecutionProvider"])
    ort = session.run(None, {"blurriest": a, "less_blurry": b})[0]
    assert ts.shape == ort.shape == (2, 1, 41, 70) and ts.std() > 0.01
    assert np.abs(ts - ort).max() <= TOLERANCE


# --- refusals, the output policy, atomic writes ---------------------------------------------------------------


def bad_checkpoints(root: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """Checkpoints export must refuse, each with what its message names."""
    ckpt = load_checkpoint(good)
    data = good.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    nan = {k: v.clone() for k, v in ckpt["model"].items()}
    nan["encoder.0.0.weight"][0] = float("nan")
    save_checkpoint(root / "nan.pt", {**ckpt, "model": nan})
    rgb = Autoencoder(ModelConfig(widths=[4, 8, 8], in_channels=3))
    save_checkpoint(root / "rgb.pt", {"config": {"model": {"widths": [4, 8, 8], "in_channels": 3}},
                                      "model": rgb.state_dict()})
    torch.save(ckpt["model"], root / "bare.pt")
    return {"truncated": (root / "truncated.pt", "truncated"), "nan": (root / "nan.pt", "holds NaN"),
            "rgb": (root / "rgb.pt", "in_channels 3"), "bare": (root / "bare.pt", "not a blurlatent checkpoint"),
            "missing": (root / "missing.pt", "checkpoint not found")}


def test_bad_checkpoints_are_refused_with_one_line(tmp_path, tmp_path_factory):
    cases = bad_checkpoints(tmp_path, tiny_checkpoint(tmp_path_factory))
    out = tmp_path / "out"
    out.mkdir()
    for name, (path, needle) in cases.items():
        result = run("export", path, "-o", out / "model.zip", "--alpha", 0.5)
        lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (name, result.output)
        assert str(path) in lines[0] and needle in lines[0], (name, lines[0])
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("argv, needle", [
    (["--task", "blur", "--planes", 0, 8], "--planes: --task blur takes --alpha"),
    (["--task", "blur"], "--alpha: --task blur takes --alpha"),
    ([], "--alpha or --planes: give one"),
    (["--alpha", 0.5, "--planes", 0, 8], "--alpha or --planes: give one, not both"),
    (["--planes", 0, 8], "--planes 0 8 need the in-focus plane they lead to: pass --target P"),  # no silent 16
    (["--alpha", 1.0], "--alpha 1.0 is outside [0, 1)"),
])
def test_bad_options_are_refused_before_any_work(argv, needle, tmp_path, tmp_path_factory):
    result = run("export", tiny_checkpoint(tmp_path_factory), "-o", tmp_path / "m.zip", *argv)
    assert result.exit_code == 2 and needle in result.output, result.output
    assert list(tmp_path.iterdir()) == []


def test_output_policy_zip_name_force_and_atomic_write(tmp_path, tmp_path_factory, monkeypatch):
    from blurlatent.bmz import package as export
    ckpt = tiny_checkpoint(tmp_path_factory)
    result = run("export", ckpt, "-o", tmp_path / "model.tif", "--alpha", 0.5)
    assert result.exit_code == 2 and "ending in .zip" in result.output
    existing = tmp_path / "model.zip"
    existing.write_bytes(b"the user's file")
    result = run("export", ckpt, "-o", existing, "--alpha", 0.5)
    assert result.exit_code == 2 and "--force" in result.output and existing.read_bytes() == b"the user's file"
    # weights that do not reproduce blurlatent stop the export: nothing written, no temp left behind
    broken = lambda *args: {"torchscript": np.zeros((1, 1, 196, 260), np.float32)}
    monkeypatch.setattr(export, "run_weights", broken)
    result = run("export", ckpt, "-o", existing, "--alpha", 0.5, "--force")
    assert result.exit_code == 1 and "differ from blurlatent's own output" in result.output, result.output
    assert existing.read_bytes() == b"the user's file" and sorted(p.name for p in tmp_path.iterdir()) == ["model.zip"]
    monkeypatch.undo()
    result = run("export", ckpt, "-o", existing, "--alpha", 0.5, "--force")
    assert result.exit_code == 0, result.output
    assert zipfile.is_zipfile(existing) and sorted(p.name for p in tmp_path.iterdir()) == ["model.zip"]


# --- what the package says it was trained on (issue 28, cause 8); no path of this machine (issue 26) ----------


def machine_paths(package: Path, *roots: Path) -> list[str]:
    """The paths of this machine (``roots``, the repository, the Python environment, the home folder) that the
    package holds: in its member names and bytes, and in those of members that are zips themselves (TorchScript)."""
    needles = {str(p).encode() for p in (*roots, Path(__file__).resolve().parents[2], Path(sys.prefix), Path.home())
               if len(str(p)) > 4}
    found = set()
    with zipfile.ZipFile(package) as archive:
        blobs = [(name, name.encode() + b"\n" + archive.read(name)) for name in archive.namelist()]
    for name, data in list(blobs):
        if data.split(b"\n", 1)[1][:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data.split(b"\n", 1)[1])) as inner:
                blobs += [(f"{name}/{n}", n.encode() + b"\n" + inner.read(n)) for n in inner.namelist()]
    for name, data in blobs:
        found |= {f"{name}: {needle.decode()}" for needle in needles if needle in data}
    return sorted(found)


def test_no_path_of_this_machine_in_a_package(packages, tmp_path_factory):
    """Issue 26: the weak run's package (its store a folder under pytest's temp folder) and the strong run's (its
    init a checkpoint there) name the store and the init by their last name only; the weights carry no source paths
    (TorchScript's debug records, the ONNX exporter's stack traces)."""
    for package in packages.values():
        assert machine_paths(package, tmp_path_factory.getbasetemp()) == [], package
    config = yaml.safe_load(member(packages["strong"], "training_config.yaml"))
    assert config["data"]["store"] == "store" and config["init"] == "best.pt"


def test_training_data_says_what_the_store_records(tmp_path):
    """Cause 8: own z-stacks are not "real images, BBBC006 layout": their w1 is the files' first channel (no
    nuclei tag, no BBBC006 citation); synth's stores are synthetic; real images in BBBC006's layout cite it; a
    store that is gone is unknown. Folders by their last name, never a path."""
    from blurlatent.bmz.description import training_data

    write_stacks(tmp_path / "stacks", [4, 4, 4])
    prepare(tmp_path / "stacks", tmp_path / "own", focus="auto", planes="-4:0:2", crop=32, workers=1)
    synthesize(tmp_path / "synth", fields=3, channels=["w1"], planes=[0, 8, 16], size=(48, 32), seed=2, workers=1)
    prepare(tmp_path / "synth", tmp_path / "synth_store", channels=["w1"], planes=[0, 8, 16], crop=32, workers=1)
    shutil.copytree(tmp_path / "synth", tmp_path / "bbbc006")
    (tmp_path / "bbbc006" / "synth.json").unlink()  # no synth record: images from elsewhere, in BBBC006's layout
    prepare(tmp_path / "bbbc006", tmp_path / "real", channels=["w1"], planes=[0, 8, 16], crop=32, workers=1)

    def said(store: str, channel: str = "w1"):
        return training_data({"data": {"store": str(tmp_path / store), "channel": channel}})

    own = said("own")
    assert own.text.startswith("own z-stacks, not BBBC006: 3 stacks in the folder stacks, planes [-4, -2, 0]")
    assert "channel w1 = channel 0 of each file" in own.text and "channel w2 = channel 1" in said("own", "w2").text
    assert (own.synthetic, own.bbbc006, own.tag) == (False, False, None)
    synthetic = said("synth_store")
    assert (synthetic.synthetic, synthetic.bbbc006, synthetic.tag) == (True, False, "nuclei")
    real = said("real")
    assert (real.synthetic, real.bbbc006, real.tag) == (False, True, "nuclei") and "BBBC006's layout" in real.text
    shutil.rmtree(tmp_path / "bbbc006")
    assert (said("real").synthetic, said("real").bbbc006) == (None, False)
    for data in (own, synthetic, real, said("real"), said("gone")):
        assert str(tmp_path) not in data.text


def test_export_of_a_model_trained_on_own_stacks(tmp_path):
    """Cause 8 end to end: the package of a model whose store holds own z-stacks says so, cites the paper only and
    is not tagged nuclei."""
    from blurlatent.bmz.package import export_package

    write_stacks(tmp_path / "stacks", [4, 4, 4])
    prepare(tmp_path / "stacks", tmp_path / "store", focus="auto", planes="-4:0:2", crop=32, workers=1)
    ckpt = tmp_path / "ckpt.pt"
    train_tiny_checkpoint(ckpt, steps=2)
    payload = load_checkpoint(ckpt)
    payload["config"]["data"]["store"] = str(tmp_path / "store")
    save_checkpoint(ckpt, payload)
    package = export_package(ckpt, tmp_path / "m.zip", alpha=0.5).path
    description = rdf(package)
    assert "own z-stacks, not BBBC006" in member(package, "README.md").decode()
    assert "own z-stacks, not BBBC006" in description["config"]["blurlatent"]["training_data"]
    assert [c["doi"] for c in description["cite"]] == ["10.48550/arXiv.2307.15461"]
    assert "nuclei" not in description["tags"] and machine_paths(package, tmp_path) == []


@pytest.mark.slow
def test_the_builtin_model_exports_by_name_and_passes_bioimageio_test(tmp_path, offline):
    """Issue 26: `blurlatent export w1` exports the built-in model by its name; its card gives the package its
    authors, training data, benchmark and limits; bioimageio.core's own test passes, offline (about a minute:
    the real model, not a tiny one)."""
    from bioimageio.core import test_model

    from blurlatent.inference.builtin import builtin_model

    card = builtin_model("w1").card
    result = run("export", "w1", "-o", tmp_path / "w1.zip", "--alpha", 0.5)
    assert result.exit_code == 0, result.output
    description = rdf(tmp_path / "w1.zip")
    assert description["authors"] == [{"name": name} for name in card["authors"]] != []
    ours = description["config"]["blurlatent"]
    assert ours["training_data"] == card["trained_on"] and ours["builtin"] == "w1"
    assert ours["benchmark"] == card["benchmark"] and "nuclei" in description["tags"]
    assert (ours["pixel_size_um"], ours["z_step_um"], ours["defocus_um"]) == (0.645, 2.0, 32.0)
    assert [c["doi"] for c in description["cite"]] == ["10.48550/arXiv.2307.15461"]  # synthetic: no BBBC006
    readme = member(tmp_path / "w1.zip", "README.md").decode()
    assert "blurlatent's built-in model `w1`" in readme and card["trained_on"] in readme
    assert "## Benchmark" in readme and "| this model | 25.29 dB / 0.806 |" in readme and "## Limits" in readme
    assert machine_paths(tmp_path / "w1.zip", tmp_path) == []
    summary = test_model(tmp_path / "w1.zip")
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status not in ("passed", "skipped")]
    assert not failed and summary.status != "failed", failed
