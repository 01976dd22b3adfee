"""A cross-layer transcoder on the real model: splicing leaves the logits, and what attribution
costs against per-layer transcoders with the same encoders and own-layer decoders.

1. Write a random JumpReLU CLT over every layer in circuit-tracer's layout
   (``W_enc_N.safetensors`` + ``W_dec_N.safetensors``) and read it back as a dictionary set.
2. Splice it into the model: the largest |logit difference| to the plain forward pass.
3. Time (medians of interleaved rounds) an ``attrib`` node pass and the edge pass over the top
   ``--nodes`` nodes, for the CLT and for the per-layer transcoders made of its layers without
   their later decoders (same features; each writes its own layer only).

    python benchmarks/cross_layer.py [--model smollm2-135m] [--d-sae 256] [--threshold 0.3]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import torch
from arguments import positive
from safetensors.torch import save_file
from timing import interleaved_seconds, medians

from sparse_circuits.circuits.data.agreement_sets import agreement_file
from sparse_circuits.circuits.discovery.attribution import node_effects
from sparse_circuits.circuits.discovery.discover import load_prompt_batches
from sparse_circuits.circuits.discovery.edges import edge_effects
from sparse_circuits.circuits.discovery.nodes import select_nodes
from sparse_circuits.circuits.model.adapters import torch_module
from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.circuits.model.splice import splice
from sparse_circuits.dictionaries import Dictionary, architecture_class
from sparse_circuits.dictionaries.sets import load_dictionary_set


def write_random_clt(
    folder: Path, n_layers: int, d_model: int, d_sae: int, threshold: float
) -> Path:
    """A JumpReLU CLT with random weights and one threshold for every feature."""
    generator = torch.Generator().manual_seed(0)
    for n in range(n_layers):
        W_enc = torch.randn(d_sae, d_model, generator=generator) / d_model**0.5
        encoder = {
            f"W_enc_{n}": W_enc,
            f"b_enc_{n}": torch.zeros(d_sae),
            f"b_dec_{n}": torch.zeros(d_model),
            f"threshold_{n}": torch.full((d_sae,), threshold),
        }
        W_dec = torch.randn(d_sae, n_layers - n, d_model, generator=generator) * 0.01
        save_file(encoder, str(folder / f"W_enc_{n}.safetensors"))
        save_file({f"W_dec_{n}": W_dec}, str(folder / f"W_dec_{n}.safetensors"))
    return folder


def own_layer_only(layer: Dictionary) -> Dictionary:
    """The same features writing their own layer only: a per-layer transcoder."""
    config = dataclasses.replace(layer.config, writes_later=[])
    single = architecture_class(config.arch)(config)
    state = {k: v for k, v in layer.state_dict().items() if k != "W_dec_later"}
    single.load_state_dict(state)
    return single.eval().requires_grad_(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--d-sae", type=positive(int), default=256)
    parser.add_argument(
        "--threshold", type=positive(float), default=0.3, help="JumpReLU threshold of every feature"
    )
    parser.add_argument("--prompts", default=str(agreement_file("across_rc", "train")))
    parser.add_argument("--examples", type=positive(int), default=16)
    parser.add_argument("--nodes", type=positive(int), default=100, help="nodes for the edges")
    parser.add_argument("--repeats", type=positive(int), default=2, help="timed rounds")
    args = parser.parse_args()

    model, adapter = load_model(args.model)
    with tempfile.TemporaryDirectory(prefix="clt-") as folder:
        write_random_clt(
            Path(folder), adapter.n_layers, adapter.d_model, args.d_sae, args.threshold
        )
        clt = load_dictionary_set(folder)
    per_layer = {place: own_layer_only(layer) for place, layer in clt.items()}
    (batch,) = load_prompt_batches(model.tokenizer, args.prompts)[:1]
    batch = batch.split(args.examples)[0]

    with torch.no_grad():
        plain = torch_module(model)(batch.clean_ids).logits
        with model.trace(batch.clean_ids):
            spliced = splice(adapter, clt)
            logits = model.output.logits.save()
    active = torch.stack([sp.features != 0 for sp in spliced.values()]).float().mean()
    print(
        f"model {args.model}: CLT of {adapter.n_layers} layers x {args.d_sae} features "
        f"({active:.1%} active), {len(batch)} prompts of {batch.length} tokens, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"  spliced logits: max |difference| to the plain model {(logits - plain).abs().max():.1e}"
    )

    runs = {}
    for name, dictionaries in (("CLT", clt), ("per-layer", per_layer)):
        effects = node_effects(model, adapter, dictionaries, [batch], progress=False)
        selection = select_nodes(effects, top_k=args.nodes)

        def nodes(d=dictionaries):
            node_effects(model, adapter, d, [batch], progress=False)

        def edges(d=dictionaries, s=selection):
            edge_effects(model, adapter, d, [batch], s, progress=False)

        runs[f"{name} attrib"], runs[f"{name} edges"] = nodes, edges
    times = medians(interleaved_seconds(runs, repeats=args.repeats))
    for name, value in times.items():
        print(f"  {name:>18}: {value:6.2f} s")
    for step in ("attrib", "edges"):
        print(f"  {step}: CLT / per-layer {times[f'CLT {step}'] / times[f'per-layer {step}']:.2f}")


if __name__ == "__main__":
    main()
