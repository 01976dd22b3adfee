"""Cost of splicing dictionaries into a forward pass, against its unavoidable parts.

Prints   t(forward with a dictionary spliced at every resid place)
       / (t(plain forward) + t(the same dictionaries' encode+decode on the same activations)),
measured side by side in one run (median of interleaved repeats). 1.0 means splicing adds
nothing beyond the arithmetic it must do. Goal: at most 1.15 on smollm2-135m.

    python benchmarks/splice_overhead.py [--model smollm2-135m] [--d-sae 4096] [--batch 8 --seq 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import nnsight
import torch

from sparse_circuits.circuits.model.adapters import torch_module
from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.circuits.model.splice import splice
from sparse_circuits.dictionaries import TopKSAE


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--d-sae", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    torch.manual_seed(0)
    model, adapter = load_model(args.model, device=args.device)
    places = [f"resid.{layer}" for layer in range(adapter.n_layers)]
    dictionaries = {
        p: TopKSAE.create(adapter.d_model, args.d_sae, k=args.k, place=p).to(args.device).eval()
        for p in places
    }
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), device=args.device)
    hf_model = torch_module(model)
    with torch.no_grad(), model.trace(ids):
        acts = nnsight.save([adapter.read(p) for p in places])

    def plain():
        hf_model(ids)

    def arithmetic():
        for place, x in zip(places, acts, strict=True):
            dictionary = dictionaries[place]
            f = dictionary.encode(x)
            x - dictionary.decode(f)

    def spliced():
        with model.trace(ids):
            splice(adapter, dictionaries)

    with torch.no_grad():
        for function in (plain, arithmetic, spliced):  # warm-up
            function()
        rounds = {name: [] for name in ("plain", "arithmetic", "spliced")}
        for _ in range(args.repeats):  # interleaved, so drift hits all three alike
            for name, function in (
                ("plain", plain),
                ("arithmetic", arithmetic),
                ("spliced", spliced),
            ):
                rounds[name] += timed(function, 1)
    median = {name: statistics.median(times) for name, times in rounds.items()}
    ratio = median["spliced"] / (median["plain"] + median["arithmetic"])
    print(
        f"model {args.model}, {len(places)} resid places, TopK d_sae={args.d_sae} k={args.k}, "
        f"batch {args.batch}x{args.seq} tokens, device {args.device}"
    )
    for name, value in median.items():
        print(f"  {name:>10}: {value * 1000:8.1f} ms")
    print(f"splice overhead ratio: {ratio:.3f}  (goal <= 1.15)")


if __name__ == "__main__":
    main()
