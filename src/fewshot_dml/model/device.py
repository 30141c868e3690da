"""Devices and numeric precision: which device a run uses, its CPU threads, and its autocast dtype.

One place for what depends on the hardware, so the trainer, the model and the objective agree.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from fewshot_dml.config.sections import DEVICES, PRECISIONS


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
    """Mixed precision on a device: the autocast dtype (None = float32 throughout)."""

    dtype: torch.dtype | None

    def autocast(self, device: torch.device) -> torch.autocast:
        return torch.autocast(device_type=device.type, dtype=self.dtype, enabled=self.dtype is not None)


FP32 = Precision(None)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: CUDA that supports it, or a CPU with
    AVX512-BF16 or AMX (elsewhere CPU autocast emulates bf16 and is slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def precision_for(device: torch.device, name: str) -> Precision:
    """``train.precision``: ``fp32``; ``bf16`` autocast (an error where the device has no native
    bf16); ``auto`` = bf16 where native, else fp32. The DML losses compute in float32 regardless
    (:func:`full_precision`)."""
    if name not in PRECISIONS:
        raise ValueError(f"train.precision={name!r}; expected one of {list(PRECISIONS)}")
    if name == "fp32" or (name == "auto" and not native_bf16(device)):
        return FP32
    if not native_bf16(device):
        raise ValueError(
            f"train.precision='bf16' but this {device.type} has no native bfloat16 (AVX512-BF16/AMX or a bf16 CUDA GPU); "
            "set train.precision to 'auto' or 'fp32'"
        )
    return Precision(torch.bfloat16)


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
