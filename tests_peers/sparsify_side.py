"""sparsify side: run with .venv-peers/sparsify/bin/python (see peer_io for what it does).

``SparseCoder.save_to_disk`` writes each case into a folder named after its hookpoint
(``layers.2``, ``layers.2.mlp``), which is where sparsify records the place. Features are the
dense form of ``encode``'s top-k; ``x_hat`` is ``forward(x).sae_out`` (decode plus skip).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import torch
from peer_io import D_IN, D_SAE, K, dense, inputs, jitter, main, record
from sparsify import SparseCoder, SparseCoderConfig

CASES = [  # (case, hookpoint folder, config fields, dtype)
    ("topk", "layers.2", {}, torch.float32),
    ("topk-bf16", "layers.2", {}, torch.bfloat16),
    ("topk-transcoder", "layers.2.mlp", {"transcode": True}, torch.float32),
    ("topk-skip-transcoder", "layers.2.mlp", {"transcode": True, "skip_connection": True},
     torch.float32),
]  # fmt: skip


@torch.no_grad()
def separate_ranks(encoder: torch.nn.Linear) -> None:
    """bfloat16 top-k: two correct implementations may break a near-tie at the k-th largest
    pre-activation differently (they round at different steps), so here the ranks are set by
    biases 1 apart and the input term is kept small."""
    encoder.weight.mul_(0.05)
    encoder.bias.copy_(torch.arange(encoder.bias.numel(), dtype=encoder.bias.dtype))


@torch.no_grad()
def outputs_of(sae: SparseCoder, x: torch.Tensor) -> dict[str, torch.Tensor]:
    top_acts, top_indices, _ = sae.encode(x)
    return {"features": dense(top_acts, top_indices, sae.num_latents), "x_hat": sae(x).sae_out}


def own(out: Path) -> None:
    for seed, (name, hookpoint, fields, dtype) in enumerate(CASES):
        config = SparseCoderConfig(num_latents=D_SAE, k=K, **fields)
        sae = jitter(SparseCoder(D_IN, config, dtype=dtype), seed=seed)
        if dtype == torch.bfloat16:
            separate_ranks(sae.encoder)
        sae.save_to_disk(out / name / "files" / hookpoint)
        x = inputs(dtype=dtype)
        outputs = {"x": x, **outputs_of(sae, x)}
        record(out / name, architecture=name, outputs=outputs, path=f"files/{hookpoint}")


def load(files: Path, x: torch.Tensor) -> dict[str, torch.Tensor]:
    return outputs_of(SparseCoder.load_from_disk(files), x)


if __name__ == "__main__":
    main("eai-sparsify", version("eai-sparsify"), own, load)
