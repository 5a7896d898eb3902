"""benchmarks/care: the CARE baseline's file hand-over (always) and a train + predict smoke run in the CARE env
(only where benchmarks/care/make_env.sh made it: CAREamics does not share blurlatent's pins)."""

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

CARE = Path(__file__).resolve().parents[1] / "benchmarks" / "care"
CARE_PYTHON = Path(os.environ.get("BLURLATENT_CARE_ENV", CARE / ".venv")) / "bin" / "python"


def _care_io():
    spec = importlib.util.spec_from_file_location("care_io", CARE / "care_io.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


care_io = _care_io()


def squares(rng, n, size):
    """Bright squares on a background, and the same blurred (sigma 2.5 px) with a little noise: (x, y)."""
    y = np.zeros((n, size, size), np.float32)
    for image in y:
        for _ in range(rng.randint(2, 6)):
            side = rng.randint(4, size // 4)
            r, c = rng.randint(0, size - side, 2)
            image[r:r + side, c:c + side] = rng.uniform(0.5, 1.0)
    y = 100 + 400 * y
    x = np.stack([gaussian_filter(image, 2.5) for image in y]) + rng.normal(0, 2, y.shape).astype(np.float32)
    return x.astype(np.float32), y


def test_normalization_is_one_affine_map_from_the_input_and_inverts():
    rng = np.random.RandomState(0)
    x, y = squares(rng, 3, 32)
    value_range = care_io.percentile_range(x)
    assert value_range.shape == (3, 2) and value_range.dtype == np.float32
    np.testing.assert_allclose(value_range[1], np.percentile(x[1], care_io.PERCENTILES), rtol=1e-6)
    np.testing.assert_allclose(care_io.percentile_range(x[1]), value_range[1])
    xn = care_io.normalize(x, value_range)
    assert np.allclose(np.percentile(xn[2], care_io.PERCENTILES), [0, 1], atol=1e-5)
    np.testing.assert_allclose(care_io.denormalize(care_io.normalize(y, value_range), value_range), y, rtol=1e-5)
    flat = care_io.percentile_range(np.full((8, 8), 3.0))  # no division by zero
    assert flat.tolist() == [3.0, 4.0]


def test_training_npz_round_trip_normalizes_pairs_with_the_input_range(tmp_path):
    rng = np.random.RandomState(1)
    x, y = squares(rng, 6, 32)
    path = care_io.write_training_npz(tmp_path / "pairs.npz", x[:4], y[:4], x[4:], y[4:])
    data = care_io.read_training_npz(path)
    assert sorted(data) == sorted(care_io.TRAIN_KEYS) and all(a.dtype == np.float32 for a in data.values())
    ranges = care_io.percentile_range(x[:4])
    np.testing.assert_allclose(data["train_y"], care_io.normalize(y[:4], ranges), rtol=1e-5)
    given = np.array([[0.0, 1000.0]] * 2, np.float32)  # a caller's range (e.g. the whole field's) wins
    care_io.write_training_npz(tmp_path / "ranged.npz", x[:4], y[:4], x[4:], y[4:], val_range=given)
    np.testing.assert_allclose(care_io.read_training_npz(tmp_path / "ranged.npz")["val_x"], x[4:] / 1000, rtol=1e-5)


@pytest.mark.parametrize("bad, message", [
    (dict(train_y=np.zeros((3, 32, 32))), "differ in shape"),
    (dict(train_x=np.zeros((4, 24, 24)), train_y=np.zeros((4, 24, 24))), "power-of-two"),
    (dict(val_x=np.zeros((2, 16, 16)), val_y=np.zeros((2, 16, 16))), "differ in size"),
    (dict(train_x=np.full((4, 32, 32), np.nan)), "NaN"),
    (dict(val_range=np.zeros((3, 2))), "val_range"),
])
def test_training_npz_refuses_what_care_train_cannot_use(tmp_path, bad, message):
    arrays = dict(train_x=np.zeros((4, 32, 32)), train_y=np.zeros((4, 32, 32)),
                  val_x=np.zeros((2, 32, 32)), val_y=np.zeros((2, 32, 32)))
    with pytest.raises(ValueError, match=message):
        care_io.write_training_npz(tmp_path / "p.npz", **{**arrays, **bad})


def test_fields_npz_and_the_prediction_layout(tmp_path):
    fields = np.random.RandomState(2).rand(3, 20, 24).astype(np.float32)
    keys = [("famA", "img01", 2), ("famA", "img01", 8), ("famB", "img01", 2)]
    path = care_io.write_fields_npz(tmp_path / "fields.npz", fields, *zip(*keys, strict=True))
    read, read_keys = care_io.read_fields_npz(path)
    np.testing.assert_array_equal(read, fields)
    assert read_keys == keys
    # what care_predict.py writes, bench_real reads back
    for image, (family, stem, k) in zip(fields, keys, strict=True):
        target = care_io.prediction_path(tmp_path / "pred", family, stem, k)
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, image)
    assert care_io.prediction_path("D", "famA", "img01", 8) == Path("D/famA/img01_k8.npy")
    np.testing.assert_array_equal(care_io.read_prediction(tmp_path / "pred", "famB", "img01", 2), fields[2])
    with pytest.raises(ValueError, match="share one"):
        care_io.write_fields_npz(tmp_path / "dup.npz", fields[:2], ["a", "a"], ["s", "s"], [1, 1])
    with pytest.raises(ValueError, match="plain file names"):
        care_io.write_fields_npz(tmp_path / "bad.npz", fields[:1], ["../up"], ["s"], [1])


@pytest.mark.slow
@pytest.mark.skipif(not CARE_PYTHON.exists(),
                    reason=f"no CARE env at {CARE_PYTHON.parent.parent}: run benchmarks/care/make_env.sh "
                           "(CAREamics pins torch<2.14, so it cannot live in blurlatent's env)")
def test_care_trains_for_the_steps_asked_and_predicts_in_the_layout(tmp_path):
    rng = np.random.RandomState(0)
    x, y = squares(rng, 40, 64)
    care_io.write_training_npz(tmp_path / "pairs.npz", x[:32], y[:32], x[32:], y[32:])
    fx, _ = squares(rng, 2, 96)
    care_io.write_fields_npz(tmp_path / "fields.npz", fx, ["famA", "famA"], ["f0", "f1"], [4, 4])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for script, args in (("care_train.py", ["--data", "pairs.npz", "--out", "model", "--steps", "20",
                                            "--val-every", "5", "--threads", "1", "--accelerator", "cpu"]),
                         ("care_predict.py", ["--model", "model", "--fields", "fields.npz", "--out", "pred",
                                              "--tile", "64", "--overlap", "16", "--threads", "1"])):
        run = subprocess.run([str(CARE_PYTHON), str(CARE / script), *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    summary = json.loads((tmp_path / "model" / "care_train.json").read_text())
    # 10 validations, patience 10: early stopping cannot end it, so the run makes exactly the steps asked
    assert summary["optimizer_steps"] == 20 and not summary["stopped_early"] and summary["patch"] == 64
    assert summary["val_loss"] and (tmp_path / "model" / "care_best.ckpt").exists()
    for i in range(2):
        pred = care_io.read_prediction(tmp_path / "pred", "famA", f"f{i}", 4)
        assert pred.shape == (96, 96) and pred.dtype == np.float32 and np.isfinite(pred).all()
        # in the input's scale, and the field's own (not the other's): the order survives CAREamics
        own, other = (np.corrcoef(pred.ravel(), fx[j].ravel())[0, 1] for j in (i, 1 - i))
        assert own > 0.9 > other
        assert abs(np.median(pred) - np.median(fx[i])) < 0.2 * np.ptp(fx[i])
