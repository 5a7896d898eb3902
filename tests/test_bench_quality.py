"""benchmarks/bench_quality.py: the smoke mode end to end (paper only), and the issue's targets as pass/fail."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_quality.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_smoke_runs_end_to_end_and_reports_every_method_and_k(tmp_path):
    out = tmp_path / "bq"
    run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--archs", "paper", "--smoke",
                          "--seeds", "0,1", "--workers", "1", "--device", "cpu"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads((out / "bench_quality.json").read_text())
    ks = [str(k) for k in range(2, 15, 2)]
    assert result["ks"] == list(range(2, 15, 2))
    assert set(result["methods"]) == {"identity", "rl", "wiener", "gaussian", "paper"}
    for name in ("identity", "rl", "wiener", "paper"):
        deblur = result["methods"][name]["deblur"]
        assert list(deblur) == ks, name
        assert all(0 < deblur[k]["psnr"] < 100 and -1 <= deblur[k]["ssim"] <= 1 for k in ks), name
    for name in ("gaussian", "paper"):
        assert list(result["methods"][name]["blur"]) == ks
    assert set(result["per_seed"]["paper"]) == {"0", "1"}
    for seed in (0, 1):  # the same budget for every model: steps, epochs and seconds recorded
        r = result["runs"][f"paper-s{seed}"]
        assert r["steps"] == r["epochs"] * r["steps_per_epoch"] > 0 and r["seconds"] > 0
    # the evaluation set is another seed with other optics, scored on whole fields
    assert result["eval_seed"] != result["data_seed"] and result["eval_optics"]["na"] != 0.45
    assert result["image_size"] == [64, 64] and result["test_fields"] == 2
    assert result["targets"] == [] and "targets: not checked" in run.stdout
    assert all(Path(p).stat().st_size > 0 for p in result["plots"])
    # a given checkpoint is scored as it is, on the same evaluation set: the trained seed 0's figures again
    given = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "given"), "--archs", "none",
                            "--smoke", "--workers", "1", "--device", "cpu",
                            "--checkpoint", f"seed0={result['runs']['paper-s0']['checkpoint']}"],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert given.returncode == 0, given.stdout[-2000:] + given.stderr[-2000:]
    again = json.loads((tmp_path / "given" / "bench_quality.json").read_text())
    assert set(again["methods"]) == {"identity", "rl", "wiener", "gaussian", "seed0"} and again["targets"] == []
    expected = result["per_seed"]["paper"]["0"]["deblur"]
    for k in ks:
        assert again["methods"]["seed0"]["deblur"][k]["psnr"] == pytest.approx(expected[k]["psnr"], abs=1e-6)


def _methods(paper8, new8, classical8, identity14, new14, blur_paper, blur_new, ssim_paper=0.5, ssim_new=0.6):
    def column(d8, d14, blur, ssim=0.5):
        deblur = {k: {"psnr": 0.0, "ssim": 0.0} for k in range(2, 15, 2)}
        deblur[8], deblur[14] = {"psnr": d8, "ssim": ssim}, {"psnr": d14, "ssim": ssim}
        return {"deblur": deblur, "blur": dict.fromkeys(range(2, 15, 2), blur)}

    return {"paper": column(paper8, 0.0, blur_paper, ssim_paper), "new": column(new8, new14, blur_new, ssim_new),
            "rl": column(classical8, 0.0, 0.0), "wiener": column(classical8 - 1, 0.0, 0.0),
            "identity": column(0.0, identity14, 0.0)}


def test_targets_pass_and_fail_at_the_issues_thresholds():
    bench = _bench()
    passing = bench.targets(_methods(20.0, 22.05, 21.0, 30.0, 29.75, 25.0, 24.75), ["paper", "new"])
    assert [g["pass"] for g in passing] == [True] * 5
    assert bench.targets(_methods(20.0, 22.05, 21.0, 30.0, 29.75, 25.0, 24.75), ["paper"]) == []
    failing = bench.targets(_methods(20.0, 21.95, 21.0, 30.0, 29.65, 25.0, 24.65, ssim_new=0.4), ["paper", "new"])
    assert [g["pass"] for g in failing] == [False] * 5
    # the classical bar is the better of RL and Wiener
    assert failing[1]["threshold"] == pytest.approx(22.0)


def test_eval_optics_are_checked_and_paper_is_required():
    bench = _bench()
    assert bench.parse_optics("na=0.6,gain=0.5").na == 0.6
    with pytest.raises(SystemExit, match="not an optics field"):
        bench.parse_optics("aperture=0.6")
    with pytest.raises(Exception, match="na 1.5"):
        bench.parse_optics("na=1.5")
    with pytest.raises(SystemExit, match="must include paper"):
        bench.parse_args(["--out", "x", "--archs", "multiscale"])


def test_skips_reach_the_multiscale_config_only():
    bench = _bench()
    args = bench.parse_args(["--out", "x", "--steps", "1", "--skips", "gated"])
    assert bench.train_config(args, "multiscale", 0, Path("store")).model.skips == "gated"
    assert bench.train_config(args, "paper", 0, Path("store")).model.arch == "paper"


def test_multiscale_trains_as_train_does_and_paper_as_the_paper_did_unless_told_otherwise():
    bench = _bench()

    def recipe(argv, arch):
        config = bench.train_config(bench.parse_args(["--out", "x", "--steps", "1", *argv]), arch, 0, Path("s"))
        return len(config.data.triplets), config.data.alpha, config.deblur_weight

    assert recipe([], "multiscale") == (28, "planes", 1.0)  # as `train --arch multiscale`
    assert recipe([], "paper") == (7, 0.5, 0.0)  # the reference: the paper's training
    assert recipe(["--triplets", "multiscale=paper"], "multiscale") == (7, 0.5, 1.0)
    assert recipe(["--deblur-weight", "multiscale=2"], "multiscale") == (28, "planes", 2.0)
    assert recipe(["--triplets", "paper=focus", "--deblur-weight", "paper=0.5"], "paper") == (28, "planes", 0.5)


def test_reuse_takes_only_runs_this_bench_would_train(tmp_path, capsys):
    """--reuse scores an earlier bench's runs only when data, seeds and every training setting (but the store's
    path, the device and the epochs) are this run's; other settings are trained again, other data refused."""
    import dataclasses

    from blurlatent.config import save_yaml

    bench = _bench()
    earlier = tmp_path / "earlier"
    argv = ["--out", str(tmp_path / "new"), "--steps", "5", "--seeds", "0", "--reuse", str(earlier)]
    args = bench.parse_args(argv)
    settings = {"size": args.size, "crop": args.crop, "fields": args.fields, "eval_fields": args.eval_fields,
                "data_seed": args.data_seed, "eval_seed": args.eval_seed, "channel": args.channel,
                "eval_optics": dataclasses.asdict(args.eval_optics)}
    records = {}
    for arch in ("paper", "multiscale"):
        run = earlier / "runs" / f"{arch}-s0"
        run.mkdir(parents=True)
        config = bench.train_config(args, arch, 0, earlier / "train-store")
        config.device, config.optim.epochs = "cpu", 3
        save_yaml(config, run / "config.yaml")
        records[f"{arch}-s0"] = {"steps": 7, "checkpoint": str(run / "best.pt")}
    (earlier / "bench_quality.json").write_text(json.dumps({**settings, "runs": records}))
    got = bench.reused_runs(args, tmp_path / "new" / "train-store")
    assert got == {(arch, 0): {**records[f"{arch}-s0"], "reused_from": str(earlier)}
                   for arch in ("paper", "multiscale")}
    # another deblur weight for multiscale: paper is still taken, multiscale trained here (a line says why)
    got = bench.reused_runs(bench.parse_args(argv + ["--deblur-weight", "multiscale=2"]), tmp_path / "store")
    assert set(got) == {("paper", 0)} and "multiscale seed 0 was trained with other settings (deblur_weight)" in \
        capsys.readouterr().out
    assert bench.reused_runs(bench.parse_args(argv + ["--lr", "1e-4"]), tmp_path / "store") == {}
    assert bench.reused_runs(bench.parse_args(argv + ["--seeds", "1"]), tmp_path / "store") == {}
    with pytest.raises(SystemExit, match="its crop is 128"):
        bench.reused_runs(bench.parse_args(argv + ["--crop", "64"]), tmp_path / "store")


def test_lr_halvings_give_every_arch_the_same_schedule_in_fractions_of_its_budget(tmp_path):
    from helpers.train_store import make_store

    bench = _bench()
    store = make_store(tmp_path / "store")  # 6 train crops: 42 paper items (3 steps of 16), 168 focus (11 steps)
    args = bench.parse_args(["--out", "x", "--steps", "30", "--lr-halvings", "2", "--batch", "16",
                             "--triplets", "multiscale=focus"])
    paper, multiscale = (bench.train_config(args, arch, 0, store) for arch in ("paper", "multiscale"))
    assert bench.steps_per_epoch(paper) == 3 and paper.optim.step == 3  # 10 epochs: halved after 3 and 6
    assert bench.steps_per_epoch(multiscale) == 11 and multiscale.optim.step == 1  # 3 epochs: after 1 and 2
    assert bench.train_config(bench.parse_args(["--out", "x", "--steps", "30"]), "paper", 0, store).optim.step \
        == 10**6  # no decay by default
    with pytest.raises(SystemExit, match="--lr-halvings needs a --steps budget"):
        bench.parse_args(["--out", "x", "--minutes", "5", "--lr-halvings", "2"])
