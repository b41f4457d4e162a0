"""Time of one optimizer step: RiemannianAdamW vs torch.optim.AdamW (and RiemannianSGD vs torch.optim.SGD).

Workload: a ResNet-18-sized set of Euclidean parameters (the shapes of ``torchvision.models.resnet18``) plus a
``ManifoldParameter`` of 10,000 points in 64 dimensions (shape ``(10000, 65)``) on a ``Lorentz`` manifold.
Gradients are fixed random tensors; only ``optimizer.step()`` is timed. All variants run in the same process,
interleaved repeat by repeat (after warm-up steps), and the medians are reported as JSON on stdout.

Variants (``foreach=None`` is torch's default: the for-loop kernel on CPU, the foreach kernel on CUDA):

- ``torch_adamw``: ``torch.optim.AdamW`` on the Euclidean parameters only;
- ``torch_adamw_with_points``: the same plus the ``(10000, 65)`` tensor treated as Euclidean;
- ``radamw``: ``RiemannianAdamW`` on the Euclidean parameters and the manifold parameter (fixed ``k``);
- ``radamw_learn_k``: as ``radamw`` plus a learnable ``k`` (curvature step + explog move of all points);
- the same four for SGD/RiemannianSGD (momentum 0.9, nesterov) when ``--sgd`` is given.

Usage::

    python benchmarks/optim.py --repeats 20 --threads 2 [--device cuda] [--foreach] [--sgd]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torchvision

from lorentzcv.geometry import Lorentz, ManifoldParameter
from lorentzcv.optim import RiemannianAdamW, RiemannianSGD


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _euclidean(device: torch.device, seed: int) -> list[torch.nn.Parameter]:
    shapes = [p.shape for p in torchvision.models.resnet18(weights=None).parameters()]
    g = torch.Generator().manual_seed(seed)
    params = []
    for s in shapes:
        p = torch.nn.Parameter((torch.randn(s, generator=g) * 0.05).to(device))
        p.grad = (torch.randn(s, generator=g) * 1e-2).to(device)
        params.append(p)
    return params


def _manifold(n: int, d: int, device: torch.device, seed: int, learnable: bool):
    g = torch.Generator().manual_seed(seed)
    man = Lorentz(k=1.0, learnable=learnable).to(device)
    x = ManifoldParameter(man.expmap0(torch.cat([torch.zeros(n, 1), torch.randn(n, d, generator=g)], -1).to(device)),
                          manifold=man)
    x.grad = (torch.randn(n, d + 1, generator=g) * 1e-2).to(device)
    if learnable:
        man.k.grad = torch.tensor(1e-2, device=device)
    return man, x


def build(name: str, device: torch.device, n: int, d: int, foreach: bool | None):
    """Return (optimizer, number of parameter elements) for one variant."""
    eu = _euclidean(device, 0)
    adam = "adamw" in name
    kw = dict(lr=1e-3, weight_decay=1e-2, foreach=foreach) if adam else dict(
        lr=1e-2, momentum=0.9, nesterov=True, weight_decay=5e-4, foreach=foreach)
    if name.startswith("torch"):
        params = list(eu)
        if name.endswith("with_points"):
            _, x = _manifold(n, d, device, 1, False)
            params.append(torch.nn.Parameter(x.detach().clone()))
            params[-1].grad = x.grad.clone()
        cls = torch.optim.AdamW if adam else torch.optim.SGD
        opt = cls(params, **kw)
    else:
        learn = name.endswith("learn_k")
        man, x = _manifold(n, d, device, 1, learn)
        groups = [{"params": eu, "name": "euclidean"}, {"params": [x], "name": "manifold"}]
        if learn:
            groups.append({"params": [man.k], "curvature": True, "lr": 1e-4, "weight_decay": 0.0,
                           "name": "curvature"})
        cls = RiemannianAdamW if adam else RiemannianSGD
        opt = cls(groups, **kw)
    numel = sum(p.numel() for g in opt.param_groups for p in g["params"])
    return opt, numel


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20, help="timed steps per variant (interleaved)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=64, help="space dimension of the points (tensor has dim+1)")
    ap.add_argument("--foreach", action="store_true", help="also time foreach=True variants")
    ap.add_argument("--sgd", action="store_true", help="also time SGD/RiemannianSGD")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    bases = ["torch_adamw", "torch_adamw_with_points", "radamw", "radamw_learn_k"]
    if args.sgd:
        bases += ["torch_sgd", "torch_sgd_with_points", "rsgd", "rsgd_learn_k"]
    modes = [(None, "")] + ([(True, "+foreach")] if args.foreach else [])
    variants = {}
    for fe, suffix in modes:
        for b in bases:
            variants[b + suffix] = build(b, device, args.points, args.dim, fe)

    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.warmup):
        for opt, _n in variants.values():
            opt.step()
    _sync(device)
    for _ in range(args.repeats):
        for v, (opt, _n) in variants.items():
            _sync(device)
            t0 = time.perf_counter()
            opt.step()
            _sync(device)
            times[v].append(time.perf_counter() - t0)

    med = {v: statistics.median(t) * 1e3 for v, t in times.items()}
    ratios = {}
    for _fe, suffix in modes:
        ratios["radamw/torch_adamw" + suffix] = med["radamw" + suffix] / med["torch_adamw" + suffix]
        ratios["radamw_learn_k/torch_adamw" + suffix] = med["radamw_learn_k" + suffix] / med["torch_adamw" + suffix]
        ratios["radamw/torch_adamw_with_points" + suffix] = (
            med["radamw" + suffix] / med["torch_adamw_with_points" + suffix])
        if args.sgd:
            ratios["rsgd/torch_sgd" + suffix] = med["rsgd" + suffix] / med["torch_sgd" + suffix]
            ratios["rsgd_learn_k/torch_sgd" + suffix] = med["rsgd_learn_k" + suffix] / med["torch_sgd" + suffix]
    result = {
        "benchmark": "optimizer step",
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "euclidean_params": "resnet18 shapes",
        "euclidean_numel": sum(p.numel() for p in torchvision.models.resnet18(weights=None).parameters()),
        "manifold_param_shape": [args.points, args.dim + 1],
        "repeats": args.repeats,
        "median_ms": {v: round(t, 3) for v, t in med.items()},
        "min_ms": {v: round(min(t) * 1e3, 3) for v, t in times.items()},
        "ratio": {k: round(r, 3) for k, r in ratios.items()},
        "ratio_radamw_vs_torch_adamw": round(ratios["radamw/torch_adamw"], 3),
        "target": "<= 1.5",
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
