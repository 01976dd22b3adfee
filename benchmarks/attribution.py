"""Attribution speed, measured side by side in one run on the same prompts and dictionaries.

Prints
  (a) attrib node time / (one spliced forward+backward + one spliced forward)   goal <= 1.3
  (b) ig node time / (places x steps spliced forward+backward passes)           goal <= 0.6
      (ig skips the blocks upstream of each place: their cached outputs stand in)
  (c) edge time, batched vector-Jacobian products vs one backward per downstream node,
      on the same circuit, with the largest difference between their weights  goal >= 5x

    python benchmarks/attribution.py [--dictionaries starter/smollm2-135m] [--prompts FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from circuits.agreement import agreement_file
from circuits.attribution import AttributionConfig, node_effects
from circuits.discover import load_prompt_batches
from circuits.edges import edge_effects
from circuits.graph import select_nodes
from circuits.metrics import LogitDiff
from circuits.models import load_model
from circuits.runner import Runner
from dictionaries import TopKSAE
from dictionaries.sets import load_dictionary_set


def seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dictionaries", help="dictionary set (default: random TopK at resid.*)")
    parser.add_argument("--prompts", default=str(agreement_file("across_rc", "train")))
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=60, help="circuit size for the edge test")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    model, adapter = load_model(args.model)
    if args.dictionaries:
        dictionaries = load_dictionary_set(args.dictionaries)
    else:
        dictionaries = {
            f"resid.{layer}": TopKSAE.create(adapter.d_model, 512, k=32).eval()
            for layer in range(adapter.n_layers)
        }
    (batch,) = load_prompt_batches(model.tokenizer, args.prompts)[:1]
    batch = batch.split(args.examples)[0]
    batches = [batch]
    runner = Runner(model, adapter, dictionaries, LogitDiff())
    options = {"progress": False}

    def spliced_forward_backward():
        run = runner.run(batch.clean_ids, batch, grad=True)
        leaves = [t for sp in run.places.values() for t in (sp.features, sp.error)]
        torch.autograd.grad(run.metric.sum(), leaves)

    def spliced_forward():
        runner.run(batch.patch_ids, batch)

    def attrib():
        node_effects(
            model,
            adapter,
            dictionaries,
            batches,
            config=AttributionConfig(batch_size=64),
            **options,
        )

    def ig():
        config = AttributionConfig(method="ig", steps=args.steps, batch_size=64)
        node_effects(model, adapter, dictionaries, batches, config=config, **options)

    for function in (spliced_forward_backward, spliced_forward, attrib):  # warm-up
        function()
    t_fb = seconds(spliced_forward_backward, args.repeats)
    t_f = seconds(spliced_forward, args.repeats)
    t_attrib = seconds(attrib, args.repeats)
    t_ig = seconds(ig, 1)
    n_places = len(dictionaries)
    print(
        f"model {args.model}, {n_places} places, {len(batch)} prompts of {batch.length} tokens, "
        f"{'dictionaries ' + args.dictionaries if args.dictionaries else 'random TopK 512'}"
    )
    print(f"  spliced forward+backward {t_fb * 1000:.0f} ms, spliced forward {t_f * 1000:.0f} ms")
    print(f"(a) attrib {t_attrib * 1000:.0f} ms: ratio {t_attrib / (t_fb + t_f):.2f} (goal <= 1.3)")
    baseline = n_places * args.steps * t_fb
    print(f"(b) ig {t_ig:.1f} s vs {n_places} x {args.steps} forward+backward {baseline:.1f} s: "
          f"ratio {t_ig / baseline:.2f} (goal <= 0.6)")  # fmt: skip

    effects = node_effects(model, adapter, dictionaries, batches, **options)
    selection = select_nodes(effects, top_k=args.nodes)
    edge_options = {"batch_size": 64, **options}
    start = time.perf_counter()
    batched = edge_effects(model, adapter, dictionaries, batches, selection, **edge_options)
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    looped = edge_effects(
        model, adapter, dictionaries, batches, selection, batched=False, **edge_options
    )
    t_looped = time.perf_counter() - start
    worst = max(abs(batched[k] - looped.get(k, 0.0)) for k in batched) if batched else 0.0
    print(
        f"(c) edges among {selection.count()} nodes ({len(batched)} edges): batched "
        f"{t_batched:.1f} s, one backward per node {t_looped:.1f} s: {t_looped / t_batched:.1f}x "
        f"faster (goal >= 5x); largest weight difference {worst:.2e}"
    )


if __name__ == "__main__":
    main()
