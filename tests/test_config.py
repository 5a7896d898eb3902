"""config.py: every numeric field's range (``check``), the strict YAML reader (duplicate keys and aliases
refused, fast) and ``load_yaml`` naming the file."""

from __future__ import annotations

import dataclasses
import time

import pytest
import yaml

from blurlatent.config import (
    MAX_SEED,
    MAX_WIDTH,
    DataConfig,
    InferenceConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    load_yaml,
    read_yaml,
)
from blurlatent.errors import UsageError

NAN, INF = float("nan"), float("inf")

# (config, field, bad values, a good value): every numeric field of every config the user can set
RANGES = [
    (ModelConfig, "widths", [[], [0, 8], [4, -8], [4, MAX_WIDTH + 1], [4] * 17], [4, 8, 8]),
    (ModelConfig, "in_channels", [0, 3], 1),
    (ModelConfig, "negative_slope", [NAN, INF, -0.01, 1.5, 1e30], 0.2),
    (DataConfig, "alpha", [NAN, INF, -0.1, 1.1], 0.25),
    (DataConfig, "triplets", [[], [(8, 0, 16)], [(-2, 8, 16)], [(0, 8, 8)]], [(0, 8, 16)]),
    (OptimConfig, "lr", [NAN, INF, 0.0, -1e-4], 3e-3),
    (OptimConfig, "gamma", [NAN, INF, 0.0, -1.0, 1.5], 1.0),
    (OptimConfig, "step", [0, -3], 1),
    (OptimConfig, "epochs", [0, -1], 1),
    (OptimConfig, "batch", [0, -4], 1),
    (TrainConfig, "seed", [-1, MAX_SEED + 1], MAX_SEED),
    (TrainConfig, "nproc", [0, -2], 2),
    (TrainConfig, "workers", [-1], 0),
    (TrainConfig, "strip_every", [-1], 0),
    (TrainConfig, "check_every", [0, -5], 1),
    (TrainConfig, "deblur_weight", [-0.5, float("nan"), 101.0], 1.0),
    (InferenceConfig, "tile", [-1], 0),
    (InferenceConfig, "batch_size", [0, -1], 1),
]


@pytest.mark.parametrize("cls, name, bad, good", RANGES, ids=[f"{c.__name__}.{n}" for c, n, _, _ in RANGES])
def test_every_numeric_field_is_range_checked(cls, name, bad, good):
    assert dataclasses.replace(cls(), **{name: good}).check() is not None
    for value in bad:
        with pytest.raises(UsageError) as info:
            dataclasses.replace(cls(), **{name: value}).check()
        message = str(info.value)
        assert "\n" not in message
        assert name.replace("_", " ") in message.replace("_", " ") or name in ("batch", "lr", "triplets"), message


def test_every_numeric_field_is_listed():
    """A new numeric field must get a row in RANGES."""
    listed = {(c, n) for c, n, _, _ in RANGES}
    for cls in (ModelConfig, DataConfig, OptimConfig, TrainConfig, InferenceConfig):
        for f in dataclasses.fields(cls):
            default = getattr(cls(), f.name)
            numeric = isinstance(default, (int, float, list)) and not isinstance(default, bool)
            if numeric or f.name in ("workers", "check_every", "tile"):
                assert (cls, f.name) in listed, f"{cls.__name__}.{f.name} has no range row"


def test_train_config_checks_its_parts():
    cfg = TrainConfig(optim=OptimConfig(gamma=-1.0))
    with pytest.raises(UsageError, match=r"optim.gamma -1.0: .*\(0, 1\]"):
        cfg.check()
    with pytest.raises(UsageError, match="negative_slope nan"):
        TrainConfig(model=ModelConfig(negative_slope=NAN)).check_ranges()


def test_yaml_ranges_name_the_file(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("optim:\n  gamma: -1\n")
    with pytest.raises(UsageError, match=r"^.*run.yaml: optim.gamma -1.0"):
        load_yaml(TrainConfig, cfg)
    cfg.write_text("model:\n  negative_slope: .nan\n")
    with pytest.raises(UsageError, match="run.yaml: model negative_slope nan"):
        load_yaml(TrainConfig, cfg)
    cfg.write_text("reg: strong\noptim:\n  epochs: 3\n")  # needs init, which a flag may still give: not refused here
    assert load_yaml(TrainConfig, cfg).optim.epochs == 3


def test_duplicate_keys_refused(tmp_path):
    cfg = tmp_path / "dup.yaml"
    cfg.write_text("optim:\n  lr: 0.1\nseed: 1\noptim:\n  epochs: 3\n")
    assert yaml.safe_load(cfg.read_text())["optim"] == {"epochs": 3}  # what PyYAML alone does: lr is lost
    with pytest.raises(UsageError, match=r"dup.yaml: line 4: duplicate key 'optim'"):
        read_yaml(cfg)
    cfg.write_text("optim:\n  lr: 0.1\n  lr: 0.2\n")  # nested too
    with pytest.raises(UsageError, match=r"line 3: duplicate key 'lr'"):
        load_yaml(TrainConfig, cfg)


def test_alias_bomb_fails_fast(tmp_path):
    """A 'billion laughs': nine levels of nine aliases would expand to 9**9 strings."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(UsageError, match=r"laughs.yaml: line 2: YAML alias \*l0 refused"):
        load_yaml(TrainConfig, bomb)
    assert time.perf_counter() - t0 < 1.0


def test_plain_yaml_still_reads(tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("optim:\n  epochs: 3\n  lr: 2.0e-3\nmodel:\n  widths: [4, 8, 8]\ndata:\n  triplets: [[0, 8, 16]]\n")
    loaded = load_yaml(TrainConfig, cfg)
    assert loaded.optim.epochs == 3 and loaded.optim.lr == 2e-3 and loaded.model.widths == [4, 8, 8]
    assert loaded.data.triplets == [(0, 8, 16)]


def test_alpha_is_a_number_or_planes_and_triplet_sets_set_both():
    from blurlatent.bbbc006 import FOCUS_TRIPLETS, PAPER_TRIPLETS
    from blurlatent.config import DataConfig, TrainConfig, from_dict, to_dict, triplet_set

    cfg = from_dict(TrainConfig, {"data": {"alpha": "planes"}}).check()
    assert cfg.data.alpha == "planes" and from_dict(TrainConfig, to_dict(cfg)).data.alpha == "planes"
    assert from_dict(TrainConfig, {"data": {"alpha": 0.25}}).data.alpha == 0.25
    with pytest.raises(UsageError, match="alpha"):
        from_dict(TrainConfig, {"data": {"alpha": "auto"}}).check()
    with pytest.raises(UsageError, match="alpha"):
        DataConfig(alpha=1.5).check()
    assert triplet_set("paper") == {"data.triplets": [list(t) for t in PAPER_TRIPLETS], "data.alpha": 0.5}
    assert triplet_set("focus") == {"data.triplets": [list(t) for t in FOCUS_TRIPLETS], "data.alpha": "planes"}
    with pytest.raises(UsageError, match="triplets all"):
        triplet_set("all")
