"""Polygon clipping and areas behind Push-T's coverage."""

import numpy as np
import pytest

from envs.geometry import area, clip, overlap, rectangle, transform


def test_area_and_clip_of_overlapping_squares():
    a = rectangle(np.zeros(2), np.array([1.0, 1.0]))
    assert area(a) == pytest.approx(4.0)
    b = rectangle(np.array([1.0, 0.5]), np.array([1.0, 1.0]))
    assert area(clip(a, b)) == pytest.approx(1.0 * 1.5)
    assert area(clip(a, rectangle(np.array([5.0, 0.0]), np.ones(2)))) == 0.0


def test_square_and_its_45_degree_turn_share_an_octagon():
    square = rectangle(np.zeros(2), np.array([1.0, 1.0]))
    turned = transform(square, np.zeros(2), np.pi / 4)
    # Regular octagon with inradius 1: area 8 * tan(pi / 8).
    assert area(clip(square, turned)) == pytest.approx(8 * np.tan(np.pi / 8))
    assert area(clip(turned, square)) == pytest.approx(8 * np.tan(np.pi / 8))


def test_overlap_sums_disjoint_parts():
    left = rectangle(np.array([-0.5, 0.0]), np.array([0.5, 0.5]))
    right = rectangle(np.array([0.5, 0.0]), np.array([0.5, 0.5]))
    window = [rectangle(np.array([0.25, 0.0]), np.array([0.5, 0.5]))]
    assert overlap([left, right], window) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    for _ in range(20):  # symmetric, and never more than either shape
        b = [transform(p, rng.normal(size=2) * 0.3, rng.uniform(-3, 3)) for p in (left, right)]
        ab, ba = overlap([left, right], b), overlap(b, [left, right])
        assert ab == pytest.approx(ba) and 0.0 <= ab <= 2.0 + 1e-9
