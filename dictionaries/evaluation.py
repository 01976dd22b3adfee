"""How well a dictionary reconstructs activations: FVU, L0, dead features, shrinkage.

Everything here works on plain tensors and knows nothing of models; the downstream metrics
(cross-entropy with the dictionary spliced in) live in ``circuits.dictionary_eval``.

For activations ``x`` (``N, d_in``), targets ``y`` (``N, d_out``; ``y = x`` for an SAE) and
``(y_hat, f) = dictionary(x)`` over all ``N`` evaluated tokens:

- ``fvu = sum ||y - y_hat||^2 / sum ||y - mean(y)||^2`` (mean over all tokens);
- ``l0`` the mean number of nonzero features per token;
- ``feature_density`` the fraction of tokens each feature is nonzero on (``d_sae``), and
  ``dead_fraction`` the fraction of features with density 0;
- ``shrinkage`` the relative reconstruction bias of the Gated SAE paper (Rajamanoharan et al.,
  2024, section 5.1), ``gamma = argmin_gamma sum ||y_hat / gamma - y||^2``. With
  ``u = 1 / gamma`` the objective ``sum ||u y_hat - y||^2`` is a parabola in ``u`` minimised at
  ``u = sum <y_hat, y> / sum ||y_hat||^2``, so ``gamma = sum ||y_hat||^2 / sum <y_hat, y>``.
  ``gamma < 1`` means reconstructions are shrunk towards 0 (the L1 penalty's bias); 1 is unbiased.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from sparse_circuits.dictionaries.base import Dictionary, DictionaryError
from sparse_circuits.files import atomic_path

__all__ = ["reconstruction_metrics", "density_histogram", "eval_mode", "ReconstructionStats"]


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``module`` in inference mode for the block, restoring its training flag after.

    Matters for BatchTopK, which keeps the top ``k * N`` of a whole batch while training but uses
    its per-token threshold at inference.
    """
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


class ReconstructionStats:
    """Streaming float64 sums behind ``reconstruction_metrics``; ``update`` batch by batch."""

    def __init__(self, d_sae: int, d_out: int) -> None:
        self.n_tokens = 0
        self.mean_y_D = torch.zeros(d_out, dtype=torch.float64)
        """Running mean of the targets over all tokens so far."""
        self.centered_ss = 0.0
        """``sum ||y - mean(y)||^2``, combined across batches (Chan et al.'s parallel update)."""
        self.squared_error = 0.0
        """``sum ||y - y_hat||^2``."""
        self.hat_dot_y = 0.0
        """``sum <y_hat, y>``."""
        self.hat_squared = 0.0
        """``sum ||y_hat||^2``."""
        self.active_F = torch.zeros(d_sae, dtype=torch.float64)
        """How many tokens each feature fired on."""

    def update(self, y_ND: torch.Tensor, y_hat_ND: torch.Tensor, f_NF: torch.Tensor) -> None:
        """Add one batch: targets and reconstructions ``(N, d_out)``, features ``(N, d_sae)``."""
        n = y_ND.shape[0]
        if n == 0:
            return
        y = y_ND.detach().to("cpu", torch.float64)
        y_hat = y_hat_ND.detach().to("cpu", torch.float64)
        self.squared_error += (y - y_hat).pow(2).sum().item()
        self.hat_dot_y += (y_hat * y).sum().item()
        self.hat_squared += y_hat.pow(2).sum().item()
        self.active_F += (f_NF.detach() != 0).sum(0).to("cpu", torch.float64)
        # Merge this batch's mean and centred sum of squares into the running ones; exact,
        # and free of the cancellation in sum ||y||^2 - N ||mean||^2 when the mean is large.
        batch_mean_D = y.mean(0)
        batch_ss = (y - batch_mean_D).pow(2).sum().item()
        total = self.n_tokens + n
        delta_D = batch_mean_D - self.mean_y_D
        self.centered_ss += batch_ss + delta_D.pow(2).sum().item() * self.n_tokens * n / total
        self.mean_y_D += delta_D * (n / total)
        self.n_tokens = total

    def result(self) -> dict[str, Any]:
        n = self.n_tokens
        if n == 0:
            raise ValueError("no tokens to evaluate: every batch was empty")
        density_F = (self.active_F / n).float()
        return {
            "fvu": _ratio(self.squared_error, self.centered_ss),
            "l0": self.active_F.sum().item() / n,
            "dead_fraction": (self.active_F == 0).double().mean().item(),
            "shrinkage": _ratio(self.hat_squared, self.hat_dot_y),
            "n_tokens": n,
            "feature_density": density_F,
        }


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when it is 0/0 and +-inf for x/0."""
    if denominator == 0:
        return math.nan if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / denominator


def _pair(item: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(item, torch.Tensor):
        return item, item
    x, y = item
    return x, (x if y is None else y)


def reconstruction_metrics(
    dictionary: Dictionary,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor] | torch.Tensor],
) -> dict[str, Any]:
    """FVU, L0, dead fraction, shrinkage and feature density over all ``batches``, in one pass.

    Each batch is ``(x (N, d_in), y (N, d_out))``: what the dictionary reads and what it should
    reconstruct (``y`` is ``x`` for an SAE; a bare tensor ``x`` or ``(x, None)`` means that too).
    Leading axes beyond one are flattened. The dictionary runs in eval mode under ``no_grad``;
    sums are kept in float64.

    Returns ``fvu``, ``l0``, ``dead_fraction``, ``shrinkage`` (floats), ``n_tokens`` (int) and
    ``feature_density`` (float tensor ``(d_sae,)``, on the CPU).
    """
    stats = ReconstructionStats(dictionary.d_sae, dictionary.d_out)
    with torch.no_grad(), eval_mode(dictionary):
        for item in batches:
            x, y = _pair(item)
            x_ND = x.reshape(-1, x.shape[-1])
            y_ND = y.reshape(-1, y.shape[-1])
            if y_ND.shape[-1] != dictionary.d_out:
                raise DictionaryError(
                    f"{dictionary.arch} dictionary reconstructs width {dictionary.d_out}, "
                    f"but the targets have width {y_ND.shape[-1]}"
                )
            if x_ND.shape[0] != y_ND.shape[0]:
                raise ValueError(
                    f"inputs have {x_ND.shape[0]} tokens but targets have {y_ND.shape[0]}"
                )
            x_hat_ND, f_NF = dictionary(x_ND.to(dictionary.device, dictionary.dtype))
            stats.update(y_ND, x_hat_ND, f_NF)
    return stats.result()


def density_histogram(
    density: torch.Tensor,
    path: str | Path,
    *,
    title: str = "Feature density",
    bins: int = 50,
) -> Path:
    """Write a self-contained plotly HTML histogram of ``log10`` feature density; return the path.

    ``density`` is ``(d_sae,)``, the fraction of tokens each feature fires on. Dead features
    (density 0, ``log10 = -inf``) are not plotted; their number is given in the title and in an
    annotation. The file is written atomically (the whole page or nothing).
    """
    import plotly.graph_objects as go

    density_F = torch.as_tensor(density).detach().double().cpu().flatten()
    alive_F = density_F > 0
    n_features = density_F.numel()
    n_dead = n_features - int(alive_F.sum())
    log_density = density_F[alive_F].log10().tolist()
    dead_note = (
        f"{n_dead} of {n_features} features dead ({100 * n_dead / max(n_features, 1):.1f}%), "
        "not shown"
    )
    fig = go.Figure(go.Histogram(x=log_density, nbinsx=bins, name="features"))
    fig.update_layout(
        title=f"{title}<br><sup>{dead_note}</sup>",
        xaxis_title="log10(fraction of tokens the feature fires on)",
        yaxis_title="features",
        bargap=0.05,
        template="plotly_white",
    )
    fig.add_annotation(
        text=dead_note, xref="paper", yref="paper", x=1, y=1, showarrow=False, xanchor="right"
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.write_html(tmp, include_plotlyjs=True, full_html=True, auto_open=False)
    return path
