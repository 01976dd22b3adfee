"""Place names map onto the right activations in every architecture."""

import nnsight
import pytest
import torch

from sparse_circuits.circuits.model.places import (
    PlaceError,
    all_places,
    forward_order,
    parse_place,
    spaced_layers,
)

from .conftest import N_LAYERS


def run_places(model, adapter, ids):
    """Every place's activation, read in one trace."""
    with model.trace(ids):
        acts = nnsight.save({name: adapter.read(name) for name in adapter.places})
    return acts


def test_resid_equals_hidden_states(any_model):
    model, adapter = any_model
    ids = torch.randint(3, 20, (2, 6))
    acts = run_places(model, adapter, ids)
    with torch.no_grad():
        hidden = model._module(ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(acts["embed"], hidden[0])
    for layer in range(adapter.n_layers - 1):
        torch.testing.assert_close(acts[f"resid.{layer}"], hidden[layer + 1])
    # the last hidden state is after the final norm in transformers; resid is before it
    last = model._module.get_submodule(adapter.spec.final_norm)(acts[f"resid.{N_LAYERS - 1}"])
    torch.testing.assert_close(last, hidden[-1])


def test_blocks_add_attn_and_mlp(any_model):
    """resid.(L-1) + attn.L + mlp.L == resid.L, for sequential and parallel blocks alike."""
    model, adapter = any_model
    ids = torch.randint(3, 20, (2, 6))
    acts = run_places(model, adapter, ids)
    previous = acts["embed"]
    for layer in range(adapter.n_layers):
        total = previous + acts[f"attn.{layer}"] + acts[f"mlp.{layer}"]
        torch.testing.assert_close(total, acts[f"resid.{layer}"], atol=1e-5, rtol=1e-5)
        previous = acts[f"resid.{layer}"]


def test_mlp_in_is_what_the_mlp_reads(llama):
    model, adapter = llama
    ids = torch.randint(3, 20, (1, 5))
    acts = run_places(model, adapter, ids)
    block = model._module.model.layers[1]
    expected = block.post_attention_layernorm(acts["resid.0"] + acts["attn.1"])
    torch.testing.assert_close(acts["mlp_in.1"], expected)
    torch.testing.assert_close(block.mlp(acts["mlp_in.1"]), acts["mlp.1"])


def test_place_names_and_order():
    assert all_places(2)[:5] == ["embed", "attn.0", "mlp_in.0", "mlp.0", "resid.0"]
    assert forward_order(["resid.1", "embed", "mlp.0", "attn.1", "mlp.0"], 2) == [
        "embed",
        "mlp.0",
        "attn.1",
        "resid.1",
    ]
    assert parse_place("mlp_in.1", 2).layer == 1


@pytest.mark.parametrize("bad", ["resid.7", "resid", "block.1", "mlp.-1", "Resid.0"])
def test_unknown_place_lists_valid_ones(bad):
    with pytest.raises(PlaceError, match=r"valid places are embed, attn\.0\.\.2"):
        parse_place(bad, 3)


@pytest.mark.parametrize("n_layers,count", [(30, 5), (6, 6), (7, 3), (26, 4), (1, 1)])
def test_spaced_layers_are_the_middles_of_equal_shares(n_layers, count):
    layers = spaced_layers(n_layers, count)
    assert len(set(layers)) == count
    for i, layer in enumerate(layers):  # layer i lies in share i: [i n / count, (i+1) n / count)
        assert i * n_layers / count <= layer < (i + 1) * n_layers / count
    with pytest.raises(ValueError, match="cannot choose"):
        spaced_layers(n_layers, n_layers + 1)
