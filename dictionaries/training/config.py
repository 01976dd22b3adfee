"""Training settings, one dataclass validated on construction (the CLI builds on it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from sparse_circuits.errors import ConfigError
from sparse_circuits.precision import PRECISIONS, Precision

__all__ = ["MATRYOSHKA_FRACTIONS", "TOPK_ARCHS", "TrainConfig", "TrainConfigError"]

Arch = Literal["relu", "gated", "topk", "batchtopk", "matryoshka_batchtopk", "jumprelu"]

TOPK_ARCHS = ("topk", "batchtopk", "matryoshka_batchtopk")
"""Architectures that keep ``k`` latents per token (per token on average for the batch kinds)."""

MATRYOSHKA_FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1)
"""Default prefix widths as fractions of ``d_sae``: nested prefixes doubling in width, as in
Bussmann et al. (2025)'s geometric group sizes."""


class TrainConfigError(ConfigError):
    """Settings that cannot train; the message names the fields."""


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise TrainConfigError(message)


@dataclass
class TrainConfig:
    arch: Arch
    """Dictionary architecture."""
    d_sae: int
    """Number of features."""
    steps: int
    """Optimiser steps (tokens / batch_size)."""
    batch_size: int = 4096
    """Tokens per step, summed over all data-parallel ranks."""
    lr: float | None = None
    """Peak learning rate; ``None`` picks the architecture's default (see ``default_lr``)."""
    warmup_steps: int | None = None
    """Linear learning-rate warm-up from 0; ``None``: 100 steps, or a tenth of a shorter run."""
    decay_start: float = 0.8
    """Fraction of training after which the learning rate decays linearly to 0."""
    k: int | None = None
    """Active features per token (topk, batchtopk, matryoshka_batchtopk)."""
    matryoshka_widths: list[int] | None = None
    """matryoshka_batchtopk only: the widths ``m`` of the nested prefixes, strictly increasing
    and ending at ``d_sae``; the loss averages the reconstruction error of each prefix (latents
    ``[0, m)``). ``None`` means ``MATRYOSHKA_FRACTIONS`` of ``d_sae``, resolved on construction
    so that the saved settings hold the widths used."""
    l1_coefficient: float | None = None
    """Sparsity penalty (relu, gated: L1; jumprelu: L0) on inputs normalised to mean squared
    norm ``d_in``; ``None`` picks the architecture's default (``sparsity_coefficient``)."""
    sparsity_warmup: float = 0.05
    """Fraction of training over which the sparsity penalty ramps up linearly from 0."""
    decoder_norm: Literal["unit", "weighted_l1"] = "unit"
    """relu only: keep decoder rows unit-norm, or leave them free and weight each feature's
    L1 term by its decoder norm (Anthropic's April 2024 update)."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss on dead latents (Gao et al. 2024, appendix A.2); 0 disables it."""
    auxk_k: int | None = None
    """Dead latents used by AuxK; ``None`` means ``d_in // 2`` (Gao et al. use 512 for d 1024+)."""
    dead_after_tokens: int | None = None
    """A latent that has not fired in this many tokens counts as dead; ``None`` means Gao et
    al.'s 10M, or a tenth of the run's tokens when that is shorter. Too short a window lets
    AuxK act on latents that are merely rare: at k 8 and 16384 latents, a 48k-token window
    left 63 % of latents dead against 28 % with a 200k one and 21 % without AuxK
    (``benchmarks/auxk_dynamics.py [--dead-after-tokens 200000]``, which also traces why)."""
    jumprelu_bandwidth: float = 0.001
    """Width of the rectangle kernel of the straight-through estimator (Rajamanoharan et al.)."""
    jumprelu_init_threshold: float = 0.001
    normalize_inputs: bool = True
    """Scale inputs to mean squared norm ``d_in``; the scale is folded into the saved weights."""
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 0
    """Save a resumable checkpoint every this many steps; 0 = only at the end."""
    log_every: int = 10
    precision: Precision = "auto"
    """Arithmetic of the dictionary's forward and backward (``sparse_circuits.precision``):
    ``bfloat16`` runs the large products in bfloat16 on float32 master weights, with losses
    and optimiser state in float32; ``auto`` picks it where the hardware is fast at it."""

    def __post_init__(self) -> None:
        _need(self.d_sae > 0, f"d_sae must be positive, got {self.d_sae}")
        _need(self.steps > 0, f"training needs at least one step, got steps {self.steps}")
        _need(self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}")
        if self.arch in TOPK_ARCHS:
            _need(self.k is not None, f"arch {self.arch} needs k")
            _need(0 < self.k <= self.d_sae, f"k {self.k} must be between 1 and d_sae {self.d_sae}")
        self._resolve_matryoshka_widths()
        _need(
            self.dead_after_tokens is None or self.dead_after_tokens > 0,
            f"dead_after_tokens must be positive, got {self.dead_after_tokens}",
        )
        _need(
            self.precision in PRECISIONS,
            f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
        )
        _need(0 <= self.decay_start <= 1, "decay_start must be in [0, 1]")
        _need(0 <= self.sparsity_warmup <= 1, "sparsity_warmup must be in [0, 1]")

    def _resolve_matryoshka_widths(self) -> None:
        if self.arch != "matryoshka_batchtopk":
            _need(
                self.matryoshka_widths is None,
                f"matryoshka_widths applies to arch matryoshka_batchtopk only, not {self.arch}",
            )
            return
        if self.matryoshka_widths is None:
            widths = sorted({max(1, round(f * self.d_sae)) for f in MATRYOSHKA_FRACTIONS})
        else:
            widths = [int(m) for m in self.matryoshka_widths]
        _need(
            bool(widths)
            and widths[0] > 0
            and all(a < b for a, b in zip(widths, widths[1:], strict=False)),
            f"matryoshka_widths must be positive and strictly increasing, got {widths}",
        )
        _need(
            widths[-1] == self.d_sae,
            f"matryoshka_widths must end at d_sae {self.d_sae}, got {widths}",
        )
        self.matryoshka_widths = widths

    @property
    def dictionary_arch(self) -> str:
        """Architecture of the trained dictionary: a Matryoshka SAE is a batchtopk SAE at
        inference (its prefixes matter only to the training loss)."""
        return "batchtopk" if self.arch == "matryoshka_batchtopk" else self.arch

    @property
    def default_lr(self) -> float:
        """Gao et al. (2024) scale the TopK learning rate as 1/sqrt(d_sae) (2e-4 at 16384
        latents, their appendix A). The L1 family uses 5e-5, Anthropic's setting for long
        runs (April 2024 update, ~10^5 steps); short runs learn faster with a larger rate
        (the Gated SAE paper used 3e-4, see ``benchmarks/dictionary_claims.py``)."""
        if self.arch in TOPK_ARCHS:
            return 2e-4 / (self.d_sae / 2**14) ** 0.5
        return 5e-5 if self.arch in ("relu", "gated") else 7e-5

    @property
    def dead_window(self) -> int:
        if self.dead_after_tokens is not None:
            return self.dead_after_tokens
        return min(10_000_000, max(1, self.steps * self.batch_size // 10))

    @property
    def sparsity_coefficient(self) -> float:
        """Anthropic's April 2024 update uses 5 for L1 at this input scale; the L0 penalty of
        JumpReLU counts features, so it needs a smaller weight."""
        if self.l1_coefficient is not None:
            return self.l1_coefficient
        return {"relu": 5.0, "gated": 5.0, "jumprelu": 1.0}.get(self.arch, 0.0)

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else self.default_lr

    def lr_at(self, step: int) -> float:
        """Linear warm-up, constant, then linear decay to 0 over the last ``1 - decay_start``."""
        peak = self.peak_lr
        warmup = self.warmup_steps if self.warmup_steps is not None else min(100, self.steps // 10)
        if step < warmup:
            return peak * (step + 1) / warmup
        decay_from = int(self.decay_start * self.steps)
        if step >= decay_from and self.steps > decay_from:
            return peak * (self.steps - step) / (self.steps - decay_from)
        return peak

    def sparsity_scale(self, step: int) -> float:
        ramp = int(self.sparsity_warmup * self.steps)
        return 1.0 if ramp == 0 else min(1.0, (step + 1) / ramp)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
