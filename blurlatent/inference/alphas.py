"""Where Eq. 3's α comes from, for every caller of deblur: the command line, the Python API, napari and export.

α is given (``alpha``), or it comes from two planes toward a target, α = (target − less blurry) / (target −
blurriest). The planes are ``planes`` (focal positions), the stack planes ``z`` (indices), or the
``BBBC006_v1_images_z_XX`` folders of two BBBC006 files; the target is a plane, or ``"auto"``: the focus that
``prepare.focus`` finds in the stack (the default for stacks, said in the output). Refused in one line:

* contradictory sources — ``alpha`` beside planes or a target plane, ``planes`` that differ from ``z`` or from
  the folder names, ``"auto"`` without a stack to look in;
* two single-plane files with planes but no target (no silent plane 16: only BBBC006 folder names imply it);
* a target outside the stack's planes, and a focus found at its first or last plane (it lies outside);
* ``z`` out of the stack's range, before any α is computed, and planes that do not lead to the target.

In physical units: where a stack lists each plane's z (OME ``Plane PositionZ``, ``Stack.z_um``), α is
(target − less blurry) / (target − blurriest) in µm, so unevenly spaced planes get the α of their real distances
(evenly spaced ones the same α as their indices); ``plane_z_um`` and ``defocus_um`` give planes' z in µm.

Blur's levels (``blur_alphas``: values, or N evenly spaced steps) are checked here too; neither needs torch, so
the command line checks α before it names the model or loads it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np

from blurlatent.bbbc006 import IN_FOCUS_PLANE, plane_from_path
from blurlatent.errors import UsageError
from blurlatent.files.stacks import Stack
from blurlatent.inference.inputs import check_stack_z, check_z, read_file
from blurlatent.nets.latent import (
    alpha_from_planes,
    check_blur_alpha,
    check_deblur_alpha,
    steps_to_alphas,
)
from blurlatent.prepare.focus import MEASURES, best_plane, focus_outside

AUTO: Final = "auto"
SWEEP_STEPS = 7  # --sweep: α = 1/8 … 7/8


def parse_target(value) -> float | str | None:
    """The target as given: None (not given), ``"auto"``, or a finite plane number (a number or its text, as
    ``--target`` passes it); UsageError naming ``target`` otherwise."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        try:
            number = float(text)
        except ValueError:
            number = math.nan
    else:
        number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number):
        raise UsageError(f"{{target}} {value!r}: give the in-focus plane as a number, or auto (the focus found in "
                         "the stack)", "target")
    return number


def planes_from_paths(path_a, path_b) -> tuple[int, int] | None:
    """Focal planes of two BBBC006 files inside (or two folders named) ``..._z_XX``, or None when either is not."""
    pa, pb = (plane_from_path(Path(p) / "x" if Path(p).is_dir() else p) for p in (path_a, path_b))
    return None if pa is None or pb is None else (pa, pb)


class DeblurLevels(NamedTuple):
    """The α levels of one deblur job, and where they came from (for the line the command prints)."""

    alphas: list[float]
    planes: tuple[float, float] | None = None  # the two planes α came from; None when α was given
    target: float | None = None  # the plane they lead to
    found_by: str | None = None  # the focus measure that found ``target`` in the stack (target "auto")
    z_um: tuple[float, float, float] | None = None  # z (µm) of the planes and target where the stack lists them

    def lines(self) -> list[str]:
        """``target = z20 (focus found by normvar)`` when it was found, ``alpha = … from planes …`` (and their z in
        µm where α came from them)."""
        if self.planes is None or self.target is None:
            return []
        alpha = alpha_from_planes(*(self.z_um or (*self.planes, self.target)))
        found = [f"target = z{self.target:g} (focus found by {self.found_by})"] if self.found_by else []
        at = "" if self.z_um is None else f" (z {', '.join(f'{v:g}' for v in self.z_um)} µm)"
        return [*found, f"alpha = {alpha:.4g} from planes {self.planes[0]:g}, {self.planes[1]:g} toward "
                        f"{self.target:g}{at}"]


@dataclass(frozen=True)
class AlphaSource:
    """Eq. 3's α of a deblur job as the caller gave it, checked (``alpha_source``); ``levels`` makes the α list,
    for a stack job (``in_stack``) from the stack itself."""

    alpha: float | None = None
    planes: tuple[float, float] | None = None  # focal positions, or the stack indices ``z`` (``in_stack``)
    target: float | str | None = None  # a plane, or "auto" (in a stack only)
    sweep: bool = False
    in_stack: bool = False
    measure: str = MEASURES[0]

    @property
    def empty(self) -> bool:
        """No α at all: neither ``alpha`` nor planes nor a sweep."""
        return self.alpha is None and self.planes is None and not self.sweep

    @property
    def needs_stack(self) -> bool:
        """α comes from the stack's planes: ``levels`` needs the stack (its range, its focus)."""
        return self.in_stack and self.alpha is None

    def levels(self, stack: Stack | None = None, name: str | None = None) -> DeblurLevels:
        """The α list (``sweep`` adds 1/8 … 7/8) and where it came from. A stack job (``needs_stack``) checks
        ``z`` against ``stack`` first, then the target (``"auto"``: found by ``measure``; a plane: inside the
        stack), then the planes' order; UsageError naming the parameter at fault."""
        if self.alpha is not None or self.planes is None:
            return DeblurLevels(self.swept([check_deblur_alpha(self.alpha, warn=False)] if self.alpha is not None
                                           else []))  # Predictor.deblur warns once about a large gain
        z_um = None
        if self.needs_stack:
            if stack is None:
                raise ValueError("AlphaSource.levels: a stack job needs its stack")
            target, found_by = stack_target(stack, self, name)
            z_um = listed_z(stack, (*self.planes, target))
        else:
            assert isinstance(self.target, float)  # alpha_source leaves "auto" to stacks
            target, found_by = self.target, None
        alpha = planes_alpha(self.planes, target, found_by, "z" if self.in_stack else "planes")
        if z_um is not None:  # the planes' own z: unevenly spaced planes get the α of their distances
            alpha = planes_alpha((z_um[0], z_um[1]), z_um[2], found_by, "z")
        return DeblurLevels(self.swept([alpha]), self.planes, target, found_by, z_um)

    def swept(self, alphas: list[float]) -> list[float]:
        return sorted(set(alphas) | set(steps_to_alphas(SWEEP_STEPS))) if self.sweep else alphas


def stack_target(stack: Stack, source: AlphaSource, name: str | None = None) -> tuple[float, str | None]:
    """(the target plane of a stack job, the measure that found it or None): ``z`` checked against the stack
    first, then the target — ``"auto"``: the focus found (refused at the stack's first or last plane), a
    number: inside the stack's planes."""
    assert source.planes is not None
    name = name or (str(stack.path) if stack.path is not None else "the stack")
    check_stack_z(stack, (int(source.planes[0]), int(source.planes[1])), name)  # z in range, before any α
    depth = stack.plane_count
    if source.target == AUTO:
        if stack.planes is not None:
            raise ValueError("stack_target: the focus is found in every plane; read the stack whole")
        plane = best_plane(stack.data, source.measure)
        outside = focus_outside(plane, depth)
        if outside:
            raise UsageError(f"{name}: {outside}; pass the in-focus plane as {{target=P}}, or {{alpha}}", "target",
                             "alpha")
        return float(plane), source.measure
    assert isinstance(source.target, float)  # parse_target: a number or "auto"
    target = source.target
    if not 0 <= target <= depth - 1:
        raise UsageError(f"{{target}} {target:g} is not a plane of {name}: it has {depth} planes, 0..{depth - 1}; pass "
                         f"{{target}} inside them, or {{target=auto}} for the focus found in the stack", "target")
    return target, None


def plane_z_um(stack: Stack, plane: float) -> float | None:
    """The z in µm of (a fractional) ``plane`` of ``stack`` from its first plane: from the z the file lists for each
    plane (``Stack.z_um``, interpolated between planes), else ``plane`` × its z step; None where it says neither."""
    if stack.z_um is not None:
        return float(np.interp(plane, np.arange(len(stack.z_um)), stack.z_um) - stack.z_um[0])
    step = stack.pixel_size[2]
    return None if step is None else plane * step


def listed_z(stack: Stack, planes: Sequence[float]) -> tuple[float, float, float] | None:
    """The z in µm of three planes (blurriest, less blurry, target) where ``stack`` lists each plane's z, else None
    (an even z step gives the α of the plane indices)."""
    if stack.z_um is None:
        return None
    a, b, c = (plane_z_um(stack, p) for p in planes)
    return None if a is None or b is None or c is None else (a, b, c)


def defocus_um(stack: Stack, planes: Sequence[float] | None, target: float | None) -> float | None:
    """How far (µm) the first of ``planes`` (the blurriest) of ``stack`` lies from ``target``; None where either is
    None or the stack has no z in µm."""
    if planes is None or target is None:
        return None
    a, b = plane_z_um(stack, planes[0]), plane_z_um(stack, target)
    return None if a is None or b is None else abs(b - a)


def planes_alpha(planes: tuple[float, float], target: float, found_by: str | None, param: str) -> float:
    """``alpha_from_planes`` naming ``param``; toward a focus found (``found_by``), a message that says so."""
    try:
        return alpha_from_planes(planes[0], planes[1], target, param=param)
    except UsageError:
        if found_by is None:
            raise
        raise UsageError(f"{{{param}}} {planes[0]:g} {planes[1]:g} do not lead to the focus found at z{target:g} "
                         f"({found_by}): the less-blurry plane must lie between the blurriest plane and it; choose "
                         f"{{{param}}} on one side of the focus, or pass {{target}}", param, "target") from None


def alpha_source(alpha: float | None, planes: Sequence[float] | None, target, sweep: bool = False, *,
                 paths: tuple[Path, Path] | None = None, z: Sequence[int] | None = None) -> AlphaSource:
    """Eq. 3's α source of a deblur job, checked before any input is read: ``alpha``; else ``planes``, the stack
    planes ``z`` or the BBBC006 folder names of ``paths``, toward ``target`` (``parse_target``; a stack's default
    is ``"auto"``, BBBC006 folder names' plane 16). UsageError for contradictory sources (see the module)."""
    target = parse_target(target)
    given = None if planes is None else (float(planes[0]), float(planes[1]))
    if alpha is not None:
        if given is not None:
            raise UsageError("{alpha} or {planes}: give one, not both", "alpha", "planes")
        if isinstance(target, float):
            raise UsageError(f"{{alpha}} or {{target}} {target:g}: alpha is Eq. 3's alpha itself and a target serves "
                             "planes; give one", "alpha", "target")
        return AlphaSource(alpha=alpha, sweep=sweep, in_stack=z is not None)
    if z is not None:
        first, second = check_z(z)
        if given is not None and given != (first, second):
            raise UsageError(f"{{planes}} {given[0]:g} {given[1]:g} contradict {{z}} {first} {second}: the stack "
                             "planes give alpha; leave {planes} out", "planes", "z")
        return AlphaSource(planes=(first, second), target=AUTO if target is None else target, sweep=sweep,
                           in_stack=True)
    named = planes_from_paths(*paths) if paths is not None else None
    if given is not None and named is not None and given != named and paths is not None:
        raise UsageError(f"{{planes}} {given[0]:g} {given[1]:g} contradict the BBBC006 folder names of {paths[0]} "
                         f"and {paths[1]} (planes {named[0]}, {named[1]}); leave {{planes}} out", "planes")
    if (given or named) is not None and target == AUTO:
        raise UsageError("{target=auto} finds the focus in a z-stack; for two single-plane images pass {target} as "
                         "a plane number, or {alpha}", "target", "alpha")
    if given is not None and named is None and target is None:
        raise UsageError(f"{{planes}} {given[0]:g} {given[1]:g} need the in-focus plane they lead to: pass "
                         "{target=P} (e.g. 16 for BBBC006), or {alpha}", "planes", "target", "alpha")
    if given is None and named is None:
        if isinstance(target, float):
            raise UsageError(f"{{target}} {target:g} needs the planes it is the target of: pass {{planes=P1 P2}}, or "
                             "{alpha} without it", "target", "planes", "alpha")
        if paths is not None and not sweep:
            raise UsageError(f"{{alpha}} or {{planes}}: give one; the planes of {paths[0]} and {paths[1]} are not in "
                             "BBBC006_v1_images_z_XX folder names", "alpha", "planes")
        return AlphaSource(sweep=sweep)
    plane = float(IN_FOCUS_PLANE) if target is None or target == AUTO else target  # BBBC006 names: plane 16
    return AlphaSource(planes=given or named, target=plane, sweep=sweep)


def stack_levels(source: AlphaSource, path: Path, *, channel=None, series: int | None = None,
                 axes: str | None = None) -> DeblurLevels:
    """``source.levels`` of the stack file ``path``: read whole when the target is found in it (every plane is
    needed), else only its facts, no plane (the target and ``z`` are checked against its depth; the job reads z)."""
    if not source.needs_stack:
        return source.levels(None, str(path))
    planes = None if source.target == AUTO else ()
    return source.levels(read_file(path, channel, series, axes, planes), str(path))


def blur_alphas(alphas: Sequence[float] | None, steps: int | None, extrapolate: bool = False) -> list[float]:
    """The blur levels from a list of α or from ``steps`` evenly spaced ones (exactly one of the two)."""
    if bool(alphas) == (steps is not None):
        raise UsageError("{alpha}/{steps}: give alpha (one or more values) or steps N, one of the two", "alpha",
                         "steps")
    if steps is not None:
        return steps_to_alphas(steps)
    return [check_blur_alpha(a, extrapolate) for a in alphas or ()]


def deblur_alphas(alpha: float | None, planes: Sequence[float] | None, target, sweep: bool = False,
                  paths: tuple[Path, Path] | None = None) -> tuple[list[float], tuple[float, float] | None]:
    """Eq. 3's α list and the planes it came from, for two single planes (``alpha_source`` without a stack)."""
    levels = alpha_source(alpha, planes, target, sweep, paths=paths).levels()
    return levels.alphas, levels.planes
