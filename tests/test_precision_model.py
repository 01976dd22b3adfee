"""bfloat16 against float32 on the same inputs, on every tiny architecture (issue 13).

Each architecture is built twice from one seed (``tiny_model(dtype=...)``: the bfloat16 model
in mixed precision, its products' weights the float32 ones rounded), with ReLU dictionaries fitted to the float32 model's
activations at five places (tied random directions centred on the mean activation, so that
features and error have the sizes they have in trained dictionaries), on 48 agreement prompts.
The float32 run is the reference for every figure.

Tolerances, and why:

- spliced logits within 2 % of the largest |logit|, the metric within 2 % of its largest
  |value|: bfloat16 keeps 8 significant bits (rounding 2^-9 = 0.2 %); through the five
  spliced places and three blocks about 1 % is seen, so a larger gap is a bug (a sum or a
  cast done in bfloat16 where float32 is promised), not rounding;
- node effects (``attrib`` and ``ig``) and edge weights: Spearman rank correlation >= 0.99
  over the entries whose |value| is at least 1 % of the largest (below that, rounding moves
  them past each other), and the top 20 (of about 170 nodes: top 100 would be most of
  them) >= 0.9 shared, i.e. the same circuit;
- faithfulness and completeness within 0.02 of the float32 values: circuits are compared at
  that resolution (the demo's goal is 0.8). The metric is the logit difference signed by
  its float32 sign on each prompt, so that the full model's mean is the mean |logit diff| and
  not a near-zero average of a random model's guesses (which would make faithfulness the
  ratio of two rounding errors).

The ``cuda`` cases (marked ``gpu``) run the same comparisons on a CUDA device.
"""

import functools
import itertools

import pytest
import torch

from sparse_circuits import precision as precision_module
from sparse_circuits.circuits.data.prompts import Example, tokenize_prompts
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.comparison import compare_edges, compare_effects
from sparse_circuits.circuits.discovery.discover import DiscoverConfig, discover_circuit
from sparse_circuits.circuits.discovery.edges import edge_effects
from sparse_circuits.circuits.discovery.faithfulness import score_selection
from sparse_circuits.circuits.discovery.metrics import LogitDiff
from sparse_circuits.circuits.discovery.nodes import select_nodes
from sparse_circuits.circuits.model.activations import collect_activations
from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.circuits.model.runner import Runner
from sparse_circuits.circuits.model.splice import splice
from sparse_circuits.dictionaries import architecture_class
from sparse_circuits.editing.shift import ShiftConfig, run_shift
from sparse_circuits.precision import precision_name

from .conftest import D_MODEL, TINY_CONFIGS, random_dictionary, tiny_model

PLACES = ["resid.0", "attn.1", "mlp.1", "resid.1", "resid.2"]
D_SAE = 48
TOP = 20
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]


def agreement_examples() -> list[Example]:
    """48 prompts of one length: a plural or singular subject, a distractor noun of the other
    number, and the verb that agrees with the subject."""
    subjects = [("key", "keys"), ("dog", "dogs"), ("cat", "cats"), ("man", "men")]
    others = [("cabinet", "cabinets"), ("woman", "women")]
    verbs = [("is", "are"), ("runs", "run"), ("was", "were")]
    examples = []
    for (one, many), (other, others_), (verb, verb_many) in itertools.product(
        subjects, others, verbs
    ):
        examples.append(Example(f"the {many} near the {other}", verb_many,
                                f"the {one} near the {other}", verb))  # fmt: skip
        examples.append(Example(f"the {one} of the {others_}", verb,
                                f"the {many} of the {others_}", verb_many))  # fmt: skip
    return examples


def fitted_dictionary(model, adapter, ids, place: str, seed: int):
    """A ReLU SAE of tied random unit directions, its decoder bias the mean activation."""
    torch.manual_seed(seed)
    dictionary = architecture_class("relu").create(D_MODEL, D_SAE)
    x_BTD = collect_activations(model, adapter, ids, [place])[place]
    with torch.no_grad():
        dictionary.b_dec.copy_(x_BTD.flatten(0, 1).mean(0))
    return dictionary.eval().requires_grad_(False)


class SignedLogitDiff(LogitDiff):
    """The logit difference times a fixed sign per prompt (its float32 sign)."""

    def __init__(self, signs_N: torch.Tensor):
        self.signs_N = signs_N

    def __call__(self, model, adapter, batch):
        value = super().__call__(model, adapter, batch)
        return value * self.signs_N[batch.indices].to(value)


@functools.cache
def pair(kind: str, device: str):
    """Both models (float32 first), the dictionaries (float32, on ``device``) and the batch."""
    models = {
        dtype: tiny_model(kind, seed=3, dtype=dtype) for dtype in (torch.float32, torch.bfloat16)
    }
    for model, _ in models.values():
        model._module.to(device)
    model, adapter = models[torch.float32]
    (batch,) = tokenize_prompts(model.tokenizer, agreement_examples(), same_length=True)
    ids = batch.clean_ids.to(device)
    dictionaries = {
        place: fitted_dictionary(model, adapter, ids, place, seed).to(device)
        for seed, place in enumerate(PLACES)
    }
    return models, dictionaries, batch


@functools.cache
def effects(kind: str, device: str, method: str):
    models, dictionaries, batch = pair(kind, device)
    config = AttributionConfig(method=method, batch_size=48)
    return {
        dtype: node_effects(model, adapter, dictionaries, [batch], config=config, progress=False)
        for dtype, (model, adapter) in models.items()
    }


ARCHITECTURES = sorted(TINY_CONFIGS)


def test_load_model_in_bfloat16_is_mixed_precision(tmp_path, monkeypatch):
    """Products in bfloat16, norms, residual stream and logits in float32."""
    model, _ = tiny_model("gpt2")  # its unembedding is tied to the embedding
    model._module.save_pretrained(tmp_path)
    model.tokenizer.save_pretrained(tmp_path)
    loaded, adapter = load_model(tmp_path, precision="bfloat16")
    hf_model = loaded._module
    embedding = hf_model.get_input_embeddings().weight
    head = hf_model.get_output_embeddings().weight
    assert adapter.dtype == embedding.dtype == torch.bfloat16
    assert hf_model.transformer.h[0].mlp.c_fc.weight.dtype == torch.bfloat16
    assert hf_model.transformer.ln_f.weight.dtype == torch.float32
    assert head.dtype == torch.float32 and torch.equal(head, model._module.lm_head.weight)
    assert torch.equal(embedding, head.to(torch.bfloat16))
    ids = torch.tensor([[3, 5, 7, 9]])
    with torch.no_grad(), loaded.trace(ids):
        mlp_BTD = loaded.transformer.h[0].mlp.output.save()
        final_BTD = loaded.transformer.ln_f.output.save()
        logits_BTV = loaded.output.logits.save()
    assert mlp_BTD.dtype == final_BTD.dtype == logits_BTV.dtype == torch.float32
    torch.testing.assert_close(logits_BTV, final_BTD @ head.T)  # float32 products
    for flags, dtype in (
        (frozenset(), torch.float32),
        (frozenset({"avx512_bf16"}), torch.bfloat16),
    ):
        monkeypatch.setattr(precision_module, "cpu_flags", lambda flags=flags: flags)
        assert load_model(tmp_path).adapter.dtype == dtype  # the default: auto
    # dtype, as callers from before the precision setting pass it, wins
    assert (
        load_model(tmp_path, dtype="float16", precision="bfloat16").adapter.dtype == torch.float16
    )


def test_splicing_leaves_a_bfloat16_forward_unchanged():
    """The error is float32, so decode(f) + error is the activation up to float32 rounding
    (one unit in the last place per spliced place), though the dictionaries compute in
    bfloat16."""
    models, dictionaries, batch = pair("llama", "cpu")
    model, adapter = models[torch.bfloat16]
    runner = Runner(model, adapter, dictionaries, LogitDiff())
    with torch.no_grad():
        plain_BTV = model._module(batch.clean_ids).logits
        with model.trace(batch.clean_ids):
            spliced = splice(adapter, runner.dictionaries)
            logits_BTV = model.output.logits.save()
    assert all(sp.features.dtype == torch.bfloat16 for sp in spliced.values())
    assert all(sp.error.dtype == torch.float32 for sp in spliced.values())
    torch.testing.assert_close(logits_BTV, plain_BTV, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_spliced_logits_and_metric(kind, device):
    models, dictionaries, batch = pair(kind, device)
    logits, metrics = {}, {}
    for dtype, (model, adapter) in models.items():
        runner = Runner(model, adapter, dictionaries, LogitDiff())
        assert all(d.dtype == dtype for d in runner.dictionaries.values())
        with torch.no_grad(), model.trace(batch.clean_ids.to(device)):
            splice(adapter, runner.dictionaries)
            logits[dtype] = model.output.logits.save()
        metrics[dtype] = runner.run(batch.clean_ids, batch).metric
    reference_BTV, other_BTV = logits[torch.float32], logits[torch.bfloat16]
    assert other_BTV.dtype == metrics[torch.bfloat16].dtype == torch.float32
    assert (other_BTV - reference_BTV).abs().max() <= 0.02 * reference_BTV.abs().max()
    gap = (metrics[torch.bfloat16] - metrics[torch.float32]).abs().max()
    assert gap <= 0.02 * metrics[torch.float32].abs().max()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["attrib", "ig"])
@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_node_effects_agree(kind, method, device):
    result = effects(kind, device, method)
    reference, other = result[torch.float32], result[torch.bfloat16]
    assert all(t.dtype == torch.float32 for t in (*other.features.values(), *other.errors.values()))
    agreement = compare_effects(reference, other, floor=0.01, top=TOP)
    assert agreement.spearman >= 0.99, agreement
    assert agreement.top_overlap >= 0.9, agreement


def _selection(kind: str, device: str):
    return select_nodes(effects(kind, device, "attrib")[torch.float32], top_k=30)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_edge_weights_agree(kind, device):
    models, dictionaries, batch = pair(kind, device)
    selection = _selection(kind, device)  # the same nodes in both
    weights = {
        dtype: edge_effects(model, adapter, dictionaries, [batch], selection, progress=False)
        for dtype, (model, adapter) in models.items()
    }
    agreement = compare_edges(weights[torch.float32], weights[torch.bfloat16], top=TOP)
    assert agreement.spearman >= 0.99, agreement
    assert agreement.top_overlap >= 0.9, agreement


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_faithfulness_agrees(kind, device):
    models, dictionaries, batch = pair(kind, device)
    model, adapter = models[torch.float32]
    signs_N = Runner(model, adapter, dictionaries, LogitDiff()).run(batch.clean_ids, batch).metric
    metric = SignedLogitDiff(signs_N.sign().cpu())
    selection = _selection(kind, device)
    scores = {
        dtype: score_selection(
            model, adapter, dictionaries, [batch], [selection], metric=metric, progress=False
        )[0]
        for dtype, (model, adapter) in models.items()
    }
    reference, other = scores[torch.float32], scores[torch.bfloat16]
    assert reference.m_full - reference.m_empty > 0.01  # a span that rounding cannot fake
    assert other.faithfulness == pytest.approx(reference.faithfulness, abs=0.02)
    # completeness is m(complement) over the same span: far outside [0, 1] on a random model,
    # so its tolerance scales with its size
    tolerance = 0.02 * max(1.0, abs(reference.completeness))
    assert other.completeness == pytest.approx(reference.completeness, abs=tolerance)


def test_the_precision_is_recorded(tmp_path):
    """In the circuit's settings, and in what evaluating it reports (by default in the
    precision it was discovered with)."""
    models, dictionaries, batch = pair("llama", "cpu")
    config = DiscoverConfig(attribution=AttributionConfig(), top_k=10)
    for dtype, (model, adapter) in models.items():
        graph, effects_ = discover_circuit(
            model, adapter, dictionaries, [batch], config, progress=False
        )
        assert graph.graph["settings"]["precision"] == precision_name(dtype)
        assert effects_.features["resid.0"].dtype == torch.float32


def test_shift_accuracies_agree():
    """The SHIFT table with the same ablation list in both precisions: every method's task,
    spurious and worst-group accuracy within one evaluation text (1/12) of float32's. The
    probes train on float32 pooled activations in both (the residual stream is float32), so
    a larger gap means an ablation or a pooling ran in the wrong dtype."""
    from .test_shift import bios

    dictionaries = {f"resid.{i}": random_dictionary("relu", D_MODEL, 32, seed=i) for i in range(3)}
    config = ShiftConfig(
        place="resid.1", candidates=8, probe_epochs=50, label_tokens=0, attribution_examples=4
    )
    train, test = bios(24, False, 0), bios(24, True, 1)
    tables = {}
    for dtype in (torch.float32, torch.bfloat16):
        model, adapter = tiny_model("llama", seed=8, dtype=dtype)
        tables[dtype] = run_shift(
            model, adapter, dictionaries, train, test, config,
            ablate=[("resid.0", 3), ("resid.1", 5)], progress=False,
        )  # fmt: skip
    assert tables[torch.bfloat16]["settings"]["precision"] == "bfloat16"
    reference, other = (tables[d]["methods"] for d in (torch.float32, torch.bfloat16))
    assert set(reference) == set(other)
    for method, scores in reference.items():
        for accuracy in ("task_acc", "spurious_acc", "worst_group_acc"):
            assert other[method][accuracy] == pytest.approx(scores[accuracy], abs=1 / 12 + 1e-9), (
                method,
                accuracy,
            )
