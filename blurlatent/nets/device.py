"""Device and precision policy, one owner for training and inference.

``assign_device`` picks the device (cuda, then mps, then cpu for ``auto``); ``train_precision`` decides
autocast and memory format for training; ``inference_autocast`` for inference.
"""

from __future__ import annotations

import contextlib

import torch

from blurlatent.config import Amp, Precision, check_choice
from blurlatent.errors import UsageError


def assign_device(spec: str = "auto") -> torch.device:
    """``auto`` tries CUDA, then MPS, then CPU; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are checked.

    Raises UsageError when the asked-for device does not exist here.
    """
    spec = (spec or "auto").lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"{{device}} {spec}: no CUDA GPU is visible here; use {{device}} cpu or auto", "device")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"{{device}} {spec}: only {torch.cuda.device_count()} CUDA device(s) exist; use "
                             f"cuda:0..{torch.cuda.device_count() - 1}", "device")
        return device
    if spec == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise UsageError("{device} mps: Apple MPS is not available here; use {device} cpu or auto", "device")
        return torch.device("mps")
    raise UsageError(f"{{device}} {spec}: unknown device; use auto, cpu, cuda, cuda:N or mps", "device")


def native_bf16(device: torch.device) -> bool:
    """True where bf16 autocast runs natively (CUDA with bf16, CPUs with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # torch's own probe; there is no public name for it
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def train_precision(amp: Amp, channels_last: bool | None, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, channels_last) for training, from the config and what this device does fast."""
    check_choice(Amp, amp, "{amp}")
    if amp == "auto":
        if device.type == "cuda":
            amp = "bf16" if native_bf16(device) else "fp16"
        else:
            # Without AVX512-BF16/AMX oneDNN emulates bf16, many times slower than fp32 (docs/benchmarks.md).
            amp = "bf16" if native_bf16(device) else "off"
    if amp == "fp16" and device.type != "cuda":
        raise UsageError(f"{{amp}} fp16 needs CUDA; use bf16 or off on {device.type}", "amp")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
    if channels_last is None:
        # NHWC lets cuDNN and oneDNN pick their fast kernels: faster CPU training in fp32 at the paper's batch
        # (docs/benchmarks.md). MPS gains nothing from it.
        channels_last = device.type in ("cuda", "cpu")
    return dtype, channels_last


def inference_autocast(device: torch.device, precision: Precision):
    """The autocast context for inference at ``precision``; ``auto`` is fp32 on every device.

    Measured on the paper-size model (random weights, BatchNorm calibrated), 696x520 deblur, against
    fp32 on the [0, 1] scale: bf16 autocast is off by up to 0.05 and fp16 by 0.009 at α = 0.5 (0.085
    and 0.014 at α = 0.75), since Eq. 3 multiplies code differences by 1/(1 − α); on a CPU without native
    bf16 (AVX512-BF16/AMX) both are also slower than fp32 (docs/benchmarks.md). So reduced precision is opt-in
    (``bf16``, ``fp16``: autocast on CUDA or CPU, latents always combined in fp32) and ``auto`` never picks it. On CUDA,
    fp32 convolutions follow torch's TF32 setting (cuDNN allows TF32 by default).
    """
    check_choice(Precision, precision, "{precision}")
    if precision in ("auto", "fp32"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
