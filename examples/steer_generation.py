"""Steer the default model's generation with a contrastive vector (the mean activation over
one set of prompts minus another's) and print the generations side by side.

    python examples/steer_generation.py [--place resid.10] [--coef 2] [--prompt "..."]
"""

import argparse

from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.editing.interventions import Steering
from sparse_circuits.editing.steering import contrastive_vector, steered_generations

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--place", default="resid.10")
parser.add_argument("--coef", type=float, default=2.0, help="multiple of the vector added")
parser.add_argument("--prompt", default="My favourite day of the year is")
parser.add_argument("--max-new-tokens", type=int, default=24)
args = parser.parse_args()

model, adapter = load_model("smollm2-135m")
happy = ["I love this, it is wonderful!", "What a joyful, happy day.", "This is great news."]
sad = ["I hate this, it is awful.", "What a miserable, sad day.", "This is terrible news."]
vector = contrastive_vector(model, adapter, args.place, happy, sad)
result = steered_generations(
    model,
    adapter,
    args.prompt,
    Steering(args.place, vector, coef=args.coef),
    max_new_tokens=args.max_new_tokens,
)
print(f"unsteered: {result['unsteered']!r}")  # repr: one line each, newlines shown as \n
print(f"steered:   {result['steered']!r}")
