"""One precision setting for every command and the Python API: ``auto``, ``float32`` or
``bfloat16``.

1. ``resolve_precision(precision, device)`` turns the setting into a ``ResolvedPrecision``:
   ``auto`` is bfloat16 on CUDA devices with bfloat16 tensor cores (compute capability 8.0,
   Ampere, or newer) and on CPUs whose ``/proc/cpuinfo`` flags show AMX (``amx_bf16``) or
   AVX512-BF16 (``avx512_bf16``), float32 elsewhere.
2. ``announce_precision`` says on stderr, once per run and resolution, which precision was chosen
   and why; ``ResolvedPrecision.to_json`` is what outputs record in their settings.

Under bfloat16 the large products run in bfloat16 and accumulate in float32 inside the kernel
(oneDNN's AVX512-BF16/AMX kernels on the CPU, tensor cores on CUDA: a product's sum never
rounds to bfloat16 before its end, see ``tests/test_precision.py``); long sums, losses,
optimiser state and master weights stay in float32 (``accumulate_dtype``).

torch is imported only where it is used: the CLI reads ``PRECISIONS`` for its ``--help``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    import torch

__all__ = [
    "PRECISIONS",
    "Precision",
    "PrecisionError",
    "ResolvedPrecision",
    "announce_precision",
    "cpu_flags",
    "precision_name",
    "resolve_precision",
]

Precision = Literal["auto", "float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
Compute = Literal["float32", "bfloat16"]

CPUINFO = Path("/proc/cpuinfo")
"""Where the CPU's feature flags are read (Linux)."""
CPU_BF16_FLAGS = {"amx_bf16": "AMX", "avx512_bf16": "AVX512-BF16"}
"""``/proc/cpuinfo`` flags of CPUs with bfloat16 dot-product instructions, and their names."""
CUDA_BF16_CAPABILITY = (8, 0)
"""First CUDA compute capability with bfloat16 tensor cores (Ampere)."""


class PrecisionError(ValueError):
    """A precision setting that is not one of ``PRECISIONS``."""


@dataclass(frozen=True)
class ResolvedPrecision:
    """The precision a run uses, and why."""

    asked: Precision
    """The setting it was resolved from."""
    name: Compute
    """Precision of the large products: ``float32`` or ``bfloat16``."""
    reason: str
    """Why, e.g. ``"bfloat16: CPU has AVX512-BF16 (auto)"``."""

    def __post_init__(self) -> None:
        if self.name not in get_args(Compute):
            raise PrecisionError(f"compute dtype must be float32 or bfloat16, got {self.name!r}")

    @property
    def compute_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.name)

    @property
    def accumulate_dtype(self) -> torch.dtype:
        """Dtype of long sums, losses, optimiser state and master weights: always float32."""
        import torch

        return torch.float32

    @property
    def is_bfloat16(self) -> bool:
        return self.name == "bfloat16"

    def to_json(self) -> dict[str, Any]:
        return {
            "asked": self.asked,
            "compute_dtype": self.name,
            "accumulate_dtype": "float32",
            "reason": self.reason,
        }


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``CPUINFO`` (empty where that file does not exist)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def _hardware_choice(device: torch.device) -> tuple[Compute, str]:
    """What ``auto`` picks on ``device``, with the reason."""
    import torch

    if device.type == "cpu":
        found = [name for flag, name in CPU_BF16_FLAGS.items() if flag in cpu_flags()]
        if found:
            return "bfloat16", f"bfloat16: CPU has {' and '.join(found)}"
        return "float32", "float32: CPU has neither AMX nor AVX512-BF16"
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        sm = f"{device} (sm_{capability[0]}{capability[1]})"
        if capability >= CUDA_BF16_CAPABILITY:
            return "bfloat16", f"bfloat16: {sm} has bfloat16 tensor cores"
        return "float32", f"float32: {sm} has no bfloat16 tensor cores"
    return "float32", f"float32: no known bfloat16 support on {device.type} devices"


def resolve_precision(
    precision: Precision = "auto", device: str | torch.device = "cpu"
) -> ResolvedPrecision:
    """The precision ``precision`` means on ``device``; an explicit ``float32`` or ``bfloat16``
    is taken as asked (the reason says when the hardware has no fast bfloat16)."""
    import torch

    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        name, reason = _hardware_choice(device)
        return ResolvedPrecision("auto", name, f"{reason} (auto)")
    if precision == "float32":
        return ResolvedPrecision("float32", "float32", "float32: asked for")
    fast, why = _hardware_choice(device)
    note = "" if fast == "bfloat16" else f"; slow here, {why.removeprefix('float32: ')}"
    return ResolvedPrecision("bfloat16", "bfloat16", f"bfloat16: asked for{note}")


_announced: set[str] = set()
"""Reasons already written to stderr by this process."""


def announce_precision(resolved: ResolvedPrecision) -> None:
    """One line on stderr, ``sparse-circuits: precision bfloat16: CPU has AMX (auto)``, the
    first time this process (rank 0 of a data-parallel run) resolves to it."""
    from sparse_circuits.distributed import rank_and_world

    if resolved.reason in _announced or rank_and_world()[0] != 0:
        return
    _announced.add(resolved.reason)
    print(f"sparse-circuits: precision {resolved.reason}", file=sys.stderr, flush=True)


def precision_name(dtype: torch.dtype) -> str:
    """The name a dtype is recorded under in settings (``float32``, ``bfloat16``...)."""
    return str(dtype).removeprefix("torch.")
