"""Where pretraining runs: device, CPU threads and DistributedDataParallel process groups."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..devices import resolve_device
from ..errors import NanowireError

# AdamW learning rate at a global batch of 256 view pairs, scaled by sqrt(batch / 256).


@dataclass
class _Distributed:
    """This process's place in a torchrun job (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @classmethod
    def from_env(cls, use_cuda: bool) -> _Distributed:
        """Join the process group torchrun describes in WORLD_SIZE, RANK, MASTER_ADDR..."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if use_cuda else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return cls(dist.get_rank(), dist.get_world_size(), local, owns)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over processes."""
        if self.world_size > 1:
            dist.all_reduce(t)
        return t

    def any(self, flag: bool, device: torch.device) -> bool:
        """True if ``flag`` is set in any process."""
        return bool(self.sum(torch.tensor([float(flag)], device=device)).item() > 0)

    def close(self) -> None:
        """Leave the process group if this object joined it."""
        if self.owns_group:
            dist.destroy_process_group()


def _pick_device(name: str) -> torch.device:
    """The training device for ``name``; a device this machine lacks is a NanowireError."""
    try:
        return resolve_device(name)
    except ValueError as err:
        raise NanowireError(str(err)) from None


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run the enclosed torch ops on one CPU thread (no effect on other devices).

    Augmentation is many short passes over the batch; with two threads, each pass waits for the
    slower thread, and on a CPU shared with other work that made it 5-8x slower here, while
    one thread lost only ~25 % on an idle machine. Switching costs under a microsecond.
    """
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
