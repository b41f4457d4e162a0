"""One intra-op thread for these small-tensor tests: on the shared 2-core machine, OpenMP threads contending
with other processes make tiny convolutions ~50× slower."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
