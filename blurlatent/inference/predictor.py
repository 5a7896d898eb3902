"""THE forward path: one ``Predictor`` for the CLI, the Python API, evaluate, demo and the training strips.

A Predictor owns everything between a user's images and the autoencoder:

* normalization to [0, 1] the way the checkpoint's training data was scaled (``intensity``);
* reflect padding to a multiple of 2**depth and overlapping tiles for large images (``tiling``);
* precision and memory format (``device``): fp32 by default, channels_last, BatchNorm folded into the
  convolutions with torch's ``fuse_conv_bn_eval`` (same output, one pass less per activation);
* the latent rule, Eq. 2 or Eq. 3 (``latent``), applied per tile in float32;
* the mapping of the [0, 1] output back to the input's scale and dtype (``intensity``); whole images on a GPU
  stay there from upload to output, statistics included (``device_pairs``, ``config.stats``);
* physical units (``scale``): inputs resampled to the model's pixel size and back (``rescale`` auto), warnings.

Public API (numpy in, numpy out, the input's dtype kept)::

    predictor = load_model("runs/weak/best.pt")                    # a Predictor, on the best device
    levels = blur(predictor, sharp, blurry, [0.25, 0.5, 0.75])    # [3, H, W], sharp.dtype
    focused = deblur(predictor, blurriest, less_blurry, 0.5)       # [H, W]
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import os
from collections.abc import Callable, Sequence
from operator import itemgetter
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from blurlatent.config import InferenceConfig
from blurlatent.errors import Message, UsageError
from blurlatent.inference.alphas import AUTO, alpha_source
from blurlatent.inference.arguments import alpha_list, api_options, check_pair, described
from blurlatent.inference.builtin import resolve_checkpoint
from blurlatent.inference.device_pairs import device_levels, device_unit_pair, takes_device_path
from blurlatent.inference.inputs import array_pair, array_stack
from blurlatent.inference.memory import check_job_memory, mapped_levels, reports_out_of_memory, unit_pair
from blurlatent.inference.scale import TrainedScale, defocus_warning, rescale_factor, run_rescaled, trained_scale
from blurlatent.inference.selfcheck import SelfCheck, self_check
from blurlatent.intensity import Scale, check_normalization, plane_ranges
from blurlatent.nets.checkpoint import build_model, load_checkpoint
from blurlatent.nets.device import assign_device, inference_autocast
from blurlatent.nets.latent import (
    check_blur_alpha,
    check_deblur_alpha,
    extrapolate_sharp,
    interpolate_latents,
    map_scales,
)
from blurlatent.nets.tiling import crop_to, pad_to_multiple, plan_tiles, receptive_radius

log = logging.getLogger(__name__)

# rule name -> how the two latents combine: Eq. 2 (first = sharper) or Eq. 3 (first = blurriest)
RULES = {"blur": interpolate_latents, "deblur": extrapolate_sharp}
# Which input of a pair is nearer focus, so it sets the ``stack`` scale and, for deblur, the output scale.
NEAR_FOCUS = {"blur": 0, "deblur": 1}
# ``progress(done, total)``: called after each tile; an exception it raises (a cancel) stops the run there.
Progress = Callable[[int, int], None] | None


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d into the convolution before it, in place; returns ``model``.

    In eval mode BatchNorm is a per-channel affine map, so torch's ``fuse_conv_bn_eval`` folds it into
    the preceding (transposed) convolution; LeakyReLU then runs in place. Same outputs to float
    rounding, one to two fewer passes over each activation (the time it saves: docs/benchmarks.md).
    Inference only: the state_dict loses its BatchNorm entries.
    """
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq.children())
        for i, (conv, bn) in enumerate(itertools.pairwise(children)):
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
                seq[i + 1] = nn.Identity()
        for child in seq.children():
            if isinstance(child, nn.LeakyReLU):
                child.inplace = True
    return model


def checkpoint_normalization(ckpt: dict, source: str) -> str:
    """How the checkpoint's training images were scaled (``config.data.normalize``, default minmax)."""
    data = ckpt["config"].get("data") or {}
    normalize = data.get("normalize", "minmax") if isinstance(data, dict) else "minmax"
    try:
        return check_normalization(normalize)
    except UsageError as exc:
        raise UsageError(f"{source}: config.data.normalize: {exc}") from None


class Predictor:
    """An autoencoder ready for inference, with everything between images and model (see the module doc).

    ``Predictor(model, normalize, config=..., fuse=True)`` works on an eval-mode copy of ``model`` (on the
    model's device), so a model being trained is never changed. ``normalize`` is how the training images
    were scaled to [0, 1]: ``minmax``, ``percentile`` or ``stack``; ``trained`` the scale they were at (None:
    unknown, inputs are never resampled; ``from_checkpoint`` reads it from the checkpoint).
    """

    def __init__(self, model: nn.Module, normalize: str = "minmax", *, config: InferenceConfig | None = None,
                 fuse: bool = True, source: str | None = None, trained: TrainedScale | None = None):
        self.config = (config or InferenceConfig()).check()
        self.normalize = check_normalization(normalize)
        model = copy.deepcopy(model).eval()
        if fuse:
            fuse_batchnorm(model)
        # channels_last lets oneDNN (CPU) and cuDNN pick their NHWC kernels: faster once fused (docs/benchmarks.md).
        self.model = model.to(memory_format=torch.channels_last)
        self.fused = fuse
        self.source = source
        self.trained = trained
        self.said: set[str] = set()  # the notes and warnings already logged: each once per model (folder mode)
        # the last run_pairs' self-checks of its deblurred outputs, [pair][level] (``selfcheck``; [] after a blur):
        # the number reaches the log, the outputs' provenance and napari, the return types stay arrays
        self.checks: list[list[SelfCheck]] = []
        self.device = next(model.parameters()).device
        multiple = getattr(model, "multiple", None)  # what input sizes must be divisible by (2**depth)
        if not isinstance(multiple, int):
            raise UsageError(f"model: got {described(model)}, which has no int `multiple`; pass an Autoencoder")
        self.multiple = multiple
        # how far an output pixel sees: the tiles' margin (the paper's net: tiling.receptive_radius)
        self.radius: int = getattr(model, "radius", None) or receptive_radius(multiple)

    @classmethod
    def from_checkpoint(cls, path: str | Path, config: InferenceConfig | None = None, fuse: bool = True) -> Predictor:
        """Load ``path`` (``weights_only=True``) onto ``config.device``. Raises UsageError for a missing,
        corrupt or foreign checkpoint, an unknown normalization or a device that does not exist."""
        config = (config or InferenceConfig()).check()
        device = assign_device(config.device)
        ckpt = load_checkpoint(path, map_location="cpu")
        model = build_model(ckpt, str(path)).to(device)
        return cls(model, checkpoint_normalization(ckpt, str(path)), config=config, fuse=fuse, source=str(path),
                   trained=trained_scale(ckpt["config"]))

    def with_options(self, **changes) -> Predictor:
        """The same model with some ``InferenceConfig`` fields changed (``intensity=``, ``tile=``, ...)."""
        changes = {k: v for k, v in changes.items() if v is not None or k in ("out_dtype", "tile")}
        other = copy.copy(self)
        other.config = dataclasses.replace(self.config, **changes).check()
        return other

    # --- [0, 1] images through the model ------------------------------------------------------------

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
        return x.unsqueeze(1).contiguous(memory_format=torch.channels_last)

    def _run(self, fn, x):
        """``fn`` over ``x`` (a tensor or a list latent) in chunks of ``batch_size`` under the precision policy;
        float32 out, a tensor or a list latent as ``fn`` returns."""
        step = self.config.batch_size
        n = len(x[0]) if isinstance(x, (list, tuple)) else len(x)
        with inference_autocast(self.device, self.config.precision):
            parts = [map_scales(lambda t: t.float(), fn(map_scales(itemgetter(slice(i, i + step)), x)))
                     for i in range(0, n, step)]
        return map_scales(lambda *ts: torch.cat(ts), *parts)

    def encode(self, unit: np.ndarray):
        """E(x) of float [N, H, W] images in [0, 1], reflect-padded to ``multiple``: float32 [N, C, h, w], or
        for the multiscale arch a list of them, one per scale (fine to coarse)."""
        padded, _ = pad_to_multiple(np.asarray(unit, dtype=np.float32), self.multiple)
        with torch.inference_mode():
            return map_scales(lambda t: t.cpu().numpy(), self._run(self.model.encode, self._tensor(padded)))

    def decode(self, z, hw: tuple[int, int] | None = None) -> np.ndarray:
        """G(z) of float [N, C, h, w] latents (or a list of them): float32 [N, H, W] in [0, 1], cropped to
        ``hw`` when given."""
        with torch.inference_mode():
            zt = map_scales(lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device)
                            .contiguous(memory_format=torch.channels_last), z)
            y = self._run(self.model.decode, zt)[:, 0].cpu().numpy()
        return y if hw is None else crop_to(y, hw)

    def combine(self, first: np.ndarray, second: np.ndarray, alphas: Sequence[float], rule: str,
                progress: Progress = None) -> np.ndarray:
        """G(rule(E(first), E(second), α)) for each α, on float [N, H, W] pairs in [0, 1], any size.

        ``rule``: "blur" (Eq. 2, first = sharper) or "deblur" (Eq. 3, first = blurriest). Returns float32
        [N, K, H, W] in [0, 1]. Inputs are padded and, when large, tiled (see ``tiling``); latents are
        combined in float32 even under reduced precision. ``progress(done, total)`` is called after each
        tile (total = the number of tiles, 1 for a whole image); whatever it raises propagates.
        """
        first, second = np.asarray(first), np.asarray(second)
        if first.shape != second.shape or first.ndim != 3:
            raise UsageError(f"inputs must be two [N, H, W] arrays of one shape, got {first.shape} and {second.shape}")
        padded = pad_to_multiple(np.stack([first, second], axis=1).astype(np.float32, copy=False), self.multiple)
        return self.combine_pair(*padded, alphas, rule, progress)

    def combine_pair(self, pair: np.ndarray, hw: tuple[int, int], alphas: Sequence[float], rule: str,
                     progress: Progress = None) -> np.ndarray:
        """``combine`` of the pair stacked and padded: float32 [N, 2, H', W'] as ``tiling.pad_to_multiple`` pads it
        (``hw``: the size before) → float32 [N, K, H, W]."""
        if rule not in RULES:
            raise UsageError(f"rule {rule!r} is not one of {', '.join(RULES)}")
        n, k = pair.shape[0], len(alphas)
        plan = plan_tiles(pair.shape[-2:], self.multiple, self.radius, self.config.tile)
        out = np.zeros((n, k) + pair.shape[-2:], dtype=np.float32)
        wsum = np.zeros(pair.shape[-2:], dtype=np.float32)  # the tiles' summed weights (one whole tile has none)
        with torch.inference_mode():
            for done, (rows, cols, weight) in enumerate(plan, 1):
                y = self._combine_tile(pair[:, :, rows, cols], alphas, RULES[rule])
                if weight is None:
                    out[:, :, rows, cols] = y
                else:
                    out[:, :, rows, cols] += y * weight
                    wsum[rows, cols] += weight
                if progress is not None:
                    progress(done, len(plan))
        if plan[0][2] is not None:
            out /= wsum
        return crop_to(out, hw)

    def _combine_tile(self, piece: np.ndarray, alphas: Sequence[float], rule) -> np.ndarray:
        """One [N, 2, h, w] tile → [N, K, h, w]: encode both inputs, combine per α, decode."""
        pair = torch.from_numpy(np.ascontiguousarray(piece, dtype=np.float32)).to(self.device)
        return self.combine_on_device(pair, alphas, rule).cpu().numpy()

    def combine_on_device(self, pair: torch.Tensor, alphas: Sequence[float], rule) -> torch.Tensor:
        """``combine_pair``'s work on one float32 [N, 2, h, w] tensor on the model's device (h, w multiples of
        ``multiple``; ``rule`` a function of ``RULES``) → float32 [N, K, h, w] there. Call under inference_mode."""
        n, k = pair.shape[0], len(alphas)
        x = pair.reshape(2 * n, 1, *pair.shape[-2:]).contiguous(memory_format=torch.channels_last)
        z = self._run(self.model.encode, x)
        z = map_scales(lambda t: t.reshape(n, 2, *t.shape[1:]), z)
        first, second = map_scales(lambda t: t[:, 0], z), map_scales(lambda t: t[:, 1], z)
        mixed = [rule(first, second, a) for a in alphas]  # K latents, each [N, C, h', w'] per scale
        codes = map_scales(lambda *ts: torch.stack(ts, dim=1).reshape(n * k, *ts[0].shape[1:])
                           .contiguous(memory_format=torch.channels_last), *mixed)  # [N·K, C, h', w'], α fastest
        return self._run(self.model.decode, codes).reshape(n, k, *pair.shape[-2:])

    # --- images in their own scale ------------------------------------------------------------------

    def blur(self, sharp: np.ndarray, blurry: np.ndarray, alpha, *, extrapolate: bool = False,
             progress: Progress = None, pixel_size: float | None = None) -> np.ndarray:
        """G(α E(sharp) + (1 − α) E(blurry)) (Eq. 2): [H, W] for a scalar α, [K, H, W] for K levels; ``pixel_size``:
        see ``run_pairs``."""
        alphas = [check_blur_alpha(a, extrapolate) for a in alpha_list(alpha)]
        out = self.run_pairs([sharp], [blurry], alphas, "blur", names=("sharp", "blurry"), progress=progress,
                             pixel_size=pixel_size)[0]
        return out[0] if np.ndim(alpha) == 0 else out

    def deblur(self, blurriest: np.ndarray, less_blurry: np.ndarray, alpha, *, progress: Progress = None,
               pixel_size: float | None = None) -> np.ndarray:
        """Eq. 3: G(E(less_blurry)/(1 − α) − α/(1 − α)·E(blurriest)): [H, W] or [K, H, W]; ``pixel_size``: see
        ``run_pairs``."""
        alphas = [check_deblur_alpha(a) for a in alpha_list(alpha)]
        out = self.run_pairs([blurriest], [less_blurry], alphas, "deblur", names=("blurriest", "less_blurry"),
                             progress=progress, pixel_size=pixel_size)[0]
        return out[0] if np.ndim(alpha) == 0 else out

    def say(self, message: Message | None, warning: bool = False) -> None:
        """Log ``message`` (a warning, or an info note) once per model: folder mode runs many pairs."""
        if message is not None and message.template not in self.said:
            self.said.add(message.template)
            log.log(logging.WARNING if warning else logging.INFO, message)

    def check_defocus(self, defocus: float | None, name: str = "input") -> None:
        """Warn once when a blurriest plane lies ``defocus`` µm from focus, beyond the model's training."""
        self.say(defocus_warning(defocus, self.trained, name), warning=True)

    @reports_out_of_memory
    def run_pairs(self, firsts: Sequence[np.ndarray], seconds: Sequence[np.ndarray], alphas: Sequence[float],
                  rule: str, names: tuple[str, str] = ("first", "second"), progress: Progress = None,
                  pixel_size: float | None = None) -> np.ndarray:
        """N pairs of one shape → [N, K, H, W] in the inputs' scale (see ``intensity``) and dtype.

        Blur levels get the α-weighted mix of the two inputs' scales; deblurred images the less-blurry
        input's. ``pixel_size``: the inputs' µm per pixel (None: unknown; ``config.pixel_size`` overrides it):
        with ``config.rescale`` auto, pairs at another pixel size than the model's go through it resampled to
        the model's and come back resampled to their own shape (``scale.run_rescaled``), said in the log.
        Raises UsageError for empty α, non-2-D, non-finite or mismatched inputs, or a job too big for the memory
        available (``memory``; RuntimeFailure where it runs out anyway). ``progress``: see ``combine``.
        Deblurred levels are self-checked against their pair (``check_levels``), kept in ``checks``.
        """
        levels = self.levels_of_pairs(firsts, seconds, alphas, rule, names, progress, pixel_size)
        self.checks = self.check_levels(firsts, seconds, levels, alphas) if rule == "deblur" else []
        return levels

    def check_levels(self, firsts: Sequence[np.ndarray], seconds: Sequence[np.ndarray],
                     levels: np.ndarray, alphas: Sequence[float]) -> list[list[SelfCheck]]:
        """``selfcheck.self_check`` of each deblurred level [N, K, H, W] (at ``alphas``) against its pair, in the
        inputs' own scale: each said in the log, at INFO, or as a one-line WARNING when it is beyond the threshold."""
        checks = [[self_check(level, np.squeeze(a), np.squeeze(b), alpha)
                   for level, alpha in zip(stack, alphas, strict=True)]
                  for a, b, stack in zip(firsts, seconds, levels, strict=True)]
        for check in itertools.chain.from_iterable(checks):
            log.log(logging.WARNING if check.warn else logging.INFO, check.message())
        return checks

    def levels_of_pairs(self, firsts: Sequence[np.ndarray], seconds: Sequence[np.ndarray], alphas: Sequence[float],
                        rule: str, names: tuple[str, str] = ("first", "second"), progress: Progress = None,
                        pixel_size: float | None = None) -> np.ndarray:
        """``run_pairs``' levels, without their self-check."""
        if not alphas:
            raise UsageError("{alpha}: give at least one value", "alpha")
        if len(firsts) != len(seconds):
            raise UsageError(f"{len(firsts)} {names[0]} images but {len(seconds)} {names[1]} images; pass pairs")
        for a, b in zip(firsts, seconds, strict=True):
            check_pair(a, b, names)
        firsts, seconds = [np.squeeze(a) for a in firsts], [np.squeeze(b) for b in seconds]
        if len({a.shape for a in firsts}) > 1:
            raise UsageError("a batch of pairs must share one image shape")
        size = self.config.pixel_size if self.config.pixel_size is not None else pixel_size
        factor, note, warning = rescale_factor(size, self.trained, self.config.rescale)
        self.say(note, warning)
        if factor != 1.0:  # the same model at its own scale, its outputs unrounded until they are back
            at_model = copy.copy(self)
            at_model.config = dataclasses.replace(self.config, out_dtype="float32", rescale="off", pixel_size=None)
            dtypes = [self.config.out_dtype or np.result_type(a, b) for a, b in zip(firsts, seconds, strict=True)]
            return run_rescaled(lambda a, b: at_model.levels_of_pairs(a, b, alphas, rule, names, progress), firsts,
                                seconds, factor, dtypes)
        out = check_job_memory(self, firsts, seconds, len(alphas))  # the outputs' dtypes; too big: refused here
        if takes_device_path(self.config.stats, self.device, [*firsts, *seconds], self.multiple, self.radius,
                             self.config.tile):
            return self.run_on_device(firsts, seconds, alphas, rule, progress, out)
        scales = [self.pair_scales(a, b, rule) for a, b in zip(firsts, seconds, strict=True)]
        unit = self.combine_pair(*unit_pair(firsts, seconds, scales, self.multiple), alphas, rule, progress)
        return mapped_levels(unit, scales, alphas, rule, self.config.intensity, out)

    def run_on_device(self, firsts: Sequence[np.ndarray], seconds: Sequence[np.ndarray], alphas: Sequence[float],
                      rule: str, progress: Progress, dtypes: Sequence[np.dtype]) -> np.ndarray:
        """``run_pairs`` of whole images with everything on the model's device (``device_pairs``), inputs uploaded
        once in their own dtype and the outputs copied back in theirs; ``progress`` told of the one whole tile."""
        pair, scales = device_unit_pair(firsts, seconds, normalize=self.normalize, reference=NEAR_FOCUS[rule],
                                        need_total=self.config.intensity == "conserve", multiple=self.multiple,
                                        device=self.device)
        h, w = firsts[0].shape
        with torch.inference_mode():
            unit = self.combine_on_device(pair, alphas, RULES[rule])[..., :h, :w]
            if progress is not None:
                progress(1, 1)
            return device_levels(unit, scales, alphas, rule=rule, intensity=self.config.intensity, dtypes=dtypes)

    def pair_scales(self, first: np.ndarray, second: np.ndarray, rule: str) -> tuple[Scale, Scale]:
        """The two inputs' scales; under ``stack`` both share the one of the input nearer focus."""
        ranges = plane_ranges([first, second], self.normalize, reference=NEAR_FOCUS[rule])
        need_total = self.config.intensity == "conserve"
        a, b = (Scale.of(image, lo, hi, need_total) for image, (lo, hi) in zip((first, second), ranges, strict=True))
        return a, b


# --- the small public API ------------------------------------------------------------------------------


def load_model(ckpt_path: str | Path | None = None, device: str = "auto", fuse: bool = True, *,
               builtin: str | None = None) -> Predictor:
    """The checkpoint as a Predictor on ``device`` (auto: CUDA, then MPS, then CPU); see ``Predictor``.
    Without ``ckpt_path``: the built-in model ``builtin`` (default w1, nuclei; ``blurlatent models`` lists
    them), its checksum verified, said once in the log."""
    if ckpt_path is not None and not isinstance(ckpt_path, (str, os.PathLike)):
        raise UsageError(f"ckpt_path: got {described(ckpt_path)}; pass the path of a checkpoint (.pt) written by "
                         "`blurlatent train`, or None for the built-in model")
    if not isinstance(device, str):
        raise UsageError(f"device: got {described(device)}; pass 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    path, note = resolve_checkpoint(ckpt_path, builtin)
    if note:
        log.info(note)
    return Predictor.from_checkpoint(path, InferenceConfig(device=device), fuse=fuse)


def as_predictor(model) -> Predictor:
    """``model`` if it is a Predictor; None: the built-in default model; else a Predictor over an
    Autoencoder (minmax normalization). UsageError for anything else (a checkpoint path: ``load_model`` it)."""
    if model is None:
        return load_model()
    if isinstance(model, Predictor):
        return model
    if not isinstance(model, nn.Module) or not hasattr(model, "multiple"):
        raise UsageError(f"model: got {described(model)}; pass a Predictor (load_model(path) for a checkpoint), an "
                         "Autoencoder, or None for the built-in model")
    return Predictor(model, getattr(model, "normalize", "minmax"))


def blur(model, sharp: np.ndarray, blurry: np.ndarray | None = None, alpha=None, *, z=None, axes: str | None = None,
         channel: int | None = None, extrapolate: bool = False, intensity: str = InferenceConfig.intensity,
         tile: int | None = InferenceConfig.tile, precision: str = InferenceConfig.precision,
         batch_size: int = InferenceConfig.batch_size, out_dtype=None, pixel_size: float | None = None,
         rescale: str = InferenceConfig.rescale) -> np.ndarray:
    """Synthesize defocus blur between two planes of one field (Eq. 2): G(α E(sharp) + (1 − α) E(blurry)).

    sharp, blurry: 2-D grayscale arrays of one shape (uint8, uint16 or float), any size. α = 1 gives the
    sharp image's reconstruction, α = 0 the blurry one's; a list of α gives several levels at once.
    Here α weighs the sharp image (the paper's Fig. 2); in ``deblur`` it weighs the blurriest, so blur
    level a is undone by deblur α = 1 − a.
    Returns [H, W] (scalar α) or [K, H, W] (K levels) in the inputs' dtype (``out_dtype`` to change it)
    and intensity scale: ``conserve`` keeps the total signal above background at the α-weighted mean of
    the inputs' totals, ``minmax`` maps [0, 1] to the α-weighted mean of their normalization ranges.
    A z-stack instead: ``blur(model, stack, alpha=..., z=(16, 0), axes="ZYX")``, planes ``z`` (sharper first)
    of ``stack`` (axes e.g. "ZYX", or "CZYX" with ``channel``), the same as the two planes given as 2-D arrays.
    ``pixel_size``: the images' µm per pixel; with ``rescale="auto"`` (the default) images at another pixel size
    than the model was trained at are resampled to it and the result back (``Predictor.run_pairs``).
    Raises UsageError for α outside [0, 1] without ``extrapolate``, non-2-D or mismatched inputs,
    ``planes.array_pair``'s refusals (z out of range, a stack without z, axes that do not fit), and a model, α
    or option of the wrong type (a path where the model goes, a 2-D α), naming the argument.
    """
    if alpha is None:
        raise UsageError("{alpha}: give one blur level or a list of them", "alpha")
    sharp, blurry = array_pair(sharp, blurry, z=z, axes=axes, channel=channel)
    options = api_options(intensity, tile, precision, batch_size, out_dtype, pixel_size, rescale)
    return as_predictor(model).with_options(**options).blur(sharp, blurry, alpha, extrapolate=extrapolate)


def deblur(model, blurriest: np.ndarray, less_blurry: np.ndarray | None = None, alpha=None, *, z=None,
           target: float | str = AUTO, axes: str | None = None, channel: int | None = None,
           intensity: str = InferenceConfig.intensity, tile: int | None = InferenceConfig.tile,
           precision: str = InferenceConfig.precision, batch_size: int = InferenceConfig.batch_size,
           out_dtype=None, pixel_size: float | None = None, rescale: str = InferenceConfig.rescale) -> np.ndarray:
    """Recover the in-focus image from two defocused planes (Eq. 3).

    z_sharp = E(less_blurry)/(1 − α) − α/(1 − α)·E(blurriest); α = alpha_from_planes(blurriest plane,
    less-blurry plane, target plane), e.g. planes 0 and 8 toward focus 16 give 0.5.
    blurriest, less_blurry: 2-D grayscale arrays of one shape, any size. Returns [H, W] (scalar α) or
    [K, H, W] in the inputs' dtype (``out_dtype`` to change it) on the less-blurry input's scale:
    ``conserve`` (default) gives the output the less-blurry input's total signal above background
    (light is conserved through focus, so the sharp peaks rise above the blurry maximum); ``minmax``
    maps [0, 1] to the less-blurry input's normalization range.
    A z-stack instead: ``deblur(model, stack, z=(0, 8), axes="ZYX")``, planes ``z`` (blurriest first) of
    ``stack`` (axes e.g. "ZYX", or "CZYX" with ``channel``), α from the plane indices toward ``target`` unless
    ``alpha`` is given: ``"auto"`` (the default), the focus ``prepare.focus`` finds in the stack, or a plane of
    it (``target=16``); the same as the two planes given as 2-D arrays. ``pixel_size`` and ``rescale``: as in
    ``blur`` (e.g. ``pixel_size=0.325`` for a 0.645 µm/px model: resampled ×0.504 and back).
    Raises UsageError for α ≥ 1 or α < 0, non-2-D or mismatched inputs, ``planes.array_pair``'s refusals,
    ``alphas``' refusals (a target outside the stack, a focus found at its first or last plane, ``alpha`` beside
    a target plane), and a model, α or option of the wrong type, naming the argument; warns when 1/(1 − α) > 8.
    """
    stack = blurriest
    blurriest, less_blurry = array_pair(blurriest, less_blurry, z=z, axes=axes, channel=channel)  # z checked first
    source = alpha_source(alpha, None, target, z=z)
    if source.empty:
        raise UsageError("{alpha}: give alpha, or z=(P1, P2) planes of a stack (and its target)", "alpha")
    if alpha is None:
        alpha = source.levels(array_stack(stack, axes, channel) if source.needs_stack else None).alphas[0]
    options = api_options(intensity, tile, precision, batch_size, out_dtype, pixel_size, rescale)
    return as_predictor(model).with_options(**options).deblur(blurriest, less_blurry, alpha)


__all__ = ["Predictor", "load_model", "blur", "deblur", "fuse_batchnorm"]
