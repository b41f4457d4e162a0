"""Shared fixtures: device (``LORENTZCV_TEST_DEVICE``, default cpu), dtype tolerances, seeds."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub

DEVICE = torch.device(os.environ.get("LORENTZCV_TEST_DEVICE", "cpu"))
TOL = {torch.float64: dict(rtol=1e-9, atol=1e-9), torch.float32: dict(rtol=1e-4, atol=1e-4)}


@pytest.fixture
def device() -> torch.device:
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("LORENTZCV_TEST_DEVICE=cuda but CUDA is not available")
    return DEVICE


@pytest.fixture(params=[0, 1, 2], ids=lambda s: f"seed{s}")
def seed(request) -> int:
    torch.manual_seed(request.param)
    return request.param


@pytest.fixture(params=[torch.float64, torch.float32], ids=["f64", "f32"])
def dtype(request) -> torch.dtype:
    return request.param
