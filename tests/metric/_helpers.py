"""Reference implementations written from ``docs/method.md`` §7 (loops, independent of the library code)."""

from __future__ import annotations

import math

import numpy as np
import torch

from lorentzcv.geometry import math as lmath


def lorentz_points(n: int, d: int, k: float = 10.0, scale: float = 1.0, dtype=torch.float64, gen=None):
    """Random points of H_k: exp0 of Gaussian tangent vectors (space dim ``d``)."""
    v = torch.randn(n, d, dtype=dtype, generator=gen) * scale
    return lmath.expmap0(torch.cat([torch.zeros(n, 1, dtype=dtype), v], 1), torch.tensor(k, dtype=dtype))


def mobius_dist(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    r"""(2/√c)·artanh(√c‖(−x)⊕_c y‖) with the Möbius addition written out (one pair, differentiable)."""
    mx = -x
    xy, x2, y2 = (mx * y).sum(), (mx * mx).sum(), (y * y).sum()
    num = (1 + 2 * c * xy + c * y2) * mx + (1 - c * x2) * y
    den = 1 + 2 * c * xy + c * c * x2 * y2
    return 2 / math.sqrt(c) * torch.atanh(math.sqrt(c) * (num / den).norm())


def mobius_dist_matrix(a: torch.Tensor, b: torch.Tensor, c: float, same: bool = False) -> torch.Tensor:
    rows = []
    for i in range(len(a)):
        rows.append(torch.stack([
            torch.zeros((), dtype=a.dtype) if (same and i == j) else mobius_dist(a[i], b[j], c)
            for j in range(len(b))
        ]))
    return torch.stack(rows)


def to_poincare_ref(v: torch.Tensor, c: float, clip_r: float) -> torch.Tensor:
    """HIER's ToPoincare forward: clip, exp0, project (row by row)."""
    out = []
    for x in v:
        x = x * min(1.0, clip_r / (float(x.norm()) + 1e-5))
        n = x.norm()
        z = torch.tanh(math.sqrt(c) * n) * x / (math.sqrt(c) * n)
        maxnorm = (1 - 1e-3) / math.sqrt(c)
        if z.norm() > maxnorm:
            z = z / z.norm() * maxnorm
        out.append(z)
    return torch.stack(out)


def brute_ranking(dist: np.ndarray, ql: np.ndarray, gl: np.ndarray, loo: bool):
    """Per query: gallery indices sorted by distance, other-class items first at equal distance (pessimistic
    ties), self removed under leave-one-out; and the positive flags in that order."""
    out = []
    for q in range(len(dist)):
        is_pos = gl == ql[q]
        order = np.lexsort((is_pos, dist[q]))  # primary: distance; ties: negatives (False) first
        if loo:
            order = order[order != q]
        out.append(is_pos[order])
    return out


def brute_recall(dist, ql, gl, ks, loo):
    flags = brute_ranking(dist, ql, gl, loo)
    return {k: float(np.mean([f[:k].any() for f in flags])) for k in ks}


def brute_map_at_r(dist, ql, gl, loo):
    flags = brute_ranking(dist, ql, gl, loo)
    aps = []
    for f in flags:
        r = int(f.sum())
        if r == 0:
            continue
        hits = f[:r]
        prec = np.cumsum(hits) / np.arange(1, r + 1)
        aps.append(float((prec * hits).sum() / r))
    return float(np.mean(aps)) if aps else float("nan")
