"""bfloat16 against float32, measured side by side in one run (the precision setting's gain).

Prints, for one step of the TopK trainer (``DictionaryTrainer.step``: a batch from memory,
encode, decode, MSE, backward, clipping, the unit-norm projection, Adam; float32 master
weights in both precisions) at d_in 576, 16384 latents, k 32, batch 4096:

  train_step_speedup      tokens/s of the bfloat16 step / tokens/s of the float32 step
                                                                            goal >= 2.5
  train_step_over_matmul  tokens/s of the bfloat16 step / tokens/s of the bare bfloat16
                          encoder product x @ W_enc (4096 x 576 @ 576 x 16384): 1.0 would
                          mean the rest of the step is free                 goal >= 0.6

Medians of interleaved rounds after a warm-up, with ``--threads`` threads (default 2). With
``--json`` one JSON object with those keys, the medians (ms), the settings and what
``--precision auto`` resolves to here. Run it on an otherwise idle machine: when other
processes take the cores, each of the step's many short multi-threaded operations waits for
its descheduled thread (see ``train_throughput.py``).

    python benchmarks/precision.py [--d-in 576 --d-sae 16384 --k 32 --batch 4096]
        [--repeats 5] [--warmup 2] [--threads 2] [--json]

The model-side rows of issue 13 (activation stream, attrib and ig node effects, the demo) are
yet to be added here.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import torch
from arguments import positive
from timing import interleaved_seconds, medians

from sparse_circuits.dictionaries.training import DictionaryTrainer, TensorSource, TrainConfig
from sparse_circuits.precision import resolve_precision

STEP_PRECISIONS = ("float32", "bfloat16")


def training_runs(args: argparse.Namespace) -> dict[str, Callable[[], object]]:
    """One TopK trainer step in each precision, and the bare bfloat16 encoder product."""
    torch.manual_seed(0)
    x_ND = torch.randn(4 * args.batch, args.d_in)
    runs: dict[str, Callable[[], object]] = {}
    for name in STEP_PRECISIONS:
        config = TrainConfig(
            arch="topk",
            d_sae=args.d_sae,
            k=args.k,
            batch_size=args.batch,
            steps=10**9,  # no learning-rate decay and a 10M-token dead window: no AuxK here
            log_every=10**9,  # no logging, whose .item() calls would wait
            precision=name,
        )
        runs[f"step_{name}"] = DictionaryTrainer(TensorSource(x_ND), config).step
    x_bf16 = x_ND[: args.batch].bfloat16()
    W_enc_bf16 = torch.randn(args.d_in, args.d_sae, dtype=torch.bfloat16)
    runs["matmul_bfloat16"] = lambda: x_bf16 @ W_enc_bf16
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=positive(int), default=576)
    parser.add_argument("--d-sae", type=positive(int), default=16384)
    parser.add_argument("--k", type=positive(int), default=32)
    parser.add_argument("--batch", type=positive(int), default=4096, help="tokens per step")
    parser.add_argument("--repeats", type=positive(int), default=5, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--threads", type=positive(int), default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.k > args.d_sae:
        parser.error(f"--k {args.k} must be at most --d-sae {args.d_sae}")
    torch.set_num_threads(args.threads)

    times = interleaved_seconds(training_runs(args), repeats=args.repeats, warmup=args.warmup)
    median = medians(times)
    figures = {
        "train_step_speedup": median["step_float32"] / median["step_bfloat16"],
        "train_step_over_matmul": median["matmul_bfloat16"] / median["step_bfloat16"],
    }
    settings = {
        "d_in": args.d_in,
        "d_sae": args.d_sae,
        "k": args.k,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "auto_precision": resolve_precision("auto", "cpu").reason,
    }
    if args.json:
        ms = {f"{name}_ms": round(value * 1e3, 1) for name, value in median.items()}
        print(json.dumps({**figures, **ms, "settings": settings}))
        return
    print(
        f"d_in {args.d_in}, d_sae {args.d_sae}, k {args.k}, batch {args.batch}, "
        f"{settings['threads']} threads, median of {args.repeats} interleaved rounds; "
        f"auto here: {settings['auto_precision']}"
    )
    for name, values in times.items():
        spread = ", ".join(f"{t * 1e3:.0f}" for t in sorted(values))
        print(f"  {name:16s} {args.batch / median[name]:9.0f} tokens/s   (ms: {spread})")
    print(f"train_step_speedup      {figures['train_step_speedup']:.2f}   (goal >= 2.5)")
    print(f"train_step_over_matmul  {figures['train_step_over_matmul']:.2f}   (goal >= 0.6)")


if __name__ == "__main__":
    main()
