"""bfloat16 against float32, measured side by side in one run on the default model
(smollm2-135m) and the starter dictionaries (issue 13).

Prints the speed-up (float32 seconds / bfloat16 seconds, medians of interleaved rounds after
a warm-up of each) of
  stream      the activation stream feeding training: ``ModelActivationSource`` over the
              embedded corpus, all 30 resid places at once (one shared stream)
  train_step  one TopK trainer step (``DictionaryTrainer.step``: encode, decode, MSE,
              backward, clipping, unit-norm projection, Adam; float32 master weights in both)
              at d_in 576, 16384 latents, k 32, batch 4096
  attrib      ``attrib`` node effects on 32 agreement prompts over the demo's places
  ig          ``ig`` node effects (10 steps) on the same
  demo        the whole ``sparse-circuits demo`` (``run_demo``: model and dictionaries loaded,
              discover with edges and labels, held-out faithfulness)
and ``train_step_over_matmul``: tokens/s of the bfloat16 step over tokens/s of the bare
bfloat16 encoder product x @ W_enc (4096 x 576 @ 576 x 16384); 1.0 would mean the rest of the
step is free. From the same runs, how closely bfloat16 agrees with float32: node effects
(Spearman over nodes above 1 % of the largest |effect|, top-100 overlap) and the demo's
faithfulness. Goals: every speed-up >= 2.5, train_step_over_matmul >= 0.6.

With ``--json`` one JSON object with the keys ``stream_speedup``, ``train_step_speedup``,
``attrib_speedup``, ``ig_speedup``, ``demo_speedup``, ``train_step_over_matmul``, the agreement
figures under ``<name>_details``, the settings and what ``--precision auto`` resolves to here.
Run it on an otherwise idle machine: timings are benchmark figures, never test assertions.

    python benchmarks/precision.py [--rounds 3] [--threads 2] [--json]
        [--only stream,train_step,attrib,ig,demo]
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from arguments import positive
from timing import interleaved_seconds, medians

from sparse_circuits.circuits.data.agreement_sets import agreement_file
from sparse_circuits.circuits.data.corpus import read_documents, tokenize_contexts
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.comparison import compare_effects
from sparse_circuits.circuits.discovery.demo import DemoConfig, run_demo
from sparse_circuits.circuits.discovery.discover import load_prompt_batches
from sparse_circuits.circuits.model.activations import (
    ActivationConfig,
    ModelActivationSource,
    uses_bos,
)
from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.circuits.model.places import spaced_layers
from sparse_circuits.dictionaries.sets import load_dictionary_set
from sparse_circuits.dictionaries.training import DictionaryTrainer, TensorSource, TrainConfig
from sparse_circuits.precision import resolve_precision

STARTER = Path(__file__).resolve().parents[1] / "starter" / "smollm2-135m"
PRECISIONS = ("float32", "bfloat16")
DEMO_PLACES = [f"resid.{layer}" for layer in spaced_layers(30, DemoConfig.n_places)]
"""The demo's places (``sparse-circuits demo``): resid at five evenly spaced layers."""
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
    results: dict[str, Any] = {}

    def run(precision: str) -> Callable[[], None]:
        return lambda: results.__setitem__(precision, work(precision))

    times = interleaved_seconds({p: run(p) for p in PRECISIONS}, repeats=rounds, warmup=1)
    median = medians(times)
    return median["float32"] / median["bfloat16"], results


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


TRAIN_STEP = {"d_in": 576, "d_sae": 16384, "k": 32, "batch": 4096}
"""The TopK step the issue names."""


def train_step_speedup(*, rounds: int = 3) -> dict[str, float]:
    """One TopK trainer step in each precision, and the bare bfloat16 encoder product."""
    d_in, d_sae, k, batch = TRAIN_STEP.values()
    torch.manual_seed(0)
    x_ND = torch.randn(4 * batch, d_in)
    runs: dict[str, Callable[[], object]] = {}
    for name in PRECISIONS:
        config = TrainConfig(
            arch="topk", d_sae=d_sae, k=k, batch_size=batch,
            steps=10**9,  # no learning-rate decay and a 10M-token dead window: no AuxK here
            log_every=10**9,  # no logging, whose .item() calls would wait
            precision=name,
        )  # fmt: skip
        runs[name] = DictionaryTrainer(TensorSource(x_ND), config).step
    x_bf16, W_enc_bf16 = x_ND[:batch].bfloat16(), torch.randn(d_in, d_sae, dtype=torch.bfloat16)
    runs["matmul_bfloat16"] = lambda: x_bf16 @ W_enc_bf16
    median = medians(interleaved_seconds(runs, repeats=max(rounds, 5), warmup=2))
    return {
        "speedup": median["float32"] / median["bfloat16"],
        "over_matmul": median["matmul_bfloat16"] / median["bfloat16"],
        **{f"tokens_per_s_{name}": batch / seconds for name, seconds in median.items()},
    }


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
    """The whole demo, as ``sparse-circuits demo`` runs it (the model loaded from its cache)."""
    folder = Path(tempfile.mkdtemp(prefix="precision-demo-"))

    def demo(precision: str):
        return run_demo(folder / precision, precision=precision, progress=False)

    speedup, results = side_by_side(demo, rounds)
    return {
        "speedup": speedup,
        **{f"faithfulness_{p}": result.score.faithfulness for p, result in results.items()},
        **{f"nodes_{p}": result.score.n_nodes for p, result in results.items()},
    }


BENCHMARKS = {
    "stream": stream_speedup,
    "train_step": train_step_speedup,
    "attrib": attrib_speedup,
    "ig": ig_speedup,
    "demo": demo_speedup,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive(int), default=3, help="timed rounds (medians)")
    parser.add_argument("--threads", type=positive(int), default=2, help="torch CPU threads")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report: dict[str, Any] = {
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "auto_precision": resolve_precision("auto", "cpu").reason,
    }
    for name in names:
        figures = BENCHMARKS[name](rounds=args.rounds)
        report[f"{name}_speedup"] = figures.pop("speedup")
        if "over_matmul" in figures:
            report["train_step_over_matmul"] = figures.pop("over_matmul")
            if not args.json:
                print(f"train_step_over_matmul: {report['train_step_over_matmul']:.2f} "
                      "(goal >= 0.6)", flush=True)  # fmt: skip
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
