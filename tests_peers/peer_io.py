"""What the peer-side scripts share. Runs INSIDE a peer's virtual environment, so it needs only
torch and safetensors (never sparse_circuits).

``run.py`` calls a side script once, as ``<peer>_side.py WORK``, and it does two things:

- ``WORK/own``: the peer builds each of its architectures (weights made random by ``jitter``),
  saves it with its own save function into ``own/<case>/files``, and records its own
  ``encode``/``decode`` on fixed inputs (``record``).
- ``WORK/ours``, when ``run.py`` made it: each ``ours/<case>`` holds a folder we converted into
  the peer's format (``files/``, ``case.json``, ``inputs.safetensors``); the peer loads it with
  its own loading code and records its outputs on those inputs.

``outputs.safetensors`` holds ``x`` (N, d_in), ``features`` (N, d_sae) and ``x_hat`` (N, d_out),
``x_hat`` being the peer's decode of its own features (plus the skip connection); a dictionary
set prefixes each member's tensors with its place (``mlp.0/x``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

D_IN, D_SAE, D_OUT, K, N_TOKENS = 16, 64, 24, 8, 64
"""Widths of every test dictionary: small enough to run in seconds, wide enough that top-k,
thresholds and gates each keep some features and drop others."""


def inputs(width: int = D_IN, *, dtype: torch.dtype = torch.float32, seed: int = 1234):
    """The fixed inputs, ``(N_TOKENS, width)``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(N_TOKENS, width, generator=generator).to(dtype)


@torch.no_grad()
def jitter(module: torch.nn.Module, *, seed: int, scale: float = 0.1) -> torch.nn.Module:
    """Add noise to every floating parameter, so zero-initialised biases, thresholds and gates
    take part; thresholds are kept positive (every peer documents them so)."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in module.named_parameters():
        noise = torch.randn(param.shape, generator=generator) * scale
        if "threshold" in name:
            param.copy_((param.float() + noise.abs() + 0.05).to(param.dtype))
        else:
            param.add_(noise.to(param.dtype))
    return module


def record(
    case: Path,
    *,
    architecture: str,
    outputs: dict[str, torch.Tensor],
    load: str = "dictionary",
    path: str = "files",
    expect_error: str | None = None,
    expect_warning: str | None = None,
    note: str = "",
) -> None:
    """Write ``case.json`` and ``outputs.safetensors`` for one case of ``own``."""
    case.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().clone() for name, t in outputs.items()}
    if tensors:
        save_file(tensors, str(case / "outputs.safetensors"))
    description = {"architecture": architecture, "load": load, "path": path, "note": note}
    if expect_error:
        description["expect_error"] = expect_error
    if expect_warning:
        description["expect_warning"] = expect_warning
    (case / "case.json").write_text(json.dumps(description, indent=2))


def dense(values: torch.Tensor, indices: torch.Tensor, width: int) -> torch.Tensor:
    """``(N, k)`` values at ``(N, k)`` indices -> ``(N, width)``."""
    return torch.zeros(values.shape[0], width, dtype=values.dtype).scatter(-1, indices, values)


def main(peer: str, version: str, own: Callable[[Path], None], load: Callable | None = None):
    """Fill ``WORK/own``, answer ``WORK/ours`` with ``load``, then write ``WORK/peer.json``."""
    work = Path(sys.argv[1])
    torch.manual_seed(0)  # the peer's own initial weights: the same table on every run
    own(work / "own")
    ours = work / "ours"
    for case in sorted(ours.glob("*/case.json")) if load else []:
        x = load_file(str(case.parent / "inputs.safetensors"))["x"]
        outputs = load(case.parent / "files", x)
        tensors = {name: t.detach().clone() for name, t in outputs.items()}
        save_file(tensors, str(case.parent / "outputs.safetensors"))
    (work / "peer.json").write_text(json.dumps({"peer": peer, "version": version}))
