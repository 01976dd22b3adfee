"""One TopK training step of one library, timed on request: the worker ``benchmarks/peers.py``
starts in that library's environment (``python benchmarks/peer_steps.py LIBRARY``).

It reads commands from stdin, one a line, ``DTYPE STEPS`` (``float32 3``), and answers each with
one JSON line ``{"seconds": [...]}``: the wall time of each of STEPS steps on the same fixed
batch. The first command for a dtype builds that dtype's SAE and optimiser and runs
``WARMUP_STEPS`` untimed steps. Each library's step is its own trainer's step, with its defaults:

| library             | step                                               | optimiser (default)               | AuxK (default)        |
|---------------------|----------------------------------------------------|-----------------------------------|-----------------------|
| ours                | ``DictionaryTrainer.step``                         | Adam, betas (0.9, 0.999)          | on, alpha 1/32        |
| sae-lens            | ``SAETrainer._train_step``'s body: ``training_forward_pass``, backward, clip 1.0, Adam | Adam, lr 3e-4 | on, coefficient 1.0 |
| eai-sparsify        | ``Trainer.fit``'s body: unit-norm decoder, forward (FVU), backward, parallel-gradient removal | ScheduleFree SignSGD, momentum 0.95 | off (``auxk_alpha`` 0) |
| dictionary-learning | ``TopKTrainer.update``                             | Adam, betas (0.9, 0.999)          | on, alpha 1/32        |

Where AuxK is on, the same tenth of the latents is marked dead before every step (their
"tokens since fired" counters set past the dead window), so the AuxK term really runs; a
latent that fires is otherwise marked alive again by each library's own bookkeeping.
bfloat16: ours is ``TrainConfig(precision="bfloat16")`` (bfloat16 products, float32 master
weights and Adam state); sae-lens and sparsify hold the SAE in bfloat16; dictionary-learning runs its
float32 SAE under ``torch.autocast("cpu", torch.bfloat16)`` (``trainSAE(autocast_dtype=...)``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import torch

D_IN, D_SAE, K, BATCH = 576, 16384, 32, 4096
DEAD = D_SAE // 10
WARMUP_STEPS = 3
"""Untimed steps before the first timed one, for every library: the allocator's heap takes a
few steps to grow to a step's peak (``sparse_circuits.memory``)."""


def batch(dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(BATCH, D_IN, generator=generator).to(dtype)


def ours(dtype: torch.dtype) -> Callable[[], None]:
    from sparse_circuits.dictionaries.training import TrainConfig
    from sparse_circuits.dictionaries.training.sources import TensorSource
    from sparse_circuits.dictionaries.training.trainer import DictionaryTrainer

    # bfloat16 is our precision setting: bfloat16 products, float32 master weights and Adam
    precision = str(dtype).removeprefix("torch.")
    config = TrainConfig(
        arch="topk", d_sae=D_SAE, k=K, steps=10**6, batch_size=BATCH, precision=precision
    )
    trainer = DictionaryTrainer(TensorSource(batch(torch.float32)), config)
    window = config.dead_window

    def step() -> None:
        trainer.objective.tokens_since_fired[:DEAD] = window
        trainer.step()

    return step


def saelens(dtype: torch.dtype) -> Callable[[], None]:
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.saes.sae import TrainCoefficientConfig, TrainStepInput

    name = str(dtype).removeprefix("torch.")
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, dtype=name))
    optimizer = torch.optim.Adam(sae.parameters(), lr=3e-4, betas=(0.9, 0.999))
    coefficients = {
        key: c.value if isinstance(c, TrainCoefficientConfig) else c
        for key, c in sae.get_coefficients().items()
    }
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[:DEAD] = True
    x = batch(dtype)
    steps = iter(range(10**9))

    def step() -> None:
        sae.train()
        output = sae.training_forward_pass(
            TrainStepInput(
                sae_in=x,
                coefficients=coefficients,
                dead_neuron_mask=dead,
                n_training_steps=next(steps),
                is_logging_step=False,
            )
        )
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    return step


def sparsify(dtype: torch.dtype) -> Callable[[], None]:
    from schedulefree import ScheduleFreeWrapper
    from sparsify import SparseCoder, SparseCoderConfig
    from sparsify.sign_sgd import SignSGD

    sae = SparseCoder(D_IN, SparseCoderConfig(num_latents=D_SAE, k=K), dtype=dtype)
    lr = 5e-3 / (D_SAE / 2**14) ** 0.5  # its default for the signum optimiser
    optimizer = ScheduleFreeWrapper(
        SignSGD([{"params": sae.parameters(), "lr": lr}]), momentum=0.95
    )
    optimizer.train()
    x = batch(dtype)

    def step() -> None:
        sae.set_decoder_norm_to_unit_norm()
        out = sae(x, dead_mask=None)  # auxk_alpha 0: the trainer passes no dead mask
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        optimizer.zero_grad()

    return step


def dictionary_learning(dtype: torch.dtype) -> Callable[[], None]:
    from contextlib import nullcontext

    from dictionary_learning.trainers.top_k import TopKTrainer

    trainer = TopKTrainer(
        steps=10**6, activation_dim=D_IN, dict_size=D_SAE, k=K, layer=0, lm_name="-", device="cpu"
    )
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if dtype == torch.bfloat16 else nullcontext()
    )
    x = batch(dtype)
    steps = iter(range(10**9))

    def step() -> None:
        trainer.num_tokens_since_fired[:DEAD] = trainer.dead_feature_threshold
        with autocast:
            trainer.update(next(steps), x)

    return step


LIBRARIES = {
    "ours": ours,
    "sae-lens": saelens,
    "eai-sparsify": sparsify,
    "dictionary-learning": dictionary_learning,
}


def serve(library: str) -> None:
    replies, sys.stdout = sys.stdout, sys.stderr  # what the libraries print goes to stderr
    torch.manual_seed(0)
    steps: dict[torch.dtype, Callable[[], None]] = {}
    for line in sys.stdin:
        dtype_name, count = line.split()
        dtype = getattr(torch, dtype_name)
        if dtype not in steps:
            steps[dtype] = LIBRARIES[library](dtype)
            for _ in range(WARMUP_STEPS):
                steps[dtype]()
        seconds = []
        for _ in range(int(count)):
            started = time.perf_counter()
            steps[dtype]()
            seconds.append(time.perf_counter() - started)
        print(json.dumps({"seconds": seconds}), file=replies, flush=True)


if __name__ == "__main__":
    serve(sys.argv[1])
