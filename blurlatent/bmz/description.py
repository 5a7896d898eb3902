"""The bioimage.io description (model format 0.5) of an exported package, built with ``bioimageio.spec``'s own
classes: the two named inputs and their preprocessing, the output, the weights entries, the README (the
paper cited, the training data said as it was), the cover and the config. ``export`` builds the files.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from bioimageio.spec.model.v0_5 import (
    Author,
    AxisId,
    BatchAxis,
    ChannelAxis,
    CiteEntry,
    ClipDescr,
    ClipKwargs,
    Config,
    Doi,
    FileDescr,
    Identifier,
    InputTensorDescr,
    IntervalOrRatioDataDescr,
    LicenseId,
    ModelDescr,
    OnnxWeightsDescr,
    OutputTensorDescr,
    ParameterizedSize,
    ScaleRangeDescr,
    ScaleRangeKwargs,
    SizeReference,
    SpaceInputAxis,
    SpaceOutputAxis,
    TensorId,
    TorchscriptWeightsDescr,
    Version,
    WeightsDescr,
)

from blurlatent import __version__
from blurlatent.files.atomic import json_safe
from blurlatent.inference.predictor import NEAR_FOCUS
from blurlatent.inference.scale import TrainedScale, card_scale, trained_scale
from blurlatent.intensity import PERCENTILES
from blurlatent.prepare.store import MANIFEST
from blurlatent.synth.generator import RECORD, written_by_synth

# The method's paper (TScIT 37, 2022) has no DOI; its extended version on arXiv (2023) has one.
PAPER = ("Mazilu, I.-G. (2022). Defocus Blur Synthesis and Deblurring through Interpolation in the Latent Space. "
         "TScIT 37, University of Twente. Extended as: Mazilu, I., Wang, S., Dummer, S., Veldhuis, R., Brune, C. & "
         "Strisciuglio, N. (2023). Defocus Blur Synthesis and Deblurring via Interpolation and Extrapolation in "
         "Latent Space.")
PAPER_DOI = "10.48550/arXiv.2307.15461"
BBBC006 = ("Ljosa, V., Sokolnicki, K. L. & Carpenter, A. E. (2012). Annotated high-throughput microscopy image sets "
           "for validation. Nature Methods 9, 637 (BBBC006v1).")
BBBC006_DOI = "10.1038/nmeth.2083"
# bioimageio.core's test compares a rerun with the test output to these; export itself checks to 1e-4, but
# a GPU consumer runs fp32 convolutions as TF32 (cuDNN's default), which Eq. 3 amplifies by 1/(1 - alpha).
CONSUMER_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Task:
    rule: str  # inference.RULES key: Eq. 2 ("blur") or Eq. 3 ("deblur")
    inputs: tuple[str, str]  # tensor ids, in the rule's order (first = sharper for blur, blurriest for deblur)
    output: str
    what: str

    @property
    def near_focus(self) -> int:
        """Which input sets the ``stack`` scale: the one nearer focus (``inference.NEAR_FOCUS``)."""
        return NEAR_FOCUS[self.rule]


TASKS = {
    "deblur": Task("deblur", ("blurriest", "less_blurry"), "deblurred",
                   "recovers the in-focus plane from two defocused planes of one field (Eq. 3)"),
    "blur": Task("blur", ("sharp", "blurry"), "blurred",
                 "synthesizes a defocus level between a sharper and a blurrier plane of one field (Eq. 2)"),
}


@dataclass(frozen=True)
class Built:
    """The files ``export.build`` left in the work folder and what they were made from."""

    alpha: float
    planes: tuple[int, int]  # focal planes of the synthetic test pair
    channel: str
    tests: tuple[Path, Path, Path]  # .npy [1, 1, H, W] float32: both inputs (raw intensities), the Predictor's output
    samples: tuple[Path, Path, Path]  # the same as 2-D TIFFs (inputs in their own dtype) for people to look at
    cover: Path
    torchscript: Path
    onnx: Path
    opset: int
    max_diff: dict[str, float]  # weights format -> largest |package − Predictor| on the test output


# --- tensors --------------------------------------------------------------------------------------------


def preprocessing(normalize: str, reference: str | None) -> list:
    """The checkpoint's normalization in the spec's terms: ``scale_range`` per image (or from ``reference``
    for ``stack``), then ``clip`` to [0, 1], exactly as ``intensity.to_unit`` maps ``intensity_range``."""
    low, high = (0.0, 100.0) if normalize == "minmax" else PERCENTILES
    kwargs = ScaleRangeKwargs(axes=[AxisId("channel"), AxisId("y"), AxisId("x")], min_percentile=low,
                              max_percentile=high,
                              reference_tensor=TensorId(reference) if normalize == "stack" else None)
    return [ScaleRangeDescr(kwargs=kwargs), ClipDescr(kwargs=ClipKwargs(min=0.0, max=1.0))]


def tensors(task: Task, normalize: str, multiple: int, built: Built) -> tuple[list, list]:
    """Input and output tensor descriptions, axes [batch, channel, y, x]: the first input any y, x ≥ ``multiple``
    (the network pads), the second input and the output of the first input's size."""
    first = TensorId(task.inputs[0])

    def space(axis_type, axis: str, free: bool):
        size = ParameterizedSize(min=multiple, step=1) if free else SizeReference(tensor_id=first, axis_id=AxisId(axis))
        return axis_type(id=AxisId(axis), size=size)

    def axes(name: str, axis_type, free: bool) -> list:
        return [BatchAxis(), ChannelAxis(channel_names=[Identifier(name)]), space(axis_type, "y", free),
                space(axis_type, "x", free)]

    inputs = [InputTensorDescr(
        id=TensorId(name), axes=axes(name, SpaceInputAxis, i == 0),
        description=f"the {name.replace('_', ' ')} plane, raw intensities (the preprocessing normalizes them)",
        test_tensor=FileDescr(source=built.tests[i]), sample_tensor=FileDescr(source=built.samples[i]),
        data=IntervalOrRatioDataDescr(type="float32"),
        preprocessing=preprocessing(normalize, task.inputs[task.near_focus]),
    ) for i, name in enumerate(task.inputs)]
    output = OutputTensorDescr(
        id=TensorId(task.output), axes=axes(task.output, SpaceOutputAxis, False),
        description=f"the {task.output} plane on the [0, 1] scale of the normalized inputs",
        test_tensor=FileDescr(source=built.tests[2]), sample_tensor=FileDescr(source=built.samples[2]),
        data=IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
    )
    return inputs, [output]


# --- words ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingData:
    """What a checkpoint was trained on, as its package says it: ``text`` one sentence that names folders by their
    last name only (never a path of the machine that trained it); ``synthetic`` True (made by `blurlatent synth`),
    False (images from elsewhere) or None (unknown); ``bbbc006`` real images in BBBC006's layout (cite it);
    ``tag`` what the channel shows, where that is known (``CHANNEL_TAGS``: BBBC006's channels, which synth draws)."""

    text: str
    synthetic: bool | None
    bbbc006: bool = False
    tag: str | None = None


def training_data(config: dict, card: dict | None = None) -> TrainingData:
    """What the checkpoint was trained on: a built-in model's ``card`` says it; else the config's store and that
    store's manifest, as far as the files still tell (BBBC006's layout, synth's or own z-stacks; the channel)."""
    data = config.get("data") or {}
    channel = str(data.get("channel", "w1"))
    if card is not None:
        synthetic = card.get("synthetic") if isinstance(card.get("synthetic"), bool) else None
        return TrainingData(str(card.get("trained_on", "see the model card")), synthetic,
                            tag=CHANNEL_TAGS.get(channel) if synthetic else None)
    store = str(data.get("store") or "")
    if not store:
        return TrainingData("unknown: the checkpoint names no training store", None)
    name = Path(store).name
    try:
        manifest = json.loads((Path(store) / MANIFEST).read_text())
        source = Path(manifest["source"])
        if "stacks" in (manifest.get("source_kinds") or ()) or "focus" in manifest:  # prepare --focus: own stacks
            return TrainingData(own_stacks_words(manifest, channel, source.name, name), False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return TrainingData(f"the prepared store {name}, which could not be read at export, so whether its images "
                            "were real or synthetic is unknown", None)
    tag = CHANNEL_TAGS.get(channel)  # BBBC006's layout, real or drawn by synth: w1 nuclei, w2 cytoskeleton
    if written_by_synth(source / RECORD):
        return TrainingData(f"synthetic widefield z-stacks made by `blurlatent synth` (folder {source.name}) and "
                            f"prepared into the store {name}; no real microscope images", True, tag=tag)
    if source.is_dir():
        return TrainingData(f"real images in BBBC006's layout (folder {source.name}, no synth record there), "
                            f"prepared into the store {name}", False, bbbc006=True, tag=tag)
    return TrainingData(f"the store {name}, prepared from images in BBBC006's layout (folder {source.name}) that are "
                        "gone, so whether they were real (BBBC006) or synthetic is unknown", None, tag=tag)


def own_stacks_words(manifest: dict, channel: str, source: str, store: str) -> str:
    """Own z-stacks in words: how many, which planes from focus, and which channel of the files ``channel`` is
    (own-stack prepare numbers the files' channels w1, w2, …: w1 is the first, whatever it shows)."""
    record: dict = next((r for r in manifest.get("fields") or () if r.get("channel") == channel), {})
    first = (record.get("planes") or [{}])[0]
    index, label = first.get("stack_channel"), record.get("channel_name") or first.get("channel_name")
    which = f"channel {index} of each file" if index is not None else "one channel of the files"
    which += f" ({label})" if label else ""
    stacks = len(manifest.get("focus_planes") or {}) or "some"
    return (f"own z-stacks, not BBBC006: {stacks} stacks in the folder {source}, planes "
            f"{manifest.get('planes_from_focus', '?')} from each stack's focus ({manifest.get('focus', '?')}), "
            f"channel {channel} = {which}, prepared into the store {store}")


def portable_config(config: dict) -> dict:
    """The training config as the package attaches it: the store and the init checkpoint by their last name, never
    a path of the machine that trained the model."""
    config = json_safe(config)
    if isinstance(config.get("data"), dict) and config["data"].get("store"):
        config["data"]["store"] = Path(str(config["data"]["store"])).name
    if config.get("init"):
        config["init"] = Path(str(config["init"])).name
    return config


def card_words(card: dict | None) -> str:
    """A built-in model's Benchmark, Limits and Reproduce sections of the README, from its card ("" for others)."""
    if not card:
        return ""
    lines, bench = [], card.get("benchmark") or {}
    rows = bench.get("deblur") or {}
    if rows:
        pairs = list(next(iter(rows.values())))
        lines += ["## Benchmark", f"Deblurring (planes (0, k) toward z16) on {bench.get('test_set', 'a test set')}; "
                  f"{bench.get('metric', '')}.", "", f"| method | {' | '.join(pairs)} |",
                  "|---" * (len(pairs) + 1) + "|",
                  *[f"| {method} | " + " | ".join(f"{s[p][0]:.2f} dB / {s[p][1]:.3f}" for p in pairs) + " |"
                    for method, s in rows.items()], ""]
    if card.get("limits"):
        lines += ["## Limits", *[f"- {limit}" for limit in card["limits"]], ""]
    if card.get("reproduce"):
        lines += ["## Reproduce", f"`{card['reproduce']}`", ""]
    return "\n".join(lines) + "\n" if lines else ""


NORMALIZATION_WORDS = {
    "minmax": "min-max of each image",
    "percentile": f"the {PERCENTILES[0]}-{PERCENTILES[1]} percentiles of each image",
    "stack": f"the {PERCENTILES[0]}-{PERCENTILES[1]} percentiles of the input nearer focus, for both inputs",
}
VALIDATE = {"deblur": "deblur two defocused planes and compare the result with the in-focus plane",
            "blur": "synthesize an intermediate plane and compare it with the plane acquired there"}
RULE_WORDS = {"deblur": "E(less_blurry)/(1 - a) - a/(1 - a) E(blurriest)", "blur": "a E(sharp) + (1 - a) E(blurry)"}
CAUTION = {True: "It was trained on synthetic images only: check it on stacks from your own microscope first.",
           False: "", None: "Where its training images came from is not known for sure: treat it as unvalidated."}


def readme(task: Task, normalize: str, config: dict, built: Built, source_name: str, trained: TrainingData,
           card: dict | None = None) -> str:
    """The package's README.md: what it computes, its inputs and output, training, validation (a built-in model's
    benchmark and limits from its ``card``), citation."""
    data, optim = config.get("data") or {}, config.get("optim") or {}
    origin = f"blurlatent's built-in model `{card['name']}` (`blurlatent models`)" if card else f"`{source_name}`"
    bbbc006 = f"\n\nTraining data: {BBBC006} https://doi.org/{BBBC006_DOI}" if trained.bbbc006 else ""
    first, second = task.inputs
    diffs = ", ".join(f"{fmt} {d:.1e}" for fmt, d in built.max_diff.items())
    return f"""# blurlatent {task.rule} model, alpha = {built.alpha:.4g}

This model {task.what}: `{task.output}` = G({RULE_WORDS[task.rule]}) with a = {built.alpha:.4g}, where E and G
are the encoder and decoder of {ARCH_WORDS.get((config.get("model") or {}).get("arch", "paper"), "the autoencoder")}.
Exported from {origin} by
blurlatent {__version__}.

## Inputs and output
- `{first}` and `{second}`: two grayscale planes of one field, of one size (any height and width of at least
  2**depth; the network reflect-pads to a multiple of 2**depth and crops back).
- Preprocessing, declared in the description so that every consumer runs it: `{normalize}` normalization, the
  range of {NORMALIZATION_WORDS[normalize]} mapped to [0, 1], then clipped to [0, 1].
- `{task.output}`: the result on that [0, 1] scale. `blurlatent {task.rule}` also maps it back to the inputs'
  intensities (`--intensity conserve` or `minmax`); with this package that step is yours.

## Training
- Data: {trained.text}.
- Scale: {scale_words(config, card)}.
- Channel {data.get("channel", "w1")}, regularization `{config.get("reg", "unknown")}`, {optim.get("epochs", "?")} \
epochs of batch {optim.get("batch", "?")}, learning rate {optim.get("lr", "?")}, triplets {data.get("triplets", "?")}.
  The whole training config is attached as `training_config.yaml`.

## Validation
The test inputs are a synthetic field (`blurlatent.synth.generator`, channel {built.channel}, planes
z{built.planes[0]:02d} and z{built.planes[1]:02d}); the test output is what blurlatent's own forward path
(`Predictor`) makes of them, and at export the weights reproduced it to {diffs} (largest difference on the
[0, 1] scale). To validate on your own data, take a focal stack, {VALIDATE[task.rule]} (PSNR, SSIM), as
`blurlatent evaluate` does on a prepared store. {CAUTION[trained.synthetic]}

{card_words(card)}## Citation
{PAPER} https://doi.org/{PAPER_DOI}{bbbc006}
"""


def model_scale(config: dict, card: dict | None = None) -> TrainedScale:
    """The scale the model was trained at: a built-in model's card, else the checkpoint's config."""
    return card_scale(card) if card else trained_scale(config)


def scale_words(config: dict, card: dict | None = None) -> str:
    """The README's scale line: what the model saw, and what to do with images at another pixel size."""
    scale = model_scale(config, card)
    if scale.pixel_size_um is None:
        return "not recorded (a checkpoint of own stacks without pixel sizes)"
    return (f"{scale.words()}; resample images of another pixel size to {scale.pixel_size_um:g} µm/px first "
            "(`blurlatent deblur` does, `--rescale auto`)")


# config.model.arch → what the README calls the network (a checkpoint without arch is the paper's)
ARCH_WORDS = {"paper": "the paper's convolutional autoencoder",
              "multiscale": "blurlatent's multiscale autoencoder (a latent at every resolution, the rule applied to "
                            "each)"}


# what BBBC006's channels show (own stacks are prepared as w1 … w16 too: a tag for w1 and w2 only)
CHANNEL_TAGS = {"w1": "nuclei", "w2": "cytoskeleton"}
NAME_CHARACTERS = set(string.ascii_letters + string.digits + "_+- ()")  # what the spec allows in a model's name


def model_name(text: str) -> str:
    """``text`` as a bioimage.io model name: characters the spec refuses become "-", at most 64 of them."""
    return "".join(c if c in NAME_CHARACTERS else "-" for c in text)[:64]


def describe_package(work: Path, task: Task, predictor, ckpt: dict, built: Built, source_name: str,
                     authors: Sequence[str] = (), card: dict | None = None) -> ModelDescr:
    """The package's ``ModelDescr`` over the files in ``work`` (bioimageio.spec validates it as it is built).
    A built-in model's ``card`` gives its training data, benchmark, limits and, unless ``authors`` are given,
    its authors."""
    config = ckpt["config"]
    trained = training_data(config, card)
    authors = list(authors) or list((card or {}).get("authors") or [])
    normalize = predictor.normalize
    (work / "README.md").write_text(readme(task, normalize, config, built, source_name, trained, card))
    (work / "training_config.yaml").write_text(yaml.safe_dump(portable_config(config), sort_keys=False))
    inputs, outputs = tensors(task, normalize, predictor.multiple, built)
    cite = [CiteEntry(text=PAPER, doi=Doi(PAPER_DOI))]
    if trained.bbbc006:  # BBBC006's images, not its layout: synth's and own stacks are not BBBC006
        cite.append(CiteEntry(text=BBBC006, doi=Doi(BBBC006_DOI)))
    weights = WeightsDescr(
        torchscript=TorchscriptWeightsDescr(source=built.torchscript, pytorch_version=Version(torch.__version__),
                                            comment="torch.jit.trace of blurlatent.bmz.package.LatentNet"),
        onnx=OnnxWeightsDescr(source=built.onnx, opset_version=built.opset, parent="torchscript",
                              comment="torch.onnx.export (dynamo) of the same network"),
    )
    what = "deblurring" if task.rule == "deblur" else "blur synthesis"
    channel = str((config.get("data") or {}).get("channel", built.channel))
    tolerance = {"absolute_tolerance": CONSUMER_TOLERANCE, "relative_tolerance": CONSUMER_TOLERANCE}
    return ModelDescr(
        name=model_name(f"blurlatent {task.rule} {channel} {config.get('reg', 'none')}"),
        description=(f"Defocus {what} by linear interpolation in an autoencoder's latent space at alpha = "
                     f"{built.alpha:.4g}: two planes of one field in, one plane out. Trained on "
                     f"{trained.text}.")[:1024],
        authors=[Author(name=name) for name in authors],
        cite=cite,
        license=LicenseId("MIT"),
        documentation=FileDescr(source=work / "README.md"),
        covers=[FileDescr(source=built.cover)],
        tags=["defocus", what, "microscopy", "fluorescence", "2d", "autoencoder", "latent-space", "pytorch", "onnx",
              *[tag for tag in [trained.tag] if tag]],
        inputs=inputs,
        outputs=outputs,
        weights=weights,
        attachments=[FileDescr(source=work / "training_config.yaml")],
        version=Version(__version__),
        config=Config.model_validate({
            "bioimageio": {"reproducibility_tolerance": [tolerance]},
            "blurlatent": {"task": task.rule, "alpha": built.alpha, "normalize": normalize, "checkpoint": source_name,
                           "version": __version__, "training_data": trained.text, "test_planes": list(built.planes),
                           **{key: value for key, value in vars(model_scale(config, card)).items()
                              if value is not None},
                           "export_max_diff": built.max_diff,
                           **({"builtin": card.get("name"), "benchmark": card.get("benchmark")} if card else {})}}),
    )
