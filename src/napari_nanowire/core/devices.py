"""Compute device selection: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    """True on an Apple GPU that torch can use."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a device name into a torch device; ``auto`` picks CUDA, then MPS, then CPU.

    Asking for a device this machine lacks raises a ValueError that says what is available.
    """
    name = name.lower()
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise ValueError(f"Unknown device {name!r}: choose one of {', '.join(DEVICE_CHOICES)}.")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"Device {name!r} was requested but no CUDA GPU is visible; use --device cpu or auto."
        )
    if name == "mps" and not mps_available():
        raise ValueError("Device 'mps' was requested but Apple MPS is not available; use cpu.")
    return torch.device(name)


def describe_devices() -> list[tuple[str, str]]:
    """Available devices as (name, human description), best first, for device pickers."""
    found = []
    for i in range(torch.cuda.device_count()):
        found.append((f"cuda:{i}", f"CUDA GPU {i}: {torch.cuda.get_device_name(i)}"))
    if mps_available():
        found.append(("mps", "Apple GPU (MPS)"))
    found.append(("cpu", f"CPU ({torch.get_num_threads()} threads)"))
    return found
