"""What blurlatent's env and the CARE env hand each other (numpy only, so both can import it).

bench_real (blurlatent's env) packs training pairs and whole fields into .npz files; care_train.py and
care_predict.py (the CARE env, CAREamics) read them and write predictions as .npy files that bench_real reads
back. Normalization lives here too, so both sides scale intensities the same way.

Files
-----
training .npz   ``train_x, train_y, val_x, val_y``: float32 [N, P, P] patches, x = defocused plane z_k,
                y = the in-focus truth of the same place; optional ``train_range, val_range``: float32 [N, 2],
                the (low, high) percentile range each pair is normalized with (see ``percentile_range``);
                absent: each x patch's own range.
fields .npz     ``fields``: float32 [N, H, W] whole fields to deblur; ``family``, ``stem``: str [N];
                ``k``: int [N] (the plane's distance from focus, for the file name only).
predictions     ``DIR/<family>/<stem>_k<k>.npy``: float32 [H, W], in the input field's intensity scale.

Normalization
-------------
One affine map per pair, taken from the INPUT alone: ``(v - lo) / (hi - lo)`` with (lo, hi) the 1st and
99.8th percentiles of the defocused image (CSBDeep's defaults). Input and target go through the same map in
training, so at prediction the model's output is mapped back with the input's own (lo, hi) and lands in the
input's scale; the target's own range is never needed (it is unknown at prediction time).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

PERCENTILES = (1.0, 99.8)
TRAIN_KEYS = ("train_x", "train_y", "val_x", "val_y")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def percentile_range(image: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> np.ndarray:
    """(low, high) percentiles of one image [H, W] (or each of a stack [N, H, W] -> [N, 2]), float32.
    A flat image gets high = low + 1, so normalizing it never divides by zero."""
    image = np.asarray(image, dtype=np.float32)
    axes = tuple(range(image.ndim - 2, image.ndim))
    lo, hi = np.percentile(image, percentiles, axis=axes).astype(np.float32)
    hi = np.where(hi - lo > 1e-6 * np.maximum(np.abs(lo), 1.0), hi, lo + 1.0)
    return np.stack([lo, hi], axis=-1).astype(np.float32)


def normalize(image: np.ndarray, value_range: np.ndarray) -> np.ndarray:
    """(image - lo) / (hi - lo), float32; image [..., H, W], value_range [..., 2] (one row per image)."""
    lo, hi = _split(value_range)
    return ((np.asarray(image, dtype=np.float32) - lo) / (hi - lo)).astype(np.float32)


def denormalize(image: np.ndarray, value_range: np.ndarray) -> np.ndarray:
    """The inverse of ``normalize``: image * (hi - lo) + lo, float32."""
    lo, hi = _split(value_range)
    return (np.asarray(image, dtype=np.float32) * (hi - lo) + lo).astype(np.float32)


def _split(value_range: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    value_range = np.asarray(value_range, dtype=np.float32)
    return value_range[..., 0, None, None], value_range[..., 1, None, None]


def _stack(name: str, array: np.ndarray, ndim: int = 3) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != ndim or array.shape[0] == 0 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name}: expected a non-empty numeric [N, H, W] array, got {array.dtype} {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: holds NaN or inf values")
    return array.astype(np.float32)


def write_training_npz(path: str | Path, train_x, train_y, val_x, val_y, train_range=None, val_range=None) -> Path:
    """Write the training pairs for care_train.py. Patches are float32 [N, P, P] with P a power of two >= 16
    (CAREamics' patch rule); x and y of a split have the same shape. Ranges: optional float32 [N, 2] (see the
    module's Normalization), e.g. each patch's whole source field's ``percentile_range``. Raises ValueError."""
    arrays = {key: _stack(key, a) for key, a in zip(TRAIN_KEYS, (train_x, train_y, val_x, val_y), strict=True)}
    for split in ("train", "val"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.shape != y.shape:
            raise ValueError(f"{split}_x {x.shape} and {split}_y {y.shape} differ in shape")
        side = x.shape[1]
        if x.shape[2] != side or side < 16 or side & (side - 1):
            raise ValueError(f"{split}_x: patches must be square with a power-of-two side >= 16, got {x.shape[1:]}")
        value_range = train_range if split == "train" else val_range
        if value_range is not None:
            value_range = _stack(f"{split}_range", value_range, ndim=2)
            if value_range.shape != (len(x), 2):
                raise ValueError(f"{split}_range: expected [{len(x)}, 2], got {value_range.shape}")
            arrays[f"{split}_range"] = value_range
    if arrays["train_x"].shape[1:] != arrays["val_x"].shape[1:]:
        raise ValueError(f"train and val patches differ in size: {arrays['train_x'].shape} vs {arrays['val_x'].shape}")
    path = Path(path)
    np.savez(path, **arrays)
    return path


def read_training_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The pairs of ``write_training_npz``, NORMALIZED (see the module's Normalization): float32 arrays
    train_x, train_y, val_x, val_y. Raises ValueError on a missing key."""
    with np.load(path) as data:
        missing = [key for key in TRAIN_KEYS if key not in data]
        if missing:
            raise ValueError(f"{path}: missing {missing} (expected {list(TRAIN_KEYS)})")
        out = {}
        for split in ("train", "val"):
            x, y = _stack(f"{split}_x", data[f"{split}_x"]), _stack(f"{split}_y", data[f"{split}_y"])
            key = f"{split}_range"
            value_range = data[key].astype(np.float32) if key in data else percentile_range(x)
            out[f"{split}_x"], out[f"{split}_y"] = normalize(x, value_range), normalize(y, value_range)
    return out


def write_fields_npz(path: str | Path, fields, family, stem, k) -> Path:
    """Write whole fields for care_predict.py: fields float32 [N, H, W]; family, stem: N names (letters,
    digits, '.', '_', '-'); k: N ints. Raises ValueError."""
    fields = _stack("fields", fields)
    family, stem, k = list(map(str, family)), list(map(str, stem)), [int(v) for v in k]
    if not len(family) == len(stem) == len(k) == len(fields):
        raise ValueError(f"fields ({len(fields)}), family ({len(family)}), stem ({len(stem)}) and k ({len(k)}) "
                         "must have one entry per field")
    bad = [name for name in family + stem if not _NAME.match(name)]
    if bad:
        raise ValueError(f"family/stem names must be plain file names, got {bad[:3]}")
    keys = list(zip(family, stem, k, strict=True))
    if len(set(keys)) != len(keys):
        raise ValueError("two fields share one (family, stem, k): their predictions would overwrite each other")
    path = Path(path)
    np.savez(path, fields=fields, family=np.array(family), stem=np.array(stem), k=np.array(k, dtype=np.int64))
    return path


def read_fields_npz(path: str | Path) -> tuple[np.ndarray, list[tuple[str, str, int]]]:
    """fields float32 [N, H, W] and the (family, stem, k) of each, as ``write_fields_npz`` wrote them."""
    with np.load(path) as data:
        fields = _stack("fields", data["fields"])
        keys = [(str(f), str(s), int(k)) for f, s, k in zip(data["family"], data["stem"], data["k"], strict=True)]
    return fields, keys


def prediction_path(out_dir: str | Path, family: str, stem: str, k: int) -> Path:
    """DIR/<family>/<stem>_k<k>.npy: where care_predict.py writes one field's prediction."""
    return Path(out_dir) / family / f"{stem}_k{int(k)}.npy"


def read_prediction(out_dir: str | Path, family: str, stem: str, k: int) -> np.ndarray:
    """One prediction, float32 [H, W] in the input's intensity scale. Raises FileNotFoundError."""
    return np.load(prediction_path(out_dir, family, stem, k)).astype(np.float32)
