"""Each architecture's forward against a hand computation; native files round-trip."""

import json

import pytest
import torch

from sparse_circuits.dictionaries import (
    BatchTopKSAE,
    DictionaryConfig,
    DictionaryError,
    GatedSAE,
    JumpReluSAE,
    ReluSAE,
    TopKSAE,
    load_dictionary,
)
from sparse_circuits.dictionaries.native import WEIGHTS_FILE

from .conftest import ALL_ARCHS, random_dictionary
from .reference import reference_features, reference_reconstruction


def hand_set(cls, **config):
    """A 2-in, 3-feature dictionary with small integer weights."""
    dictionary = cls(DictionaryConfig(arch=cls.arch, d_in=2, d_sae=3, **config))
    with torch.no_grad():
        dictionary.W_enc.copy_(torch.tensor([[1.0, -1.0, 2.0], [0.0, 1.0, 1.0]]))
        dictionary.b_enc.copy_(torch.tensor([0.0, 0.5, -1.0]))
        dictionary.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        dictionary.b_dec.copy_(torch.tensor([0.5, -0.5]))
    return dictionary.eval()


X = torch.tensor([[2.5, 0.5], [0.5, 2.5]])
# x - b_dec = [[2, 1], [0, 3]]; pre = (x - b_dec) @ W_enc + b_enc = [[2, -0.5, 4], [0, 3.5, 2]]
PRE = torch.tensor([[2.0, -0.5, 4.0], [0.0, 3.5, 2.0]])


def decode_by_hand(f):
    return f @ torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]) + torch.tensor([0.5, -0.5])


def test_pre_activation_by_hand():
    torch.testing.assert_close(hand_set(ReluSAE).pre_activation(X), PRE)


@pytest.mark.parametrize(
    "cls, config, expected",
    [
        (ReluSAE, {}, [[2.0, 0.0, 4.0], [0.0, 3.5, 2.0]]),
        (TopKSAE, {"k": 1}, [[0.0, 0.0, 4.0], [0.0, 3.5, 0.0]]),
        (TopKSAE, {"k": 2}, [[2.0, 0.0, 4.0], [0.0, 3.5, 2.0]]),
    ],
)
def test_forward_by_hand(cls, config, expected):
    dictionary = hand_set(cls, **config)
    x_hat, f = dictionary(X)
    torch.testing.assert_close(f, torch.tensor(expected))
    torch.testing.assert_close(x_hat, decode_by_hand(torch.tensor(expected)))


def test_jumprelu_by_hand():
    dictionary = hand_set(JumpReluSAE)
    with torch.no_grad():
        dictionary.threshold.copy_(torch.tensor([2.5, 1.0, 1.0]))
    # feature 0 at 2.0 is under its threshold 2.5; feature 1 at 3.5 clears 1.0
    torch.testing.assert_close(
        dictionary.encode(X), torch.tensor([[0.0, 0.0, 4.0], [0.0, 3.5, 2.0]])
    )


def test_batchtopk_by_hand():
    dictionary = hand_set(BatchTopKSAE, k=1)
    dictionary.train()
    # k * n_tokens = 2 largest entries of the whole batch: 4.0 and 3.5
    torch.testing.assert_close(
        dictionary.encode(X), torch.tensor([[0.0, 0.0, 4.0], [0.0, 3.5, 0.0]])
    )
    dictionary.eval()
    with torch.no_grad():
        dictionary.threshold.fill_(1.9)
    torch.testing.assert_close(
        dictionary.encode(X), torch.tensor([[2.0, 0.0, 4.0], [0.0, 3.5, 2.0]])
    )


def test_gated_by_hand():
    dictionary = hand_set(GatedSAE)
    with torch.no_grad():
        dictionary.r_mag.copy_(torch.log(torch.tensor([2.0, 1.0, 0.5])))
        dictionary.b_mag.copy_(torch.tensor([-5.0, 0.0, 1.0]))
    # gate open where PRE > 0; magnitude = (x - b_dec) @ (W_enc * exp(r_mag)) + b_mag
    centred = X - dictionary.b_dec.detach()
    w_mag = torch.tensor([[1.0, -1.0, 2.0], [0.0, 1.0, 1.0]]) * torch.tensor([2.0, 1.0, 0.5])
    magnitude = centred @ w_mag + torch.tensor([-5.0, 0.0, 1.0])  # [[-1, -1, 3.5], [-5, 3, 2.5]]
    expected = (PRE > 0).float() * torch.relu(magnitude)
    torch.testing.assert_close(expected, torch.tensor([[0.0, 0.0, 3.5], [0.0, 3.0, 2.5]]))
    torch.testing.assert_close(dictionary.encode(X), expected)


def test_skip_transcoder_by_hand():
    tc = ReluSAE(  # any architecture can be a transcoder
        DictionaryConfig(
            arch="relu",
            d_in=2,
            d_sae=3,
            d_out=2,
            center_input=False,
            skip=True,
            place="mlp_in.0",
            writes="mlp.0",
        )
    )
    with torch.no_grad():
        tc.W_enc.copy_(torch.tensor([[1.0, -1.0, 2.0], [0.0, 1.0, 1.0]]))
        tc.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        tc.W_skip.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    x_hat, f = tc(X)
    expected_f = torch.relu(X @ torch.tensor([[1.0, -1.0, 2.0], [0.0, 1.0, 1.0]]))
    torch.testing.assert_close(f, expected_f)
    torch.testing.assert_close(x_hat, expected_f @ tc.W_dec.detach() + X.flip(-1))
    assert tc.config.is_transcoder


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_native_round_trip(arch, tmp_path):
    dictionary = random_dictionary(arch, 8, 32, place="resid.1", model="tiny")
    x = torch.randn(5, 8)
    dictionary.save(tmp_path / "d")
    loaded = load_dictionary(tmp_path / "d")
    assert type(loaded) is type(dictionary) and loaded.config.place == "resid.1"
    for got, want in zip(loaded(x), dictionary(x), strict=True):
        torch.testing.assert_close(got, want)
    assert not list(tmp_path.glob("d/.*tmp"))  # no temporary files left behind


ROLES = {
    "sae": {},
    "transcoder": dict(d_out=6, center_input=False, place="mlp_in.0", writes="mlp.0"),
    "skip transcoder": dict(
        d_out=6, center_input=False, skip=True, place="mlp_in.0", writes="mlp.0"
    ),
}
"""What a dictionary reconstructs: its own input (an SAE), or another place (6 wide)."""


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_invariants(arch, role):
    """Features and reconstruction against the architecture's formula written out from the
    weights (``reference``), for an SAE and for a transcoder with and without skip."""
    dictionary = random_dictionary(arch, 8, 32, **ROLES[role])
    x = torch.randn(3, 4, 8)
    with torch.no_grad():
        if arch in ("jumprelu", "batchtopk"):  # positive thresholds, about half |pre|'s mean
            dictionary.threshold.copy_(dictionary.threshold.abs() * 5)
        x_hat, f = dictionary(x)
        relu_of_pre = torch.relu(dictionary.pre_activation(x))
    assert f.shape == (3, 4, 32) and x_hat.shape == (3, 4, dictionary.d_out)
    assert (f >= 0).all()
    expected_f = reference_features(dictionary, x)
    assert 0 < (expected_f > 0).sum() < expected_f.numel()  # some features fire, not all
    assert (arch == "relu") == torch.equal(expected_f, relu_of_pre)  # the rule is exercised
    torch.testing.assert_close(f, expected_f)
    torch.testing.assert_close(x_hat, reference_reconstruction(dictionary, expected_f, x))
    if arch == "topk":
        assert ((f > 0).sum(-1) <= dictionary.config.k).all()
    if arch == "batchtopk":  # training: the k * n_tokens largest of the whole batch
        dictionary.train()
        with torch.no_grad():
            f_train = dictionary.encode(x)
        torch.testing.assert_close(f_train, reference_features(dictionary, x))
        assert (f_train > 0).sum() <= dictionary.config.k * 12


def test_dtype_and_device_moves():
    dictionary = random_dictionary("topk", 8, 16).to(torch.bfloat16)
    assert dictionary.dtype == torch.bfloat16 and dictionary.device.type == "cpu"
    assert dictionary.encode(torch.randn(2, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_bf16_files_load_in_bf16(tmp_path):
    random_dictionary("relu", 8, 16).to(torch.bfloat16).save(tmp_path)
    assert load_dictionary(tmp_path).dtype == torch.bfloat16


def test_wrong_input_width_names_widths():
    with pytest.raises(DictionaryError, match="width 8, got 5"):
        random_dictionary("relu", 8, 16).encode(torch.randn(2, 5))


def test_truncated_weights_name_the_file(tmp_path):
    random_dictionary("relu", 8, 16).save(tmp_path)
    weights = tmp_path / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(DictionaryError, match=str(weights)):
        load_dictionary(tmp_path)


def test_nan_weights_are_refused(tmp_path):
    dictionary = random_dictionary("relu", 8, 16)
    with torch.no_grad():
        dictionary.W_dec[0, 0] = float("nan")
    dictionary.save(tmp_path)
    with pytest.raises(DictionaryError, match="W_dec contains NaN"):
        load_dictionary(tmp_path)


def test_bad_config_names_the_file(tmp_path):
    random_dictionary("relu", 8, 16).save(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"arch": "relu", "d_in": 8}))
    with pytest.raises(DictionaryError, match="config.json"):
        load_dictionary(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(DictionaryError, match="config.json: not valid JSON"):
        load_dictionary(tmp_path)


def test_missing_folder_and_unknown_format(tmp_path):
    with pytest.raises(DictionaryError, match="no such file"):
        load_dictionary(tmp_path / "nope")
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DictionaryError, match="not a dictionary in any known format"):
        load_dictionary(tmp_path)


def test_topk_needs_valid_k():
    with pytest.raises(DictionaryError, match="k <= d_sae"):
        DictionaryConfig(arch="topk", d_in=4, d_sae=8, k=9)
