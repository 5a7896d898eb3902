"""Whole-image deblurring latency of the paper-size model (widths 64..1024) on one 696x520 16-bit pair.

    python benchmarks/bench_infer.py                     # CPU, 2 threads, fp32 (+ bf16 with --precisions fp32,bf16)
    python benchmarks/bench_infer.py --arch multiscale   # the multiscale net (its default widths; --widths, --skips)
    python benchmarks/bench_infer.py --device cuda --precisions fp32,bf16
    python benchmarks/bench_infer.py --onnx --no-cli      # + onnxruntime on the exported network (blurlatent[export])

Prints, per precision (and, on CPU, for a Predictor without BatchNorm folding and one whose
network runs NCHW instead of channels_last), the in-process median over --runs calls of ``blurlatent.deblur``
(after one warm-up), the same for the model path alone (``Predictor.combine`` on [0, 1] arrays: padding,
encode, Eq. 3, decode, without the intensity statistics), the largest difference from fp32 on the [0, 1] scale, and the
command line end to end with
its parts timed apart (interpreter + imports, checkpoint load, inference + writing).

No trained checkpoint is needed: the network gets random weights and BatchNorm statistics calibrated
on smooth random crops (so activations are as scaled as in a trained model and the output is not a
saturated constant); the time does not depend on the weights. The pair is a real BBBC006 file (from
``--samples``, default tests/data/bbbc006) and the same file Gaussian-blurred as the blurriest plane, else synthetic.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_name  # benchmarks/ is on sys.path: this file runs as a script

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "bbbc006"


def make_pair(shape=(520, 696)) -> tuple[np.ndarray, np.ndarray]:
    from scipy.ndimage import gaussian_filter

    files = sorted(SAMPLES.glob("*.tif")) if SAMPLES.is_dir() else []
    if files:
        from blurlatent.files.images import read_image

        less_blurry = read_image(files[0])
    else:
        rng = np.random.default_rng(0)
        less_blurry = (110 + 900 * gaussian_filter(rng.random(shape), 3) ** 3 * 8).clip(0, 65535).astype(np.uint16)
    blurriest = gaussian_filter(less_blurry.astype(np.float64), 8).astype(np.uint16)
    return blurriest, less_blurry


def calibrated_checkpoint(path: Path, seed: int = 0, model_config=None) -> None:
    import torch
    from scipy.ndimage import gaussian_filter

    from blurlatent.config import ModelConfig, to_dict
    from blurlatent.nets.autoencoder import build_autoencoder
    from blurlatent.nets.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_autoencoder(model_config or ModelConfig())
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(3):
            x = np.stack([gaussian_filter(rng.random((128, 128)), rng.uniform(1, 6)) for _ in range(8)])
            x = (x - x.min(axis=(1, 2), keepdims=True)) / np.ptp(x, axis=(1, 2), keepdims=True)
            model(torch.from_numpy(x.astype(np.float32))[:, None])
    config = {"model": to_dict(model.config), "data": {"normalize": "minmax"}}
    save_checkpoint(path, {"config": config, "model": model.state_dict(), "epoch": 0})


class ContiguousModel:
    """A network run in NCHW: every encode/decode input made contiguous, so the convolutions skip
    channels_last (which the Predictor otherwise gives inputs and weights alike)."""

    def __init__(self, model):
        import torch

        self.net = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
        self.multiple = model.multiple

    def encode(self, x):
        return self.net.encode(x.contiguous())

    def decode(self, z):
        from blurlatent.nets.latent import map_scales

        return self.net.decode(map_scales(lambda t: t.contiguous(), z))


def nchw(predictor):
    """The same Predictor (same fused weights) with its network run in NCHW (``ContiguousModel``)."""
    other = copy.copy(predictor)
    other.model = ContiguousModel(predictor.model)
    return other


def count_macs(model, hw) -> int:
    """Multiply-accumulates of one deblur (two encodes, one decode) at the padded size of ``hw``."""
    import torch

    h, w = (-(-d // model.multiple) * model.multiple for d in hw)
    macs = []

    def hook(mod, inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels * mod.out_channels // mod.groups
        grid = inp[0] if isinstance(mod, torch.nn.ConvTranspose2d) else out  # one kernel application per pixel of it
        macs.append(k * grid.shape[-2] * grid.shape[-1])

    convs = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, convs)]
    with torch.inference_mode():
        z = model.encode(torch.zeros(1, 1, h, w, device=next(model.parameters()).device))
        enc = sum(macs)
        model.decode(z)
    for handle in handles:
        handle.remove()
    return 2 * enc + (sum(macs) - enc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default="paper", help="paper or multiscale")
    parser.add_argument("--widths", help="comma list (default: the arch's)")
    parser.add_argument("--skips", default="coarse", help="multiscale only: coarse, all, gated or quarter")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target is 2 cores)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--precisions", default="fp32", help="comma list of fp32, bf16, fp16, auto")
    parser.add_argument("--bf16-runs", type=int, default=1, help="bf16/fp16 are slow on CPUs without AMX: fewer runs")
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end command line timing")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--onnx", action="store_true",
                        help="also time the network `blurlatent export` writes in onnxruntime vs torch (CPU, fp32)")
    parser.add_argument("--onnx-runs", type=int, default=30, help="interleaved torch/onnxruntime pairs for --onnx")
    args = parser.parse_args()

    t0 = time.perf_counter()
    import torch

    import blurlatent
    from blurlatent.config import ModelConfig
    from blurlatent.intensity import intensity_range, to_unit

    import_s = time.perf_counter() - t0
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    results = {
        "machine": platform.processor() or platform.machine(),
        "cpu": cpu_name(),
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "image": "696x520 uint16",
        "import_s": round(import_s, 3),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "runs": {},
    }
    blurriest, less_blurry = make_pair()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = tmp / f"{args.arch}.pt"
        widths = [int(w) for w in args.widths.split(",")] if args.widths else None
        model_config = ModelConfig(widths=widths, arch=args.arch, skips=args.skips).check()
        results["model"] = {"arch": model_config.arch, "widths": model_config.widths, "skips": model_config.skips}
        calibrated_checkpoint(ckpt, model_config=model_config)
        t = time.perf_counter()
        model = blurlatent.load_model(ckpt, args.device)  # an inference.Predictor
        results["load_model_s"] = round(time.perf_counter() - t, 3)

        ua, ub = (to_unit(x, *intensity_range(x))[None] for x in (blurriest, less_blurry))
        reference = model.with_options(precision="fp32").combine(ua, ub, [0.5], "deblur")[0, 0]
        variants = [(p, model, p) for p in args.precisions.split(",")]
        if not cuda:
            # what the Predictor's two choices buy: BatchNorm folded into the convs, channels_last layout
            variants.append(("fp32_unfused", blurlatent.load_model(ckpt, args.device, fuse=False), "fp32"))
            variants.append(("fp32_nchw", nchw(model), "fp32"))
        call = lambda m, p: blurlatent.deblur(m, blurriest, less_blurry, 0.5, precision=p, out_dtype="float32")
        for _, m, p in variants:  # warm-up: allocator, oneDNN/cuDNN kernel choice
            call(m, p)
            sync()
        times = {name: [] for name, _, _ in variants}
        # the model path alone (normalized [0, 1] arrays in and out: no intensity statistics or mapping)
        model_times = {name: [] for name, _, _ in variants}
        for rep in range(args.runs):  # round robin, so load from other processes hits every variant alike
            for name, m, p in variants:
                if p in ("bf16", "fp16") and not cuda and rep >= args.bf16_runs:
                    continue
                t = time.perf_counter()
                call(m, p)
                sync()
                times[name].append(time.perf_counter() - t)
                t = time.perf_counter()
                m.with_options(precision=p).combine(ua, ub, [0.5], "deblur")
                sync()
                model_times[name].append(time.perf_counter() - t)
        for name, m, p in variants:
            unit = m.with_options(precision=p).combine(ua, ub, [0.5], "deblur")[0, 0]
            results["runs"][name] = {
                "median_s": round(statistics.median(times[name]), 4),
                "min_s": round(min(times[name]), 4),
                "times_s": [round(x, 4) for x in times[name]],
                "model_path_median_s": round(statistics.median(model_times[name]), 4),
                "max_abs_diff_vs_fp32": float(np.abs(unit - reference).max()),
                "output_std": float(unit.std()),
            }
        gflop = 2 * count_macs(model.model, ua.shape[-2:]) / 1e9
        results["gflop_per_deblur"] = round(gflop, 1)
        for r in results["runs"].values():
            r["gflop_per_s"] = round(gflop / r["median_s"], 1)

        if args.onnx:
            results["onnx"] = bench_onnx(ckpt, ua, ub, reference, args.onnx_runs, args.threads, tmp)

        if not args.no_cli:
            import tifffile

            tifffile.imwrite(tmp / "z00.tif", blurriest)
            tifffile.imwrite(tmp / "z08.tif", less_blurry)
            env_threads = {"OMP_NUM_THREADS": str(args.threads)}
            cmd = [sys.executable, "-m", "blurlatent", "deblur", str(tmp / "z00.tif"), str(tmp / "z08.tif"),
                   "-c", str(ckpt), "--alpha", "0.5", "-o", str(tmp / "out.tif"), "--device", args.device]
            imports = [sys.executable, "-c", "import torch, blurlatent.cli, blurlatent.inference.jobs"]
            env = {**os.environ, **env_threads}
            t = time.perf_counter()
            subprocess.run(imports, check=True, env=env)
            imports_s = time.perf_counter() - t
            t = time.perf_counter()
            proc = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
            cli_s = time.perf_counter() - t
            results["cli"] = {
                "total_s": round(cli_s, 3),
                "python_and_imports_s": round(imports_s, 3),
                "load_model_s": results["load_model_s"],
                "rest_s (read, infer, write)": round(cli_s - imports_s - results["load_model_s"], 3),
                "stdout": proc.stdout.strip(),
            }
    # other processes on a shared machine inflate every figure: the load average says how much
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def bench_onnx(ckpt: Path, ua: np.ndarray, ub: np.ndarray, reference: np.ndarray, runs: int, threads: int,
               folder: Path) -> dict:
    """The model path of one deblur (padding, E twice, Eq. 3, G; [0, 1] arrays in and out) in torch
    (``Predictor.combine``) and in onnxruntime running the network ``blurlatent export`` writes, on
    ``threads`` CPU threads at fp32, timed in ``runs`` interleaved pairs; and how far onnxruntime's output is
    from torch's. On a shared machine the "quiet" pairs (both calls together within 1.3x of the fastest
    pair) say what each does on cores of its own; the medians over all pairs, what each does under load."""
    import onnxruntime
    import torch

    from blurlatent.bmz.package import TASKS, LatentNet, load_exportable, write_weights

    predictor, _ = load_exportable(ckpt)
    net = LatentNet(copy.deepcopy(predictor.model).to(memory_format=torch.contiguous_format), "deblur", 0.5).eval()
    example = tuple(torch.rand(2, 1, 64, 96) for _ in range(2))
    t = time.perf_counter()
    _, onnx_path, opset = write_weights(net, example, TASKS["deblur"], folder)
    export_s = time.perf_counter() - t
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed = {"blurriest": ua[None].astype(np.float32), "less_blurry": ub[None].astype(np.float32)}
    run_torch = lambda: predictor.combine(ua, ub, [0.5], "deblur")
    run_onnx = lambda: session.run(None, feed)[0]
    out = run_onnx()  # warm-up of both
    run_torch()
    times = {"torch": [], "onnxruntime": []}
    for _ in range(runs):
        for name, call in (("torch", run_torch), ("onnxruntime", run_onnx)):
            t = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t)
    medians = {name: statistics.median(v) for name, v in times.items()}
    sums = [a + b for a, b in zip(times["torch"], times["onnxruntime"], strict=True)]
    quiet = [i for i, total in enumerate(sums) if total <= 1.3 * min(sums)]
    return {
        "quiet_pairs": len(quiet),
        "quiet_median_s": {name: round(statistics.median(v[i] for i in quiet), 4) for name, v in times.items()},
        "best_s": {name: round(min(v), 4) for name, v in times.items()},
        "opset": opset, "export_s": round(export_s, 2), "onnxruntime": onnxruntime.__version__,
        "model_path_median_s": {name: round(m, 4) for name, m in medians.items()},
        "times_s": {name: [round(x, 4) for x in v] for name, v in times.items()},
        "onnxruntime_speedup": round(medians["torch"] / medians["onnxruntime"], 3),
        "max_abs_diff_onnx_vs_torch": float(np.abs(out[0, 0] - reference).max()),
    }


if __name__ == "__main__":
    main()
