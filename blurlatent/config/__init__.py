"""Every config of blurlatent, and the one place each default is written: the option types and their choices
(``options``), what a training run is (``train``), the jobs that use a trained model (``jobs``), and configs as
plain data and YAML (``schema``: unknown keys, wrong types and values outside the choices are refused, naming
the key). Importing this package does not import torch; the names below are the public API."""

from blurlatent.config.jobs import (
    DEMO_ARCH,
    DemoSettings,
    EvalConfig,
    InferenceConfig,
    PlateConfig,
    PrepareConfig,
    SynthConfig,
)
from blurlatent.config.options import (
    DEFAULT_SKIPS,
    DEFAULT_WIDTHS,
    MAX_DEBLUR_WEIGHT,
    MAX_DEPTH,
    MAX_SEED,
    MAX_WIDTH,
    MULTISCALE_WIDTHS,
    PAPER_WIDTHS,
    RESUMABLE_CHANGES,
    AlphaRule,
    Amp,
    Arch,
    Intensity,
    Log,
    Normalization,
    OutDtype,
    Precision,
    Reg,
    Rescale,
    Skips,
    Stats,
    SynthOptics,
    TestCrops,
    TripletSet,
    check_choice,
    choices,
)
from blurlatent.config.schema import (
    StrictLoader,
    YamlRefused,
    checked_config,
    from_dict,
    load_yaml,
    model_config,
    override,
    read_yaml,
    save_yaml,
    to_dict,
    upgrade,
)
from blurlatent.config.train import (
    CONFIG_VERSION,
    OLDER_DEFAULTS,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    triplet_set,
)

__all__ = [
    "DEFAULT_SKIPS", "DEFAULT_WIDTHS", "MAX_DEBLUR_WEIGHT", "MAX_DEPTH", "MAX_SEED", "MAX_WIDTH", "MULTISCALE_WIDTHS",
    "PAPER_WIDTHS", "RESUMABLE_CHANGES", "AlphaRule", "Amp", "Arch", "Intensity", "Log", "Normalization",
    "OutDtype", "Precision", "Reg", "Rescale", "Skips", "Stats", "SynthOptics", "TestCrops", "TripletSet",
    "check_choice", "choices",
    "StrictLoader", "YamlRefused", "checked_config", "from_dict", "load_yaml", "model_config", "override",
    "read_yaml", "save_yaml", "to_dict", "upgrade", "CONFIG_VERSION", "OLDER_DEFAULTS", "DataConfig", "ModelConfig",
    "OptimConfig", "TrainConfig", "triplet_set", "DEMO_ARCH", "DemoSettings", "EvalConfig", "InferenceConfig",
    "PlateConfig", "PrepareConfig", "SynthConfig",
]
