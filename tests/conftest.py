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


@pytest.fixture(autouse=True)
def no_kept_features():
    """Every test starts without classifier features kept by an earlier one (see
    core/heads/feature_cache.py): a test that patches a feature function must not leave its
    features to the next."""
    from napari_nanowire.core.heads.feature_cache import FEATURES

    FEATURES.clear()


@pytest.fixture(scope="module")
def client():
    """A dask LocalCluster of two single-thread worker processes, as on a small cluster."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A random-weights model and five images (one a 3-frame stack) of varied sizes."""
    import numpy as np

    from napari_nanowire.core.io import write_tiff
    from napari_nanowire.core.model.random_models import save_random_model

    root = tmp_path_factory.mktemp("dist")
    model = save_random_model(root / "model.nwmodel", seed=3)
    rng = np.random.default_rng(0)
    paths = []
    for i, shape in enumerate([(70, 90), (64, 64), (130, 50), (3, 40, 80), (100, 100)]):
        paths.append(write_tiff(root / f"img{i}.tif", rng.random(shape).astype(np.float32), 2.0))
    return model, paths
