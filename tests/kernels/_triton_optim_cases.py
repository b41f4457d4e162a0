"""Run the Triton optimizer kernels (``lorentzcv.kernels._optim_triton``) against the eager per-point math; print JSON.

Each case steps (or moves) a stack of points — near the origin, far beyond the representable radius, exactly at
the origin, off the hyperboloid (as ``curvature_mode="naive"`` leaves them), zero-padded — with the Triton launcher
and with the eager implementation of the same custom op, and reports the relative difference of the points and the
moments, finiteness, and whether the launcher launched what ``lorentzcv.kernels.LAUNCHES`` declares. Run as a module
with ``TRITON_INTERPRET=1`` (``test_fused_optim.py`` does that in a subprocess) or on CUDA in-process.
"""

from __future__ import annotations

import itertools
import json
import sys

import torch

from lorentzcv.geometry.rescale import max_distance
from lorentzcv.kernels import LAUNCHES
from lorentzcv.optim import fused as F

from ._launch_counting import count_launches


def points(k: float, g: torch.Generator, rows: int = 7, width: int = 9) -> torch.Tensor:
    """Rows on the hyperboloid of ``k``: random, far (rapidity ~12, beyond float32's cap ~8), the origin, tiny,
    one off the hyperboloid (time 1.5× too large), and one zero-padded (its last three space entries 0)."""
    xs = torch.randn(rows, width - 1, generator=g) * k**0.5  # rapidity ~asinh(‖randn‖) ≈ 1.8 whatever k
    xs[1] *= 12 * k**0.5 * 5e4 / xs[1].norm()  # sinh(12)·√k ≈ 8e4·√k
    xs[2] = 0
    xs[3] *= 1e-7
    xs[6, -3:] = 0
    x = torch.cat([((xs * xs).sum(-1, keepdim=True) + k).sqrt(), xs], -1)
    x[4, 0] *= 1.5
    return x


def tangent(x: torch.Tensor, k: float, g: torch.Generator, scale: float) -> torch.Tensor:
    """Tangent vectors at ``x``: random vectors at the origin transported to ``x`` (well conditioned also far from
    the origin, unlike ``proju`` of a random vector), zero where ``x`` is zero-padded."""
    v = torch.randn(x.shape, generator=g) * scale
    v[:, 0] = 0
    v[6, -3:] = 0
    inner = (x[:, 1:] * v[:, 1:]).sum(-1, keepdim=True)
    o_plus_x = x.clone()
    o_plus_x[:, 0] += k**0.5
    return v + inner / (k + k**0.5 * x[:, :1]) * o_plus_x


def _err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """Max difference per row relative to the row's size (far rows have entries ~1e5)."""
    scale = ref.abs().amax(-1, keepdim=True).clamp_min(1.0)
    return float(((a.double() - ref) / scale).abs().amax()) if a.numel() else 0.0


def at_origin(x: torch.Tensor, m: torch.Tensor, k: float) -> torch.Tensor:
    """Space part of the tangent vectors ``m`` at ``x`` transported to the origin, ``m_s - m_0/(√k + x_0)·x_s``:
    their ambient entries near the radius are ~cosh(8)² times this and carry float32 rounding of that size."""
    return m[:, 1:] - m[:, :1] / (k**0.5 + x[:, :1]) * x[:, 1:]


def _on(device: str, *ts):
    return [t.to(device) if isinstance(t, torch.Tensor) else t for t in ts]


def _rapidity(x: torch.Tensor, k: float) -> torch.Tensor:
    return torch.acosh((x[:, 0].double() / k**0.5).clamp_min(1.0))


def _compare(res: dict, k: float, x0: torch.Tensor, fused: tuple, eager: tuple, repair: bool, mdist: float) -> dict:
    """The fused against the eager float32 result, NaN/Inf, the zero padding, and where the step repairs: every
    point within the cap (rapidity ``mdist / max(1, √k)``) and on the hyperboloid.

    Points are compared entry by entry on all rows but the far one (rapidity ~12: float32 does not resolve it);
    moments, read at the origin, only where the point starts and ends within rapidity 3.5: a moment at rapidity r has
    ambient entries ~cosh(r)² times its size, and beyond that both float32 results were measured 2–100 % off the
    float64 one (ill-conditioned, not a kernel error: ``x0`` are the points before the step, read with ``k``)."""
    (fx, fm), (ex, em) = fused, eager
    cap = mdist / max(1.0, k**0.5)
    rows = torch.arange(fx.size(0)) != 1
    res.update(x=_err(fx[rows], ex[rows].double()), finite=bool(torch.isfinite(fx).all()),
               padding_kept=bool((fx[6, -3:] == 0).all()))
    if fm is not None:
        inside = rows & (_rapidity(ex, k) < 3.5) & (_rapidity(x0, k) < 3.5)
        res["m"] = _err(at_origin(fx, fm, k)[inside], at_origin(ex, em, k)[inside].double())
        res["m_rows"] = int(inside.sum())
        res["finite"] &= bool(torch.isfinite(fm).all())
    if repair:
        x = fx.double()
        on = (x[:, 1:].pow(2).sum(-1) - x[:, 0] ** 2 + k).abs() / (k + x[:, 0] ** 2)
        res["within_cap"] = bool((_rapidity(fx, k) <= cap + 1e-3).all())
        res["on_manifold"] = bool((on < 1e-5).all())
    return res


def _clone(*ts):
    return [None if t is None else t.clone() for t in ts]


def _rsgd_cases(device: str) -> dict:
    out = {}
    T = F._triton_module()
    mdist = max_distance(torch.float32, 1.0)
    combos = itertools.product((0.05, 1.0, 4.0), ("none", "first", "old"), (True, False))
    for i, (k, mom, repair) in enumerate(combos):
        g = torch.Generator().manual_seed(i)
        x = points(k, g)
        grad = torch.randn(x.shape, generator=g) * 0.3 * k / x[:, :1].clamp_max(1e3)  # steps of rapidity ~0.1–1
        grad[5] *= 300.0  # a step longer than the radius (cut at the ball's boundary)
        grad[6, -3:] = 0
        buf = tangent(x, k, g, 0.5) if mom == "old" else torch.empty_like(x) if mom == "first" else None
        args = (0.3, 0.01 * (i % 2), 0.0 if mom == "none" else 0.9, 0.1 if i % 3 == 0 and mom != "none" else 0.0,
                i % 3 == 1 and mom != "none", i % 4 == 3, mom == "first", repair, i % 2 == 0, mdist)
        kt = torch.tensor(k)
        ex, eb = _clone(x, buf)
        F._rsgd_step_eager(ex, grad, eb, kt, *args)
        fx, fb = _on(device, *_clone(x, buf))
        _, n = count_launches(T, F.launch_triton_rsgd_step, fx, *_on(device, grad), fb, *_on(device, kt), *args)
        res = {"launches_as_declared": n == LAUNCHES["lorentzcv::rsgd_step_"]}
        out[f"rsgd-k{k}-{mom}-{'repair' if repair else 'naive'}"] = _compare(
            res, k, x, _cpu(fx, fb), (ex, eb), repair, mdist)
    return out


def _radamw_cases(device: str) -> dict:
    out = {}
    T = F._triton_module()
    mdist = max_distance(torch.float32, 1.0)
    combos = itertools.product((0.05, 1.0, 4.0), (True, False), (True, False))
    for i, (k, amsgrad, repair) in enumerate(combos):
        g = torch.Generator().manual_seed(200 + i)
        x = points(k, g)
        grad = torch.randn(x.shape, generator=g) * 0.3 * k / x[:, :1].clamp_max(1e3)
        grad[6, -3:] = 0
        m = tangent(x, k, g, 0.05)
        v = torch.rand(x.size(0), 1, generator=g) * 0.1
        vmax = v + 0.05 * torch.rand(v.shape, generator=g) if amsgrad else None
        args = (0.05, 0.05 * (i % 2), 0.9, 0.999, 1e-8, 3.0, i % 3 == 2, repair, mdist)
        kt = torch.tensor(k)
        ex, em, ev, evm = _clone(x, m, v, vmax)
        F._radamw_step_eager(ex, grad, em, ev, evm, kt, *args)
        fx, fm, fv, fvm = _on(device, *_clone(x, m, v, vmax))
        _, n = count_launches(T, F.launch_triton_radamw_step, fx, *_on(device, grad), fm, fv, fvm, *_on(device, kt),
                              *args)
        res = {"launches_as_declared": n == LAUNCHES["lorentzcv::radamw_step_"],
               "v": _err(fv.cpu(), ev.double())}
        if amsgrad:
            res["vmax"] = _err(fvm.cpu(), evm.double())
        out[f"radamw-k{k}-{'ams' if amsgrad else 'adam'}-{'repair' if repair else 'naive'}"] = _compare(
            res, k, x, _cpu(fx, fm), (ex, em), repair, mdist)
    return out


def _move_cases(device: str) -> dict:
    out = {}
    T = F._triton_module()
    mdist = max_distance(torch.float32, 1.0)
    for i, (ko, kn, has_m) in enumerate(itertools.product((0.5, 2.0), (0.1, 1.9, 3.0), (True, False))):
        g = torch.Generator().manual_seed(100 + i)
        x = points(ko, g)
        m = tangent(x, ko, g, 2.0) if has_m else None
        ko_t, kn_t = torch.tensor(ko), torch.tensor(kn)
        ex, em = _clone(x, m)
        F._move_explog_eager(ex, em, ko_t, kn_t, mdist)
        fx, fm = _on(device, *_clone(x, m))
        _, n = count_launches(T, F.launch_triton_move_explog, fx, fm, *_on(device, ko_t, kn_t), mdist)
        res = {"launches_as_declared": n == LAUNCHES["lorentzcv::move_explog_"]}
        out[f"move-{ko}-to-{kn}-{'m' if has_m else 'nom'}"] = _compare(res, kn, x * (kn / ko) ** 0.5, _cpu(fx, fm), (ex, em), True, mdist)
    return out


def _cpu(*ts):
    return tuple(None if t is None else t.cpu() for t in ts)


def run(device: str = "cpu") -> dict:
    """The Triton optimizer kernels on ``device`` (CPU: Triton's interpreter) against the eager math on the CPU."""
    return {**_rsgd_cases(device), **_radamw_cases(device), **_move_cases(device)}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "cpu")))
