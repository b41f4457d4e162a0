"""Run the Triton batch-norm kernels in Triton's interpreter against the eager closed form; print JSON errors.

Also counts what each launcher launches (Triton kernels and kernel-launching torch ops) against the declared
:data:`lorentzcv.kernels.LAUNCHES`. Run as a module with ``TRITON_INTERPRET=1`` in the environment (``test_fused_batch_norm.py`` does that in a
subprocess: the variable must be set before Triton is first imported).
"""

from __future__ import annotations

import json
import math
import sys

import torch

from lorentzcv.geometry import math as lmath
from lorentzcv.kernels import LAUNCHES
from lorentzcv.kernels import _bn_triton as T
from lorentzcv.kernels import batch_norm as KB

from ._launch_counting import count_launches


def _cases():
    for variant in ("hcnn", "rhl"):
        for rescale in (False, True):
            for training in (True, False):
                for k in (0.3, 1.0, 2.5):
                    yield f"{variant}-rs{int(rescale)}-{'train' if training else 'eval'}-k{k}", variant, rescale, \
                        training, k, (4, 6, 5), True, 1.0
    yield "vectors-1d", "hcnn", True, True, 1.0, (7, 9, 1), False, 1.0
    yield "far-from-origin", "hcnn", True, True, 1.0, (3, 5, 6), True, 4.0
    yield "odd-count", "rhl", True, True, 0.7, (3, 4, 131), True, 1.0


def _on(device: str, *args):
    """``args`` with their tensors moved to ``device``."""
    return [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]


def _cpu(out):
    return [o.cpu() for o in out] if isinstance(out, (tuple, list)) else out.cpu()


def run(device: str = "cpu") -> dict:
    """The Triton kernels on ``device`` (CPU: Triton's interpreter) against the eager closed form on the CPU."""
    out = {}
    m0, mc = 1.2 * 0.5 * math.acosh(1 / (2 * torch.finfo(torch.float32).eps)), math.atanh(0.99) / 2.0
    for i, (name, variant, rescale, training, k, (b, c1, n), two_stage, spread) in enumerate(_cases()):
        g = torch.Generator().manual_seed(i)
        kt = torch.tensor(k)
        centre = torch.randn(c1 - 1, generator=g) * spread
        xs = centre[None, :, None] + 0.7 * torch.randn(b, c1 - 1, n, generator=g)
        x3 = lmath.add_time(xs, kt, dim=1).contiguous()
        beta_s = 0.3 * torch.randn(c1 - 1, generator=g)
        beta = torch.cat([(beta_s.square().sum() + kt).sqrt().reshape(1), beta_s])
        gamma = torch.tensor(1.3)
        rm = torch.cat([torch.zeros(1), 0.5 * torch.randn(c1 - 1, generator=g)])
        rv = torch.tensor(0.8)
        cfg = (variant == "rhl", 1e-5, rescale, m0 if rescale else 1.0, mc if rescale else 0.0, two_stage)
        args = (x3, beta, gamma, kt, rm.clone(), rv.clone(), torch.tensor(3), *cfg, 0.1, training)
        ref = KB._bn_op(*args)  # (updates args' running statistics in training)
        targs = _on(device, x3, beta, gamma, kt, rm.clone(), rv.clone(), torch.tensor(3), *cfg, 0.1, training)
        tri, n_fwd = count_launches(T, KB.launch_triton_forward, *targs)
        tri = _cpu(tri)
        gy = torch.randn(x3.shape, generator=g)
        bargs = (beta, gamma, kt, rm, rv, *cfg, training)  # the backward's arguments (no running-statistics update)
        ref_b = KB._bn_backward_op(gy, x3, *ref, *bargs)
        tri_b, n_bwd = count_launches(T, KB.launch_triton_backward, *_on(device, gy, x3, *ref, *bargs))
        tri_b = _cpu(tri_b)

        def rel(a, b):
            return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))

        res = {n_: rel(a, b) for n_, a, b in zip(("y", "m", "mu", "var", "sc"), tri, ref) if b.numel()}
        res.update({n_: rel(a, b) for n_, a, b in zip(("gx", "gbeta", "ggamma", "gk"), tri_b, ref_b)})
        if training:  # the running statistics, updated by the forward (its first output program)
            r1, r2 = args[4:7], _cpu(list(targs[4:7]))
            res["running_mean"], res["running_var"] = rel(r2[0], r1[0]), rel(r2[1], r1[1])
            res["num_batches_tracked"] = float(r2[2] != r1[2] or r1[2] != 4)
            res["running_changed"] = float(torch.equal(r1[0], rm) or torch.equal(r1[1], rv))
        res["launches_as_declared"] = (n_fwd == LAUNCHES["lorentzcv::lorentz_batch_norm"](args, {})
                                       and n_bwd == LAUNCHES["lorentzcv::lorentz_batch_norm_backward"](bargs, {}))
        res["finite"] = bool(all(torch.isfinite(t).all() for t in (*tri, *tri_b)))
        out[name] = res
    return out


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "cpu")))
