"""Which lower precision the networks' forwards may use on this device (``MIXED_PRECISION``).

bf16 keeps fp32's exponent range, so autocast needs no loss scaling; weights, gradients and optimizer
state stay fp32. It pays only where the hardware multiplies bf16 natively: CPUs with AVX512-BF16 or AMX
(Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4 and later), and CUDA GPUs of compute
capability 8.0 and later. Elsewhere bf16 GEMMs are emulated and slower than fp32, so ``auto`` keeps fp32.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when /proc/cpuinfo lists AVX512-BF16 or AMX-BF16 (Linux); False where it cannot be read."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:
        return False
    return any(flag in flags for flag in _CPU_BF16_FLAGS)


def autocast_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``MIXED_PRECISION`` = setting on ``device``, or None for plain fp32."""
    if setting == "fp32":
        return None
    if setting == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return None
