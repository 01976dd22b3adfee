"""Attribution speed, measured side by side in one run on the same prompts and dictionaries.

Prints
  (a) attrib node time / (one spliced forward+backward + one spliced forward)   goal <= 1.3
  (b) ig node time / (places x steps spliced forward+backward passes)           goal <= 0.6
      (ig skips the blocks upstream of each place: their cached outputs stand in)
  (c) edge time, batched vector-Jacobian products vs one backward per downstream node,
      on the same circuit (the --nodes largest node effects), interleaved repeats, medians;
      their weights must agree (checked: the run stops if not)                 goal >= 5x

    python benchmarks/attribution.py [--dictionaries starter/smollm2-135m] [--prompts FILE]
        [--places resid.3,resid.9,resid.15,resid.21,resid.27] [--nodes 200] [--edges-only]
        [--aggregation sum|none] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from arguments import positive

from sparse_circuits.circuits.data.agreement_sets import agreement_file
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.discover import load_prompt_batches
from sparse_circuits.circuits.discovery.edges import edge_effects
from sparse_circuits.circuits.discovery.metrics import LogitDiff
from sparse_circuits.circuits.discovery.nodes import select_nodes
from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.circuits.model.runner import Runner
from sparse_circuits.dictionaries import TopKSAE
from sparse_circuits.dictionaries.sets import load_dictionary_set


def chosen_places(dictionaries: dict, places: str, parser: argparse.ArgumentParser) -> dict:
    """The dictionaries at the comma-separated ``places``; an unknown place is a usage error."""
    names = places.split(",")
    unknown = [name for name in names if name not in dictionaries]
    if unknown:
        parser.error(
            f"--places: no dictionary at {', '.join(map(repr, unknown))}; "
            f"valid places: {', '.join(dictionaries)}"
        )
    return {name: dictionaries[name] for name in names}


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
    parser.add_argument("--examples", type=positive(int), default=32)
    parser.add_argument("--steps", type=positive(int), default=10)
    parser.add_argument(
        "--nodes", type=positive(int), default=200, help="circuit size for the edge test"
    )
    parser.add_argument("--places", help="comma-separated places to splice (default: all)")
    parser.add_argument("--repeats", type=positive(int), default=3, help="timed runs (medians)")
    parser.add_argument("--edges-only", action="store_true", help="only (c)")
    parser.add_argument(
        "--aggregation", choices=["sum", "none"], default="sum", help="nodes of the (c) circuit"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, adapter = load_model(args.model)
    if args.dictionaries:
        dictionaries = load_dictionary_set(args.dictionaries)
    else:
        dictionaries = {
            f"resid.{layer}": TopKSAE.create(adapter.d_model, 512, k=32).eval()
            for layer in range(adapter.n_layers)
        }
    if args.places:
        dictionaries = chosen_places(dictionaries, args.places, parser)
    (batch,) = load_prompt_batches(model.tokenizer, args.prompts, aggregation=args.aggregation)[:1]
    batch = batch.split(args.examples)[0]
    n_places = len(dictionaries)
    print(
        f"model {args.model}, {n_places} places, {len(batch)} prompts of {batch.length} tokens, "
        f"{'dictionaries ' + args.dictionaries if args.dictionaries else 'random TopK 512'}, "
        f"{torch.get_num_threads()} threads"
    )
    if not args.edges_only:
        node_benchmarks(model, adapter, dictionaries, batch, args)
    edge_benchmark(model, adapter, dictionaries, batch, args)


def node_benchmarks(model, adapter, dictionaries, batch, args) -> None:
    """(a) and (b)."""
    runner = Runner(model, adapter, dictionaries, LogitDiff())
    batches, options = [batch], {"progress": False}

    def spliced_forward_backward():
        run = runner.run(batch.clean_ids, batch, grad=True)
        leaves = [t for sp in run.places.values() for t in (sp.features, sp.error)]
        torch.autograd.grad(run.metric.sum(), leaves)

    def spliced_forward():
        runner.run(batch.patch_ids, batch)

    def attrib():
        config = AttributionConfig(batch_size=64)
        node_effects(model, adapter, dictionaries, batches, config=config, **options)

    def ig():
        config = AttributionConfig(method="ig", steps=args.steps, batch_size=64)
        node_effects(model, adapter, dictionaries, batches, config=config, **options)

    for function in (spliced_forward_backward, spliced_forward, attrib):  # warm-up
        function()
    t_fb = seconds(spliced_forward_backward, args.repeats)
    t_f = seconds(spliced_forward, args.repeats)
    t_attrib = seconds(attrib, args.repeats)
    t_ig = seconds(ig, 1)
    print(f"  spliced forward+backward {t_fb * 1000:.0f} ms, spliced forward {t_f * 1000:.0f} ms")
    print(f"(a) attrib {t_attrib * 1000:.0f} ms: ratio {t_attrib / (t_fb + t_f):.2f} (goal <= 1.3)")
    n_places = len(dictionaries)
    baseline = n_places * args.steps * t_fb
    print(f"(b) ig {t_ig:.1f} s vs {n_places} x {args.steps} forward+backward {baseline:.1f} s: "
          f"ratio {t_ig / baseline:.2f} (goal <= 0.6)")  # fmt: skip


def edge_benchmark(model, adapter, dictionaries, batch, args) -> None:
    """(c): both implementations on the same circuit, interleaved, medians."""
    config = AttributionConfig(aggregation=args.aggregation)
    effects = node_effects(model, adapter, dictionaries, [batch], config=config, progress=False)
    selection = select_nodes(effects, top_k=args.nodes)
    times: dict[bool, list[float]] = {True: [], False: []}
    weights = {}
    for _ in range(args.repeats):
        for batched in (True, False):
            start = time.perf_counter()
            weights[batched] = edge_effects(
                model, adapter, dictionaries, [batch], selection,
                batched=batched, batch_size=64, aggregation=args.aggregation, progress=False,
            )  # fmt: skip
            times[batched].append(time.perf_counter() - start)
    batched = weights[True]
    worst, largest = weight_differences(batched, weights[False])
    t_batched, t_looped = statistics.median(times[True]), statistics.median(times[False])
    print(
        f"(c) edges among {selection.count()} nodes (aggregation {args.aggregation}, "
        f"{len(batched)} edges), medians of "
        f"{args.repeats}: batched {t_batched:.1f} s, one backward per node {t_looped:.1f} s: "
        f"{t_looped / t_batched:.1f}x faster (goal >= 5x); largest weight difference "
        f"{worst:.1e} (largest weight {largest:.2f})"
    )


def weight_differences(batched: dict, looped: dict) -> tuple[float, float]:
    """The largest difference between the two implementations' edge weights and the largest
    weight; stops the run when they found different edges or weights outside the tolerance
    (relative 1e-4, absolute 1e-5 of the largest weight)."""
    if batched.keys() != looped.keys():
        only_batched, only_looped = batched.keys() - looped.keys(), looped.keys() - batched.keys()
        raise SystemExit(
            f"(c) failed: the implementations found different edges ({len(only_batched)} only "
            f"batched, {len(only_looped)} only looped)"
        )
    keys = sorted(batched)
    got = torch.tensor([batched[k] for k in keys], dtype=torch.float64)
    expected = torch.tensor([looped[k] for k in keys], dtype=torch.float64)
    largest = float(expected.abs().max()) if keys else 0.0
    worst = float((got - expected).abs().max()) if keys else 0.0
    if not torch.isclose(got, expected, rtol=1e-4, atol=1e-5 * largest).all():
        raise SystemExit(
            f"(c) failed: batched and looped edge weights differ by up to {worst:.1e} "
            f"(largest weight {largest:.2f}; tolerance relative 1e-4, absolute 1e-5 of it)"
        )
    return worst, largest


if __name__ == "__main__":
    main()
