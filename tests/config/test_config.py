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
    (DataConfig, "pixel_size_um", [0.0, -0.645, NAN, INF], 0.325),
    (DataConfig, "z_step_um", [0.0, -2.0, NAN, INF], 0.5),
    (TrainConfig, "version", [0, 1, 2, 4], 3),
    (TrainConfig, "seed", [-1, MAX_SEED + 1], MAX_SEED),
    (TrainConfig, "nproc", [0, -2], 2),
    (TrainConfig, "workers", [-1], 0),
    (TrainConfig, "strip_every", [-1], 0),
    (TrainConfig, "check_every", [0, -5], 1),
    (TrainConfig, "deblur_weight", [-0.5, float("nan"), 101.0], 1.0),
    (InferenceConfig, "tile", [-1], 0),
    (InferenceConfig, "batch_size", [0, -1], 1),
    (InferenceConfig, "pixel_size", [0.0, -0.325, NAN, INF, True], 0.325),
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


# --- versions: what a config without a key means (issue 27) -----------------------------------------------


PAPER_MEANING = ("paper", [64, 128, 256, 512, 1024], "coarse", 7, 0.5, 0.0)


def meaning(cfg: TrainConfig) -> tuple:
    return (cfg.model.arch, cfg.model.widths, cfg.model.skips, len(cfg.data.triplets), cfg.data.alpha,
            cfg.deblur_weight)


def test_the_defaults_are_what_train_trains_and_version_1_is_the_papers():
    from blurlatent.bbbc006 import FOCUS_TRIPLETS, PAPER_TRIPLETS
    from blurlatent.config import CONFIG_VERSION, MULTISCALE_WIDTHS, from_dict, to_dict

    cfg = TrainConfig()
    assert cfg.version == CONFIG_VERSION == 3
    assert meaning(cfg) == ("multiscale", list(MULTISCALE_WIDTHS), "quarter", 28, "planes", 1.0)
    assert [tuple(t) for t in cfg.data.triplets] == list(FOCUS_TRIPLETS)
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg and from_dict(TrainConfig, {"version": 3}) == cfg
    # before version 3 every store was BBBC006's or synth's: a config without a scale is at BBBC006's
    v2 = from_dict(TrainConfig, {"version": 2})
    assert (v2.data.pixel_size_um, v2.data.z_step_um, v2.data.optics) == (0.645, 2.0, None)
    assert (cfg.data.pixel_size_um, cfg.data.z_step_um) == (None, None)  # now: filled from the store by train
    # a config without ``version`` is version 1: every key it lacks means what it meant then, the paper's
    old = from_dict(TrainConfig, {"optim": {"epochs": 3}})
    assert meaning(old) == PAPER_MEANING and old.version == 3 and old.optim.epochs == 3
    assert [tuple(t) for t in old.data.triplets] == list(PAPER_TRIPLETS)
    assert from_dict(TrainConfig, {"version": 1}) == from_dict(TrainConfig, {})
    # what it does give stays: a version-1 multiscale model without skips had "coarse"
    mixed = from_dict(TrainConfig, {"model": {"arch": "multiscale"}, "data": {"alpha": "planes"}})
    assert meaning(mixed) == ("multiscale", list(MULTISCALE_WIDTHS), "coarse", 7, "planes", 0.0)


def test_older_defaults_list_exactly_the_defaults_that_changed():
    from blurlatent.config import OLDER_DEFAULTS, to_dict

    now = to_dict(TrainConfig())
    for version, changed in OLDER_DEFAULTS.items():
        for dotted, old in changed.items():
            node = now
            for part in dotted.split("."):
                node = node[part]
            assert node != old, f"{dotted}: version {version} did not change it"


def test_upgrade_leaves_its_input_alone_and_refuses_unknown_versions():
    from blurlatent.config import from_dict, model_config, upgrade

    data = {"model": {"widths": [4, 8, 8]}}
    assert upgrade(data)["model"] == {"widths": [4, 8, 8], "arch": "paper", "skips": "coarse"}
    assert data == {"model": {"widths": [4, 8, 8]}}
    for bad in (4, 0, "2", True, 1.5):
        with pytest.raises(UsageError, match=f"run.yaml: version {bad!r}: this blurlatent reads config versions 1 to"):
            from_dict(TrainConfig, {"version": bad}, "run.yaml")
    # a checkpoint's model: of its config's version (none: the paper's model)
    assert model_config(data).arch == "paper"
    assert (model_config({"version": 2, **data}).arch, model_config({"version": 2, **data}).skips) == \
        ("multiscale", "quarter")


def test_a_yaml_without_a_version_means_the_papers_training(tmp_path):
    cfg = tmp_path / "old.yaml"
    cfg.write_text("reg: weak\ndata: {store: prepared, channel: w2}\n")
    assert meaning(load_yaml(TrainConfig, cfg)) == PAPER_MEANING
    cfg.write_text("version: 2\nreg: weak\n")
    assert meaning(load_yaml(TrainConfig, cfg)) == meaning(TrainConfig())


def test_the_paper_model_ignores_skips_when_compared():
    paper, multiscale = ModelConfig(arch="paper"), ModelConfig()
    assert paper.skips == "coarse" and multiscale.skips == "quarter"
    assert paper.same_network(ModelConfig(arch="paper", skips="all")) and not paper.same_network(multiscale)
    assert not multiscale.same_network(ModelConfig(skips="all"))
