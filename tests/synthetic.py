"""Activations built from a known sparse dictionary: the ground truth trainers must recover."""

import torch


def synthetic_activations(
    n: int = 20_000, d: int = 32, n_true: int = 64, p_active: float = 0.05, seed: int = 0
):
    """``x = codes @ true_directions``: ``(n, d)`` activations and the ``(n_true, d)`` unit
    directions; each true feature fires independently with probability ``p_active``, with a
    magnitude uniform in [0.5, 1.5]."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(n_true, d, generator=generator)
    directions /= directions.norm(dim=-1, keepdim=True)
    active = torch.rand(n, n_true, generator=generator) < p_active
    magnitude = 0.5 + torch.rand(n, n_true, generator=generator)
    return (active * magnitude) @ directions, directions


def recovery(W_dec_FD: torch.Tensor, true_directions: torch.Tensor) -> float:
    """Mean over true features of the best cosine similarity with any decoder row."""
    learned = W_dec_FD / W_dec_FD.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return (true_directions @ learned.T).max(dim=-1).values.mean().item()
