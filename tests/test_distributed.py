"""Distributed prediction on a LocalCluster: same outputs as a local run, retried tasks."""

from __future__ import annotations

import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from distributed.diagnostics.plugin import WorkerPlugin

from helpers import read_outputs, run
from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.io import read_image
from napari_nanowire.core.predict import predict_files
from napari_nanowire.core.predict.cluster import connect, predict_distributed

# Workers are other processes: ship this module's plugin class by value, not by import name.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

# a 2-worker LocalCluster: 11 s to start, 52 s for the local/distributed comparison under load
pytestmark = pytest.mark.slow


def test_distributed_matches_local(client, inputs, tmp_path):
    model, paths = inputs
    run(predict_files(model, paths, tmp_path / "local", device="cpu"))
    run(predict_distributed(model, paths, tmp_path / "dist", client))
    local_table, local_masks = read_outputs(tmp_path / "local")
    dist_table, dist_masks = read_outputs(tmp_path / "dist")
    assert len(dist_table) == 7  # four images plus a 3-frame stack, in input order
    pd.testing.assert_frame_equal(dist_table, local_table, check_exact=False, atol=1e-6)
    assert dist_masks.keys() == local_masks.keys() and len(dist_masks) == 5
    for name, mask in local_masks.items():
        np.testing.assert_array_equal(dist_masks[name], mask)
    assert not list((tmp_path / "dist").rglob("*.tmp"))


class FailFirstRead(WorkerPlugin):
    """Makes the first read of each marked image fail on whichever worker tries it."""

    def __init__(self, flag_dir: str) -> None:
        self.flag_dir = flag_dir

    def setup(self, worker) -> None:
        from napari_nanowire.core.predict import files as predict

        original, flags = predict.read_image, Path(self.flag_dir)

        def flaky(path, *args, **kwargs):
            flag = flags / (Path(path).stem + ".fail-once")
            if flag.exists():
                flag.unlink()
                raise OSError(f"transient failure reading {path}")
            return original(path, *args, **kwargs)

        predict.read_image = flaky


def test_failed_tasks_are_retried_without_lost_or_duplicated_outputs(client, inputs, tmp_path):
    model, paths = inputs
    flags = tmp_path / "flags"
    flags.mkdir()
    for path in paths[1:4]:
        (flags / (path.stem + ".fail-once")).touch()
    client.register_plugin(FailFirstRead(str(flags)), name="fail-first-read")
    try:
        run(predict_distributed(model, paths, tmp_path / "out", client, retries=2))
    finally:
        client.unregister_worker_plugin("fail-first-read")
    assert not list(flags.iterdir())  # every marked read failed once
    table, masks = read_outputs(tmp_path / "out")
    assert table["image"].tolist() == [
        *map(str, paths[:3]),
        *(f"{paths[3]}[{i}]" for i in range(3)),
        str(paths[4]),
    ]
    assert sorted(masks) == sorted(f"{p.stem}.tif" for p in paths)
    assert all(masks[f"{p.stem}.tif"].shape[-2:] == read_image(p).data.shape[-2:] for p in paths)


def test_failing_file_without_retries_is_a_clear_error(client, inputs, tmp_path):
    model, paths = inputs
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(NanowireError, match="broken.tif"):
        run(predict_distributed(model, [paths[0], bad], tmp_path / "out", client, retries=0))


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(NanowireError, match="dask scheduler at 'tcp://127.0.0.1:1'"):
        connect("tcp://127.0.0.1:1", timeout_s=1)


def test_cli_scheduler_option_writes_the_local_outputs(client, inputs, tmp_path):
    from napari_nanowire.cli.main import main

    model, paths = inputs
    address = client.scheduler.address
    assert main(["predict", str(model), *map(str, paths[:2]), "--out", str(tmp_path / "cli"),
                 "--scheduler", address]) == 0  # fmt: skip
    run(predict_files(model, paths[:2], tmp_path / "local", device="cpu"))
    cli_table, cli_masks = read_outputs(tmp_path / "cli")
    local_table, local_masks = read_outputs(tmp_path / "local")
    pd.testing.assert_frame_equal(cli_table, local_table, check_exact=False, atol=1e-6)
    assert cli_masks.keys() == local_masks.keys()
