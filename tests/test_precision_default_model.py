"""bfloat16 against float32 end to end on the real default model, smollm2-135m, with the
starter dictionaries at the demo's five places (resid.3, 9, 15, 21, 27) on the demo's prompts.

Tolerances (the ones the issue states): node effects (``attrib`` and ``ig`` on 32 training
prompts) Spearman >= 0.99 over the nodes above 1 % of the largest |effect| and top-100 overlap
>= 0.9; faithfulness of the float32 circuit (the demo's node threshold) on the held-out prompts
within 0.02, its completeness within 0.03. Measured while writing this (mixed precision, 32 prompts,
``attrib``): Spearman 0.994, top-100 overlap 0.93; with the residual stream in bfloat16 as
well it was 0.971, which is why ``circuits.model.mixed_precision`` keeps it float32. SHIFT is
not compared here: a run takes minutes per precision on two cores.
"""

import functools
from pathlib import Path

import pytest

from sparse_circuits.circuits.data.agreement_sets import agreement_file
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.comparison import compare_effects
from sparse_circuits.circuits.discovery.discover import load_prompt_batches
from sparse_circuits.circuits.discovery.faithfulness import score_selection
from sparse_circuits.circuits.discovery.nodes import select_nodes
from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.circuits.model.places import spaced_layers
from sparse_circuits.dictionaries.sets import load_dictionary_set

pytestmark = pytest.mark.slow

STARTER = Path(__file__).resolve().parents[1] / "starter" / "smollm2-135m"
PLACES = [f"resid.{layer}" for layer in spaced_layers(30, 5)]
DEMO_NODE_THRESHOLD = 0.005
"""The demo's node threshold (logit-difference units)."""


@functools.cache
def setup():
    models = {p: load_model("smollm2-135m", precision=p) for p in ("float32", "bfloat16")}
    dictionaries = load_dictionary_set(STARTER, PLACES)
    tokenizer = models["float32"].model.tokenizer
    train = load_prompt_batches(tokenizer, agreement_file("across_rc", "train"))
    test = load_prompt_batches(tokenizer, agreement_file("across_rc", "test"))
    return models, dictionaries, train[0], test


PROMPTS = {"attrib": 32, "ig": 32}
"""Training prompts per method. With 8 prompts ``ig`` agreed at Spearman 0.980 over 126 nodes:
the effects of fewer prompts are noisier per node, so as many as ``attrib``."""


@functools.cache
def effects(method: str):
    models, dictionaries, train, _ = setup()
    batches = [train.split(PROMPTS[method])[0]]
    config = AttributionConfig(method=method, batch_size=32)
    return {
        precision: node_effects(
            model, adapter, dictionaries, batches, config=config, progress=False
        )
        for precision, (model, adapter) in models.items()
    }


@pytest.mark.parametrize("method", ["attrib", "ig"])
def test_node_effects_agree(method):
    result = effects(method)
    agreement = compare_effects(result["float32"], result["bfloat16"], floor=0.01, top=100)
    assert agreement.spearman >= 0.99, agreement
    assert agreement.top_overlap >= 0.9, agreement


def test_faithfulness_agrees():
    models, dictionaries, _, test = setup()
    selection = select_nodes(effects("attrib")["float32"], threshold=DEMO_NODE_THRESHOLD)
    scores = {
        precision: score_selection(model, adapter, dictionaries, test, [selection], progress=False)[
            0
        ]
        for precision, (model, adapter) in models.items()
    }
    reference, other = scores["float32"], scores["bfloat16"]
    assert reference.faithfulness > 0.5  # a circuit worth comparing
    assert other.faithfulness == pytest.approx(reference.faithfulness, abs=0.02)
    # the complement keeps nearly every node, so its metric sits near the empty circuit's and
    # rounding moves it more: measured 0.056 (float32) against 0.080 (bfloat16)
    assert other.completeness == pytest.approx(reference.completeness, abs=0.03)
