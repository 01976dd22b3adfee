"""Splicing leaves the model's output unchanged and gives features and errors gradients."""

import nnsight
import pytest
import torch

from sparse_circuits.circuits.model.splice import check_dictionaries, splice
from sparse_circuits.dictionaries import DictionaryError

from .conftest import ALL_ARCHS, D_MODEL, random_dictionary


def mixed_dictionaries(adapter):
    """A different architecture at every place, a transcoder and a skip transcoder among them."""
    dictionaries = {}
    places = [p for p in adapter.places if not p.startswith("mlp_in")]
    for i, place in enumerate(places):
        arch = ALL_ARCHS[i % len(ALL_ARCHS)]
        dictionaries[place] = random_dictionary(arch, D_MODEL, 24, seed=i, place=place)
    for layer, skip in ((0, False), (1, True)):
        dictionaries[f"mlp.{layer}"] = random_dictionary(
            "topk",
            D_MODEL,
            24,
            seed=100 + layer,
            center_input=False,
            skip=skip,
            place=f"mlp_in.{layer}",
            writes=f"mlp.{layer}",
        )
    return dictionaries


def test_spliced_logits_equal_plain_logits(any_model):
    model, adapter = any_model
    ids = torch.randint(3, 20, (2, 7))
    dictionaries = mixed_dictionaries(adapter)
    check_dictionaries(adapter, dictionaries)
    with torch.no_grad():
        plain = model._module(ids).logits
        with model.trace(ids):
            spliced = splice(adapter, dictionaries)
            logits = model.output.logits.save()
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)
    # the dictionaries really ran: features are what the dictionary gives on the input
    for _place, sp in spliced.items():
        torch.testing.assert_close(sp.features, sp.dictionary.encode(sp.input))
        assert not torch.equal(sp.error, torch.zeros_like(sp.error))


def test_gradients_reach_features_and_error(llama):
    model, adapter = llama
    ids = torch.randint(3, 20, (2, 6))
    dictionaries = {
        p: random_dictionary("relu", D_MODEL, 24, seed=i)
        for i, p in enumerate(["resid.0", "mlp.1", "resid.1"])
    }
    with model.trace(ids):
        spliced = splice(adapter, dictionaries)
        metric = model.output.logits[:, -1, 5].sum().save()
    # the gradient at the place's output, from the unspliced model
    with model.trace(ids):
        outs = nnsight.save([adapter.read(p) for p in ("resid.0", "mlp.1", "resid.1")])
        plain_metric = model.output.logits[:, -1, 5].sum().save()
    grads = torch.autograd.grad(plain_metric, outs)
    for (_place, sp), grad in zip(spliced.items(), grads, strict=True):
        g_f, g_e = torch.autograd.grad(metric, [sp.features, sp.error], retain_graph=True)
        # d m / d error is the gradient at the place; d m / d features is W_dec @ that
        torch.testing.assert_close(g_e, grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(g_f, grad @ sp.dictionary.W_dec.T.detach(), atol=1e-5, rtol=1e-4)


def test_hold_fixed_cuts_paths_between_spliced_places(llama):
    """With every resid place held fixed, resid.0's features reach the metric only via resid.1."""
    model, adapter = llama
    ids = torch.randint(3, 20, (1, 5))
    dictionaries = {f"resid.{L}": random_dictionary("relu", D_MODEL, 24, seed=L) for L in range(3)}
    with model.trace(ids):
        spliced = splice(adapter, dictionaries, hold_fixed=True)
        metric = model.output.logits[:, -1, 5].sum().save()
    first = spliced["resid.0"].features
    assert torch.autograd.grad(metric, first, allow_unused=True)[0] is None
    direct = torch.autograd.grad(spliced["resid.1"].upstream_error.sum(), first)[0]
    assert direct.abs().sum() > 0


def test_width_mismatch_names_place_and_widths(llama):
    _, adapter = llama
    with pytest.raises(DictionaryError, match=r"resid\.1 has d_in 12.*resid\.1 .*width 16"):
        check_dictionaries(adapter, {"resid.1": random_dictionary("relu", 12, 24)})


def test_unknown_place_in_dictionary_set(llama):
    _, adapter = llama
    with pytest.raises(ValueError, match="valid places are"):
        check_dictionaries(adapter, {"resid.9": random_dictionary("relu", D_MODEL, 24)})
