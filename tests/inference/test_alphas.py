"""alphas: where Eq. 3's α comes from. The focus found in a stack whose focus is not BBBC006's 16 (``target``
"auto", the default for stacks), through the Python API; contradictory sources, a target outside the stack and
a focus at its first or last plane refused in one line naming the parameter (issue 26 item 2; issue 28 causes
2, 3, 17). The focus finder's robustness to specks is in ``tests/prepare/test_focus.py``."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.infer_model import tiny_checkpoint
from helpers.stack_data import make_stack

import blurlatent
from blurlatent.errors import UsageError
from blurlatent.files.stacks import Stack
from blurlatent.inference.alphas import AUTO, alpha_source, parse_target
from blurlatent.inference.predictor import load_model
from blurlatent.nets.latent import alpha_from_planes


def focus_stack(focus: int = 5, planes: int = 12) -> np.ndarray:
    """uint16 ZYX, 64x64: a random scene, plane z blurred by a Gaussian of width 1.2·|z − focus|."""
    return make_stack(focus, planes, channels=1, size=(64, 64))[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(tiny_checkpoint(tmp_path_factory), device="cpu")


def test_auto_target_is_the_focus_of_the_stack(model):
    """Focus at z5 of 12 planes: planes 0 and 3 lead to it with α = (5 − 3)/(5 − 0) = 0.4, as the API's default."""
    stack = focus_stack()
    levels = alpha_source(None, None, None, z=(0, 3)).levels(Stack(stack, "ZYX"))
    assert (levels.target, levels.found_by, levels.alphas) == (5.0, "normvar", [pytest.approx(0.4)])
    assert levels.lines() == ["target = z5 (focus found by normvar)", "alpha = 0.4 from planes 0, 3 toward 5"]
    auto = blurlatent.deblur(model, stack, z=(0, 3), axes="ZYX")
    np.testing.assert_array_equal(auto, blurlatent.deblur(model, stack, z=(0, 3), target=5))
    np.testing.assert_array_equal(auto, blurlatent.deblur(model, stack[0], stack[3], alpha=0.4))
    other_side = alpha_source(None, None, "auto", z=(11, 8)).levels(Stack(stack, "ZYX"))
    assert other_side.alphas == [pytest.approx(0.5)]  # (5 − 8)/(5 − 11)


@pytest.mark.parametrize("focus, side", [(11, "last"), (15, "last"), (0, "first"), (-4, "first")])
def test_a_focus_at_the_stack_end_is_refused(model, focus, side):
    """At its last (first) plane, or past it, the measure still rises at the end: the focus lies outside."""
    stack = focus_stack(focus)
    with pytest.raises(UsageError, match=f"peaks at its {side} plane.*lies outside the stack; pass the in-focus "
                                         "plane as target=P, or alpha"):
        blurlatent.deblur(model, stack, z=(3, 5), axes="ZYX")


def test_target_outside_the_stack_and_z_before_alpha(model):
    stack = focus_stack(planes=10)
    with pytest.raises(UsageError, match=r"target 16 is not a plane of the stack: it has 10 planes, 0\.\.9; "
                                         "pass target inside them, or target=auto"):
        blurlatent.deblur(model, stack, z=(0, 8), target=16)  # cause 3: "toward 16" on a 10-plane stack
    with pytest.raises(UsageError, match=r"z 0 10: plane 10 is out of range: the stack has 10 planes"):
        blurlatent.deblur(model, stack, z=(0, 10), target=9)  # cause 17: the range first, no "alpha would be"
    with pytest.raises(UsageError, match="z 4 8 do not lead to target 6"):
        blurlatent.deblur(model, stack, z=(4, 8), target=6)  # cause 17: named z, not planes
    with pytest.raises(UsageError, match=r"z 0 8 do not lead to the focus found at z5 \(normvar\).*choose z on one"):
        blurlatent.deblur(model, stack, z=(0, 8))


@pytest.mark.parametrize("args, needle", [
    (dict(alpha=0.5, planes=(0, 8)), "alpha or planes: give one, not both"),
    (dict(alpha=0.5, target=16), "alpha or target 16: alpha is Eq. 3's alpha itself"),
    (dict(planes=(0, 4), z=(0, 8)), "planes 0 4 contradict z 0 8"),  # cause 2
    (dict(planes=(0, 8)), "planes 0 8 need the in-focus plane they lead to: pass target=P"),  # no silent 16
    (dict(planes=(0, 8), target="auto"), "target=auto finds the focus in a z-stack"),
    (dict(target=12), "target 12 needs the planes it is the target of"),
    (dict(target="near"), "target 'near': give the in-focus plane as a number, or auto"),
    (dict(z=(3, 3)), "z 3 3: the two planes must differ"),
])
def test_contradictory_or_incomplete_sources_are_refused(args, needle):
    alpha, planes, target = args.pop("alpha", None), args.pop("planes", None), args.pop("target", None)
    with pytest.raises(UsageError, match=needle):
        alpha_source(alpha, planes, target, **args)


def test_bbbc006_folder_names_imply_16_and_must_agree_with_planes(tmp_path):
    z0 = tmp_path / "BBBC006_v1_images_z_00" / "a.tif"
    z8 = tmp_path / "BBBC006_v1_images_z_08" / "a.tif"
    assert alpha_source(None, None, None, paths=(z0, z8)).levels().alphas == [0.5]
    assert alpha_source(None, (0, 8), None, paths=(z0, z8)).levels().target == 16.0  # the same planes: fine
    assert alpha_source(None, None, 12, paths=(z0, z8)).levels().alphas == [pytest.approx(alpha_from_planes(0, 8, 12))]
    with pytest.raises(UsageError, match="planes 0 4 contradict the BBBC006 folder names"):  # cause 2
        alpha_source(None, (0, 4), None, paths=(z0, z8))
    assert parse_target(" Auto ") == AUTO and parse_target("20") == 20.0 and parse_target(None) is None
