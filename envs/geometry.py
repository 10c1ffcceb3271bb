"""Planar polygon geometry for the Push-T coverage: rectangles as corner arrays, convex clipping
(Sutherland-Hodgman) and areas. numpy only; polygons are (N, 2) arrays in counter-clockwise order."""

from __future__ import annotations

import numpy as np


def rotation(yaw: float) -> np.ndarray:
    """(2, 2) rotation by `yaw` radians."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s], [s, c]])


def rectangle(center: np.ndarray, half: np.ndarray) -> np.ndarray:
    """(4, 2) counter-clockwise corners of an axis-aligned rectangle."""
    hx, hy = half
    return np.asarray(center) + np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])


def transform(points: np.ndarray, xy: np.ndarray, yaw: float) -> np.ndarray:
    """Points (N, 2) of a body frame -> world, for a body at `xy` turned by `yaw`."""
    return points @ rotation(yaw).T + xy


def area(polygon: np.ndarray) -> float:
    """Shoelace area of a simple polygon (N, 2); 0 for fewer than 3 points."""
    if len(polygon) < 3:
        return 0.0
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(x @ np.roll(y, -1) - y @ np.roll(x, -1)))


def clip(subject: np.ndarray, convex: np.ndarray) -> np.ndarray:
    """Intersection of polygon `subject` (N, 2) with the convex counter-clockwise polygon `convex`
    (M, 2), as an (K, 2) polygon (K = 0 when they do not overlap)."""
    out = [tuple(p) for p in subject]
    for i in range(len(convex)):
        if not out:
            break
        a, b = convex[i], convex[(i + 1) % len(convex)]
        ex, ey = b[0] - a[0], b[1] - a[1]
        # Positive: left of the edge a->b, i.e. inside a counter-clockwise polygon.
        side = [ex * (p[1] - a[1]) - ey * (p[0] - a[0]) for p in out]
        kept = []
        for j, p in enumerate(out):
            q, sp, sq = out[j - 1], side[j], side[j - 1]
            if sp >= 0:
                if sq < 0:
                    kept.append(_crossing(q, p, sq, sp))
                kept.append(p)
            elif sq >= 0:
                kept.append(_crossing(q, p, sq, sp))
        out = kept
    return np.array(out, dtype=float).reshape(-1, 2)


def _crossing(q: tuple, p: tuple, sq: float, sp: float) -> tuple:
    t = sq / (sq - sp)
    return (q[0] + t * (p[0] - q[0]), q[1] + t * (p[1] - q[1]))


def overlap(parts_a: list[np.ndarray], parts_b: list[np.ndarray]) -> float:
    """Area shared by two shapes, each a union of convex parts with disjoint interiors."""
    return sum(area(clip(a, b)) for a in parts_a for b in parts_b)
