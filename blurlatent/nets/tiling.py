"""Whole images through a fully convolutional model: reflect padding to 2**depth and overlapping tiles.

Large images are cut into overlapping tiles whose origins sit on the 2**depth grid, so each tile's
stride-2 grids match the whole image's. In eval mode BatchNorm is a per-channel affine map, so a
tile's output equals the whole image's wherever the receptive field stays inside the tile; the blend
window is zero within ``receptive_radius`` of an inner tile edge and ramps up smoothly (a raised
cosine) after it, so tiled and whole inference agree to float rounding.
"""

from __future__ import annotations

import math

import numpy as np

from blurlatent.errors import UsageError

# Beyond this many (padded) pixels an image is tiled by default: one 2048x2048 image through the
# paper-size model holds ~1 GiB per full-resolution 64-channel activation.
MAX_WHOLE_PIXELS = 2048 * 2048
DEFAULT_TILE = 512


def pad_to_multiple(image: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad the last two axes at the bottom/right up to multiples of ``multiple``.

    Returns (padded array, original (H, W)); ``crop_to(padded, hw)`` undoes it exactly.
    """
    h, w = image.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return image, (h, w)
    # numpy reflects repeatedly when the pad exceeds the image (torch's reflect refuses).
    widths = [(0, 0)] * (image.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(image, widths, mode="reflect"), (h, w)


def reflect_pad_in_place(padded: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Fill the last two axes of ``padded`` beyond its top-left ``hw`` as ``pad_to_multiple`` pads (numpy's
    reflect), in place: an image written into a padded array needs no second, padded copy. Returns ``padded``."""
    h, w = hw
    ph, pw = padded.shape[-2] - h, padded.shape[-1] - w
    if ph >= h or pw >= w:  # numpy reflects repeatedly when the pad reaches past the image: its own way (tiny images)
        widths = [(0, 0)] * (padded.ndim - 2) + [(0, ph), (0, pw)]
        padded[...] = np.pad(padded[..., :h, :w], widths, mode="reflect")
        return padded
    if pw:
        padded[..., :h, w:] = padded[..., :h, w - 2 - np.arange(pw)]
    if ph:
        padded[..., h:, :] = padded[..., h - 2 - np.arange(ph), :]
    return padded


def crop_to(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The top-left (H, W) of the last two axes."""
    return image[..., : hw[0], : hw[1]]


def receptive_radius(multiple: int) -> int:
    """An output pixel depends only on inputs closer than this: 2·2**depth px (``2 * multiple``).

    The encoder's 3x3 stride-2 convs reach 2**depth − 1 px, the decoder's transposed convs about as far
    again; gradients of the autoencoder give exactly 2·2**depth − 1 for depth 3 and 5 (a test checks it).
    """
    return 2 * multiple


def tile_starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Origins of tiles of size ``tile`` covering ``length``, on the ``multiple`` grid, overlapping by ≥ ``overlap``.

    ``length``, ``tile`` and ``overlap`` are multiples of ``multiple``; spacing is as even as the grid allows.
    """
    if length <= tile:
        return [0]
    span, stride = (length - tile) // multiple, (tile - overlap) // multiple
    if stride < 1:
        raise UsageError(f"{{tile}} {tile} is too small: it must exceed the overlap {overlap} by at least {multiple}",
                         "tile")
    gaps = math.ceil(span / stride)
    return [round(k * span / gaps) * multiple for k in range(gaps + 1)]


def edge_weights(start: int, size: int, length: int, margin: int, ramp: int) -> np.ndarray:
    """1-D blend weights: 0 within ``margin`` of an inner tile edge, raised cosine over ``ramp``, then 1."""
    d = np.arange(size, dtype=np.float64)
    w = np.ones(size)
    u = lambda dist: np.clip((dist - margin) / ramp, 0.0, 1.0)
    if start > 0:
        w = np.minimum(w, 0.5 - 0.5 * np.cos(np.pi * u(d)))
    if start + size < length:
        w = np.minimum(w, 0.5 - 0.5 * np.cos(np.pi * u(size - 1 - d)))
    return w


def plan_tiles(shape: tuple[int, int], multiple: int, radius: int,
               tile: int | None) -> list[tuple[slice, slice, np.ndarray | None]]:
    """Tiles for a padded (H, W): a list of (rows, cols, weight [h, w] or None for the single whole tile).

    ``tile=None`` runs whole unless H·W > MAX_WHOLE_PIXELS (then tiles of DEFAULT_TILE); ``0`` forces
    whole; ``N`` uses tiles of N px (rounded up to ``multiple``) when the image is larger than that.
    """
    h, w = shape
    if tile is None:
        tile = 0 if h * w <= MAX_WHOLE_PIXELS else DEFAULT_TILE
    if tile < 0:
        raise UsageError(f"{{tile}} {tile}: give a tile size in pixels, or 0 for whole-image inference", "tile")
    if tile == 0 or (h <= tile and w <= tile):
        return [(slice(0, h), slice(0, w), None)]
    tile = -(-tile // multiple) * multiple
    margin, ramp = radius, multiple
    overlap = 2 * margin + ramp  # at any pixel of an overlap one of the two tiles is past its margin
    if tile < overlap + multiple:
        raise UsageError(f"{{tile}} {tile} is too small for this model: use at least {overlap + multiple} (the "
                         f"receptive field needs a {margin}-px margin)", "tile")
    th, tw = min(tile, h), min(tile, w)
    plan: list[tuple[slice, slice, np.ndarray | None]] = []
    # a tile's weight depends only on which of its edges are inner: nine arrays at most, shared (not one per tile)
    shared: dict[tuple[bool, ...], np.ndarray] = {}
    for y in tile_starts(h, th, overlap, multiple):
        for x in tile_starts(w, tw, overlap, multiple):
            inner = (y > 0, y + th < h, x > 0, x + tw < w)
            if inner not in shared:
                wy, wx = edge_weights(y, th, h, margin, ramp), edge_weights(x, tw, w, margin, ramp)
                shared[inner] = np.outer(wy, wx).astype(np.float32)
            plan.append((slice(y, y + th), slice(x, x + tw), shared[inner]))
    return plan


