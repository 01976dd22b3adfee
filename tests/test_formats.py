"""Readers for other projects' dictionary files.

Each test writes files the way the source project writes them (its key names, shapes and config
fields), computes that project's forward pass by hand from its own definition, and checks that
``load_dictionary`` gives the same features and reconstruction.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from sparse_circuits.dictionaries import (
    DictionaryError,
    detect_format,
    load_cross_layer_transcoder,
    load_dictionary,
)
from sparse_circuits.dictionaries.sets import list_dictionary_set, load_dictionary_set

from .reference import (
    cross_layer_forward,
    cross_layer_tensors,
    dense_topk,
    sparsify_forward,
    write_cross_layer,
)

D, S, TOL = 8, 16, 1e-5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape) * scale


def inputs(width: int = D) -> torch.Tensor:
    return randn(2, 5, width)


def uniform(*shape: int, high: float = 1.0) -> torch.Tensor:
    return torch.rand(*shape) * high


def check(path: Path, fmt: str, x: torch.Tensor, features: torch.Tensor, x_hat: torch.Tensor):
    assert detect_format(path) == fmt
    dictionary = load_dictionary(path)
    assert dictionary.config.source_format == fmt
    with torch.no_grad():
        out = dictionary(x)
        encoded = dictionary.encode(x)
    torch.testing.assert_close(encoded, features, atol=TOL, rtol=0)
    torch.testing.assert_close(out.features, features, atol=TOL, rtol=0)
    torch.testing.assert_close(out.x_hat, x_hat, atol=TOL, rtol=0)
    assert (features != 0).any() and (features == 0).any()  # the test exercises sparsity
    return dictionary


def raises_naming(path: Path, message: str):
    """Loading ``path`` raises a ``DictionaryError`` matching ``message``, a regex that names
    the file at fault."""
    with pytest.raises(DictionaryError, match=message) as info:
        load_dictionary(path)
    return info


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=4))


# --- saprmarks/dictionary_learning -------------------------------------------------------------


def dl_folder(tmp_path: Path, state: dict, trainer: dict | None, name: str = "ae") -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True)
    torch.save(state, folder / "ae.pt")
    if trainer is not None:
        buffer = {"d_submodule": D, "io": "out", "n_ctxs": 30000, "ctx_len": 128}
        write_json(folder / "config.json", {"trainer": trainer, "buffer": buffer})
    return folder


def dl_trainer(dict_class: str, **extra) -> dict:
    return {
        "trainer_class": "Trainer",
        "dict_class": dict_class,
        "activation_dim": D,
        "dict_size": S,
        "lr": 3e-4,
        "seed": 0,
        "device": "cpu",
        "layer": 3,
        "lm_name": "EleutherAI/pythia-70m-deduped",
        "wandb_name": "run",
        "submodule_name": "resid_post_layer_3",
        **extra,
    }


def test_dictionary_learning_autoencoder(tmp_path):
    bias, enc_w, enc_b, dec_w = randn(D, scale=0.3), randn(S, D), randn(S, scale=0.3), randn(D, S)
    state = {"bias": bias, "encoder.weight": enc_w, "encoder.bias": enc_b, "decoder.weight": dec_w}
    folder = dl_folder(tmp_path, state, dl_trainer("AutoEncoder"))
    x = inputs()
    f = F.relu(F.linear(x - bias, enc_w, enc_b))  # AutoEncoder.encode
    x_hat = F.linear(f, dec_w) + bias  # AutoEncoder.decode
    dictionary = check(folder, "dictionary_learning", x, f, x_hat)
    assert dictionary.arch == "relu" and dictionary.config.center_input
    assert dictionary.config.place == "resid.3"
    assert dictionary.config.model == "EleutherAI/pythia-70m-deduped"


def test_dictionary_learning_autoencoder_new(tmp_path):
    enc_w, enc_b, dec_w, dec_b = randn(S, D), randn(S, scale=0.3), randn(D, S), randn(D)
    state = {
        "encoder.weight": enc_w,
        "encoder.bias": enc_b,
        "decoder.weight": dec_w,
        "decoder.bias": dec_b,
    }
    folder = dl_folder(tmp_path, state, dl_trainer("AutoEncoderNew", submodule_name="mlp_out_2"))
    x = inputs()
    f = F.relu(F.linear(x, enc_w, enc_b))
    dictionary = check(folder, "dictionary_learning", x, f, F.linear(f, dec_w, dec_b))
    assert not dictionary.config.center_input and dictionary.config.place == "mlp.2"
    # StandardTrainerAprilUpdate records dict_class "AutoEncoder" for the AutoEncoderNew it trains
    mislabelled = dl_folder(tmp_path, state, dl_trainer("AutoEncoder"), name="april")
    assert not check(
        mislabelled, "dictionary_learning", x, f, F.linear(f, dec_w, dec_b)
    ).config.center_input


def test_dictionary_learning_gated(tmp_path):
    dec_bias, enc_w, dec_w = randn(D, scale=0.3), randn(S, D), randn(D, S)
    r_mag, gate_bias, mag_bias = randn(S, scale=0.5), randn(S, scale=0.5), randn(S, scale=0.5)
    state = {
        "decoder_bias": dec_bias,
        "encoder.weight": enc_w,
        "r_mag": r_mag,
        "gate_bias": gate_bias,
        "mag_bias": mag_bias,
        "decoder.weight": dec_w,
    }
    folder = dl_folder(tmp_path, state, dl_trainer("GatedAutoEncoder", submodule_name="attn_out_1"))
    x = inputs()
    x_enc = F.linear(x - dec_bias, enc_w)  # GatedAutoEncoder.encode
    f = ((x_enc + gate_bias) > 0).float() * F.relu(r_mag.exp() * x_enc + mag_bias)
    dictionary = check(folder, "dictionary_learning", x, f, F.linear(f, dec_w) + dec_bias)
    assert dictionary.arch == "gated" and dictionary.config.place == "attn.1"


def test_dictionary_learning_jumprelu(tmp_path):
    W_enc, b_enc, W_dec, b_dec = randn(D, S), randn(S, scale=0.3), randn(S, D), randn(D)
    threshold = uniform(S)
    state = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec, "threshold": threshold}
    folder = dl_folder(tmp_path, state, dl_trainer("JumpReluAutoEncoder", submodule_name="embed"))
    x = inputs()
    pre = x @ W_enc + b_enc  # apply_b_dec_to_input is False
    f = F.relu(pre * (pre > threshold))
    dictionary = check(folder, "dictionary_learning", x, f, f @ W_dec + b_dec)
    assert dictionary.arch == "jumprelu" and not dictionary.config.center_input
    assert dictionary.config.place == "embed"


def test_dictionary_learning_topk_ignores_threshold(tmp_path):
    k = 3
    enc_w, enc_b, dec_w, b_dec = randn(S, D), randn(S, scale=0.3), randn(D, S), randn(D, scale=0.3)
    state = {
        "k": torch.tensor(k, dtype=torch.int),
        "threshold": torch.tensor(1.5),  # a trained threshold, unused by encode() by default
        "decoder.weight": dec_w,
        "encoder.weight": enc_w,
        "encoder.bias": enc_b,
        "b_dec": b_dec,
    }
    folder = dl_folder(tmp_path, state, dl_trainer("AutoEncoderTopK", k=k))
    x = inputs()
    post_relu = F.relu(F.linear(x - b_dec, enc_w, enc_b))
    f = dense_topk(post_relu, k)
    dictionary = check(folder, "dictionary_learning", x, f, F.linear(f, dec_w) + b_dec)
    assert dictionary.arch == "topk" and dictionary.config.k == k


def test_dictionary_learning_batchtopk_uses_threshold(tmp_path):
    enc_w, enc_b, dec_w, b_dec = randn(S, D), randn(S, scale=0.3), randn(D, S), randn(D, scale=0.3)
    threshold = torch.tensor(0.8)
    state = {
        "k": torch.tensor(4, dtype=torch.int),
        "threshold": threshold,
        "decoder.weight": dec_w,
        "encoder.weight": enc_w,
        "encoder.bias": enc_b,
        "b_dec": b_dec,
    }
    folder = dl_folder(tmp_path, state, dl_trainer("BatchTopKSAE", k=4))
    x = inputs()
    post_relu = F.relu(F.linear(x - b_dec, enc_w, enc_b))
    f = post_relu * (post_relu > threshold)  # encode(use_threshold=True), the default
    dictionary = check(folder, "dictionary_learning", x, f, F.linear(f, dec_w) + b_dec)
    assert dictionary.arch == "batchtopk"


def test_dictionary_learning_matryoshka(tmp_path):
    W_enc, b_enc, W_dec, b_dec = randn(D, S), randn(S, scale=0.3), randn(S, D), randn(D, scale=0.3)
    threshold = torch.tensor(0.5)
    state = {
        "k": torch.tensor(4, dtype=torch.int),
        "threshold": threshold,
        "group_sizes": torch.tensor([4, 12]),
        "W_enc": W_enc,
        "b_enc": b_enc,
        "W_dec": W_dec,
        "b_dec": b_dec,
    }
    groups = {"group_fractions": [0.25, 0.75], "group_weights": [0.5, 0.5], "group_sizes": [4, 12]}
    trainer = dl_trainer(
        "MatryoshkaBatchTopKSAE", trainer_class="MatryoshkaBatchTopKTrainer", k=4, **groups
    )
    folder = dl_folder(tmp_path, state, trainer)
    x = inputs()
    post_relu = F.relu((x - b_dec) @ W_enc + b_enc)
    f = post_relu * (post_relu > threshold)  # encode(use_threshold=True), the default
    dictionary = check(folder, "dictionary_learning", x, f, f @ W_dec + b_dec)
    assert dictionary.arch == "batchtopk" and dictionary.config.k == 4
    assert dictionary.config.training["trainer"]["group_sizes"] == [4, 12]
    # the class is also told by its group_sizes buffer when config.json is absent
    (folder / "config.json").unlink()
    assert load_dictionary(folder).arch == "batchtopk"

    bad = dl_folder(tmp_path, {**state, "group_sizes": torch.tensor([4, 4])}, trainer, "bad")
    raises_naming(bad, r"ae\.pt: group_sizes do not add up to dict_size")


def test_dictionary_learning_old_feature_circuits_layout(tmp_path):
    """The Pythia dictionaries: no dict_class, a 'dictionary' config block, place in the path."""
    bias, enc_w, enc_b, dec_w = randn(D, scale=0.3), randn(S, D), randn(S, scale=0.3), randn(D, S)
    state = {"bias": bias, "encoder.weight": enc_w, "encoder.bias": enc_b, "decoder.weight": dec_w}
    folder = tmp_path / "pythia-70m-deduped" / "resid_out_layer3" / "10_32768"
    folder.mkdir(parents=True)
    torch.save(state, folder / "ae.pt")
    config = {
        "dictionary": {"activation_dim": D, "dict_size": S, "lr": 1e-4, "l1_penalty": 1e-3},
        "buffer": {"d_submodule": D, "io": "out", "n_ctxs": 10000, "ctx_len": 128},
    }
    write_json(folder / "config.json", config)
    x = inputs()
    f = F.relu(F.linear(x - bias, enc_w, enc_b))
    dictionary = check(folder, "dictionary_learning", x, f, F.linear(f, dec_w) + bias)
    assert dictionary.config.place == "resid.3" and dictionary.config.model is None

    bare = tmp_path / "mlp_out_layer2" / "5_32768"  # ae.pt only, no config.json
    bare.mkdir(parents=True)
    torch.save(state, bare / "ae.pt")
    assert check(bare, "dictionary_learning", x, f, F.linear(f, dec_w) + bias).config.place == (
        "mlp.2"
    )


class NotWeights:
    """An arbitrary object: a weights-only load must refuse to unpickle it."""


def test_dictionary_learning_bad_files(tmp_path):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    (folder / "ae.pt").write_bytes(b"this is not a torch file")
    raises_naming(folder, r"ae\.pt: not a readable weights-only torch file")

    good = {"bias": randn(D), "encoder.weight": randn(S, D), "encoder.bias": randn(S)}
    missing = dl_folder(tmp_path, good, dl_trainer("AutoEncoder"), name="missing")
    info = raises_naming(missing, r"ae\.pt: missing key 'decoder\.weight' \(has \['bias'\]\)")
    assert "decoder.weight" in str(info.value)

    shape = dict(good, **{"decoder.weight": randn(D + 1, S)})
    raises_naming(
        dl_folder(tmp_path, shape, dl_trainer("AutoEncoder"), name="shape"),
        r"ae\.pt: W_dec has shape \(16, 9\), config says \(16, 8\)",
    )

    pickled = dl_folder(tmp_path, {**good, "x": NotWeights()}, None, name="pickled")
    raises_naming(
        pickled, r"ae\.pt: not a readable weights-only torch file \(Weights only load failed"
    )

    no_threshold = {
        "encoder.weight": randn(S, D),
        "encoder.bias": randn(S),
        "decoder.weight": randn(D, S),
        "b_dec": randn(D),
    }
    old = dl_folder(tmp_path, no_threshold, dl_trainer("BatchTopKSAE", k=4), name="old_batchtopk")
    raises_naming(
        old, r"ae\.pt: BatchTopKSAE without a threshold buffer encodes with a batch-level top-k"
    )

    unknown = dl_folder(tmp_path, good, dl_trainer("CrossCoder"), name="unknown")
    raises_naming(unknown, r"ae\.pt: dictionary_learning class 'CrossCoder' is not supported")


# --- SAELens -------------------------------------------------------------------------------------


def saelens_folder(tmp_path: Path, state: dict, cfg: dict, name: str = "sae") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    save_file(state, str(folder / "sae_weights.safetensors"))
    write_json(folder / "cfg.json", cfg)
    return folder


def saelens_cfg(architecture: str, hook_name: str, **extra) -> dict:
    """A SAELens 6 ``cfg.json`` (``SAEConfig.to_dict``)."""
    return {
        "d_in": D,
        "d_sae": S,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "model_name": "gpt2",
            "hook_name": hook_name,
            "hook_head_index": None,
            "prepend_bos": True,
            "context_size": 128,
            "sae_lens_version": "6.5.0",
            "sae_lens_training_version": "6.5.0",
        },
        "architecture": architecture,
        **extra,
    }


def standard_weights() -> dict:
    return {
        "W_enc": randn(D, S),
        "W_dec": randn(S, D),
        "b_enc": randn(S, scale=0.3),
        "b_dec": randn(D, scale=0.3),
    }


def test_saelens_standard(tmp_path):
    w = standard_weights()
    folder = saelens_folder(tmp_path, w, saelens_cfg("standard", "blocks.3.hook_resid_pre"))
    x = inputs()
    f = F.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
    dictionary = check(folder, "saelens", x, f, f @ w["W_dec"] + w["b_dec"])
    assert dictionary.config.place == "resid.2" and dictionary.config.model == "gpt2"


def test_saelens_pre_6_config_without_b_dec_and_with_scaling_factor(tmp_path):
    w = standard_weights()
    scale = uniform(S, high=2.0) + 0.5
    cfg = {  # SAELens 3.x-5.x: flat config, no architecture, hook_point spelling
        "d_in": D,
        "d_sae": S,
        "dtype": "float32",
        "device": "cpu",
        "model_name": "gpt2",
        "hook_point": "blocks.0.hook_resid_pre",
        "hook_point_layer": 0,
        "hook_point_head_index": None,
        "activation_fn_str": "relu",
        "apply_b_dec_to_input": False,
        "finetuning_scaling_factor": True,
        "normalize_activations": False,
        "context_size": 128,
    }
    folder = saelens_folder(tmp_path, {**w, "scaling_factor": scale}, cfg)
    x = inputs()
    f = F.relu(x @ w["W_enc"] + w["b_enc"])
    x_hat = (f * scale) @ w["W_dec"] + w["b_dec"]  # apply_finetuning_scaling_factor in decode
    dictionary = check(folder, "saelens", x, f, x_hat)
    assert not dictionary.config.center_input and dictionary.config.place == "embed"


@pytest.mark.parametrize("log", [False, True])
def test_saelens_jumprelu(tmp_path, log):
    w = standard_weights()
    threshold = uniform(S) + 0.05
    key, value = ("log_threshold", threshold.log()) if log else ("threshold", threshold)
    cfg = saelens_cfg("jumprelu", "blocks.5.hook_mlp_out", apply_b_dec_to_input=False)
    folder = saelens_folder(tmp_path, {**w, key: value}, cfg)
    x = inputs()
    pre = x @ w["W_enc"] + w["b_enc"]
    f = F.relu(pre) * (pre > threshold)
    dictionary = check(folder, "saelens", x, f, f @ w["W_dec"] + w["b_dec"])
    assert dictionary.arch == "jumprelu" and dictionary.config.place == "mlp.5"


def test_saelens_matryoshka_batchtopk_saved_for_inference(tmp_path):
    """SAELens saves a trained MatryoshkaBatchTopKTrainingSAE as an inference JumpReLU SAE:
    its one ``topk_threshold`` repeated on every feature, ``b_dec`` still subtracted first."""
    w = standard_weights()
    threshold = torch.full((S,), 0.6)
    cfg = saelens_cfg("jumprelu", "blocks.2.hook_resid_post", apply_b_dec_to_input=True)
    folder = saelens_folder(tmp_path, {**w, "threshold": threshold}, cfg)
    x = inputs()
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    f = F.relu(pre) * (pre > threshold)  # JumpReLUSAE.encode
    dictionary = check(folder, "saelens", x, f, f @ w["W_dec"] + w["b_dec"])
    assert dictionary.arch == "jumprelu" and dictionary.config.center_input
    assert dictionary.config.place == "resid.2"


def test_saelens_gated(tmp_path):
    w = standard_weights()
    del w["b_enc"]
    gate = {"b_gate": randn(S, scale=0.5), "r_mag": randn(S, scale=0.5), "b_mag": randn(S)}
    folder = saelens_folder(tmp_path, {**w, **gate}, saelens_cfg("gated", "blocks.2.hook_attn_out"))
    x = inputs()
    sae_in = x - w["b_dec"]
    active = (sae_in @ w["W_enc"] + gate["b_gate"] > 0).float()
    f = active * F.relu(sae_in @ (w["W_enc"] * gate["r_mag"].exp()) + gate["b_mag"])
    dictionary = check(folder, "saelens", x, f, f @ w["W_dec"] + w["b_dec"])
    assert dictionary.arch == "gated" and dictionary.config.place == "attn.2"


def test_saelens_topk_rescaled_by_decoder_norm(tmp_path):
    w = standard_weights()
    w["W_dec"] = w["W_dec"] * (uniform(S, 1) * 3 + 0.2)  # rows far from unit norm
    cfg = saelens_cfg("topk", "blocks.1.hook_resid_post", k=3, rescale_acts_by_decoder_norm=True)
    folder = saelens_folder(tmp_path, w, cfg)
    x = inputs()
    norms = w["W_dec"].norm(dim=-1)
    hidden_pre = ((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]) * norms
    f = F.relu(dense_topk(hidden_pre, 3))
    x_hat = (f * (1 / norms)) @ w["W_dec"] + w["b_dec"]
    dictionary = check(folder, "saelens", x, f, x_hat)
    assert dictionary.arch == "topk" and dictionary.config.k == 3


def test_saelens_pre_6_topk_activation(tmp_path):
    w = standard_weights()
    cfg = {
        "architecture": "standard",
        "d_in": D,
        "d_sae": S,
        "hook_name": "blocks.4.hook_resid_post",
        "model_name": "pythia-70m",
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 4},
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
    }
    folder = saelens_folder(tmp_path, w, cfg)
    x = inputs()
    f = F.relu(dense_topk((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 4))
    dictionary = check(folder, "saelens", x, f, f @ w["W_dec"] + w["b_dec"])
    assert dictionary.config.k == 4 and dictionary.config.place == "resid.4"


def test_saelens_skip_transcoder(tmp_path):
    d_out = 6
    w = {
        "W_enc": randn(D, S),
        "W_dec": randn(S, d_out),
        "b_enc": randn(S, scale=0.3),
        "b_dec": randn(d_out),
        "W_skip": randn(d_out, D, scale=0.3),
    }
    cfg = saelens_cfg("skip_transcoder", "blocks.1.ln2.hook_normalized", apply_b_dec_to_input=False)
    cfg["d_out"] = d_out
    cfg["metadata"]["hook_name_out"] = "blocks.1.hook_mlp_out"
    folder = saelens_folder(tmp_path, w, cfg)
    x = inputs()
    f = F.relu(x @ w["W_enc"] + w["b_enc"])
    x_hat = f @ w["W_dec"] + w["b_dec"] + x @ w["W_skip"].T  # SkipTranscoder.forward
    dictionary = check(folder, "saelens", x, f, x_hat)
    assert dictionary.config.place == "mlp_in.1" and dictionary.config.writes == "mlp.1"
    assert dictionary.config.is_transcoder and dictionary.d_out == d_out


def test_saelens_bad_files(tmp_path):
    w = standard_weights()
    cfg = saelens_cfg("standard", "blocks.0.hook_resid_post")
    norm = saelens_folder(
        tmp_path, w, {**cfg, "normalize_activations": "constant_norm_rescale"}, "norm"
    )
    raises_naming(norm, r"cfg\.json: normalize_activations='constant_norm_rescale' rescales inputs")
    expected = saelens_folder(
        tmp_path, w, {**cfg, "normalize_activations": "expected_average_only_in"}, "expected"
    )
    raises_naming(
        expected, r"cfg\.json: normalize_activations='expected_average_only_in' rescales inputs"
    )

    missing = saelens_folder(tmp_path, {k: v for k, v in w.items() if k != "W_dec"}, cfg, "missing")
    raises_naming(missing, r"sae_weights\.safetensors: missing key 'W_dec'")

    transposed = saelens_folder(tmp_path, {**w, "W_enc": w["W_enc"].T.contiguous()}, cfg, "shape")
    raises_naming(
        transposed, r"sae_weights\.safetensors: W_enc has shape \(16, 8\), config says \(8, 16\)"
    )

    corrupt = saelens_folder(tmp_path, w, cfg, "corrupt")
    (corrupt / "sae_weights.safetensors").write_bytes(b"\x00" * 20)
    raises_naming(corrupt, r"sae_weights\.safetensors: not a readable safetensors file")

    unknown = saelens_folder(tmp_path, w, saelens_cfg("batchtopk", "blocks.0.hook_resid_post"), "b")
    raises_naming(unknown, r"cfg\.json: SAELens architecture 'batchtopk' is not supported")


# --- Gemma Scope ---------------------------------------------------------------------------------


def gemma_scope_params() -> dict[str, np.ndarray]:
    return {
        "W_enc": randn(D, S).numpy(),
        "W_dec": randn(S, D).numpy(),
        "b_enc": randn(S, scale=0.3).numpy(),
        "b_dec": randn(D).numpy(),
        "threshold": uniform(S).numpy(),
    }


def gemma_scope_expected(params: dict[str, np.ndarray], x: torch.Tensor):
    p = {k: torch.from_numpy(v) for k, v in params.items()}
    pre = x @ p["W_enc"] + p["b_enc"]
    f = (pre > p["threshold"]).float() * F.relu(pre)  # JumpReLUSAE.encode
    return f, f @ p["W_dec"] + p["b_dec"]


def test_gemma_scope(tmp_path):
    folder = tmp_path / "gemma-scope-2b-pt-res" / "layer_4" / "width_16k" / "average_l0_20"
    folder.mkdir(parents=True)
    params = gemma_scope_params()
    np.savez(folder / "params.npz", **params)
    x = inputs()
    f, x_hat = gemma_scope_expected(params, x)
    dictionary = check(folder, "gemma_scope", x, f, x_hat)
    assert dictionary.arch == "jumprelu" and not dictionary.config.center_input
    assert dictionary.config.place == "resid.4" and dictionary.config.model == "google/gemma-2-2b"
    assert check(folder / "params.npz", "gemma_scope", x, f, x_hat).config.place == "resid.4"


def test_gemma_scope_transcoder_and_unknown_path(tmp_path):
    folder = tmp_path / "gemma-scope-2b-pt-transcoders" / "layer_7" / "width_16k" / "l0_50"
    folder.mkdir(parents=True)
    params = gemma_scope_params()
    np.savez(folder / "params.npz", **params)
    x = inputs()
    f, x_hat = gemma_scope_expected(params, x)
    config = check(folder, "gemma_scope", x, f, x_hat).config
    assert (config.place, config.writes) == ("mlp_in.7", "mlp.7")

    plain = tmp_path / "plain"
    plain.mkdir()
    np.savez_compressed(plain / "params.npz", **params)
    config = check(plain, "gemma_scope", x, f, x_hat).config
    assert config.place is None and config.model is None


def test_gemma_scope_bad_files(tmp_path):
    params = gemma_scope_params()
    missing = tmp_path / "missing"
    missing.mkdir()
    np.savez(missing / "params.npz", **{k: v for k, v in params.items() if k != "threshold"})
    raises_naming(missing, r"params\.npz: missing array 'threshold'")

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "params.npz").write_bytes(b"PK\x03\x04 truncated")
    raises_naming(corrupt, r"params\.npz: not a readable \.npz archive \(File is not a zip file\)")

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    np.savez(pickled / "params.npz", **params, extra=np.array([{"a": 1}], dtype=object))
    raises_naming(
        pickled, r"params\.npz: not a readable \.npz archive \(Object arrays cannot be loaded"
    )

    shape = tmp_path / "shape"
    shape.mkdir()
    np.savez(shape / "params.npz", **{**params, "W_dec": params["W_dec"].T})
    raises_naming(shape, r"params\.npz: W_dec has shape \(8, 16\), config says \(16, 8\)")


# --- EleutherAI sparsify -------------------------------------------------------------------------


def sparsify_folder(tmp_path: Path, name: str, state: dict, cfg: dict) -> Path:
    folder = tmp_path / "checkpoints" / name
    folder.mkdir(parents=True)
    save_file(state, str(folder / "sae.safetensors"))
    write_json(folder / "cfg.json", cfg)
    return folder


def sparsify_cfg(**extra) -> dict:
    """``SparseCoderConfig.to_dict()`` plus ``d_in``, as ``save_to_disk`` writes it."""
    return {
        "activation": "topk",
        "expansion_factor": 2,
        "normalize_decoder": True,
        "num_latents": 0,
        "k": 4,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": D,
        **extra,
    }


def sparsify_weights() -> dict:
    return {
        "encoder.weight": randn(S, D),
        "encoder.bias": randn(S, scale=0.3),
        "W_dec": randn(S, D),
        "b_dec": randn(D, scale=0.3),
    }


def test_sparsify_sae(tmp_path):
    w = sparsify_weights()
    folder = sparsify_folder(tmp_path, "layers.3", w, sparsify_cfg())
    x = inputs()
    f, x_hat = sparsify_forward(w, x, 4, transcode=False)
    dictionary = check(folder, "sparsify", x, f, x_hat)
    assert dictionary.arch == "topk" and dictionary.config.center_input
    assert dictionary.config.place == "resid.3" and dictionary.d_sae == S

    mlp = sparsify_folder(tmp_path, "gpt_neox.layers.1.mlp", w, sparsify_cfg(num_latents=S))
    assert check(mlp, "sparsify", x, f, x_hat).config.place == "mlp.1"


def test_sparsify_skip_transcoder(tmp_path):
    w = {**sparsify_weights(), "W_skip": randn(D, D, scale=0.3)}
    cfg = sparsify_cfg(num_latents=S, k=3, transcode=True, skip_connection=True)
    del cfg["d_in"]  # taken from the weights
    folder = sparsify_folder(tmp_path, "layers.2.mlp", w, cfg)
    x = inputs()
    f, x_hat = sparsify_forward(w, x, 3, transcode=True)
    dictionary = check(folder, "sparsify", x, f, x_hat)
    assert not dictionary.config.center_input and dictionary.config.skip
    assert (dictionary.config.place, dictionary.config.writes) == ("mlp_in.2", "mlp.2")


def test_sparsify_bad_files(tmp_path):
    w = sparsify_weights()
    groupmax = sparsify_folder(tmp_path, "groupmax", w, sparsify_cfg(activation="groupmax"))
    raises_naming(groupmax, r"cfg\.json: activation 'groupmax' is not supported \(only topk\)")

    missing = {k: v for k, v in w.items() if k != "W_dec"}
    raises_naming(
        sparsify_folder(tmp_path, "missing", missing, sparsify_cfg()),
        r"sae\.safetensors: missing key 'W_dec'",
    )

    wrong = sparsify_folder(tmp_path, "wrong", w, sparsify_cfg(num_latents=S + 4))
    raises_naming(wrong, r"sae\.safetensors: W_enc has shape \(8, 16\), config says \(8, 20\)")

    skip = sparsify_folder(tmp_path, "skip", w, sparsify_cfg(skip_connection=True))
    raises_naming(skip, r"sae\.safetensors: missing key 'W_skip'")


# --- circuit-tracer ------------------------------------------------------------------------------


def tracer_weights(threshold: bool = True, skip: bool = True) -> dict:
    state = {
        "W_enc": randn(S, D),
        "W_dec": randn(S, D),
        "b_enc": randn(S, scale=0.3),
        "b_dec": randn(D),
    }
    if threshold:
        state["activation_function.threshold"] = uniform(S)
    if skip:
        state["W_skip"] = randn(D, D, scale=0.3)
    return state


def tracer_forward(w: dict, x: torch.Tensor):
    """``SingleLayerTranscoder.forward``: F.linear encode, JumpReLU or ReLU, decode + skip."""
    pre = F.linear(x, w["W_enc"], w["b_enc"])
    if "activation_function.threshold" in w:
        f = pre * (pre > w["activation_function.threshold"])
    else:
        f = F.relu(pre)
    out = f @ w["W_dec"] + w["b_dec"]
    if "W_skip" in w:
        out = out + x @ w["W_skip"].T
    return f, out


def test_circuit_tracer_jumprelu_skip(tmp_path):
    w = tracer_weights()
    folder = tmp_path / "transcoders"
    folder.mkdir()
    save_file(w, str(folder / "layer_3.safetensors"))
    x = inputs()
    f, x_hat = tracer_forward(w, x)
    for path in (folder / "layer_3.safetensors", folder):
        dictionary = check(path, "circuit_tracer", x, f, x_hat)
        config = dictionary.config
        assert dictionary.arch == "jumprelu" and config.skip and not config.center_input
        assert (config.place, config.writes) == ("mlp_in.3", "mlp.3")


def test_circuit_tracer_relu(tmp_path):
    w = tracer_weights(threshold=False, skip=False)
    save_file(w, str(tmp_path / "layer_0.safetensors"))
    x = inputs()
    f, x_hat = tracer_forward(w, x)
    with pytest.warns(UserWarning, match="without a threshold load as ReLU"):
        dictionary = check(tmp_path / "layer_0.safetensors", "circuit_tracer", x, f, x_hat)
    assert dictionary.arch == "relu" and dictionary.config.place == "mlp_in.0"


def test_circuit_tracer_bad_files(tmp_path):
    negative = tracer_weights()
    negative["activation_function.threshold"] = uniform(S) - 0.5
    save_file(negative, str(tmp_path / "layer_1.safetensors"))
    raises_naming(
        tmp_path / "layer_1.safetensors",
        r"layer_1\.safetensors: negative JumpReLU thresholds keep negative activations",
    )

    w = tracer_weights()
    save_file({**w, "W_enc": w["W_enc"].T.contiguous()}, str(tmp_path / "layer_2.safetensors"))
    raises_naming(
        tmp_path / "layer_2.safetensors",
        r"layer_2\.safetensors: W_enc has shape \(8, 16\), expected \(d_transcoder, d_model\)",
    )

    save_file({**w, "k": torch.tensor(4)}, str(tmp_path / "layer_4.safetensors"))
    raises_naming(
        tmp_path / "layer_4.safetensors",
        r"layer_4\.safetensors: has both a JumpReLU threshold and a TopK k",
    )

    missing = {k: v for k, v in w.items() if k != "b_dec"}
    save_file(missing, str(tmp_path / "layer_5.safetensors"))
    raises_naming(tmp_path / "layer_5.safetensors", r"layer_5\.safetensors: missing key 'b_dec'")

    (tmp_path / "layer_6.safetensors").write_bytes(b"garbage")
    raises_naming(
        tmp_path / "layer_6.safetensors", r"layer_6\.safetensors: not a readable safetensors file"
    )

    raises_naming(
        tmp_path,
        r": holds 5 layer files \['layer_1\.safetensors'.*read it with load_dictionary_set",
    )  # a folder with several layer files: a transcoder set


def tracer_topk_forward(w: dict, x: torch.Tensor, k: int):
    """``SingleLayerTranscoder`` with ``TopK(k)``: the k largest pre-activations keep their sign."""
    pre = F.linear(x, w["W_enc"], w["b_enc"])
    f = dense_topk(pre, k)
    return f, f @ w["W_dec"] + w["b_dec"] + x @ w["W_skip"].T


def tracer_set(folder: Path, layers: int, config: str | None = None, **weights) -> list[dict]:
    """A ``TranscoderSet.to_safetensors`` folder: ``layer_0 ... layer_{layers-1}``."""
    folder.mkdir(parents=True, exist_ok=True)
    states = [tracer_weights(**weights) for _ in range(layers)]
    for layer, state in enumerate(states):
        save_file(state, str(folder / f"layer_{layer}.safetensors"))
    if config is not None:
        (folder / "config.yaml").write_text(config)
    return states


def test_circuit_tracer_folder_is_a_dictionary_set(tmp_path):
    states = tracer_set(tmp_path / "set", 3, "model_kind: transcoder_set\nmodel_name: gpt2\n")
    assert list_dictionary_set(tmp_path / "set") == ["mlp.0", "mlp.1", "mlp.2"]
    dictionaries = load_dictionary_set(tmp_path / "set")
    x = inputs()
    for layer, state in enumerate(states):
        dictionary = dictionaries[f"mlp.{layer}"]
        f, x_hat = tracer_forward(state, x)
        with torch.no_grad():
            torch.testing.assert_close(dictionary.encode(x), f, atol=TOL, rtol=0)
            torch.testing.assert_close(dictionary(x).x_hat, x_hat, atol=TOL, rtol=0)
        config = dictionary.config
        assert (config.place, config.writes, config.model) == (
            f"mlp_in.{layer}",
            f"mlp.{layer}",
            "gpt2",
        )
    with pytest.raises(
        DictionaryError, match="holds 3 layer files .* read it with load_dictionary_set"
    ):
        load_dictionary(tmp_path / "set")


def test_circuit_tracer_topk_takes_k_from_config_yaml(tmp_path):
    config = "feature_input_hook: mlp.hook_in\nfeature_output_hook: mlp.hook_out\nk: 3\n"
    states = tracer_set(tmp_path / "set", 2, config, threshold=False)
    states[1]["b_enc"] -= 6.0  # most pre-activations negative: some of the top 3 are too
    save_file(states[1], str(tmp_path / "set" / "layer_1.safetensors"))
    dictionary = load_dictionary_set(tmp_path / "set")["mlp.1"]
    assert dictionary.arch == "topk" and dictionary.config.k == 3 and dictionary.config.signed
    x = inputs()
    f, x_hat = tracer_topk_forward(states[1], x, 3)
    assert (f < 0).any()  # the signed top-k really differs from a ReLU'd one here
    with torch.no_grad():
        torch.testing.assert_close(dictionary.encode(x), f, atol=TOL, rtol=0)
        torch.testing.assert_close(dictionary(x).x_hat, x_hat, atol=TOL, rtol=0)

    save_file({**states[0], "k": torch.tensor(5)}, str(tmp_path / "set" / "layer_0.safetensors"))
    with pytest.raises(
        DictionaryError, match=r"layer_0.safetensors: k is 5, .*config.yaml says k=3"
    ):
        load_dictionary(tmp_path / "set" / "layer_0.safetensors")


def test_circuit_tracer_relu_without_k_loads_with_a_warning(tmp_path):
    tracer_set(tmp_path / "set", 1, threshold=False)
    with pytest.warns(UserWarning, match="without a threshold load as ReLU.*put 'k: <k>'"):
        dictionary = load_dictionary(tmp_path / "set" / "layer_0.safetensors")
    assert dictionary.arch == "relu"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "feature_input_hook: hook_resid_mid\n",
            "feature_input_hook 'hook_resid_mid' has no place",
        ),
        (
            "model_kind: cross_layer_transcoder\n",
            "model_kind is cross_layer_transcoder, but the folder holds layer_N",
        ),
        ("k: -2\n", "config.yaml: k must be a positive integer"),
        ("k: [\n", "config.yaml: not valid YAML"),
    ],
)
def test_circuit_tracer_config_refusals(tmp_path, config, message):
    tracer_set(tmp_path / "set", 1, config)
    with pytest.raises(DictionaryError, match=message):
        load_dictionary(tmp_path / "set")


@pytest.mark.parametrize("threshold", [True, False], ids=["jumprelu", "relu"])
def test_circuit_tracer_cross_layer_transcoder(tmp_path, threshold):
    """Every layer of a CLT folder as one dictionary (mlp_in.N -> mlp.N and later), and the
    layers together give circuit-tracer's forward, written by hand from its tensors."""
    files = cross_layer_tensors(3, D, S, threshold=threshold)
    folder = write_cross_layer(tmp_path / "clt", files)
    (folder / "config.yaml").write_text(
        "model_kind: cross_layer_transcoder\nmodel_name: gpt2\n"
        "feature_input_hook: mlp.hook_in\nfeature_output_hook: mlp.hook_out\n"
    )
    assert detect_format(folder) == "circuit_tracer"
    assert list_dictionary_set(folder) == ["mlp.0", "mlp.1", "mlp.2"]
    x_LND = randn(3, 2, 5, D)
    f_LNF, x_hat_LND = cross_layer_forward(files, x_LND)
    assert (f_LNF != 0).any() and (f_LNF == 0).any()
    clt = load_cross_layer_transcoder(folder)
    with torch.no_grad():
        torch.testing.assert_close(clt.encode(x_LND), f_LNF, atol=TOL, rtol=0)
        torch.testing.assert_close(clt.decode(f_LNF), x_hat_LND, atol=TOL, rtol=0)
        out = clt(x_LND)
    torch.testing.assert_close(out.features, f_LNF, atol=TOL, rtol=0)
    torch.testing.assert_close(out.x_hat, x_hat_LND, atol=TOL, rtol=0)
    members = load_dictionary_set(folder)
    for n, layer in enumerate(clt.layers):
        config = members[f"mlp.{n}"].config
        assert config == layer.config and config.model == "gpt2"
        assert (config.place, config.writes) == (f"mlp_in.{n}", f"mlp.{n}")
        assert config.writes_later == [f"mlp.{m}" for m in range(n + 1, 3)]
        assert layer.arch == ("jumprelu" if threshold else "relu") and not config.center_input
    with pytest.raises(DictionaryError, match="holds 3 layer files .*cross-layer transcoder"):
        load_dictionary(folder)


def test_cross_layer_layer_saves_and_loads_natively(tmp_path):
    files = cross_layer_tensors(3, D, S, threshold=True)
    folder = write_cross_layer(tmp_path / "clt", files)
    layer = load_dictionary(folder / "W_enc_1.safetensors")
    back = load_dictionary(layer.save(tmp_path / "native"))
    assert back.config.writes_later == ["mlp.2"]
    assert torch.equal(back.W_dec_later, layer.W_dec_later)
    assert torch.equal(back.W_dec_later[0], files["W_dec_1.safetensors"]["W_dec_1"][:, 1])


def test_circuit_tracer_cross_layer_bad_files(tmp_path):
    def folder(name, change=None, drop=()):
        files = cross_layer_tensors(3, D, S, threshold=True)
        if change:
            change(files)
        return write_cross_layer(tmp_path / name, {k: v for k, v in files.items() if k not in drop})

    def cut(files):
        decoder = files["W_dec_1.safetensors"]
        decoder["W_dec_1"] = decoder["W_dec_1"][:, :1].contiguous()

    def negative(files):
        files["W_enc_2.safetensors"]["threshold_2"] -= 1.0

    raises_naming(
        folder("short", cut) / "W_enc_1.safetensors",
        r"W_dec_1\.safetensors: W_dec_1 has shape \(16, 1, 8\), expected .* \(16, 2, 8\)",
    )
    raises_naming(
        folder("negative", negative) / "W_enc_2.safetensors",
        r"W_enc_2\.safetensors: negative JumpReLU thresholds",
    )
    raises_naming(
        folder("no-decoder", drop=["W_dec_0.safetensors"]) / "W_enc_0.safetensors",
        r"W_dec_0\.safetensors: file not found \(the decoder of W_enc_0\.safetensors\)",
    )
    with pytest.raises(DictionaryError, match=r"files for layers \[0, 2\], expected 0\.\.1"):
        load_dictionary_set(folder("gap", drop=["W_enc_1.safetensors"]))
    mixed = folder("mixed")
    save_file(tracer_weights(), str(mixed / "layer_0.safetensors"))
    with pytest.raises(DictionaryError, match="holds both layer_N.safetensors"):
        load_dictionary_set(mixed)
    resid_mid = folder("resid-mid")
    (resid_mid / "config.yaml").write_text("feature_input_hook: hook_resid_mid\n")
    with pytest.raises(DictionaryError, match="feature_input_hook 'hook_resid_mid' has no place"):
        load_dictionary_set(resid_mid)
    wrong_kind = folder("wrong-kind")
    (wrong_kind / "config.yaml").write_text("model_kind: transcoder_set\n")
    with pytest.raises(DictionaryError, match="model_kind is transcoder_set, but the folder"):
        load_dictionary(wrong_kind / "W_enc_0.safetensors")


@pytest.mark.parametrize("fmt", ["saelens", "sparsify", "circuit_tracer"])
def test_bfloat16_files_keep_their_dtype(tmp_path, fmt):
    if fmt == "saelens":
        w = standard_weights()
        folder = saelens_folder(
            tmp_path,
            {k: v.bfloat16() for k, v in w.items()},
            saelens_cfg("standard", "blocks.0.hook_resid_post"),
        )
    elif fmt == "sparsify":
        w = sparsify_weights()
        folder = sparsify_folder(
            tmp_path, "layers.0", {k: v.bfloat16() for k, v in w.items()}, sparsify_cfg()
        )
    else:
        w = tracer_weights()
        folder = tmp_path / "layer_0.safetensors"
        save_file({k: v.bfloat16() for k, v in w.items()}, str(folder))
    dictionary = load_dictionary(folder)
    assert dictionary.dtype == torch.bfloat16
    assert {p.dtype for p in dictionary.parameters()} == {torch.bfloat16}
    assert torch.equal(dictionary.W_dec, w["W_dec"].bfloat16())  # the stored values, as stored
    assert load_dictionary(folder, dtype=torch.float32).dtype == torch.float32
