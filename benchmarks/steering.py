"""Cost of a steering vector in force during greedy generation.

Prints   tokens/s(generation with a Steering intervention at one resid place)
       / tokens/s(plain generation),
with the same prompts and number of new tokens, measured side by side in one run (median of
interleaved repeats, after a warm-up). Both sides go through the API ``sparse-circuits steer``
uses: ``editing.steering.generate``, inside ``editing.interventions.intervene`` for the steered
side. The vector is a starter dictionary feature's decoder direction. 1.0 means steering adds
nothing; goal: at least 0.9 on smollm2-135m. One plain/steered pair is printed, to show that
the steering changes the text.

    python benchmarks/steering.py [--model smollm2-135m] [--place resid.15] [--feature 189]
                                  [--coef 8] [--new-tokens 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.dictionaries.sets import load_dictionary_set
from sparse_circuits.editing.interventions import Steering, intervene
from sparse_circuits.editing.steering import feature_vector, generate

PROMPTS = [
    "In the middle of the old forest, we found",
    "Once upon a time, there was a",
    "The best way to learn a new language is",
    "My favourite recipe for dinner starts with",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dictionaries", default="starter/smollm2-135m")
    parser.add_argument("--place", default="resid.15")
    parser.add_argument("--feature", type=int, default=189)
    parser.add_argument("--coef", type=float, default=8.0)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model, adapter = load_model(args.model, device=args.device)
    dictionary = load_dictionary_set(args.dictionaries, [args.place])[args.place]
    vector = feature_vector(dictionary, args.feature, place=args.place)
    steering = Steering(args.place, vector, coef=args.coef)

    def plain(prompt: str) -> str:
        return generate(model, prompt, max_new_tokens=args.new_tokens)

    def steered(prompt: str) -> str:
        with intervene(adapter, [steering]):
            return generate(model, prompt, max_new_tokens=args.new_tokens)

    def count_new(prompt: str, text: str) -> int:
        return len(model.tokenizer(prompt + text).input_ids) - len(
            model.tokenizer(prompt).input_ids
        )

    sides = {"plain": plain, "steered": steered}
    texts = {name: [side(p) for p in PROMPTS] for name, side in sides.items()}  # warm-up too
    if texts["plain"] == texts["steered"]:
        raise SystemExit("steering did not change any output: raise --coef")
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(args.repeats):
        spent = dict.fromkeys(sides, 0.0)
        for prompt in PROMPTS:  # interleaved per prompt, order alternating: drift hits both
            for name in sorted(sides, reverse=round_ % 2 == 1):
                start = time.perf_counter()
                sides[name](prompt)
                spent[name] += time.perf_counter() - start
        for name in sides:
            seconds[name].append(spent[name])
    # generated tokens per side, re-tokenised from the texts (a prompt may stop early at EOS)
    tokens = {name: sum(map(count_new, PROMPTS, outputs)) for name, outputs in texts.items()}
    median = {name: tokens[name] / statistics.median(values) for name, values in seconds.items()}
    ratio = median["steered"] / median["plain"]

    changed = next(i for i, (a, b) in enumerate(zip(*texts.values(), strict=True)) if a != b)
    print(
        f"model {args.model}, Steering at {args.place} ({args.dictionaries} feature "
        f"{args.feature}, coef {args.coef}), {len(PROMPTS)} prompts x {args.new_tokens} new "
        f"tokens, greedy, device {args.device}, {torch.get_num_threads()} threads, median of "
        f"{args.repeats}"
    )
    print(f"  prompt:  {PROMPTS[changed]!r}")
    print(f"  plain:   {texts['plain'][changed]!r}")
    print(f"  steered: {texts['steered'][changed]!r}")
    for name in sides:
        print(f"  {name:>8}: {median[name]:7.2f} tok/s  ({tokens[name]} tokens per round)")
    print(f"steering speed ratio: {ratio:.3f}  (goal >= 0.9)")


if __name__ == "__main__":
    main()
