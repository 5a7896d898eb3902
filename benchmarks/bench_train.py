"""Training throughput of the paper-size model: blurlatent's step against a paper-style reference step.

    python benchmarks/bench_train.py --device cpu                       # this machine's CPU
    python benchmarks/bench_train.py --device cuda --schedule           # a GPU, plus the whole 40-epoch schedule

Measured, all in one run and on one device:

* ``reference``: the step written the way the paper's code does it: E(x1), E(x2), E(x3) and G(·) three
  times as separate calls, fp32, default memory format.
* ``fast``: ``blurlatent.training.losses.loss_terms``, the training step (one batched encoder call, one batched
  decoder call) with the precision and memory format ``--amp auto`` picks on this device (printed).
* the loader alone (memory-mapped uint8 store → batches on the device), against the fast step's rate.
* ``--converge``: the same number of steps from the same initial weights on the same batches with the
  reference and the fast path, then the validation loss of each (the fast path must not train worse).
* ``--schedule``: ``blurlatent.training.trainer.train`` end to end: the paper's 40 epochs on one channel of a
  synthetic store of BBBC006's size (538 train fields × 10 crops: 768 fields per channel, 70 % train), wall time
  and triplets/s.

Throughput is triplets per second at ``--batch`` (the paper: 40), weak regularization (Eq. 4).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blurlatent.bbbc006 import PAPER_TRIPLETS
from blurlatent.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from blurlatent.nets.autoencoder import Autoencoder
from blurlatent.nets.device import assign_device, train_precision
from blurlatent.nets.latent import interpolate_latents
from blurlatent.prepare.store import Store, write_store
from blurlatent.training.loader import EpochBatches, make_loader, to_device, triplet_dataset
from blurlatent.training.losses import loss_terms
from blurlatent.training.trainer import train

PLANES = list(range(0, 17, 2))


def synthetic_store(path: Path, n_train: int, n_val: int, crop: int = 128, seed: int = 0) -> Path:
    """Smooth random crops, blurrier and dimmer towards plane 0: cheap to make, realistic in size."""
    rng = np.random.default_rng(seed)

    def crops(n):
        out = np.empty((n, len(PLANES), crop, crop), np.uint8)
        for i in range(0, n, 256):
            base = rng.random((min(256, n - i), crop // 8, crop // 8)).repeat(8, 1).repeat(8, 2)
            for k, p in enumerate(PLANES):
                w = (16 - p) / 16
                img = base
                for _ in range(int(round(3 * w))):  # box blur grows with defocus
                    shifted = np.roll(img, 1, 1) + np.roll(img, -1, 1) + np.roll(img, 1, 2) + np.roll(img, -1, 2)
                    img = (img + shifted) / 5
                out[i:i + len(base), k] = np.clip((img * (1 - 0.5 * w) + 0.2 * w) * 255, 0, 255)
        return out

    manifest = {"planes": PLANES, "channels": ["w1"], "crop": crop, "normalization": {"method": "minmax"}, "fields": []}
    write_store(path, manifest, {"w1_train": crops(n_train), "w1_val": crops(n_val), "w1_test": crops(1)})
    return path


def reference_step(model, opt, xl, xt, xr, alpha=0.5):
    """The paper-style step: separate calls, fp32, no channels_last (weak loss, Eq. 4)."""
    z1, z2 = model.encode(xl), model.encode(xr)
    model.encode(xt)  # the paper's code encodes the target too (its latent is logged and used by strong)
    r1, r2 = model.decode(z1), model.decode(z2)
    ri = model.decode(interpolate_latents(z2, z1, alpha))
    loss = 0.5 * ((r1 - xl).abs().mean() + (r2 - xr).abs().mean()) + (ri - xt).abs().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def fast_step(model, opt, xl, xt, xr, amp_dtype, device):
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        loss = loss_terms(model, xl, xt, xr, "weak", 0.5)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, batches, device, warmup: int) -> float:
    for b in batches[:warmup]:
        step(*b)
    _sync(device)
    t = time.perf_counter()
    for b in batches[warmup:]:
        step(*b)
    _sync(device)
    return (time.perf_counter() - t) / max(1, len(batches) - warmup)


def batches_from(store_path: Path, batch: int, n: int, device, channels_last: bool, split="train", seed=0):
    """The first ``n`` batches of an epoch, as training sees them: (left, target, right) on ``device``."""
    ds = triplet_dataset(Store(store_path), PAPER_TRIPLETS, "w1", split)
    out = []
    for u8, _ in make_loader(ds, EpochBatches(len(ds), batch, seed), 0, device.type == "cuda", seed):
        out.append(tuple(to_device(u8, device, channels_last)))
        if len(out) == n:
            break
    return out


@torch.no_grad()
def val_loss(model, batches, amp_dtype, device) -> float:
    model.eval()
    total = n = 0
    for xl, xt, xr in batches:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            total += float(loss_terms(model, xl, xt, xr, "weak", 0.5)["loss"]) * len(xl)
        n += len(xl)
    model.train()
    return total / n


def throughput(args, store, widths, device, amp_dtype, channels_last, steps, warmup, report) -> None:
    """Reference step vs blurlatent's step on the paper model, into ``report``."""
    torch.manual_seed(0)
    ref_model = Autoencoder(ModelConfig(widths=widths)).to(device)
    fast_model = Autoencoder(ModelConfig(widths=widths)).to(device)
    fast_model.load_state_dict(ref_model.state_dict())
    if channels_last:
        fast_model.to(memory_format=torch.channels_last)
    ref_opt = torch.optim.Adam(ref_model.parameters(), 1e-4)
    fast_opt = torch.optim.Adam(fast_model.parameters(), 1e-4)
    ref_b = batches_from(store, args.batch, steps + warmup, device, False)
    fast_b = batches_from(store, args.batch, steps + warmup, device, channels_last)
    # Interleaved (reference, fast, reference, fast, …) so that load from other jobs hits both alike.
    t_ref = t_fast = 0.0
    for i in range(steps + warmup):
        _sync(device)
        t = time.perf_counter()
        reference_step(ref_model, ref_opt, *ref_b[i])
        _sync(device)
        t1 = time.perf_counter()
        fast_step(fast_model, fast_opt, *fast_b[i], amp_dtype, device)
        _sync(device)
        if i >= warmup:
            t_ref += t1 - t
            t_fast += time.perf_counter() - t1
    t_ref, t_fast = t_ref / steps, t_fast / steps
    report["reference_triplets_per_s"] = args.batch / t_ref
    report["fast_triplets_per_s"] = args.batch / t_fast
    report["speedup"] = t_ref / t_fast
    print(f"reference (separate calls, fp32):  {args.batch / t_ref:9.2f} triplets/s  ({t_ref * 1000:.0f} ms/step)",
          flush=True)
    print(f"blurlatent step ({report['fast_path']['amp']}, channels_last={channels_last}): "
          f"{args.batch / t_fast:9.2f} triplets/s  ({t_fast * 1000:.0f} ms/step)  "
          f"→ {t_ref / t_fast:.2f}× the reference", flush=True)


def loader_rate(args, device, channels_last, report, tmp) -> None:
    """The loader alone: memmap → uint8 batches → device floats, against the fast step's rate."""
    big = synthetic_store(Path(tmp) / "loader_store", n_train=512, n_val=1)
    ds = triplet_dataset(Store(big), PAPER_TRIPLETS, "w1", "train")
    workers = 0 if device.type == "cpu" else 4
    batches = EpochBatches(len(ds), args.batch, 0)
    loader = make_loader(ds, batches, workers, device.type == "cuda", 0)
    n = 0
    t = time.perf_counter()
    for epoch in range(2):
        batches.set_epoch(epoch)
        for u8, _ in loader:
            xl, xt, xr = to_device(u8, device, channels_last)
            n += len(xl)
    _sync(device)
    rate = n / (time.perf_counter() - t)
    report["loader_triplets_per_s"] = rate
    report["loader_over_training"] = rate / report["fast_triplets_per_s"]
    print(f"loader alone ({workers} workers):           {rate:9.1f} triplets/s  "
          f"→ {rate / report['fast_triplets_per_s']:.1f}× the training rate", flush=True)


def variants(args, widths, device, steps, warmup, report, tmp) -> None:
    """The batched step in fp32/bf16 × NCHW/channels_last."""
    n_train = max(args.batch * (steps + warmup) // 7 + 8, 64)
    vstore = synthetic_store(Path(tmp) / "variant_store", n_train=n_train, n_val=1)
    report["variants"] = {}
    for dtype in (None, torch.bfloat16):
        for cl in (False, True):
            torch.manual_seed(0)
            m = Autoencoder(ModelConfig(widths=widths)).to(device)
            if cl:
                m.to(memory_format=torch.channels_last)
            o = torch.optim.Adam(m.parameters(), 1e-4)
            vb = batches_from(vstore, args.batch, steps + warmup, device, cl)
            t = time_steps(lambda a, b, c, m=m, o=o, dtype=dtype: fast_step(m, o, a, b, c, dtype, device), vb, device,
                           warmup)
            key = f"{'bf16' if dtype else 'fp32'}{'+channels_last' if cl else ''}"
            report["variants"][key] = args.batch / t
            print(f"batched step {key:22s} {args.batch / t:9.2f} triplets/s", flush=True)


def converge(args, device, amp_dtype, channels_last, report, tmp) -> None:
    """Same validation loss: the reference and the fast path trained alike from the same weights."""
    cw = [int(w) for w in (args.converge_widths or args.widths).split(",")]
    cb = args.converge_batch or args.batch
    conv_store = synthetic_store(Path(tmp) / "conv_store", n_train=max(64, cb * args.converge // 7 + 8), n_val=64)
    val_ref = batches_from(conv_store, cb, 10 ** 6, device, False, "val")
    res = {}
    for label in ("reference", "fast"):
        torch.manual_seed(1)
        m = Autoencoder(ModelConfig(widths=cw)).to(device)
        cl = channels_last and label == "fast"
        if cl:
            m.to(memory_format=torch.channels_last)
        o = torch.optim.Adam(m.parameters(), 1e-3)
        for xl, xt, xr in batches_from(conv_store, cb, args.converge, device, cl):
            if label == "reference":
                reference_step(m, o, xl, xt, xr)
            else:
                fast_step(m, o, xl, xt, xr, amp_dtype, device)
        vb = val_ref if not cl else [tuple(x.contiguous(memory_format=torch.channels_last) for x in b) for b in val_ref]
        res[label] = val_loss(m, vb, None, device)  # both scored in fp32 so that only the training differs
    report["converge"] = {"steps": args.converge, "widths": cw, "batch": cb, "val_loss_reference": res["reference"],
                          "val_loss_fast": res["fast"]}
    print(f"after {args.converge} steps (widths {cw}): val loss reference {res['reference']:.5f}, "
          f"fast {res['fast']:.5f}", flush=True)


def schedule(args, widths, device, report, tmp) -> None:
    """The whole paper schedule through train(), stopped after --max-seconds and extrapolated."""
    n_val = max(1, args.schedule_crops // 7)
    sched = synthetic_store(Path(tmp) / "sched_store", n_train=args.schedule_crops, n_val=n_val)
    cfg = TrainConfig(model=ModelConfig(widths=widths), data=DataConfig(store=str(sched)),
                      optim=OptimConfig(epochs=args.schedule_epochs), reg="weak", device=str(device), strip_every=0)
    t0 = time.perf_counter()

    def watch(epoch, step):
        if time.perf_counter() - t0 > args.max_seconds:
            raise TimeoutError

    done = True
    try:
        train(cfg, Path(tmp) / "run", progress=False, on_step=watch)
    except (TimeoutError, KeyboardInterrupt):
        done = False
    wall = time.perf_counter() - t0
    lines = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    per_epoch = [r["seconds"] for r in lines]
    total = wall if done else wall / max(len(lines), 1) * args.schedule_epochs
    report["schedule"] = {
        "train_crops": args.schedule_crops, "triplets_per_epoch": args.schedule_crops * 7, "epochs_run": len(lines),
        "completed": done, "wall_s": wall, "projected_40_epochs_s": total,
        "epoch_seconds_median": float(np.median(per_epoch)) if per_epoch else None,
        "train_triplets_per_s_median": float(np.median([r["triplets_per_s"] for r in lines])) if lines else None,
        "first_val_loss": lines[0]["val_loss"] if lines else None,
        "last_val_loss": lines[-1]["val_loss"] if lines else None,
    }
    first, last = report["schedule"]["first_val_loss"], report["schedule"]["last_val_loss"]
    print(f"schedule: {len(lines)} epochs of {args.schedule_crops * 7} triplets in {wall:.0f} s "
          f"({'complete' if done else f'projected {total:.0f} s for {args.schedule_epochs}'}); "
          f"val loss {first or float('nan'):.4f} → {last or float('nan'):.4f}", flush=True)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=40)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per path (default 3 on CPU, 30 on GPU)")
    ap.add_argument("--widths", default="64,128,256,512,1024")
    ap.add_argument("--converge", type=int, default=0,
                    help="steps of the reference-vs-fast convergence check (0: skip)")
    ap.add_argument("--converge-widths", default=None, help="widths for the convergence check (default: --widths)")
    ap.add_argument("--converge-batch", type=int, default=None,
                    help="batch for the convergence check (default: --batch)")
    ap.add_argument("--only-converge", action="store_true", help="skip the throughput and loader measurements")
    ap.add_argument("--variants", action="store_true",
                    help="also time the batched step in fp32/bf16 × NCHW/channels_last")
    ap.add_argument("--schedule", action="store_true", help="time train() over the whole paper schedule")
    ap.add_argument("--schedule-crops", type=int, default=5380,
                    help="train crops (BBBC006 w1: 768 fields at 70:10:20 → 538 train fields × 10)")
    ap.add_argument("--schedule-epochs", type=int, default=40)
    ap.add_argument("--max-seconds", type=float, default=420, help="stop the schedule after this and extrapolate")
    ap.add_argument("--json", type=Path, default=None)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    device = assign_device(args.device)
    widths = [int(w) for w in args.widths.split(",")]
    default = TrainConfig()
    amp_dtype, channels_last = train_precision(default.amp, default.channels_last, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                f"{torch.backends.cpu.get_cpu_capability()}")
    steps = args.steps or (3 if device.type == "cpu" else 30)
    warmup = 1 if device.type == "cpu" else 5
    report = {"device": str(device), "name": name, "torch": torch.__version__, "batch": args.batch, "widths": widths,
              "fast_path": {"amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
                            "channels_last": channels_last}}
    print(f"device {device} ({name}); fast path: {report['fast_path']}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        if not args.only_converge:
            n_train = max(args.batch * (steps + warmup) // 7 + 8, 64)
            store = synthetic_store(Path(tmp) / "bench_store", n_train=n_train, n_val=16)
            throughput(args, store, widths, device, amp_dtype, channels_last, steps, warmup, report)
            loader_rate(args, device, channels_last, report, tmp)
        if args.variants:
            variants(args, widths, device, steps, warmup, report, tmp)
        if args.converge:
            converge(args, device, amp_dtype, channels_last, report, tmp)
        if args.schedule:
            schedule(args, widths, device, report, tmp)

    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
