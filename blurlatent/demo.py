"""The main job in one call: synthesize → prepare → train (weak) → blur → deblur → evaluate, and the built-in model.

Everything runs on data the demo makes itself (``synth``), so it needs no download. It is a pipeline demo: a
small model trained in about two minutes on 2 CPU cores goes through every step the tool has, and its verdicts
are measured, never assumed. The quality claim is the built-in model's (``blurlatent models``), run beside it on
the same field and in the same report.

The model trained is the paper's autoencoder, trained as the paper did (its seven triplets, no deblur loss,
weak regularisation), reduced to converge on 2 cores: 64 px crops, 4 levels of 16..128 filters, lr 1e-3 with no
decay (the paper's 40 epochs at 1e-4 on the full set is what ``examples/`` reproduces). Not `train`'s default
(multiscale): at demo size the paper's model measured better on real content (docs/benchmarks.md, The demo) at
a sixth of the cost per step; ``arch="multiscale"`` trains that one instead (about 10× longer).

The models run through ``inference.Predictor``, the path ``blurlatent blur``/``deblur`` use, on whole 16-bit
test-field files: each deblurred field is compared with the true in-focus plane next to the less-blurry input,
and the synthesized blur levels are checked to be ordered. When a run does not get there, the summary says so.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from blurlatent.bbbc006 import IN_FOCUS_PLANE, PAPER_PLANES
from blurlatent.config import (
    DEMO_ARCH,
    Arch,
    DataConfig,
    DemoSettings,
    InferenceConfig,
    ModelConfig,
    OptimConfig,
    PrepareConfig,
    TrainConfig,
    check_choice,
    override,
    triplet_set,
)
from blurlatent.errors import Message
from blurlatent.evaluation.loop import evaluate
from blurlatent.evaluation.metrics import check_eval_extra, psnr_calibrated, ssim_calibrated
from blurlatent.files.atomic import write_json
from blurlatent.files.images import write_image
from blurlatent.files.output_folders import check_output_folder, claim_output_folder, remove_owned, write_marker
from blurlatent.files.pictures import save_grid
from blurlatent.inference.builtin import DEFAULT_MODEL, builtin_model, builtin_path
from blurlatent.inference.predictor import Predictor
from blurlatent.intensity import intensity_range, to_unit
from blurlatent.nets.device import assign_device
from blurlatent.nets.latent import alpha_from_planes
from blurlatent.prepare.builder import check_options, prepare
from blurlatent.prepare.crops import split_counts
from blurlatent.prepare.store import Store
from blurlatent.synth.generator import check_synth_options, synthesize
from blurlatent.training.trainer import train

log = logging.getLogger(__name__)

DEMO_MARKER = "demo.json"
BLUR_ALPHAS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)
CHANNEL = "w1"
PLANES = list(PAPER_PLANES)
BLURRIEST, LESS_BLURRY = 0, 8  # the deblur pair; the target is the in-focus plane
# its output marker (``outputs``): the files it writes, and the folders other commands write (each signed)
COMMAND, WHAT, OPTION = "demo", "a blurlatent demo folder", Message("an empty or new {out} folder", "out")
DEMO_FILES = ("blur_levels.tif", "deblurred.tif", f"deblurred_{DEFAULT_MODEL}.tif", "demo.png", DEMO_MARKER)
NESTED = {"synthetic": "synth", "prepared": "prepare", "run": "train", "report": "evaluate"}

# per arch; the paper's model trains as the paper did. The multiscale net's epoch holds 4× the triplets (every one
# toward focus) at 6× the cost per triplet.
_FULL = DemoSettings(fields=14, size=(256, 192), crop=64, widths=[16, 32, 64, 128], epochs=10, batch=16,
                     arch="multiscale")
_FAST = DemoSettings(fields=10, size=(192, 160), crop=64, widths=[16, 32, 64, 128], epochs=8, batch=16,
                     arch="multiscale")


def paper_demo_settings(settings: DemoSettings) -> DemoSettings:
    """``settings`` for the paper's model, trained as the paper did: its seven triplets, no deblur loss."""
    return replace(settings, arch="paper", triplets="paper", deblur_weight=0.0)


FULL = {"multiscale": replace(_FULL, epochs=3), "paper": paper_demo_settings(_FULL)}
FAST = {"multiscale": replace(_FAST, epochs=2), "paper": paper_demo_settings(_FAST)}


@dataclass
class DemoResult:
    out: Path
    figures: dict[str, str]
    report: str
    checks: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c["passed"] for c in self.checks.values())


def sharpness(image: np.ndarray) -> float:
    """Scale-free sharpness: mean squared gradient over variance of the image (larger = sharper).

    Dividing by the variance makes it blind to brightness and contrast, so it ranks blur, not intensity.
    """
    x = np.asarray(image, dtype=np.float64)
    gy, gx = np.gradient(x)
    return float((gx**2 + gy**2).mean() / max(x.var(), 1e-12))


def unit(image: np.ndarray) -> np.ndarray:
    """``image`` min–max scaled to float32 [0, 1] (how the verdicts compare images of different scales)."""
    return to_unit(image, *intensity_range(image, "minmax"))


# --- before anything is written ------------------------------------------------------------------


def train_config(out: Path, settings: DemoSettings, device: str, seed: int) -> TrainConfig:
    """The demo's weak-regularised training run on its own store: `train`'s defaults but for ``settings``."""
    config = TrainConfig(
        model=ModelConfig(widths=list(settings.widths), arch=settings.arch),
        data=DataConfig(store=str(out / "prepared"), channel=CHANNEL),
        optim=OptimConfig(lr=settings.lr, step=settings.step, epochs=settings.epochs, batch=settings.batch),
        reg="weak", seed=seed, device=device, strip_every=0,
    )
    triplets = triplet_set(settings.triplets) if settings.triplets is not None else {}
    return override(config, {**triplets, "deblur_weight": settings.deblur_weight})


def check_demo(out: Path, settings: DemoSettings, device: str, seed: int, force: bool) -> TrainConfig:
    """Check every option of every step and the output folder, so nothing fails after ``out`` is replaced
    (or after minutes of synth and prepare). Returns the training config. Raises UsageError."""
    check_eval_extra("demo")
    check_synth_options(settings.fields, (CHANNEL,), PLANES, settings.size, seed)
    options = check_options((CHANNEL,), PLANES, settings.crop, PrepareConfig.split, PrepareConfig.normalize,
                            PrepareConfig.test_crops)
    split_counts(settings.fields, options.split)
    config = train_config(out, settings, device, seed).check()
    assign_device(device)  # a device that does not exist fails now
    check_output_folder(out, COMMAND, force, WHAT, option=OPTION)  # again, locked, in run_demo
    return config


# --- the steps -----------------------------------------------------------------------------------


def make_store(out: Path, settings: DemoSettings, seed: int, progress: bool) -> Store:
    """Synthesize the demo's fields and prepare them into ``out/prepared``."""
    synthesize(out / "synthetic", fields=settings.fields, channels=(CHANNEL,), planes=PLANES,
               size=settings.size, seed=seed, progress=progress)
    prepare(out / "synthetic", out / "prepared", channels=(CHANNEL,), planes=PLANES, crop=settings.crop,
            progress=progress)
    return Store(out / "prepared")


def run_model(out: Path, predictor: Predictor, builtin: Predictor, store: Store) -> dict[str, np.ndarray]:
    """Blur levels and a deblurred image of the first test field's 16-bit source files by the trained model,
    written to ``out/blur_levels.tif`` and ``out/deblurred.tif``, and the built-in model's deblurred image
    (``out/deblurred_w1.tif``); returns them with the planes used."""
    record = store.fields(split="test", channel=CHANNEL)[0]
    blurriest, less_blurry, focus = (store.source_image(record, p) for p in (BLURRIEST, LESS_BLURRY, IN_FOCUS_PLANE))
    levels = predictor.blur(focus, blurriest, list(BLUR_ALPHAS))
    write_image(out / "blur_levels.tif", levels, force=True)
    alpha = alpha_from_planes(BLURRIEST, LESS_BLURRY, IN_FOCUS_PLANE)
    deblurred = predictor.deblur(blurriest, less_blurry, alpha)
    write_image(out / "deblurred.tif", deblurred, force=True)
    by_builtin = builtin.deblur(blurriest, less_blurry, alpha)
    write_image(out / f"deblurred_{DEFAULT_MODEL}.tif", by_builtin, force=True)
    return {"blurriest": blurriest, "less_blurry": less_blurry, "focus": focus, "levels": levels,
            "deblurred": deblurred, "builtin": by_builtin}


def beats_input(images: dict[str, np.ndarray], output: str, who: str) -> dict:
    """The verdict "``images[output]`` is closer to the true z16 than the less-blurry input z8", measured."""
    truth = unit(images["focus"])
    scores = {name: {"psnr": float(psnr_calibrated(unit(images[key]), truth)),
                     "ssim": float(ssim_calibrated(unit(images[key]), truth))}
              for name, key in (("less_blurry_input_z8", "less_blurry"), ("deblurred", output))}
    return {
        "what": f"{who}: deblurred (z0, z8 → z16) is closer to the true z16 than the less-blurry input z8 "
                "(PSNR and SSIM after a least-squares gain/offset fit to the truth, as `evaluate` scores)",
        **scores,
        "passed": bool(scores["deblurred"]["psnr"] > scores["less_blurry_input_z8"]["psnr"]
                       and scores["deblurred"]["ssim"] > scores["less_blurry_input_z8"]["ssim"]),
    }


def measure(images: dict[str, np.ndarray]) -> dict[str, dict]:
    """The demo's verdicts, measured on the images of ``run_model``."""
    sharp = [sharpness(level) for level in images["levels"]]
    return {
        "deblur_beats_input": beats_input(images, "deblurred", "the model trained here"),
        "builtin_deblur_beats_input": beats_input(images, "builtin", f"the built-in {DEFAULT_MODEL} model"),
        "blur_levels_ordered": {
            "what": "each synthesized level α z16 + (1 − α) z0 is sharper than the one with smaller α",
            "alphas": list(BLUR_ALPHAS), "sharpness": sharp,
            "passed": bool(all(b > a for a, b in itertools.pairwise(sharp))),
        },
    }


def verdict_rows(result: DemoResult) -> list[tuple[str, str, bool]]:
    """(check, what was measured, passed) per verdict, as the command line prints them."""
    lev = result.checks["blur_levels_ordered"]

    def versus(deb: dict) -> str:
        return (f"PSNR {deb['deblurred']['psnr']:.2f} vs {deb['less_blurry_input_z8']['psnr']:.2f} dB, "
                f"SSIM {deb['deblurred']['ssim']:.3f} vs {deb['less_blurry_input_z8']['ssim']:.3f}")

    return [
        ("trained here: deblurred closer to true z16 than input z8", versus(result.checks["deblur_beats_input"]),
         result.checks["deblur_beats_input"]["passed"]),
        (f"built-in {DEFAULT_MODEL}: the same", versus(result.checks["builtin_deblur_beats_input"]),
         result.checks["builtin_deblur_beats_input"]["passed"]),
        ("trained here: synthesized blur levels ordered (α = 1/8 … 7/8)",
         "sharpness " + " < ".join(f"{s:.3g}" for s in lev["sharpness"]), lev["passed"]),
    ]


def demo_figure(out: Path, images: dict[str, np.ndarray]) -> str:
    """``out/demo.png``: the deblur inputs, result and truth; the blur levels between z0 and z16."""
    rows = [[images["blurriest"], images["less_blurry"], images["deblurred"], images["builtin"], images["focus"]],
            [images["blurriest"], *images["levels"], images["focus"]]]
    return str(save_grid(
        rows, out / "demo.png",
        row_labels=[f"deblur: z0, z8 → trained, {DEFAULT_MODEL} | z16", "blur: z0, α=1/8…7/8, z16"],
        title=f"blurlatent demo — top: inputs z0, z8, deblurred by the model trained here and by the built-in "
              f"{DEFAULT_MODEL}, true z16; bottom: z0, levels synthesized by the model trained here, z16",
    ))


def run_demo(out: str | Path = "demo", fast: bool = False, device: str = "auto", force: bool = False,
             progress: bool = True, seed: int = 0, arch: str = DEMO_ARCH) -> DemoResult:
    """Run the whole tool on synthetic data into ``out`` and return what was measured.

    Writes ``out``/synthetic (BBBC006 layout), prepared/ (store), run/ (weak model), blur_levels.tif,
    deblurred.tif, report/ (evaluate), demo.png and demo.json. Every option is checked before ``out`` is
    touched. Raises UsageError for a bad option or device, or when ``out`` exists without ``force`` (with
    ``force`` only an earlier demo folder is replaced). ``arch``: paper (the default) or multiscale (`train`'s).
    """
    started = time.perf_counter()
    settings = (FAST if fast else FULL)[check_choice(Arch, arch, "{arch}")]
    out = Path(out)
    config = check_demo(out, settings, device, seed, force)
    with claim_output_folder(out, COMMAND, force, WHAT, option=OPTION) as replacing:
        if replacing:
            remove_owned(out)
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, COMMAND, DEMO_FILES, nested=NESTED)  # before anything else is written
        return run_steps(out, settings, config, fast, device, progress, seed, started)


def run_steps(out: Path, settings: DemoSettings, config: TrainConfig, fast: bool, device: str, progress: bool,
              seed: int, started: float) -> DemoResult:
    """``run_demo`` once its folder is claimed: every step, then ``demo.json``."""
    store = make_store(out, settings, seed, progress)
    train(config, out / "run", progress=progress)
    checkpoint, builtin = out / "run" / "best.pt", builtin_path(builtin_model(CHANNEL))
    inference = InferenceConfig(device=device)
    images = run_model(out, Predictor.from_checkpoint(checkpoint, inference),
                       Predictor.from_checkpoint(builtin, inference), store)
    checks = measure(images)
    report = evaluate(out / "prepared", [checkpoint, builtin], CHANNEL, out / "report", device=device,
                      progress=progress)
    figures = {"demo": demo_figure(out, images),
               **{Path(f).stem: str(out / "report" / f) for f in report.figures}}
    result = DemoResult(out=out, figures=figures, report=str(out / "report" / "report.md"), checks=checks,
                        seconds=time.perf_counter() - started)
    write_json(out / DEMO_MARKER, {
        "fast": fast, "settings": settings.__dict__, "checks": checks, "figures": figures,
        "report": result.report, "seconds": result.seconds, "passed": result.passed,
    })
    return result
