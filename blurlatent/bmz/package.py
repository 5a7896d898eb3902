"""A checkpoint as a bioimage.io model package (format 0.5) that Fiji (deepImageJ), ilastik, napari and
``bioimageio.core`` run: ``export_package(ckpt, "model.zip", alpha=0.5)``. Needs ``blurlatent[export]``.

What the package holds and why:

* the network ``LatentNet``: two planes in [0, 1] → G(rule(E(first), E(second), α)) in [0, 1] at one fixed
  α, where rule is ``inference.RULES``'s Eq. 3 (deblur) or Eq. 2 (blur) from ``latent`` — the same model,
  BatchNorm folded the same way, as the ``Predictor``. Reflect padding to a multiple of 2**depth happens
  inside it (as the Predictor pads), so the package accepts any H, W ≥ 2**depth;
* the checkpoint's normalization as the spec's own preprocessing, run by every consumer: ``scale_range``
  over each image (minmax: percentiles 0–100; percentile: 0.1–99.9) then ``clip`` to [0, 1]; ``stack``
  takes both inputs' range from the input nearer focus (``reference_tensor``). Nothing of it had to go
  into the network. The output stays on the [0, 1] scale: mapping it back to the inputs' intensities
  (``--intensity conserve``/``minmax``) needs the raw inputs, which a spec network never sees;
* weights as TorchScript (``torch.jit.trace``) and ONNX (``torch.onnx.export``), without the source paths both
  record (``strip_source_paths``), each checked against the Predictor on the test field before anything is
  written (``TOLERANCE``);
* test tensors from a synthetic field (``synth.render_field``) of the checkpoint's channel, a cover, a
  README that cites the paper and says what the model was trained on (``describe_package``), and the training config.

The package is built in a temp folder beside ``out`` and renamed into place (``files``); an existing
``out`` is replaced only with ``force``; a failed export leaves nothing, not even the folders it made for ``out``.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import time
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import tifffile
import torch
import torch.nn.functional as F
from bioimageio.spec import save_bioimageio_package
from loguru import logger
from torch import nn

from blurlatent.bbbc006 import CHANNELS, IN_FOCUS_PLANE, N_PLANES
from blurlatent.bmz.description import TASKS, Built, Task, describe_package
from blurlatent.config import InferenceConfig, TrainConfig, checked_config
from blurlatent.errors import RuntimeFailure, UsageError
from blurlatent.files.atomic import atomic_path, check_writable, make_temp_dir, missing_folders, remove_empty_folders
from blurlatent.files.pictures import save_grid
from blurlatent.inference.alphas import deblur_alphas
from blurlatent.inference.builtin import builtin_path, named_builtin
from blurlatent.inference.predictor import RULES, Predictor, checkpoint_normalization
from blurlatent.intensity import to_unit
from blurlatent.nets.autoencoder import AnyAutoencoder
from blurlatent.nets.checkpoint import build_model, load_checkpoint
from blurlatent.nets.latent import check_blur_alpha, check_deblur_alpha
from blurlatent.synth.generator import render_field

# Largest |TorchScript − Predictor| and |ONNX − Predictor| on the [0, 1] test output an export accepts.
TOLERANCE = 1e-4
# The synthetic test field: width x height, deliberately not a multiple of 2**depth so padding is exercised.
TEST_SIZE = (260, 196)
TEST_SEED = 0


class LatentNet(nn.Module):
    """The package's network: ``forward(first, second)`` on float [B, 1, H, W] images in [0, 1] returns
    G(rule(E(first), E(second), α)) as [B, 1, H, W] in [0, 1]; first = blurriest (deblur) or sharp (blur).

    ``model`` should have its BatchNorm folded (``inference.fuse_batchnorm``, as the Predictor's is).
    Inputs are reflect-padded at the bottom/right to a multiple of 2**depth and the output cropped back,
    as ``tiling.pad_to_multiple``/``crop_to`` do; the two are encoded in separate calls so that export
    keeps the batch size free.
    """

    def __init__(self, model: AnyAutoencoder, rule: str, alpha: float):
        super().__init__()
        self.model = model
        self.rule = rule
        self.alpha = float(alpha)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        h, w = first.shape[-2], first.shape[-1]
        m = self.model.multiple
        pad = [0, (m - w % m) % m, 0, (m - h % m) % m]
        z_first = self.model.encoder(F.pad(first, pad, mode="reflect"))
        z_second = self.model.encoder(F.pad(second, pad, mode="reflect"))
        return self.model.decode(RULES[self.rule](z_first, z_second, self.alpha))[:, :, :h, :w]


@dataclass(frozen=True)
class ExportResult:
    path: Path
    task: str
    alpha: float
    normalize: str
    max_diff: dict[str, float]  # weights format -> largest |package − Predictor| on the test output
    size_bytes: int
    seconds: float

    def summary(self) -> str:
        return (f"wrote {self.path} ({self.size_bytes / 1e6:.1f} MB): {self.task} at alpha = {self.alpha:.4g}, "
                f"{self.normalize} normalization, TorchScript and ONNX weights within "
                f"{max(self.max_diff.values()):.1e} of blurlatent's own output on a synthetic test field "
                f"({self.seconds:.0f} s)")


# --- the checks that run before any work ---------------------------------------------------------------


def export_alpha(task: str, alpha: float | None, planes: tuple[float, float] | None, target: float | None) -> float:
    """The package's fixed α: deblur from ``alpha`` or ``planes`` toward ``target`` (``alphas.alpha_source``: no
    default target); blur from ``alpha`` only."""
    if task not in TASKS:
        raise UsageError(f"{{task}} {task!r} is not one of {', '.join(TASKS)}", "task")
    if task == "blur":
        if planes is not None:
            raise UsageError("{planes}: {task} blur takes {alpha} (the blur level, 1 = sharp, 0 = blurry), not planes; "
                             "planes give Eq. 3's alpha for {task} deblur", "planes", "task", "alpha")
        if alpha is None:
            raise UsageError("{alpha}: {task} blur takes {alpha} (the blur level, 1 = sharp, 0 = blurry); give one",
                             "alpha", "task")
        return check_blur_alpha(alpha)
    alphas, _ = deblur_alphas(alpha, planes, target, sweep=False)
    if not alphas:
        raise UsageError("{alpha} or {planes}: give one; the package deblurs at one fixed alpha", "alpha", "planes")
    return check_deblur_alpha(alphas[0])  # warns when 1/(1 − α) amplifies past latent.MAX_GAIN


def check_out(out: Path, force: bool, checkpoint: str | Path) -> None:
    """UsageError unless ``out`` is a .zip that may be written: not existing (without ``force``), and never
    the ``checkpoint`` itself (torch saves zip files: ``-o best.zip`` of a ``best.zip`` checkpoint)."""
    if out.suffix.lower() != ".zip":
        raise UsageError(f"{out}: a bioimage.io package is a .zip file; choose a name ending in .zip")
    check_writable(out, force, [checkpoint])


def load_exportable(checkpoint: str | Path) -> tuple[Predictor, dict]:
    """The checkpoint as a CPU Predictor (BatchNorm folded) and its dict; UsageError, one line, when it
    cannot be exported: unreadable, foreign or broken (``checkpoint`` checks the file, its config, one input
    channel, and that its weights fit and are finite), of an unknown normalization, or whose training config
    the config schema refuses (the description and README are written from it)."""
    source = str(checkpoint)
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    model = build_model(ckpt, source)
    checked_config(TrainConfig, ckpt["config"], f"{source}: config")  # keys, types, choices, ranges; names the key
    normalize = checkpoint_normalization(ckpt, source)
    return Predictor(model, normalize, config=InferenceConfig(device="cpu"), source=source), ckpt


# --- the test field, the weights and their check ---------------------------------------------------------


def field_planes(task: Task, planes: tuple[float, float] | None, target: float | None,
                 alpha: float) -> tuple[int, int]:
    """Focal planes of the synthetic test pair: the given ones, else blurriest z0 and the less-blurry plane
    that ``alpha`` implies toward ``target`` (the synthetic field's focus, z16, when none is given) (deblur), or
    sharp z16 and blurry z0 (blur)."""
    clip = lambda p: int(min(max(round(p), 0), N_PLANES - 1))
    if task.rule == "blur":
        return IN_FOCUS_PLANE, 0
    if planes is not None:
        return clip(planes[0]), clip(planes[1])
    target = float(IN_FOCUS_PLANE) if target is None else target
    return 0, clip(target - alpha * target)


def field_channel(channel) -> str:
    """The synthetic channel of the test field: the checkpoint's own where the generator renders it (w1, w2), else
    w1 (own stacks are prepared as w1 … w16: a test field only has to exercise the network, not match the dye)."""
    return channel if channel in CHANNELS else CHANNELS[0]


def synthetic_pair(channel: str, planes: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Two uint16 planes [H, W] of one synthetic field (``TEST_SIZE``, ``TEST_SEED``) of ``channel``."""
    stack, _ = render_field(TEST_SEED, 0, TEST_SIZE, list(planes), [channel])
    return stack[channel][0], stack[channel][1]


@contextlib.contextmanager
def quiet():
    """Silence bioimageio's loguru chatter, torch's deprecation notes on TorchScript and the ONNX exporter's
    notes on axis names."""
    logger.disable("bioimageio")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(deprecated|legacy|will be removed|axis name).*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        try:
            yield
        finally:
            logger.enable("bioimageio")


def write_weights(net: LatentNet, example: tuple[torch.Tensor, torch.Tensor], task: Task,
                  folder: Path) -> tuple[Path, Path, int]:
    """TorchScript and ONNX files of ``net`` in ``folder`` (batch, height and width left free); returns their
    paths and the ONNX opset."""
    torchscript, onnx_path = folder / "weights_torchscript.pt", folder / "weights.onnx"
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(net, example), str(torchscript))
    batch, y, x = (torch.export.Dim(n, min=m) for n, m in (("batch", 1), ("y", net.model.multiple),
                                                           ("x", net.model.multiple)))
    axes = {0: batch, 2: y, 3: x}
    program = torch.onnx.export(net, example, dynamo=True, verbose=False, input_names=list(task.inputs),
                                output_names=[task.output], dynamic_shapes={"first": axes, "second": axes})
    assert program is not None  # dynamo=True always returns the program (only the old exporter gives None)
    program.save(str(onnx_path), external_data=False)
    strip_source_paths(torchscript, onnx_path)
    opset = next(o.version for o in onnx.load(str(onnx_path), load_external_data=False).opset_import
                 if o.domain in ("", "ai.onnx"))
    return torchscript, onnx_path, opset


def strip_source_paths(torchscript: Path, onnx_path: Path) -> None:
    """Take out of both weight files what names the machine they were made on: TorchScript's debug records
    (``*.debug_pkl``: the source file and line of every traced call) and the ONNX exporter's stack traces (node
    metadata). Neither runs; the weights are checked against the Predictor after this (``run_weights``)."""
    with zipfile.ZipFile(torchscript) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()
                   if not info.filename.endswith(".debug_pkl")]
    with zipfile.ZipFile(torchscript, "w", zipfile.ZIP_STORED) as archive:
        for info, data in members:
            archive.writestr(info, data)
    model = onnx.load(str(onnx_path), load_external_data=False)
    nodes = [*model.graph.node, *(node for function in model.functions for node in function.node)]
    while nodes:
        node = nodes.pop()
        kept = [prop for prop in node.metadata_props if prop.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
        node.doc_string = ""
        nodes += [n for attr in node.attribute for graph in [*([attr.g] if attr.HasField("g") else []), *attr.graphs]
                  for n in graph.node]
    onnx.save(model, str(onnx_path))


def run_weights(torchscript: Path, onnx_path: Path, first: np.ndarray, second: np.ndarray,
                task: Task) -> dict[str, np.ndarray]:
    """Both weight files on one [B, 1, H, W] float32 pair, as a consumer runs them: {format: output}."""
    net = torch.jit.load(str(torchscript), map_location="cpu")
    with torch.no_grad():
        ts = net(torch.from_numpy(first), torch.from_numpy(second)).numpy()
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ort = session.run(None, dict(zip(task.inputs, (first, second), strict=True)))[0]
    return {"torchscript": ts, "onnx": ort}


def check_exported_weights(outputs: dict[str, np.ndarray], reference: np.ndarray) -> dict[str, float]:
    """Largest difference of each weight format's output from the Predictor's; RuntimeFailure past ``TOLERANCE``."""
    diffs = {fmt: float(np.abs(out - reference).max()) for fmt, out in outputs.items()}
    wrong = {fmt: d for fmt, d in diffs.items() if not d <= TOLERANCE}
    if wrong:
        raise RuntimeFailure(f"exported weights differ from blurlatent's own output by {wrong} (more than "
                             f"{TOLERANCE:g} on the [0, 1] scale); nothing was written")
    return diffs


# --- the job -------------------------------------------------------------------------------------------


def export_package(checkpoint: str | Path, out: str | Path, *, task: str = "deblur", alpha: float | None = None,
                   planes: tuple[float, float] | None = None, target: float | None = None,
                   authors: Sequence[str] = (), force: bool = False) -> ExportResult:
    """Write ``checkpoint`` as a bioimage.io model package ``out`` (.zip) computing ``task`` at one α.

    deblur: inputs ``blurriest`` and ``less_blurry``, α from ``alpha`` or ``planes`` toward ``target``
    (Eq. 3); blur: inputs ``sharp`` and ``blurry``, α = ``alpha`` (Eq. 2, 1 = sharp). Raises UsageError
    (nothing written) for a bad option, an existing ``out`` without ``force`` or a checkpoint that cannot
    be exported, RuntimeFailure when the exported weights do not reproduce the Predictor. ``checkpoint``: a file, or
    a built-in model's name ("w1"), whose card gives the package its training data, benchmark, limits and authors.
    ``authors``: the people who trained the model (the bioimage.io model zoo asks for them).
    """
    start = time.perf_counter()
    out = Path(out)
    alpha = export_alpha(task, alpha, planes, target)
    builtin = named_builtin(checkpoint)  # "w1": the built-in model, described from its card
    checkpoint = builtin_path(builtin) if builtin is not None else Path(checkpoint)
    check_out(out, force, checkpoint)
    predictor, ckpt = load_exportable(checkpoint)
    spec = TASKS[task]
    created = missing_folders(out.parent)  # a failed export takes away the folders it made for ``out``, only those
    work = make_temp_dir(out)
    try:
        with quiet():
            result = build(predictor, ckpt, spec, alpha, field_planes(spec, planes, target, alpha), work)
            descr = describe_package(work, spec, predictor, ckpt, result, checkpoint.name, authors,
                                     builtin.card if builtin is not None else None)
            with atomic_path(out, force) as tmp:
                save_bioimageio_package(descr, output_path=work / "package.zip")
                (work / "package.zip").replace(tmp)
        created = []
    finally:
        shutil.rmtree(work, ignore_errors=True)
        remove_empty_folders(created)
    return ExportResult(out, task, alpha, predictor.normalize, result.max_diff, out.stat().st_size,
                        time.perf_counter() - start)


def build(predictor: Predictor, ckpt: dict, task: Task, alpha: float, planes: tuple[int, int], work: Path) -> Built:
    """Network, weights, test and sample tensors and cover in ``work``, the weights checked against the Predictor."""
    channel = field_channel((ckpt["config"].get("data") or {}).get("channel", "w1"))
    raw = synthetic_pair(channel, planes)
    # the Predictor's own path on the test pair: its normalization, then padding, E, Eq. 2/3, G
    scales = predictor.pair_scales(raw[0], raw[1], task.rule)
    unit = [to_unit(image, s.lo, s.hi)[None] for image, s in zip(raw, scales, strict=True)]  # [1, H, W] each
    reference = predictor.combine(unit[0], unit[1], [alpha], task.rule)  # [1, 1, H, W]
    model = copy.deepcopy(predictor.model).to(memory_format=torch.contiguous_format)
    if not isinstance(model, AnyAutoencoder):  # load_exportable builds one; a Predictor may hold any module
        raise UsageError(f"{type(model).__name__}: only blurlatent's autoencoders can be exported")
    net = LatentNet(model, task.rule, alpha).eval()
    first, second = (torch.from_numpy(np.repeat(u[None], 2, axis=0)) for u in unit)  # batch 2 keeps the batch free
    torchscript, onnx_path, opset = write_weights(net, (first, second), task, work)
    outputs = run_weights(torchscript, onnx_path, unit[0][None], unit[1][None], task)
    max_diff = check_exported_weights(outputs, reference)
    names = (*task.inputs, task.output)
    arrays = (raw[0].astype(np.float32), raw[1].astype(np.float32), reference[0, 0])
    t1, t2, t3 = (work / f"test_{name}.npy" for name in names)
    s1, s2, s3 = (work / f"sample_{name}.tif" for name in names)
    tests, samples = (t1, t2, t3), (s1, s2, s3)
    for test, sample, array, kept in zip(tests, samples, arrays, (*raw, reference[0, 0]), strict=True):
        np.save(test, array[None, None])
        tifffile.imwrite(sample, kept)
    shown = task.near_focus
    cover = save_grid([[raw[shown], reference[0, 0]]], work / "cover.png", cell_inches=3.0,
                      col_labels=[f"input {task.inputs[shown]} (z{planes[shown]:02d})",
                                  f"{task.output}, alpha {alpha:.3g}"])
    return Built(alpha, planes, channel, tests, samples, cover, torchscript, onnx_path, opset, max_diff)
