"""Arithmetic precision of training and decoding: fp32, or bf16 matrix products where the device has them.

`--precision bf16` runs the policy's matrix products under `torch.autocast(dtype=torch.bfloat16)`
(AVX-512 BF16 / AMX on CPU, any bf16-capable GPU). What must not round stays fp32: the weights and
the optimiser state (autocast casts copies per product), the GRU hidden state and its cell
arithmetic, the log-softmax behind every log-probability the losses and the policy gradient use,
the values, the losses, the backward pass's accumulation into fp32 gradients and all metrics.

On a processor without native bf16 products autocast would emulate them (about 50x slower than
fp32 on this project's AVX2 machine), so scripts ask `resolve_precision`, which falls back to fp32
with a one-line message; the library itself runs whatever precision it is given (the tests use
that to check bf16's numerics on any machine).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16")
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")

__all__ = ["PRECISIONS", "autocast", "bf16_native", "check_precision", "resolve_precision"]


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def _cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.cache
def bf16_native(device_type: str) -> bool:
    """Whether `device_type` ("cpu" / "cuda") multiplies bf16 matrices in hardware."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    return bool(_cpu_flags() & set(_CPU_BF16_FLAGS)) or torch.ops.mkldnn._is_mkldnn_bf16_supported()


@functools.cache
def resolve_precision(precision: str, device_type: str) -> str:
    """The precision a run uses: bf16 only where `bf16_native`, else fp32 (said once per process)."""
    check_precision(precision)
    if precision == "bf16" and not bf16_native(device_type):
        print(
            f"--precision bf16: this {device_type} has no native bf16 matrix products "
            f"(CPU needs {' or '.join(_CPU_BF16_FLAGS)}); running fp32",
            file=sys.stderr,
        )
        return "fp32"
    return precision


@contextlib.contextmanager
def autocast(precision: str, device_type: str = "cpu") -> Iterator[None]:
    """bf16 matrix products inside the block for precision "bf16"; nothing for "fp32"."""
    if check_precision(precision) == "fp32":
        yield
        return
    with torch.autocast(device_type, dtype=torch.bfloat16):
        yield


def full_precision(device_type: str = "cpu") -> contextlib.AbstractContextManager:
    """A block that leaves autocast (backward passes and optimiser steps run in it)."""
    return torch.autocast(device_type, enabled=False)
