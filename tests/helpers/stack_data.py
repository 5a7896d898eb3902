"""Tiny z-stack files for the own-stack tests (prepare, ownstacks): random textures defocused by a Gaussian
whose width grows with the distance from a known focus plane, written as OME-TIFF (CZYX), ImageJ
hyperstacks (TZCYX) or plain multi-page TIFF (ZYX), under arbitrary names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

SIZE = (40, 48)  # H, W


def make_stack(focus: int, planes: int = 9, channels: int = 2, seed: int = 0, size=SIZE) -> np.ndarray:
    """uint16 CZYX: each channel a smooth random texture, plane z blurred by σ = 1.2·|z − focus| px."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(channels):
        base = ndimage.gaussian_filter(rng.random(size), 1.0)
        base = (base - base.min()) / np.ptp(base)
        out.append([100 + 1000 * ndimage.gaussian_filter(base, 1.2 * abs(z - focus)) for z in range(planes)])
    return np.asarray(out).astype(np.uint16)


def write_stack(path: Path, stack: np.ndarray) -> Path:
    """Write a CZYX stack: ``.ome.tif`` as OME CZYX, ``.tif`` names with "ij" as ImageJ TZCYX, else plain ZYX
    (one channel only)."""
    if path.name.endswith(".ome.tif"):
        tifffile.imwrite(path, stack, metadata={"axes": "CZYX"})
    elif "ij" in path.name:
        tifffile.imwrite(path, stack.transpose(1, 0, 2, 3)[None], imagej=True, metadata={"axes": "TZCYX"})
    else:
        assert stack.shape[0] == 1
        tifffile.imwrite(path, stack[0])
    return path


def write_stacks(folder: Path, focuses, planes: int = 9, channels: int = 2) -> dict[str, int]:
    """One stack per focus, alternately OME-TIFF and ImageJ (plain ZYX for one channel), names with spaces and
    no pattern; returns {field name: its focus plane}."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i, focus in enumerate(focuses):
        name = f"cells {i} day{7 - i}"
        suffix = ".ome.tif" if channels > 1 and i % 2 else (" ij.tif" if channels > 1 else ".tif")
        write_stack(folder / f"{name}{suffix}", make_stack(focus, planes, channels, seed=i))
        truth[name + (" ij" if suffix == " ij.tif" else "")] = focus
    return truth
