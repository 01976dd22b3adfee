"""bfloat16 against float32 on the model side, measured side by side in one run on the default
model (smollm2-135m) and the starter dictionaries.

Prints the speed-up (float32 seconds / bfloat16 seconds, medians of interleaved rounds after
a warm-up of each) of
  stream  the activation stream feeding training: ``ModelActivationSource`` over the embedded
          corpus, every resid place at once as the starter dictionaries were trained (tokens/s)
  attrib  ``attrib`` node effects on 32 agreement prompts over the demo's places
  ig      ``ig`` node effects (10 steps) on the same
  demo    the whole pipeline of ``sparse-circuits demo``: discover (node effects, edges, labels
          over 4096 corpus tokens) on 64 training prompts and faithfulness on the held-out ones
and, from the same runs, how closely bfloat16 agrees with float32: node effects (Spearman
over nodes above 1 % of the largest |effect|, top-100 overlap) and faithfulness. Goal: every
speed-up >= 2.5. Run it on an otherwise idle machine: timings are benchmark figures, never
test assertions.

    python benchmarks/precision_model.py [--rounds 3] [--threads N] [--json]
        [--only stream,attrib,ig,demo]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from arguments import positive

from sparse_circuits.circuits.data.agreement_sets import agreement_file
from sparse_circuits.circuits.data.corpus import read_documents, tokenize_contexts
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.comparison import compare_effects
from sparse_circuits.circuits.discovery.discover import (
    DiscoverConfig,
    discover_circuit,
    load_prompt_batches,
)
from sparse_circuits.circuits.discovery.faithfulness import score_selection
from sparse_circuits.circuits.discovery.nodes import select_nodes
from sparse_circuits.circuits.model.activations import (
    ActivationConfig,
    ModelActivationSource,
    uses_bos,
)
from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.circuits.model.places import spaced_layers
from sparse_circuits.dictionaries.sets import load_dictionary_set

STARTER = Path(__file__).resolve().parents[1] / "starter" / "smollm2-135m"
PRECISIONS = ("float32", "bfloat16")
DEMO_PLACES = [f"resid.{layer}" for layer in spaced_layers(30, 5)]
"""The demo's places (``sparse-circuits demo``): resid at five evenly spaced layers."""
DEMO_NODE_THRESHOLD = 0.005
"""The demo's node threshold, in logit-difference units."""
STREAM_BATCHES = 4
"""Model batches (16 contexts of 128 tokens) per timed stream refill."""


@functools.cache
def models() -> dict[str, tuple[Any, Any]]:
    """The default model in each precision, loaded once."""
    return {precision: load_model("smollm2-135m", precision=precision) for precision in PRECISIONS}


@functools.cache
def demo_dictionaries() -> dict:
    return load_dictionary_set(STARTER, DEMO_PLACES)


def side_by_side(work: Callable[[str], Any], rounds: int) -> tuple[float, dict[str, Any]]:
    """``work(precision)`` timed in interleaved rounds after one warm-up each: the speed-up
    (float32 median / bfloat16 median) and each precision's last result."""
    results = {precision: work(precision) for precision in PRECISIONS}  # warm-up
    times: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    for _ in range(rounds):
        for precision in PRECISIONS:
            start = time.perf_counter()
            results[precision] = work(precision)
            times[precision].append(time.perf_counter() - start)
    medians = {precision: statistics.median(t) for precision, t in times.items()}
    return medians["float32"] / medians["bfloat16"], results


def stream_speedup(*, rounds: int = 3) -> dict[str, float]:
    """The activation stream: tokens/s of refilling a training buffer."""
    tokenizer = models()["float32"][0].tokenizer
    contexts_NT = tokenize_contexts(
        tokenizer, read_documents("embedded"), context_length=128,
        prepend_bos=uses_bos(tokenizer), max_contexts=16 * STREAM_BATCHES,
    )  # fmt: skip
    places = [f"resid.{layer}" for layer in range(30)]
    # a buffer that takes every context's model batch unless an eighth of the rows is dropped
    rows = int((STREAM_BATCHES - 0.5) * 16 * (contexts_NT.shape[1] - 1))
    config = ActivationConfig(place=places[0], model_batch=16, buffer_tokens=rows)

    def refill(precision: str) -> float:
        model, adapter = models()[precision]
        source = ModelActivationSource(model, adapter, contexts_NT, config, places=places)
        start = time.perf_counter()
        source.buffer_after_refill()
        return contexts_NT.numel() / (time.perf_counter() - start)

    speedup, tokens_per_second = side_by_side(refill, rounds)
    return {"speedup": speedup, **{f"tokens_per_s_{p}": t for p, t in tokens_per_second.items()}}


def _agreement(results: dict[str, Any]) -> dict[str, float]:
    agreement = compare_effects(results["float32"], results["bfloat16"], floor=0.01, top=100)
    return {"spearman": agreement.spearman, "top100_overlap": agreement.top_overlap}


def _node_effects_speedup(method: str, rounds: int) -> dict[str, float]:
    dictionaries = demo_dictionaries()
    tokenizer = models()["float32"][0].tokenizer
    batches = load_prompt_batches(tokenizer, agreement_file("across_rc", "train"))
    batches = [batches[0].split(32)[0]]
    config = AttributionConfig(method=method, batch_size=32)

    def effects(precision: str):
        model, adapter = models()[precision]
        return node_effects(model, adapter, dictionaries, batches, config=config, progress=False)

    speedup, results = side_by_side(effects, rounds)
    return {"speedup": speedup, **_agreement(results)}


def attrib_speedup(*, rounds: int = 3) -> dict[str, float]:
    """``attrib`` node effects on 32 prompts over the demo's places."""
    return _node_effects_speedup("attrib", rounds)


def ig_speedup(*, rounds: int = 3) -> dict[str, float]:
    """``ig`` node effects on the same."""
    return _node_effects_speedup("ig", rounds)


def demo_speedup(*, rounds: int = 3) -> dict[str, float]:
    """The demo's discover + held-out faithfulness, with the demo's settings."""
    dictionaries = demo_dictionaries()
    tokenizer = models()["float32"][0].tokenizer
    train = [
        b.split(64)[0] for b in load_prompt_batches(tokenizer, agreement_file("across_rc", "train"))
    ]
    test = load_prompt_batches(tokenizer, agreement_file("across_rc", "test"))
    config = DiscoverConfig(
        attribution=AttributionConfig(method="attrib", batch_size=32),
        node_threshold=DEMO_NODE_THRESHOLD,
        edge_threshold=0.02,
        label_tokens=4096,
    )

    def demo(precision: str):
        model, adapter = models()[precision]
        _, effects = discover_circuit(model, adapter, dictionaries, train, config, progress=False)
        selection = select_nodes(effects, threshold=DEMO_NODE_THRESHOLD)
        (score,) = score_selection(model, adapter, dictionaries, test, [selection], progress=False)
        return effects, score

    speedup, results = side_by_side(demo, rounds)
    (e32, s32), (e16, s16) = results["float32"], results["bfloat16"]
    return {
        "speedup": speedup,
        **_agreement({"float32": e32, "bfloat16": e16}),
        "faithfulness_float32": s32.faithfulness,
        "faithfulness_bfloat16": s16.faithfulness,
    }


BENCHMARKS = {
    "stream": stream_speedup,
    "attrib": attrib_speedup,
    "ig": ig_speedup,
    "demo": demo_speedup,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive(int), default=3, help="timed rounds (medians)")
    parser.add_argument("--threads", type=positive(int), help="torch CPU threads")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report: dict[str, Any] = {"threads": torch.get_num_threads(), "rounds": args.rounds}
    for name in names:
        figures = BENCHMARKS[name](rounds=args.rounds)
        report[f"{name}_speedup"] = figures.pop("speedup")
        if figures:
            report[f"{name}_details"] = figures
        if not args.json:
            details = ", ".join(f"{k} {v:.3g}" for k, v in figures.items())
            print(f"{name:>6}: bfloat16 {report[f'{name}_speedup']:.2f}x float32 "
                  f"(goal >= 2.5){'; ' + details if details else ''}", flush=True)  # fmt: skip
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
