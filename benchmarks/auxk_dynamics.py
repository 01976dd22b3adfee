"""How the dead fraction of a TopK SAE evolves with and without AuxK, and how well AuxK's
reconstruction of the residual does meanwhile: the trace behind claim (c) of
``dictionary_claims.py`` (README, "AuxK at small scale").

Trains one pair, TopK with and without AuxK, on the same rows as ``dictionary_claims.py --claims
c`` (same collection, cache, seed, budget and batch) and prints, every ``--every`` steps, the
share of latents silent for the dead window and the AuxK term's normalised MSE (1 is what
predicting zero gives; above 1 the reconstruction overshoots the residual and its gradient
lowers the dead latents' activations).

    python benchmarks/auxk_dynamics.py [--k 8] [--lr-multiple 1] [--auxk-d-sae 16384]
        [--dead-after-tokens N] [--auxk-k N] [--every 40] [--cache FILE]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from arguments import positive
from dictionary_claims import (
    Result,
    Run,
    cached_activations,
    topk_lr_at,
    train_and_evaluate,
    train_configs,
)


def train_pair(args, train_ND: torch.Tensor, eval_ND: torch.Tensor) -> dict[str, Result]:
    """``{"AuxK": ..., "none": ...}``: the pair trained and evaluated as ``dictionary_claims``
    trains its (c) runs."""
    options = {
        "k": args.k,
        "d_sae": args.auxk_d_sae,
        "lr": args.lr_multiple * topk_lr_at(None, args.auxk_d_sae),
        "dead_after_tokens": args.dead_after_tokens,
        "auxk_k": args.auxk_k,
    }
    setting = f"k={args.k}, lr={args.lr_multiple:g}x"
    runs = [
        Run("topk", "AuxK", setting, options),
        Run("topk", "none", setting, {**options, "auxk_alpha": 0.0}),
    ]
    shared = {"steps": args.tokens // args.batch_size, "batch_size": args.batch_size}
    configs = train_configs(runs, {**shared, "seed": args.seed})
    results = train_and_evaluate(runs, configs, train_ND, eval_ND, place=args.place)
    return {run.label: result for run, result in zip(runs, results, strict=True)}


def trace_table(runs: dict[str, Result], every: int) -> str:
    """Markdown: per logged step (every ``every``), dead fractions and the AuxK NMSE."""
    rows = [
        "| step | dead, AuxK | dead, none | AuxK normalised MSE |",
        "|--:|--:|--:|--:|",
    ]
    none_at = {entry["step"]: entry for entry in runs["none"].history}
    for entry in runs["AuxK"].history:
        step = entry["step"]
        if step % every and entry is not runs["AuxK"].history[-1]:
            continue
        nmse = f"{entry['auxk_nmse']:.2f}" if "auxk_nmse" in entry else "-"
        other = none_at.get(step, {}).get("dead_fraction", math.nan)
        rows.append(f"| {step} | {entry['dead_fraction']:.1%} | {other:.1%} | {nmse} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--place", default="resid.12")
    parser.add_argument("--tokens", type=positive(int), default=480_000)
    parser.add_argument("--epochs", type=positive(int), default=4)
    parser.add_argument("--eval-tokens", type=positive(int), default=50_000)
    parser.add_argument("--auxk-d-sae", type=positive(int), default=16384)
    parser.add_argument("--k", type=positive(int), default=8)
    parser.add_argument("--lr-multiple", type=float, default=1.0, help="of the TopK default")
    parser.add_argument("--dead-after-tokens", type=positive(int), help="default: the trainer's")
    parser.add_argument("--auxk-k", type=positive(int), help="default: the trainer's (d_in / 2)")
    parser.add_argument("--batch-size", type=positive(int), default=1024)
    parser.add_argument("--every", type=positive(int), default=40, help="print every N steps")
    parser.add_argument("--threads", type=positive(int), default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", help="activations saved by dictionary_claims.py --cache")
    args = parser.parse_args()
    if args.tokens < args.batch_size:
        parser.error(f"--tokens {args.tokens} is less than one batch ({args.batch_size})")
    if args.every % 10:
        parser.error("--every must be a multiple of 10, the trainer's logging interval")
    if args.k > args.auxk_d_sae:
        parser.error(f"--k {args.k} must be at most --auxk-d-sae {args.auxk_d_sae}")
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_ND, eval_ND = cached_activations(args, math.ceil(args.tokens / args.epochs))
    runs = train_pair(args, train_ND, eval_ND)
    print(
        f"\n{args.model} {args.place}: TopK {args.auxk_d_sae} latents, k {args.k}, "
        f"{args.lr_multiple:g}x the default rate, dead window {runs['AuxK'].dead_window:,} tokens"
    )
    print(trace_table(runs, args.every))
    print(
        f"\nheld-out dead fraction: AuxK {runs['AuxK'].metrics['dead_fraction']:.2%}, none "
        f"{runs['none'].metrics['dead_fraction']:.2%}\ntime: {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
