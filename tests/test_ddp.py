"""Distributed pretraining: 2 CPU processes with gloo, as torchrun runs them on a cluster."""

import math
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from napari_nanowire.core.data.synthetic import generate_dataset
from napari_nanowire.core.io import write_tiff
from napari_nanowire.core.model.encoders import load_encoder
from napari_nanowire.core.model.modelfile import load_model
from napari_nanowire.core.ssl.losses import barlow_twins_loss, nt_xent_loss, ssl_loss

pytestmark = pytest.mark.slow  # 2 processes each: 23 and 45 s under load


def test_torchrun_two_processes_share_the_epoch(tmp_path):
    dataset = generate_dataset(2, size=64, pixel_size_nm=2.0, seed=0)
    for item in dataset:
        write_tiff(tmp_path / "images" / f"{item.name}.tif", item.image, item.pixel_size_nm)
    out, epochs, batch, world = tmp_path / "m.nwmodel", 2, 4, 2
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(world), "-m", "napari_nanowire.cli.main", "pretrain"]
    command += [str(tmp_path / "images"), "--out", str(out), "--device", "cpu"]
    command += ["--epochs", str(epochs), "--batch-size", str(batch), "--image-size", "32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    # Square images with crops of 0.2-1 of their area (mean 0.6) hold 1/0.6 views each; an
    # epoch covers them once with `batch` pairs in each of `world` processes per step.
    steps_per_epoch = math.ceil(len(dataset) / 0.6 / (batch * world))
    model = load_model(out)
    assert model.meta.ssl.extra["world_size"] == world
    assert model.meta.ssl.extra["global_batch_size"] == batch * world
    assert model.meta.step == epochs * steps_per_epoch == 4
    assert float(model.tensors["optimizer.0.step"]) == epochs * steps_per_epoch
    assert [h["epoch"] for h in model.meta.history] == [1, 2]
    encoder, _ = load_encoder(out)
    assert encoder(torch.zeros(1, 1, 32, 32)).shape == (1, encoder.out_dim)
    assert done.stdout.count("finished after") == 1  # only process 0 reports


# The losses on the whole batch in one process, as references for the gathered ones.
REFERENCE = {
    "simclr": lambda z1, z2: nt_xent_loss(z1, z2, 0.3),
    "barlow": lambda z1, z2: barlow_twins_loss(z1, z2, 5e-3),
}


def _global_gradient_worker(rank: int, world: int, port: int) -> None:
    """Check in each process that gathered losses give the global loss's gradient."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        full = torch.randn(2, 4 * world, 16, generator=torch.Generator().manual_seed(0))
        rows = slice(4 * rank, 4 * (rank + 1))
        for method, reference in REFERENCE.items():
            z1, z2 = (full[v, rows].clone().requires_grad_() for v in (0, 1))
            loss = ssl_loss(method, z1, z2, temperature=0.3, offdiag_weight=5e-3)
            loss.backward()
            whole = full.clone().requires_grad_()
            expected = reference(whole[0], whole[1])
            expected.backward()
            torch.testing.assert_close(loss, expected.detach())
            # Every process holds the same global loss; DDP divides the summed gradient by
            # the number of processes, which leaves exactly the global loss's gradient.
            torch.testing.assert_close(z1.grad / world, whole.grad[0, rows])
            torch.testing.assert_close(z2.grad / world, whole.grad[1, rows])
    finally:
        dist.destroy_process_group()


def test_gathered_losses_give_the_global_gradient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_global_gradient_worker, args=(2, port), nprocs=2, join=True)
