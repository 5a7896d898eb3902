"""BBBC006v1's facts, written once: planes, the in-focus plane, the paper's planes and triplets, file names.

BBBC006v1 (U2OS cells, Broad Bioimage Benchmark Collection): 34 focal planes z00..z33, 2 µm apart, z16
found in focus by the microscope's autofocus; w1 = Hoechst 33342 (nuclei), w2 = phalloidin (actin);
696x520 16-bit LZW TIFFs at 0.645 µm per pixel. The paper (§4.1) uses the even planes z00..z16 and seven
triplets toward focus.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from blurlatent.errors import UsageError

N_PLANES = 34  # z00..z33
IN_FOCUS_PLANE = 16
PLANE_STEP_UM = 2.0
PIXEL_SIZE_UM = 0.645  # µm per pixel (synth draws at it too)
CHANNELS = ("w1", "w2")
PAPER_PLANES = tuple(range(0, IN_FOCUS_PLANE + 1, 2))  # 0, 2, ..., 16
# (left, target, right) = (blurriest, middle, sharpest) plane; α = 0.5 in each (Eq. 2)
PAPER_TRIPLETS = ((0, 8, 16), (0, 4, 8), (8, 12, 16), (0, 2, 4), (4, 6, 8), (8, 10, 12), (12, 14, 16))
# Every (left, target, right) of the paper's planes with right = the in-focus plane: 28 triplets, uneven
# ones included (α from the planes, ``latent.triplet_weight``), so training sees every pair a user deblurs
# toward focus and every level between focus and the blurriest plane (``train --triplets focus``).
FOCUS_TRIPLETS = tuple((left, target, IN_FOCUS_PLANE) for left in PAPER_PLANES for target in PAPER_PLANES
                       if left < target < IN_FOCUS_PLANE)
PLATE_PREFIX = "mcf-z-stacks-03212011"

# Real BBBC006v1 names carry NO separator between the channel digit and the UUID:
#   mcf-z-stacks-03212011_a01_s1_w1a571d43d-5554-47fd-bb54-5db68290e5a7.tif
# (the google/microscopeimagequality copies add a "00_" prefix).
BBBC_NAME = re.compile(
    r"^(?:\d+_)?(?P<prefix>mcf-z-stacks-\d+)_(?P<well>[a-p]\d{2})_s(?P<site>\d+)_w(?P<channel>\d)"
    r"(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\.tiff?$"
)
BBBC_PLANE_DIR = re.compile(r"BBBC006_v1_images_z_(?P<plane>\d{2})(?:\.zip)?$")


@dataclass(frozen=True, order=True)
class FieldKey:
    """One imaging field and channel of BBBC006, the same on every plane (the UUID is not)."""

    well: str
    site: int
    channel: str  # "w1" or "w2"

    @property
    def name(self) -> str:
        return f"{self.well}_s{self.site}_{self.channel}"


def parse_bbbc_name(name: str) -> FieldKey | None:
    """(well, site, channel) of a BBBC006 file name, or None when the name is not one."""
    match = BBBC_NAME.match(Path(name).name)
    if match is None:
        return None
    return FieldKey(match["well"], int(match["site"]), f"w{match['channel']}")


def plane_from_path(path: str | Path) -> int | None:
    """The z plane of a file inside a ``BBBC006_v1_images_z_XX`` folder (or zip), else None."""
    for part in reversed(Path(path).parts[:-1]):
        match = BBBC_PLANE_DIR.match(part)
        if match:
            return int(match["plane"])
    return None


def parse_planes(text: str, limit: int = N_PLANES - 1, lowest: int = 0) -> list[int]:
    """Planes from ``start:stop[:step]`` (stop INCLUSIVE: ``0:16:2`` is the paper's nine planes 0, 2, …, 16),
    a comma list (``0,8,16``) or one number. Returns sorted unique ints in ``lowest``..``limit`` (a negative
    ``lowest`` allows planes relative to focus, ``-16:0:2``).

    Raises UsageError naming the text and the fix.
    """
    text = str(text).strip()
    hint = "use START:STOP[:STEP] with an inclusive stop (e.g. 0:16:2) or a list such as 0,8,16"
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop, step = parts[0], parts[1], (parts[2] if len(parts) == 3 else 1)
            if step <= 0 or stop < start:
                raise UsageError(f"{{planes}} {text!r}: need START <= STOP and STEP > 0; {hint}", "planes")
            planes = list(range(start, stop + 1, step))
        else:
            planes = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"{{planes}} {text!r} is not a plane range; {hint}", "planes") from None
    if not planes:
        raise UsageError(f"{{planes}} {text!r} selects no plane; {hint}", "planes")
    bad = [p for p in planes if p < lowest or p > limit]
    if bad:
        raise UsageError(f"{{planes}} {text!r}: plane {bad[0]} is outside {lowest}..{limit}; {hint}", "planes")
    return sorted(set(planes))


def format_planes(planes) -> str:
    """Inverse of ``parse_planes`` for printing: ``[0, 2, …, 16]`` → ``0:16:2``."""
    planes = sorted(planes)
    if len(planes) > 2:
        step = planes[1] - planes[0]
        if step > 0 and all(b - a == step for a, b in itertools.pairwise(planes)):
            return f"{planes[0]}:{planes[-1]}" + (f":{step}" if step != 1 else "")
    return ",".join(str(p) for p in planes)

