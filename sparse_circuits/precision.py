"""The precision setting every command and the Python API share: ``auto``, ``float32`` or
``bfloat16``.

``auto`` resolves to bfloat16 where the hardware computes it natively (CUDA devices that
support it, CPUs with AMX or AVX512-BF16) and to float32 elsewhere. Under bfloat16 the model's
weights and activations are bfloat16; what must stay exact (metrics, effects, the sums of
gradient products) is float32 in every module that computes it.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["PRECISIONS", "precision_name", "resolve_precision"]

PRECISIONS = ("auto", "float32", "bfloat16")

_BF16_CPU_FLAGS = {"amx_bf16", "avx512_bf16"}
"""``/proc/cpuinfo`` flags of CPUs with native bfloat16 arithmetic (oneDNN uses them)."""


def _cpu_has_bf16() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = {
        word for line in text.splitlines() if line.startswith("flags") for word in line.split()
    }
    return bool(flags & _BF16_CPU_FLAGS)


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> torch.dtype:
    """The dtype ``precision`` means on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return getattr(torch, precision)
    kind = torch.device(device).type
    if kind == "cuda":
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        native = kind == "cpu" and _cpu_has_bf16()
    return torch.bfloat16 if native else torch.float32


def precision_name(dtype: torch.dtype) -> str:
    """The name a dtype is recorded under in settings (``float32``, ``bfloat16``...)."""
    return str(dtype).removeprefix("torch.")
