"""Interventions and steering against hand computation on a tiny model."""

import json

import pytest
import torch

from sparse_circuits.cli import main
from sparse_circuits.dictionaries import DictionaryError
from sparse_circuits.editing.interventions import (
    EditedModel,
    FeatureAblation,
    FeatureClamp,
    Steering,
    apply_in_trace,
    intervene,
)
from sparse_circuits.editing.steering import feature_vector, features_vector, steered_generations

from .conftest import D_MODEL, random_dictionary, tiny_model
from .reference import hooked_run


@pytest.fixture(scope="module")
def setup():
    model, adapter = tiny_model("llama", seed=4)
    dictionary = random_dictionary("relu", D_MODEL, 32, seed=1, place="resid.1")
    ids = torch.randint(3, 30, (2, 6))
    return model, adapter, dictionary, ids


def activation_and_logits(model, adapter, ids, place="resid.1"):
    with torch.no_grad():
        computed, logits = hooked_run(model, adapter, ids, read=[place])
    return computed[place], logits


def logits_with(model, adapter, ids, value, place="resid.1"):
    with torch.no_grad():
        return hooked_run(model, adapter, ids, replace={place: lambda _: value})[1]


def test_zero_ablation_removes_the_decoder_contribution(setup):
    model, adapter, dictionary, ids = setup
    x, _ = activation_and_logits(model, adapter, ids)
    f = dictionary.encode(x)
    features = f.sum((0, 1)).topk(3).indices.tolist()
    expected = x - f[..., features] @ dictionary.W_dec[features]
    with intervene(adapter, [FeatureAblation("resid.1", dictionary, features)]):
        x_new, logits = activation_and_logits(model, adapter, ids)
    torch.testing.assert_close(x_new, expected.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, logits_with(model, adapter, ids, expected.detach()))
    # the hooks are gone after the block
    x_after, _ = activation_and_logits(model, adapter, ids)
    torch.testing.assert_close(x_after, x)


def test_mean_ablation_and_clamp(setup):
    model, adapter, dictionary, ids = setup
    x, _ = activation_and_logits(model, adapter, ids)
    f = dictionary.encode(x)
    means = torch.tensor([0.5, 1.5])
    with intervene(adapter, [FeatureAblation("resid.1", dictionary, [2, 7], "mean", means)]):
        x_mean, _ = activation_and_logits(model, adapter, ids)
    expected = x + (means - f[..., [2, 7]]) @ dictionary.W_dec[[2, 7]]
    torch.testing.assert_close(x_mean, expected.detach(), atol=1e-5, rtol=1e-5)
    with intervene(adapter, [FeatureClamp("resid.1", dictionary, {4: 3.0})]):
        x_clamped, _ = activation_and_logits(model, adapter, ids)
    expected = x + (3.0 - f[..., [4]]) @ dictionary.W_dec[[4]]
    torch.testing.assert_close(x_clamped, expected.detach(), atol=1e-5, rtol=1e-5)


def test_resample_ablation_draws_every_token_from_the_pool(setup):
    model, adapter, dictionary, ids = setup
    x, _ = activation_and_logits(model, adapter, ids)
    f = dictionary.encode(x)[..., [2, 7]].detach()
    pool = torch.tensor([[0.5, 2.0], [3.0, 0.0]])
    ablation = [FeatureAblation("resid.1", dictionary, [2, 7], "resample", pool, seed=3)]
    with intervene(adapter, ablation):
        x_new, _ = activation_and_logits(model, adapter, ids)
    # x_new = x + (drawn - f) @ W_dec[[2, 7]]: recover each token's drawn features
    W_dec_nD = dictionary.W_dec[[2, 7]].detach()
    change_ND = (x_new - x).reshape(-1, D_MODEL)
    drawn = f + torch.linalg.lstsq(W_dec_nD.T, change_ND.T).solution.T.reshape(f.shape)
    distance = (drawn[..., None, :] - pool).norm(dim=-1)  # (B, T, M)
    assert distance.min(-1).values.max() < 1e-4  # every token took a row of the pool
    assert set(distance.argmin(-1).flatten().tolist()) == {0, 1}  # 12 draws hit both rows
    same_seed = FeatureAblation("resid.1", dictionary, [2, 7], "resample", pool, seed=3)
    with intervene(adapter, [same_seed]):
        again, _ = activation_and_logits(model, adapter, ids)
    torch.testing.assert_close(again, x_new)  # the seed fixes the draws
    with pytest.raises(ValueError, match="ablation mode must be one of zero, mean, resample"):
        FeatureAblation("resid.1", dictionary, [2], "median")
    with pytest.raises(ValueError, match="resample ablation needs the values to ablate to"):
        FeatureAblation("resid.1", dictionary, [2], "resample")


def test_steering_moves_the_residual_by_c_times_the_direction(setup):
    model, adapter, dictionary, ids = setup
    x, _ = activation_and_logits(model, adapter, ids)
    direction = feature_vector(dictionary, 5)
    torch.testing.assert_close(direction, dictionary.W_dec[5].detach())
    with intervene(adapter, [Steering("resid.1", direction, coef=2.5)]):
        x_new, _ = activation_and_logits(model, adapter, ids)
    torch.testing.assert_close(x_new - x, (2.5 * direction).expand_as(x), atol=1e-5, rtol=1e-5)
    with intervene(adapter, [Steering("resid.1", direction, coef=1.0, positions=[0, 3])]):
        x_some, _ = activation_and_logits(model, adapter, ids)
    moved = (x_some - x).norm(dim=-1) > 1e-6
    assert moved[:, [0, 3]].all() and not moved[:, [1, 2, 4, 5]].any()
    weighted = features_vector(dictionary, {1: 2.0, 3: -1.0})
    torch.testing.assert_close(
        weighted, 2 * dictionary.W_dec[1].detach() - dictionary.W_dec[3].detach()
    )


def test_steering_holds_during_generation_and_positions_are_absolute(setup):
    model, adapter, dictionary, _ = setup
    seen = []
    site = adapter.site("resid.2")
    handle = adapter.module("resid.2").register_forward_hook(
        lambda m, i, o: seen.append((o if site.index is None else o[site.index]).shape[1])
    )
    steering = Steering("resid.1", feature_vector(dictionary, 0), coef=50.0)
    result = steered_generations(model, adapter, "the keys to the", steering, max_new_tokens=4)
    handle.remove()
    assert result["steered"] != result["unsteered"]
    assert seen.count(1) >= 3  # cached decoding steps ran with the hook in force
    # only position 1 steered: tokens generated later are not, so the first forward decides
    only_first = Steering("resid.1", feature_vector(dictionary, 0), coef=50.0, positions=[1])
    with EditedModel(model, adapter, [only_first]) as edited:
        x_steered, _ = activation_and_logits(edited, adapter, torch.tensor([[3, 4, 5]]))
    x_plain, _ = activation_and_logits(model, adapter, torch.tensor([[3, 4, 5]]))
    moved = (x_steered - x_plain).norm(dim=-1)[0] > 1e-6
    assert moved.tolist() == [False, True, False]


def test_interventions_work_with_splicing(setup):
    from sparse_circuits.circuits.model.splice import splice

    model, adapter, dictionary, ids = setup
    direction = feature_vector(dictionary, 5)
    x, _ = activation_and_logits(model, adapter, ids)
    steer = [Steering("resid.1", direction, coef=1.0)]
    with torch.no_grad(), model.trace(ids):
        apply_in_trace(adapter, steer)
        spliced = splice(adapter, {"resid.1": dictionary})
        logits = model.output.logits.save()
    torch.testing.assert_close(spliced["resid.1"].input, x + direction, atol=1e-5, rtol=1e-5)
    with intervene(adapter, steer):  # the same edit by hooks: the same output
        _, hooked = activation_and_logits(model, adapter, ids)
    torch.testing.assert_close(logits, hooked, atol=1e-5, rtol=1e-5)


def test_bad_interventions(setup):
    model, adapter, dictionary, _ = setup
    with pytest.raises(DictionaryError, match=r"feature ids \[40\] are out of range.*d_sae = 32"):
        FeatureAblation("resid.1", dictionary, [3, 40])
    with pytest.raises(ValueError, match="no features given"):
        FeatureAblation("resid.1", dictionary, [])
    with pytest.raises(ValueError, match="valid places are"):
        with intervene(adapter, [Steering("resid.9", torch.zeros(D_MODEL))]):
            pass


def test_cli_steer(tmp_path, capsys, setup):
    model, adapter, dictionary, _ = setup
    model._module.save_pretrained(tmp_path / "model")
    model.tokenizer.save_pretrained(tmp_path / "model")
    dictionary.save(tmp_path / "dict")
    args = ["steer", "--model", str(tmp_path / "model"), "--place", "resid.1",
            "--feature", f"{tmp_path / 'dict'}:5", "--coef", "40", "--prompt", "the keys to the",
            "--max-new-tokens", "4"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == first  # greedy: deterministic
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "unsteered" in out and " | " in out
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"text": "the man was he"}\n')
    b.write_text('{"text": "the woman was she"}\n')
    assert main(["steer", "--model", str(tmp_path / "model"), "--place", "resid.1",
                 "--contrast", str(a), str(b), "--coef", "4", "--prompt", "the", "--json",
                 "--max-new-tokens", "3"]) == 0  # fmt: skip
    assert main([*args[:5], "--feature", f"{tmp_path / 'dict'}:99", *args[7:]]) == 2
    assert "out of range" in capsys.readouterr().err
