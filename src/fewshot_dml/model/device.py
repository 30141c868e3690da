"""Devices and numeric precision: which device a run uses, its CPU threads, and autocast on CUDA.

One place for what depends on the hardware, so the trainer, the model and the objective agree.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from fewshot_dml.config.sections import DEVICES


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU; ``cuda`` without CUDA is an error."""
    if name not in DEVICES:
        raise ValueError(f"train.device={name!r}; expected one of {list(DEVICES)}")
    cuda = torch.cuda.is_available()
    if name == "cuda" and not cuda:
        raise ValueError(f"train.device='cuda' but CUDA is not available to torch {torch.__version__}; set train.device to 'auto' or 'cpu'")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and cuda) else "cpu")


def cpu_threads(threads: int) -> int:
    """Threads for CPU training: ``threads``, or every core when 0."""
    if threads < 0:
        raise ValueError(f"train.threads={threads}; expected 0 (all cores) or a positive integer")
    return threads or os.cpu_count() or 1


@dataclass(frozen=True)
class Precision:
    """Mixed precision on a device: the autocast dtype (None = float32) and whether to scale grads."""

    dtype: torch.dtype | None
    scale_grads: bool

    def autocast(self, device: torch.device) -> torch.autocast:
        return torch.autocast(device_type=device.type, dtype=self.dtype, enabled=self.dtype is not None)


def precision_for(device: torch.device) -> Precision:
    """bf16 autocast on CUDA when supported, else fp16 with a GradScaler; float32 on CPU."""
    if device.type != "cuda":
        return Precision(None, False)
    if torch.cuda.is_bf16_supported():
        return Precision(torch.bfloat16, False)
    return Precision(torch.float16, True)


def full_precision(device: torch.device) -> torch.autocast:
    """A block computed in float32 even inside an autocast region (the DML losses: PML casts its
    proxies to the embeddings' dtype in place, which would turn float32 parameters into float16)."""
    return torch.autocast(device_type=device.type, enabled=False)


@contextlib.contextmanager
def torch_settings(device: torch.device, threads: int) -> Iterator[None]:
    """On CPU: ``threads`` threads (CPU kernels are deterministic); the previous count comes back after.

    ``torch.use_deterministic_algorithms`` is not set: it only changes CUDA kernels, and enabling
    it costs ~1.8 s of imports per run (measured), a tenth of a CPU run.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(cpu_threads(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
