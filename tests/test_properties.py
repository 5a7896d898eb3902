"""Property tests (hypothesis): α arithmetic, plane → α, padding and tiling, BBBC006 names and plane lists.

Each property is an identity the code must satisfy for every input, checked on generated ones; the
database is off so a run writes nothing outside pytest's folders.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from blurlatent.bbbc006 import N_PLANES as N_BBBC_PLANES
from blurlatent.bbbc006 import FieldKey, format_planes, parse_bbbc_name, parse_planes, plane_from_path
from blurlatent.errors import UsageError
from blurlatent.nets.latent import alpha_from_planes, check_deblur_alpha, extrapolate_sharp, interpolate_latents
from blurlatent.nets.tiling import crop_to, pad_to_multiple, tile_starts

SETTINGS = settings(max_examples=50, deadline=None, database=None)

latents = st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)).flatmap(
    lambda shape: st.tuples(*(st.builds(lambda seed: np.random.default_rng(seed).normal(size=shape) * 10,
                                        st.integers(0, 2**32 - 1))
                              for _ in range(2)))
)


# --- Eq. 2 and Eq. 3 ---------------------------------------------------------------------------------


@SETTINGS
@given(z=latents, alpha=st.floats(0.0, 0.95))
def test_eq3_undoes_eq2(z, alpha):
    """A plane blurred to level a = 1 − α by Eq. 2 is brought back to the sharp latent by Eq. 3 with α
    (the docstrings' "blur level a is undone by deblur α = 1 − a")."""
    z_sharp, z_blurriest = z
    z_less_blurry = interpolate_latents(z_sharp, z_blurriest, 1.0 - alpha)
    recovered = extrapolate_sharp(z_blurriest, z_less_blurry, alpha)
    # Eq. 3 multiplies rounding errors by 1/(1 − α) ≤ 20
    np.testing.assert_allclose(recovered, z_sharp, rtol=0, atol=1e-11 * (1 + np.abs(z).max()) / (1 - alpha))


@SETTINGS
@given(z=latents, alpha=st.floats(0.0, 1.0))
def test_eq2_is_the_segment_between_the_codes(z, alpha):
    z_sharper, z_blurrier = z
    mixed = interpolate_latents(z_sharper, z_blurrier, alpha)
    # on the segment: the same convex combination of the endpoints in every coordinate
    np.testing.assert_allclose(mixed - z_blurrier, alpha * (z_sharper - z_blurrier), atol=1e-9 * (1 + np.abs(z).max()))
    np.testing.assert_array_equal(interpolate_latents(z_sharper, z_blurrier, 1.0), z_sharper)
    np.testing.assert_array_equal(interpolate_latents(z_sharper, z_blurrier, 0.0), z_blurrier)


@SETTINGS
@given(alpha=st.one_of(st.floats(1.0, 1e6), st.floats(-1e6, -1e-9), st.just(float("nan")), st.just(float("inf"))))
def test_deblur_alpha_outside_0_1_is_refused(alpha):
    with pytest.raises(UsageError, match="alpha"):
        check_deblur_alpha(alpha, warn=False)


# --- focal planes → α --------------------------------------------------------------------------------


@st.composite
def plane_triples(draw):
    """(blurriest, less blurry, target), the less-blurry plane in (blurriest, target], either side of focus
    (at the target itself α = 0: nothing to extrapolate; at the blurriest plane α would be 1)."""
    target = draw(st.integers(0, N_BBBC_PLANES - 1))
    blurriest = draw(st.integers(0, N_BBBC_PLANES - 1).filter(lambda b: b != target))
    lo, hi = sorted((blurriest, target))
    less = draw(st.integers(lo, hi).filter(lambda m: m != blurriest))
    return blurriest, less, target


@SETTINGS
@given(planes=plane_triples())
def test_alpha_places_the_less_blurry_plane_between(planes):
    b, m, t = planes
    alpha = alpha_from_planes(b, m, t)
    assert 0.0 <= alpha < 1.0
    # α is the weight of the blurriest plane: m = α b + (1 − α) t
    assert abs(alpha * b + (1 - alpha) * t - m) < 1e-9
    # the mirror image on the other side of focus gives the same α
    assert alpha_from_planes(2 * t - b, 2 * t - m, t) == pytest.approx(alpha, abs=1e-12)


@SETTINGS
@given(b=st.integers(0, 33), m=st.integers(0, 33), t=st.integers(0, 33))
def test_alpha_from_planes_refuses_what_does_not_lead_to_the_target(b, m, t):
    ok = b != t and min(b, t) <= m <= max(b, t) and m != b
    if ok:
        assert 0.0 <= alpha_from_planes(b, m, t) < 1.0
    else:
        with pytest.raises(UsageError):
            alpha_from_planes(b, m, t)


# --- padding and tiling ------------------------------------------------------------------------------


@SETTINGS
@given(h=st.integers(1, 70), w=st.integers(1, 70), lead=st.sampled_from([(), (1,), (2,), (2, 3)]),
       multiple=st.sampled_from([1, 2, 4, 8, 16, 32]), seed=st.integers(0, 2**32 - 1))
def test_pad_then_crop_is_the_identity(h, w, lead, multiple, seed):
    image = np.random.default_rng(seed).random(lead + (h, w)).astype(np.float32)
    padded, hw = pad_to_multiple(image, multiple)
    assert hw == (h, w)
    assert padded.shape[:-2] == lead
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert h <= padded.shape[-2] < h + multiple and w <= padded.shape[-1] < w + multiple
    np.testing.assert_array_equal(crop_to(padded, hw), image)


@SETTINGS
@given(multiple=st.sampled_from([4, 8, 16]), n=st.integers(1, 40), t=st.integers(1, 12), o=st.integers(0, 6))
def test_tiles_sit_on_the_grid_cover_and_overlap(multiple, n, t, o):
    length, tile, overlap = n * multiple, t * multiple, o * multiple
    assume(tile > overlap)
    starts = tile_starts(length, tile, overlap, multiple)
    assert starts[0] == 0 and all(s % multiple == 0 for s in starts)
    if length <= tile:
        assert starts == [0]
        return
    assert starts[-1] + tile == length  # the last tile ends at the edge
    assert all(b > a for a, b in itertools.pairwise(starts))
    assert all(a + tile - b >= overlap for a, b in itertools.pairwise(starts))  # neighbours overlap enough


# --- BBBC006 names and plane lists -------------------------------------------------------------------

wells = st.builds(lambda r, c: f"{r}{c:02d}", st.sampled_from("abcdefghijklmnop"), st.integers(1, 24))


@SETTINGS
@given(well=wells, site=st.integers(1, 9), channel=st.integers(1, 9), uid=st.uuids(),
       prefix=st.sampled_from(["", "00_", "17_"]), ext=st.sampled_from([".tif", ".tiff"]),
       folder=st.sampled_from(["", "BBBC006_v1_images_z_16/", "/data/x/"]))
def test_bbbc_names_parse_whatever_the_uuid(well, site, channel, uid, prefix, ext, folder):
    name = f"{folder}{prefix}mcf-z-stacks-03212011_{well}_s{site}_w{channel}{uid}{ext}"
    key = parse_bbbc_name(name)
    assert key == FieldKey(well, site, f"w{channel}")
    assert key.name == f"{well}_s{site}_w{channel}"
    # the UUID must follow the channel digit directly, as in the real download
    assert parse_bbbc_name(name.replace(f"_w{channel}{uid}", f"_w{channel}_{uid}")) is None
    assert parse_bbbc_name(name[: -len(ext)] + ".png") is None


@SETTINGS
@given(plane=st.integers(0, 33), zipped=st.booleans(), name=st.text("abc_-", min_size=1, max_size=8))
def test_plane_comes_from_the_folder_name(plane, zipped, name):
    folder = f"BBBC006_v1_images_z_{plane:02d}" + (".zip" if zipped else "")
    assert plane_from_path(f"/data/{folder}/{name}.tif") == plane
    assert plane_from_path(f"/data/{name}.tif") is None


@SETTINGS
@given(start=st.integers(0, 33), span=st.integers(0, 33), step=st.integers(1, 12))
def test_plane_ranges_are_inclusive_and_round_trip(start, span, step):
    stop = min(33, start + span)
    planes = parse_planes(f"{start}:{stop}:{step}")
    assert planes == list(range(start, stop + 1, step))
    assert parse_planes(format_planes(planes)) == planes
    assert parse_planes(",".join(str(p) for p in reversed(planes))) == planes  # lists: sorted, unique


@SETTINGS
@given(planes=st.lists(st.integers(0, 60), min_size=1, max_size=6))
def test_plane_lists_outside_the_stack_are_refused(planes):
    text = ",".join(map(str, planes))
    if max(planes) <= 33:
        assert parse_planes(text) == sorted(set(planes))
    else:
        with pytest.raises(UsageError, match="outside 0..33"):
            parse_planes(text)
