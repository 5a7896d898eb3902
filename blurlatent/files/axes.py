"""What the axes of a file's image are and which channel is meant: the axes the file says or the ones the user
gives (``--axes``, for a TIFF without axes metadata), channel names from ImageJ slice labels, and the channel a
``channel`` index or name chooses. ``stacks.read_stack`` reads by them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blurlatent.errors import UsageError

AXES_LETTERS = "TCZYX"  # the axes a z-stack's array may have, in any order ending in YX


def check_axes_letters(axes: str, need_z: bool = False) -> str:
    """``axes`` upper-cased when it is letters of TCZYX, each once, ending in YX (with Z where ``need_z``);
    UsageError naming axes otherwise. The text only: ``given_axes`` fits it to a file's dimensions."""
    text = str(axes).strip().upper()
    if (len(set(text)) != len(text) or not set(text) <= set(AXES_LETTERS) or not text.endswith("YX")
            or (need_z and "Z" not in text)):
        raise UsageError(f"{{axes}} {axes}: give one letter of {AXES_LETTERS} per dimension, each once, ending in YX"
                         f"{', with Z' if need_z else ''}, e.g. {{axes=ZYX}} or {{axes=CZYX}}", "axes")
    return text


def given_axes(path: Path, given: str | None, axes: str, shape: tuple[int, ...]) -> str:
    """The axes to read ``path`` by: the file's ``axes``, or ``given`` (``--axes``: a file without axes metadata,
    e.g. a plain CZYX TIFF that tifffile calls QQYX) when it has one letter per dimension; UsageError naming axes."""
    if given is None:
        return axes
    text = check_axes_letters(given)
    if len(text) != len(shape):
        raise UsageError(f"{{axes}} {given}: {path} has {len(shape)} dimensions (shape {shape}, axes {axes} in the "
                         f"file); give one letter per dimension, e.g. {{axes={'TCZYX'[-len(shape):]}}}", "axes")
    return text


def imagej_names(labels, axes: str, shape: tuple[int, ...]) -> list[str]:
    """Channel names from ImageJ slice labels (ImageJ keeps no other): the label all planes of a channel share, as
    Fiji's "Set Label" on each channel leaves; [] when there is one channel or the labels do not name channels."""
    if "C" not in axes or axes[-2:] != "YX" or not isinstance(labels, list) or len(labels) != np.prod(shape[:-2]):
        return []
    by_plane = np.asarray([str(v) for v in labels], dtype=object).reshape(shape[:-2])  # ImageJ's order: T, Z, C
    shared = [set(np.take(by_plane, [c], axis=axes.index("C")).reshape(-1)) for c in range(shape[axes.index("C")])]
    names = [next(iter(s)) if len(s) == 1 else "" for s in shared]
    return names if any(names) and len(set(names)) == len(names) else []


def channel_index(path: Path, count: int, channel: int | str | None, names: list[str]) -> int:
    """The index of ``channel`` (an index, or one of ``names``) among the ``count`` channels of ``path``; UsageError
    naming channel and the choices when it is missing, not there, or a name two channels share."""
    named = f" ({', '.join(f'{i}: {n}' for i, n in enumerate(names))})" if any(names) else ""
    fix = f"pass {{channel=0..{count - 1}}}" + (" or a channel name" if any(names) else "")
    if channel is None:
        raise UsageError(f"{path}: holds {count} channels{named}; {fix}", "channel")
    if isinstance(channel, str):
        if not channel or channel not in names:
            raise UsageError(f"{{channel}} {channel} does not exist: {path} holds {count} channels{named}; {fix}",
                             "channel")
        same = [i for i, n in enumerate(names) if n == channel]
        if len(same) > 1:  # which one was meant cannot be told: never the first silently
            raise UsageError(f"{{channel}} {channel} names channels {', '.join(map(str, same))} of {path}; pass the "
                             f"index instead, {{channel={same[0]}}}", "channel")
        return names.index(channel)
    if not 0 <= int(channel) < count:
        raise UsageError(f"{{channel}} {channel} does not exist: {path} holds {count} channels{named}; {fix}",
                         "channel")
    return int(channel)
