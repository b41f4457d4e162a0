"""``benchmarks/compute.py``: the kernel-launch count and a tiny end-to-end run of its JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compute():
    spec = importlib.util.spec_from_file_location("_bench_compute", REPO / "benchmarks" / "compute.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_kernel_ops_count_work_not_views(compute):
    x = torch.randn(4, 6)
    with torch.no_grad():
        one = compute.count_kernel_ops(lambda: x * 2)
        three = compute.count_kernel_ops(lambda: (x * 2 + 1).exp())
        views = compute.count_kernel_ops(lambda: x.view(2, 12).t().unsqueeze(0)[0, 1:])
        copy = compute.count_kernel_ops(lambda: x.t().reshape(-1))  # a non-contiguous reshape copies
        w = torch.ones(3, 6)
        linear = compute.count_kernel_ops(lambda: torch.nn.functional.linear(x, w))
    assert (one, three, views, copy) == (1, 3, 0, 1)
    assert linear == 1  # aten::linear -> aten::addmm/mm: the composite is not counted again


def test_tiny_run_reports_kernel_ops_and_ratios(compute, capsys):
    n = torch.get_num_threads()
    try:
        compute.main(["--batch", "2", "--channels", "4", "--size", "8", "--layer-repeats", "1",
                      "--model-repeats", "1", "--models", "resnet18", "hecnn_resnet18", "--threads", "1"])
    finally:
        torch.set_num_threads(n)
    r = json.loads(capsys.readouterr().out)
    bn = r["layers"]["fp32"]["batchnorm"]
    assert bn["nn.BatchNorm2d"]["kernel_ops_ratio"] == 1.0 and bn["lorentz_bn_hcnn"]["kernel_ops"] > 0
    models = r["models"]["fp32"]
    assert models["resnet18"]["kernel_ops_ratio"] == 1.0
    assert models["hecnn_resnet18"]["kernel_ops"] > models["resnet18"]["kernel_ops"] > 0
    assert models["hecnn_resnet18"]["time_ratio"] > 0
