"""benchmarks/bench_device.py's CPU fallback (the GPU script's modes on tiny sizes, a tiny checkpoint): it runs, both
statistics paths give the same outputs, and a plate's every field is read, deblurred and written. No timings checked."""

import importlib.util
import json
from pathlib import Path

import pytest
from helpers.infer_model import tiny_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_device.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_device", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_call_mode_on_cpu(bench, tmp_path_factory, tmp_path):
    ckpt = tiny_checkpoint(tmp_path_factory)
    out = tmp_path / "call.json"
    results = bench.main(["call", "--device", "cpu", "--checkpoint", str(ckpt), "--size", "64x48", "--runs", "2",
                          "--warmup", "1", "--threads", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == results
    assert set(results["modes"]) == {"host, uint16 out", "host, float32 out", "host parts (uint16 out)",
                                     "device, uint16 out", "device, float32 out", "device parts (uint16 out)"}
    assert results["max_abs_diff_host_vs_device (uint16)"] <= 1.0
    assert results["modes"]["device parts (uint16 out)"]["network_s"] > 0


def test_plate_mode_on_cpu(bench, tmp_path_factory, tmp_path):
    ckpt = tiny_checkpoint(tmp_path_factory)
    results = bench.main(["plate", "--device", "cpu", "--checkpoint", str(ckpt), "--size", "64x48", "--fields", "8",
                          "--threads", "1", "--folder", str(tmp_path)])
    assert results["fields"] == 8
    for mode in ("host", "device"):
        assert results["modes"][mode]["fields_per_s"] > 0
        assert len(list((tmp_path / f"out-{mode}").glob("*.tif"))) == 8
