"""The norm objects' exact values: per-sample distances and projections, random starts that
follow their documented formula draw for draw (so a seeded attack is reproducible), balls
that remember their set and project the selected rows."""

from __future__ import annotations

import pytest
import torch

from underfire.core.norms import L2, LINF, Ball, get_norm


def test_distances_are_per_sample_norms_of_the_difference():
    """Fails if a distance is taken over the whole batch or another axis, with another p, or
    an L∞ distance comes back zero."""
    a = torch.zeros(2, 1, 1, 2)
    b = torch.tensor([[3.0, -4.0], [0.5, 0.0]]).view(2, 1, 1, 2)
    assert L2.distance(a, b).tolist() == [5.0, 0.5]
    assert LINF.distance(a, b).tolist() == [4.0, 0.5]


def test_distances_of_images_without_pixels_are_zero_per_sample():
    """Fails if images with no pixels are not given distance 0, one per sample."""
    empty = torch.zeros(3, 1, 0, 0)
    assert LINF.distance(empty, empty).tolist() == [0.0, 0.0, 0.0]


def test_l2_projection_scales_each_sample_by_its_own_norm():
    """Fails if the L2 projection measures the whole batch instead of each sample."""
    delta = torch.tensor([[3.0, 4.0], [0.3, 0.4]]).view(2, 1, 1, 2)
    out = L2.project(delta, 1.0).view(2, 2)
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.3, 0.4]]))


def test_linf_random_start_is_x_plus_eps_times_uniform_noise_in_minus_one_one():
    """Fails if the start is not x + ε(2u − 1), u drawn from the given generator, clipped."""
    x = torch.rand(3, 2, 2, 2, generator=torch.Generator().manual_seed(5))
    start = LINF.random_start(x, 0.1, torch.Generator().manual_seed(0))
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(start, (x + 0.1 * (2 * u - 1)).clamp(0, 1), rtol=0, atol=0)


def test_l2_random_start_has_a_uniform_direction_and_radius_eps_u_to_the_one_over_d():
    """Fails if the start is not x + ε·u^(1/d)·g/‖g‖ (d = C·H·W, g Gaussian, u uniform per
    sample, both from the given generator, in that order)."""
    x = torch.full((3, 2, 2, 2), 0.5)
    start = L2.random_start(x, 0.2, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(x.shape, generator=g)
    u = torch.rand((3,), generator=g)
    unit = direction / direction.flatten(1).norm(dim=1).view(3, 1, 1, 1)
    expected = x + unit * (0.2 * u ** (1.0 / 8)).view(3, 1, 1, 1)
    torch.testing.assert_close(start, expected.clamp(0, 1))


@pytest.mark.parametrize("norm", [LINF, L2])
def test_random_starts_keep_the_input_dtype(norm):
    """Fails if the noise is drawn in the default dtype: half-precision inputs would come back
    in float32."""
    x = torch.full((2, 1, 2, 2), 0.5, dtype=torch.float16)
    assert norm.random_start(x, 0.1, torch.Generator().manual_seed(0)).dtype == torch.float16


def test_balls_remember_their_norm_and_project_the_selected_rows():
    """Fails if a ball loses its norm, or ``index`` is ignored (rows projected around the
    wrong clean images)."""
    x = torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1, 1)
    for norm in (LINF, L2):
        ball = norm.ball(x, 0.1)
        assert ball.norm is norm and ball.x is x and ball.eps == 0.1
    z = torch.tensor([0.9, 0.9]).view(2, 1, 1, 1)
    out = Ball(L2, x, 0.1).project_(z.clone(), torch.tensor([2, 1]))
    torch.testing.assert_close(out.flatten(), torch.tensor([0.9, 0.6]))


def test_norms_print_as_their_class_and_are_found_by_name():
    """Fails if a norm's repr loses its class name."""
    assert (repr(LINF), repr(L2)) == ("LinfNorm()", "L2Norm()")
    assert get_norm(" L2 ") is L2
