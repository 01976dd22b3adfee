"""dictionary_learning side: run with .venv-peers/dictionary_learning/bin/python (see peer_io).

``own``: each trainer of dictionary_learning 0.1.0 trains a few steps on random activations
through ``trainSAE``, which writes ``ae.pt`` and ``config.json`` itself; the outputs are those of
the class's own ``from_pretrained`` on that ``ae.pt`` (``AutoEncoder`` with
``normalize_decoder=False``: its default rescales the features by the decoder norms). The
batch top-k trainers start estimating their inference threshold at step 0.
``load``: the class named in our ``config.json``, read with its ``from_pretrained`` defaults.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import torch
from dictionary_learning.dictionary import (
    AutoEncoder,
    AutoEncoderNew,
    GatedAutoEncoder,
    JumpReluAutoEncoder,
)
from dictionary_learning.trainers.batch_top_k import BatchTopKSAE, BatchTopKTrainer
from dictionary_learning.trainers.gdm import GatedSAETrainer
from dictionary_learning.trainers.jumprelu import JumpReluTrainer
from dictionary_learning.trainers.matryoshka_batch_top_k import (
    MatryoshkaBatchTopKSAE,
    MatryoshkaBatchTopKTrainer,
)
from dictionary_learning.trainers.standard import StandardTrainer, StandardTrainerAprilUpdate
from dictionary_learning.trainers.top_k import AutoEncoderTopK, TopKTrainer
from dictionary_learning.training import trainSAE
from peer_io import D_IN, D_SAE, K, inputs, main, record

STEPS = 5
CLASSES = {
    cls.__name__: cls
    for cls in (AutoEncoder, AutoEncoderNew, GatedAutoEncoder, JumpReluAutoEncoder,
                AutoEncoderTopK, BatchTopKSAE, MatryoshkaBatchTopKSAE)
}  # fmt: skip
TOPK = {"k": K, "threshold_start_step": 0}
CASES = [  # (case, trainer, trainer options)
    ("AutoEncoder", StandardTrainer, {"l1_penalty": 0.1}),
    ("AutoEncoderNew", StandardTrainerAprilUpdate, {"l1_penalty": 0.1, "dict_class": AutoEncoderNew}),
    ("GatedAutoEncoder", GatedSAETrainer, {"l1_penalty": 0.1}),
    ("JumpReluAutoEncoder", JumpReluTrainer, {}),
    ("AutoEncoderTopK", TopKTrainer, TOPK),
    ("BatchTopKSAE", BatchTopKTrainer, TOPK),
    ("MatryoshkaBatchTopKSAE", MatryoshkaBatchTopKTrainer,
     {**TOPK, "group_fractions": [0.25, 0.25, 0.5]}),
]  # fmt: skip


def activations(seed: int):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(STEPS + 1):
        yield torch.randn(256, D_IN, generator=generator) * 2 + 0.5


def read(files: Path, dict_class: str):
    """The class's own ``from_pretrained`` (``AutoEncoder`` as saved, see the module doc)."""
    cls = CLASSES[dict_class]
    if cls is AutoEncoder:
        return AutoEncoder.from_pretrained(files / "ae.pt", normalize_decoder=False)
    return cls.from_pretrained(files / "ae.pt")


@torch.no_grad()
def outputs_of(ae, x: torch.Tensor) -> dict[str, torch.Tensor]:
    features = ae.encode(x)
    return {"features": features, "x_hat": ae.decode(features)}


def own(out: Path) -> None:
    for seed, (name, trainer, options) in enumerate(CASES):
        config = {
            "trainer": trainer,
            "steps": STEPS,
            "activation_dim": D_IN,
            "dict_size": D_SAE,
            "layer": 2,
            "lm_name": "smollm2-135m",
            "submodule_name": "resid_post_layer_2",
            "warmup_steps": 1,
            "seed": seed,
            "device": "cpu",
            **options,
        }
        if "sparsity_warmup_steps" in trainer.__init__.__code__.co_varnames:
            config["sparsity_warmup_steps"] = 1
        trainSAE(activations(seed), [config], steps=STEPS, save_dir=str(out / name), device="cpu")
        (out / name / "trainer_0").rename(out / name / "files")
        x = inputs()
        ae = read(out / name / "files", name)
        record(out / name, architecture=name, outputs={"x": x, **outputs_of(ae, x)})


def load(files: Path, x: torch.Tensor) -> dict[str, torch.Tensor]:
    dict_class = json.loads((files / "config.json").read_text())["trainer"]["dict_class"]
    cls = CLASSES[dict_class]
    return outputs_of(cls.from_pretrained(files / "ae.pt"), x)


if __name__ == "__main__":
    main("dictionary-learning", version("dictionary-learning"), own, load)
