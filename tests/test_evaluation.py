"""Dictionary evaluation: reconstruction metrics by hand, and downstream loss on a tiny model."""

import math

import pytest
import torch
import torch.nn.functional as F

from sparse_circuits.circuits.training.evaluation import (
    downstream_metrics,
    evaluate_dictionary,
)
from sparse_circuits.dictionaries import DictionaryConfig, DictionaryError, ReluSAE
from sparse_circuits.dictionaries.evaluation import (
    density_histogram,
    eval_mode,
    reconstruction_metrics,
)

from .conftest import D_MODEL, random_dictionary


def relu_sae(W_enc_DF, W_dec_FD, b_enc_F=None, b_dec_D=None, **config):
    """A ReLU SAE with the given weights (biases 0 unless given), no input centring."""
    d_in, d_sae = W_enc_DF.shape
    config.setdefault("center_input", False)
    sae = ReluSAE(
        DictionaryConfig(arch="relu", d_in=d_in, d_sae=d_sae, d_out=W_dec_FD.shape[1], **config)
    )
    with torch.no_grad():
        sae.W_enc.copy_(W_enc_DF)
        sae.W_dec.copy_(W_dec_FD)
        sae.b_enc.copy_(torch.zeros(d_sae) if b_enc_F is None else b_enc_F)
        sae.b_dec.copy_(torch.zeros(W_dec_FD.shape[1]) if b_dec_D is None else b_dec_D)
    return sae.eval()


def exact_sae(d: int, scale: float = 1.0, **config):
    """``relu(x) - relu(-x) = x``: features ``[x+, x-]``, reconstruction ``scale * x``."""
    eye = torch.eye(d)
    return relu_sae(torch.cat([eye, -eye], 1), scale * torch.cat([eye, -eye], 0), **config)


# --- reconstruction metrics by hand ---------------------------------------------------------


def test_half_reconstruction_gives_shrinkage_half_and_hand_fvu():
    x = torch.tensor([[1.0, -2.0, 0.0], [3.0, 0.0, 1.0], [-1.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    metrics = reconstruction_metrics(exact_sae(3, scale=0.5), [(x, x)])
    assert metrics["shrinkage"] == pytest.approx(0.5)
    # fvu = sum ||x - x/2||^2 / sum ||x - mean||^2
    mean = x.mean(0)
    expected = (0.25 * x.pow(2).sum() / (x - mean).pow(2).sum()).item()
    assert metrics["fvu"] == pytest.approx(expected)
    assert metrics["n_tokens"] == 4


def test_l0_dead_fraction_and_density_by_hand():
    # features are [x+, x-]: token 1 fires x+0, x-1; token 2 fires x+0, x+1; token 3 nothing
    x = torch.tensor([[1.0, -2.0], [3.0, 4.0], [0.0, 0.0]])
    metrics = reconstruction_metrics(exact_sae(2), [x])
    assert metrics["l0"] == pytest.approx(4 / 3)
    # x+0 fires on 2 tokens, x+1 on 1, x-0 never, x-1 on 1
    torch.testing.assert_close(metrics["feature_density"], torch.tensor([2 / 3, 1 / 3, 0, 1 / 3]))
    assert metrics["dead_fraction"] == pytest.approx(0.25)
    assert metrics["fvu"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["shrinkage"] == pytest.approx(1.0)


def test_hand_fvu_with_a_constant_reconstruction():
    # decoder zero and b_dec = c: y_hat = c everywhere, so sum ||y - c||^2 over sum ||y - mean||^2
    y = torch.tensor([[1.0, 0.0], [3.0, 2.0]])  # mean (2, 1); centred sum of squares 4
    c = torch.tensor([1.0, 1.0])
    sae = relu_sae(torch.eye(2), torch.zeros(2, 2), b_dec_D=c)
    metrics = reconstruction_metrics(sae, [(y, y)])
    assert metrics["fvu"] == pytest.approx((0 + 1 + 4 + 1) / 4)
    # gamma = sum ||y_hat||^2 / sum <y_hat, y> = (2 + 2) / (1 + 5)
    assert metrics["shrinkage"] == pytest.approx(4 / 6)


def test_transcoder_targets_differ_from_inputs():
    x = torch.randn(10, 3)
    y = torch.randn(10, 2)
    W_dec = torch.randn(6, 2)
    sae = relu_sae(torch.cat([torch.eye(3), -torch.eye(3)], 1), W_dec)
    metrics = reconstruction_metrics(sae, [(x, y)])
    y_hat = torch.relu(torch.cat([x, -x], 1)) @ W_dec
    expected = ((y - y_hat).pow(2).sum() / (y - y.mean(0)).pow(2).sum()).item()
    assert metrics["fvu"] == pytest.approx(expected, rel=1e-5)
    gamma = (y_hat.pow(2).sum() / (y_hat * y).sum()).item()
    assert metrics["shrinkage"] == pytest.approx(gamma, rel=1e-5)
    with pytest.raises(DictionaryError, match="width 2"):
        reconstruction_metrics(sae, [(x, torch.randn(10, 3))])


def test_streaming_equals_one_big_batch():
    # float64 throughout, so batching cannot change the dictionary's own rounding
    sae = random_dictionary("relu", 8, 20, seed=3).double()
    x = torch.randn(50, 8, dtype=torch.float64) * 3 + 10  # a large mean stresses the variance
    whole = reconstruction_metrics(sae, [(x, x)])
    streamed = reconstruction_metrics(sae, ((x[i : i + 7], x[i : i + 7]) for i in range(0, 50, 7)))
    for key in ("fvu", "l0", "dead_fraction", "shrinkage"):
        assert streamed[key] == pytest.approx(whole[key], rel=1e-9, abs=1e-12), key
    assert streamed["n_tokens"] == whole["n_tokens"] == 50
    torch.testing.assert_close(streamed["feature_density"], whole["feature_density"])


def test_batchtopk_is_evaluated_in_inference_mode_and_mode_restored():
    sae = random_dictionary("batchtopk", 8, 16).train()
    x = torch.randn(12, 8)
    with eval_mode(sae):
        expected = (sae(x).features != 0).sum(-1).double().mean().item()
    assert sae.training
    assert reconstruction_metrics(sae, [x])["l0"] == pytest.approx(expected)
    assert sae.training


def test_no_tokens_is_an_error():
    with pytest.raises(ValueError, match="no tokens"):
        reconstruction_metrics(exact_sae(2), [])


def test_density_histogram_writes_plotly_html(tmp_path):
    density = torch.tensor([0.0, 0.0, 1e-4, 1e-3, 0.01, 0.2, 0.5])
    path = density_histogram(density, tmp_path / "density.html", title="resid.1")
    assert path == tmp_path / "density.html"
    html = path.read_text()
    assert "plotly" in html
    assert "2 of 7 features dead" in html
    assert [p.name for p in tmp_path.iterdir()] == ["density.html"]  # no temporary left


# --- downstream metrics on a tiny model ---------------------------------------------------


def contexts(n: int = 5, t: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 20, (n, t), generator=generator)
    ids[:, 0] = 1  # BOS
    return ids


def test_exact_dictionary_recovers_all_loss(llama):
    model, adapter = llama
    ids = contexts()
    sae = exact_sae(D_MODEL, place="resid.1")
    metrics = evaluate_dictionary(model, adapter, sae, ids, batch_size=2)
    assert metrics["ce_zero_ablation"] != pytest.approx(metrics["ce_clean"])
    assert metrics["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["ce_spliced"] == pytest.approx(metrics["ce_clean"], abs=1e-5)
    assert metrics["fvu"] == pytest.approx(0.0, abs=1e-10)
    assert metrics["shrinkage"] == pytest.approx(1.0)
    assert metrics["n_tokens"] == 5 * 7
    assert metrics["n_predictions"] == 5 * 6
    density = metrics.pop("feature_density")
    assert density.shape == (2 * D_MODEL,)
    for key, value in metrics.items():
        assert isinstance(value, int | float), key
    # the sum of the two halves of each feature pair fires on every token
    assert metrics["l0"] == pytest.approx(D_MODEL, abs=0.5)


def test_zero_decoder_recovers_nothing(llama):
    model, adapter = llama
    ids = contexts()
    for place in ("resid.1", "mlp.0", "attn.2"):
        sae = relu_sae(torch.randn(D_MODEL, 24), torch.zeros(24, D_MODEL))
        metrics = downstream_metrics(model, adapter, sae, place, ids, batch_size=2)
        assert metrics["ce_spliced"] == pytest.approx(metrics["ce_zero_ablation"], abs=1e-6)
        assert metrics["ce_loss_recovered"] == pytest.approx(0.0, abs=1e-5), place
        assert metrics["kl"] > 0


def test_ce_clean_matches_hf_logits(llama):
    model, adapter = llama
    ids = contexts(n=3, t=9, seed=1)
    with torch.no_grad():
        logits = model._module(ids).logits
    vocab = logits.shape[-1]
    for exclude_first in (0, 1, 3):
        expected = F.cross_entropy(
            logits[:, exclude_first:-1].reshape(-1, vocab), ids[:, exclude_first + 1 :].reshape(-1)
        ).item()
        metrics = downstream_metrics(
            model,
            adapter,
            random_dictionary("topk", D_MODEL, 32),
            "resid.0",
            ids,
            batch_size=2,
            exclude_first=exclude_first,
        )
        assert metrics["ce_clean"] == pytest.approx(expected, rel=1e-5)
        assert metrics["n_predictions"] == 3 * (8 - exclude_first)
        assert 0 < metrics["kl"] and not math.isnan(metrics["ce_loss_recovered"])


def test_transcoder_replaces_the_place_it_writes(llama):
    """A transcoder reading mlp_in.1 with a zero decoder replaces mlp.1 by zeros."""
    model, adapter = llama
    ids = contexts()
    transcoder = random_dictionary(
        "relu", D_MODEL, 24, center_input=False, place="mlp_in.1", writes="mlp.1"
    )
    with torch.no_grad():
        transcoder.W_dec.zero_()
        transcoder.b_dec.zero_()
    assert transcoder.config.replaces() == transcoder.config.replaces("mlp_in.1") == "mlp.1"
    metrics = evaluate_dictionary(model, adapter, transcoder, ids, batch_size=4)
    assert metrics["ce_spliced"] == pytest.approx(metrics["ce_zero_ablation"], abs=1e-6)
    assert metrics["fvu"] > 0.99  # predicts zeros for a non-constant target: fvu >= 1
    with pytest.raises(DictionaryError, match="cannot be evaluated at resid.0"):
        transcoder.config.replaces("resid.0")


def test_contexts_too_short(llama):
    model, adapter = llama
    with pytest.raises(ValueError, match="no next-token prediction"):
        downstream_metrics(model, adapter, exact_sae(D_MODEL), "resid.0", contexts(t=2))
