"""Fixtures shared by every test module (the widget tests add theirs in gui/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread in the test process: tiny models run much faster on one thread on a
    loaded 2-core machine (measured: segmenting a 100 px image took 4.1 s with two threads
    and 0.04 s with one at load average 8; a 256x4 linear-head Adam step 15 ms vs 0.25 ms).
    Worker processes the tests start choose their own."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
