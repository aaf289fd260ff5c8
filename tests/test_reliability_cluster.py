"""Distributed prediction survives a worker's death and says so when there are no workers."""

from __future__ import annotations

import sys
from pathlib import Path

import cloudpickle
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from helpers import read_outputs, run
from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.predict import cluster as cluster_module
from napari_nanowire.core.predict.cluster import predict_distributed

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class DieOnFirstRead(WorkerPlugin):
    """The worker that first reads a marked image dies on the spot (as if killed or OOM)."""

    def __init__(self, flag_dir: str) -> None:
        self.flag_dir = flag_dir

    def setup(self, worker) -> None:
        import os

        from napari_nanowire.core.predict import files as predict

        original, flags = predict.read_image, Path(self.flag_dir)

        def deadly(path, *args, **kwargs):
            flag = flags / (Path(path).stem + ".die-once")
            if flag.exists():
                flag.unlink()
                os._exit(1)
            return original(path, *args, **kwargs)

        predict.read_image = deadly


@pytest.mark.slow
def test_a_dying_worker_loses_no_rows(inputs, tmp_path):  # noqa: F811
    """One worker (a small cluster, or the last one left) dies; its nanny starts a new one.

    Before, the model was scattered to the workers once, so its only copy died with the
    worker and every task after it failed whatever --retries said.
    """
    model, paths = inputs
    flags = tmp_path / "flags"
    flags.mkdir()
    (flags / (paths[2].stem + ".die-once")).touch()
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as one,
        Client(one) as one_client,
    ):
        one_client.register_plugin(DieOnFirstRead(str(flags)), name="die-on-first-read")
        run(predict_distributed(model, paths, tmp_path / "out", one_client, retries=1))
    assert not list(flags.iterdir())  # the worker did die
    table, masks = read_outputs(tmp_path / "out")
    assert table["image"].tolist() == [
        *map(str, paths[:3]),
        *(f"{paths[3]}[{i}]" for i in range(3)),
        str(paths[4]),
    ]
    assert sorted(masks) == sorted(f"{p.stem}.tif" for p in paths)


def test_a_scheduler_without_workers_is_a_clear_error(inputs, tmp_path, monkeypatch):  # noqa: F811
    model, paths = inputs
    monkeypatch.setattr(cluster_module, "WORKER_WAIT_S", 0.5)
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=None) as empty,
        Client(empty) as no_workers,
        pytest.raises(NanowireError, match="has no workers.*dask worker"),
    ):
        run(predict_distributed(model, paths, tmp_path / "out", no_workers))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_distributed_resume_skips_finished_files(client, inputs, tmp_path):  # noqa: F811
    model, paths = inputs
    out = tmp_path / "out"
    run(predict_distributed(model, paths[:2], out, client))
    first = (out / "masks" / f"{paths[0].stem}.tif").stat().st_mtime_ns
    run(predict_distributed(model, paths, out, client, resume=True))
    assert (out / "masks" / f"{paths[0].stem}.tif").stat().st_mtime_ns == first  # not redone
    table = pd.read_csv(out / "predictions.csv")
    assert table["image"].tolist()[:2] == list(map(str, paths[:2])) and len(table) == 7
