"""GPU end to end (issue 29): the whole 696x520 ``deblur`` call, and a plate's fields per second, with the intensity
statistics on the host (numpy) or on the model's device (``InferenceConfig.stats``, ``inference.device_pairs``).

    python benchmarks/bench_device.py call --device cuda --runs 50 --json call.json
    python benchmarks/bench_device.py plate --device cuda --fields 1536 --json plate.json
    python benchmarks/bench_device.py plate --device cpu --fields 8      # the CPU fallback (tests/test_bench_device.py)

``call``: the median of ``--runs`` calls of ``blurlatent.deblur`` (after ``--warmup`` calls; CUDA synchronized) of
one uint16 pair with the built-in w1 model (or ``--checkpoint``), per ``--stats`` mode and output dtype; then the
same call taken apart, each part timed on its own between synchronizations: the statistics (scales, the [0, 1]
pair, the output mapping), the network, and the copies between host and device; and the largest difference
between the two modes' outputs (one count at most).
``plate``: ``--fields`` fields (a BBBC006 plate: 384 wells x 2 sites x 2 channels = 1,536) written as pairs of
uint16 TIFFs in two folders, then deblurred by folder mode (``inference.jobs.deblur_folders``: every pair read,
deblurred and written, model load included), per ``--stats`` mode: total seconds and fields per second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "bbbc006"


def make_pair(shape: tuple[int, int], shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(blurriest, less_blurry) uint16 [H, W]: a BBBC006 sample (tests/data/bbbc006, mirrored to ``shape``) or a
    synthetic field, rolled by ``shift`` px (the fields of a plate differ), and its Gaussian blur (sigma 8)."""
    from scipy.ndimage import gaussian_filter

    files = sorted(SAMPLES.glob("*.tif")) if SAMPLES.is_dir() else []
    if files:
        import tifffile

        base = tifffile.imread(files[0]).astype(np.float64)
        reps = [-(-s // b) for s, b in zip(shape, base.shape, strict=True)]
        less = np.tile(base, reps)[: shape[0], : shape[1]]
    else:
        rng = np.random.default_rng(0)
        less = 110 + 900 * gaussian_filter(rng.random(shape), 3) ** 3 * 8
    less = np.roll(less, shift, axis=1)
    blurriest = gaussian_filter(less, 8)
    return blurriest.clip(0, 65535).astype(np.uint16), less.clip(0, 65535).astype(np.uint16)


def timed(fn, sync) -> tuple[float, object]:
    """(seconds, result) of ``fn()``, the device synchronized before the clock stops."""
    t = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - t, result


def call_parts(predictor, pair, mode: str, sync) -> dict[str, float]:
    """One deblur taken apart as ``run_pairs`` runs it in ``mode`` (host or device): seconds per part."""
    import torch

    from blurlatent.inference.device_intensity import tensor_to_input_scale, upload
    from blurlatent.inference.device_pairs import device_unit_pair
    from blurlatent.inference.memory import mapped_levels, unit_pair
    from blurlatent.inference.predictor import NEAR_FOCUS, RULES

    a, b = pair
    h, w = a.shape
    device = predictor.device
    if mode == "host":
        t_scales, scales = timed(lambda: [predictor.pair_scales(a, b, "deblur")], sync)
        t_unit, padded = timed(lambda: unit_pair([a], [b], scales, predictor.multiple), sync)
        t_up, x = timed(lambda: torch.from_numpy(padded[0]).to(device), sync)
        t_net, unit = timed(lambda: predictor.combine_pair(*padded, [0.5], "deblur"), sync)
        with torch.inference_mode():
            y = predictor.combine_on_device(x, [0.5], RULES["deblur"])
        t_down, _ = timed(lambda: y.cpu(), sync)
        t_map, _ = timed(lambda: mapped_levels(unit, scales, [0.5], "deblur", "conserve", [a.dtype]), sync)
        return {"statistics_s": t_scales + t_unit + t_map, "network_with_copies_s": t_net,
                "copies_s (float32 pair up, output down)": t_up + t_down, "scales_s": t_scales,
                "normalize_pad_s": t_unit, "map_output_s": t_map}
    t_up, _ = timed(lambda: [upload(a, device), upload(b, device)], sync)
    t_in, (x, scales) = timed(lambda: device_unit_pair([a], [b], normalize=predictor.normalize,
                                                       reference=NEAR_FOCUS["deblur"], need_total=True,
                                                       multiple=predictor.multiple, device=device), sync)
    with torch.inference_mode():
        t_net, y = timed(lambda: predictor.combine_on_device(x, [0.5], RULES["deblur"])[..., :h, :w], sync)
        t_map, out = timed(lambda: tensor_to_input_scale(y[0, 0], scales[0][1], "conserve", a.dtype), sync)
    t_down, _ = timed(lambda: out.cpu(), sync)
    return {"statistics_s": t_in - t_up + t_map, "network_s": t_net, "copies_s (raw inputs up, output down)":
            t_up + t_down, "scales_normalize_pad_s (incl. upload)": t_in, "map_output_s": t_map}


def bench_call(predictor, args, sync) -> dict:
    """The whole call per stats mode and output dtype, its parts, and how far the modes' outputs differ."""
    import blurlatent

    pair = make_pair(args.shape)
    results: dict = {"image": f"{args.shape[1]}x{args.shape[0]} uint16", "modes": {}}
    outputs = {}
    for mode in args.stats:
        m = predictor.with_options(stats=mode)
        for out_dtype in ("uint16", "float32"):
            call = lambda: blurlatent.deblur(m, *pair, 0.5, out_dtype=out_dtype)  # noqa: B023 (called in the loop)
            for _ in range(args.warmup):
                timed(call, sync)
            times = [timed(call, sync)[0] for _ in range(args.runs)]
            outputs[mode, out_dtype] = call()
            results["modes"][f"{mode}, {out_dtype} out"] = {
                "median_s": round(statistics.median(times), 5), "min_s": round(min(times), 5)}
        parts = [call_parts(m, pair, mode, sync) for _ in range(args.runs)]
        results["modes"][f"{mode} parts (uint16 out)"] = {
            k: round(statistics.median(p[k] for p in parts), 5) for k in parts[0]}
    if len(args.stats) == 2:
        for out_dtype in ("uint16", "float32"):
            x, y = (outputs[mode, out_dtype].astype(np.float64) for mode in args.stats)
            results[f"max_abs_diff_host_vs_device ({out_dtype})"] = float(np.abs(x - y).max())
    return results


def write_plate(folder: Path, fields: int, shape: tuple[int, int]) -> tuple[Path, Path]:
    """``fields`` uint16 TIFF pairs, ``blurriest/fNNNN.tif`` and ``less_blurry/fNNNN.tif`` (paired by name)."""
    import tifffile

    dirs = folder / "blurriest", folder / "less_blurry"
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    for i in range(fields):
        for d, image in zip(dirs, make_pair(shape, shift=7 * i), strict=True):
            tifffile.imwrite(d / f"f{i:04d}.tif", image)
    return dirs


def bench_plate(checkpoint: Path, args, folder: Path) -> dict:
    """Fields per second of folder mode (read, deblur, write) over a written plate, per stats mode."""
    import tifffile

    from blurlatent.config import InferenceConfig
    from blurlatent.inference.alphas import AUTO, alpha_source
    from blurlatent.inference.jobs import deblur_folders

    t = time.perf_counter()
    blurriest, less_blurry = write_plate(folder, args.fields, args.shape)
    results: dict = {"fields": args.fields, "field": f"{args.shape[1]}x{args.shape[0]} uint16 pair, TIFF",
                     "write_inputs_s": round(time.perf_counter() - t, 2), "modes": {}}
    t = time.perf_counter()
    for d in (blurriest, less_blurry):
        for p in sorted(d.iterdir()):
            tifffile.imread(p)
    results["read_inputs_only_s"] = round(time.perf_counter() - t, 2)
    for mode in args.stats:
        config = InferenceConfig(device=args.device, stats=mode)
        t = time.perf_counter()
        written, *_ = deblur_folders(checkpoint, config, alpha_source(0.5, None, AUTO), folder / f"out-{mode}",
                                     blurriest_dir=blurriest, less_blurry_dir=less_blurry, progress_enabled=False)
        total = time.perf_counter() - t
        assert len(written) == args.fields, (len(written), args.fields)
        results["modes"][mode] = {"total_s": round(total, 2), "fields_per_s": round(args.fields / total, 1)}
    return results


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("call", "plate"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--stats", default="host,device", help="comma list of host, device")
    parser.add_argument("--checkpoint", type=Path, help="default: the built-in w1 model")
    parser.add_argument("--size", default="696x520", help="WxH of a field")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--fields", type=int, default=1536, help="plate: fields (pairs) to deblur")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--folder", type=Path, help="plate: where to write the fields (default: a temp folder)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    args.stats = args.stats.split(",")
    width, height = (int(v) for v in args.size.lower().split("x"))
    args.shape = (height, width)
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    import torch

    from blurlatent.config import InferenceConfig
    from blurlatent.inference.builtin import resolve_checkpoint
    from blurlatent.inference.predictor import Predictor

    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    checkpoint, _ = resolve_checkpoint(args.checkpoint, None)
    results = {"mode": args.mode, "device": args.device, "gpu": torch.cuda.get_device_name() if cuda else None,
               "cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "checkpoint": Path(checkpoint).name, "date": time.strftime("%Y-%m-%d")}
    if args.mode == "call":
        predictor = Predictor.from_checkpoint(checkpoint, InferenceConfig(device=args.device))
        results.update(bench_call(predictor, args, sync))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            results.update(bench_plate(Path(checkpoint), args, args.folder or Path(tmp)))
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
