"""The way out: ``dictionaries.convert`` writes SAELens, dictionary_learning and sparsify folders.

Each written folder is checked twice: read back by ``load_dictionary`` (same features and
reconstruction as the dictionary written), and run through that project's forward pass
computed by hand from the raw files (its key names, transposes and centring), so a writer and
reader that agree on a wrong convention still fail. The peers' own code runs in tests_peers/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from sparse_circuits.cli import main
from sparse_circuits.dictionaries import DictionaryError, detect_format, load_dictionary
from sparse_circuits.dictionaries.convert import convert

from .conftest import random_dictionary
from .reference import dense_topk, sparsify_forward

D, S, TOL = 8, 16, 1e-5


def saelens_forward(folder: Path, x: torch.Tensor):
    """``SAE.encode``/``decode`` of SAELens 6 for the architectures the writer uses."""
    cfg = json.loads((folder / "cfg.json").read_text())
    w = load_file(str(folder / "sae_weights.safetensors"))
    sae_in = x - w["b_dec"] if cfg["apply_b_dec_to_input"] else x
    architecture = cfg["architecture"]
    if architecture == "gated":
        gate = (sae_in @ w["W_enc"] + w["b_gate"] > 0).float()
        f = gate * F.relu(sae_in @ (w["W_enc"] * w["r_mag"].exp()) + w["b_mag"])
    else:
        pre = sae_in @ w["W_enc"] + w["b_enc"]
        if architecture == "topk":
            f = dense_topk(pre, cfg["k"]).relu()
        elif "jumprelu" in architecture:
            f = F.relu(pre) * (pre > w["threshold"])
        else:
            f = F.relu(pre)
    x_hat = f @ w["W_dec"] + w["b_dec"]
    if "W_skip" in w:
        x_hat = x_hat + x @ w["W_skip"].T
    return f, x_hat


def dictionary_learning_forward(folder: Path, x: torch.Tensor):
    """``encode``/``decode`` of the dictionary_learning 0.1.0 class named in config.json."""
    dict_class = json.loads((folder / "config.json").read_text())["trainer"]["dict_class"]
    w = torch.load(folder / "ae.pt", weights_only=True)
    if dict_class == "JumpReluAutoEncoder":
        pre = x @ w["W_enc"] + w["b_enc"]
        f = F.relu(pre * (pre > w["threshold"]))
        return f, f @ w["W_dec"] + w["b_dec"]
    if dict_class == "GatedAutoEncoder":
        x_enc = F.linear(x - w["decoder_bias"], w["encoder.weight"])
        f = (x_enc + w["gate_bias"] > 0).float() * F.relu(w["r_mag"].exp() * x_enc + w["mag_bias"])
        return f, F.linear(f, w["decoder.weight"]) + w["decoder_bias"]
    bias = w["bias"] if dict_class == "AutoEncoder" else w["b_dec"]
    pre = F.relu(F.linear(x - bias, w["encoder.weight"], w["encoder.bias"]))
    if dict_class == "AutoEncoderTopK":
        f = dense_topk(pre, int(w["k"]))
    elif dict_class == "BatchTopKSAE":
        f = pre * (pre > w["threshold"])
    else:
        f = pre
    return f, F.linear(f, w["decoder.weight"]) + bias


def sparsify_files_forward(folder: Path, x: torch.Tensor):
    cfg = json.loads((folder / "cfg.json").read_text())
    w = load_file(str(folder / "sae.safetensors"))
    return sparsify_forward(w, x, cfg["k"], transcode=cfg["transcode"])


FORWARDS = {
    "saelens": saelens_forward,
    "dictionary_learning": dictionary_learning_forward,
    "sparsify": sparsify_files_forward,
}

SAES = [
    ("relu", {}),
    ("relu", {"center_input": False}),
    ("gated", {}),
    ("jumprelu", {"center_input": False}),
    ("jumprelu", {}),
    ("topk", {}),
    ("topk", {"center_input": False}),
    ("batchtopk", {}),
]
TRANSCODERS = [
    ("relu", {"skip": False, "d_out": D + 4}),
    ("relu", {"skip": True}),
    ("jumprelu", {"skip": True, "d_out": D + 4}),
    ("jumprelu", {"skip": False}),
]
CASES = (
    [("saelens", arch, extra) for arch, extra in SAES + TRANSCODERS]
    + [("dictionary_learning", arch, extra) for arch, extra in SAES]
    + [("sparsify", "topk", {}), ("sparsify", "topk", {"center_input": False})]
    + [("sparsify", "topk", {"skip": True}), ("sparsify", "topk", {"skip": False})]
)


def case_dictionary(arch: str, extra: dict, *, transcoder: bool):
    place = {"place": "mlp_in.2", "writes": "mlp.2", "center_input": False} if transcoder else {}
    dictionary = random_dictionary(arch, D, S, seed=3, **{"place": "resid.2", **place, **extra})
    if arch == "batchtopk":
        dictionary.threshold.data.fill_(0.05)
    return dictionary


@pytest.mark.parametrize(
    ("to", "arch", "extra"),
    CASES,
    ids=[
        f"{to}-{arch}-{'-'.join(f'{k}={v}' for k, v in extra.items())}" for to, arch, extra in CASES
    ],
)
def test_written_folder_reads_back_and_matches_the_peer_formula(tmp_path, to, arch, extra):
    transcoder = "skip" in extra
    dictionary = case_dictionary(arch, extra, transcoder=transcoder)
    folder = convert(dictionary, to, tmp_path / "layers.2.mlp" if transcoder else tmp_path / "out")
    assert detect_format(folder) == to
    x = torch.randn(3, 5, D)
    with torch.no_grad():
        f, x_hat = dictionary.encode(x), dictionary(x).x_hat
        back = load_dictionary(folder)
        peer_f, peer_x_hat = FORWARDS[to](folder, x)
        torch.testing.assert_close(back.encode(x), f, atol=TOL, rtol=0)
        torch.testing.assert_close(back(x).x_hat, x_hat, atol=TOL, rtol=0)
    torch.testing.assert_close(peer_f, f, atol=TOL, rtol=0)
    torch.testing.assert_close(peer_x_hat, x_hat, atol=TOL, rtol=0)
    assert (f != 0).any() and (f == 0).any()
    assert back.config.k == dictionary.config.k or back.arch == "jumprelu"  # batchtopk -> saelens
    expected_place = ("mlp_in.2", "mlp.2") if transcoder else ("resid.2", None)
    if to != "sparsify" or transcoder:  # sparsify's place comes from the folder name
        assert (back.config.place, back.config.writes) == expected_place


def test_convert_reads_any_format_and_keeps_bfloat16(tmp_path):
    dictionary = random_dictionary("topk", D, S, seed=1, place="resid.0").to(torch.bfloat16)
    native = dictionary.save(tmp_path / "native")
    folder = convert(native, "saelens", tmp_path / "saelens")
    stored = load_file(str(folder / "sae_weights.safetensors"))
    assert {t.dtype for t in stored.values()} == {torch.bfloat16}
    back = load_dictionary(folder)
    assert back.dtype == torch.bfloat16
    x = torch.randn(4, D, dtype=torch.bfloat16)
    torch.testing.assert_close(back.encode(x), dictionary.encode(x), atol=0, rtol=0)
    assert load_dictionary(folder, dtype=torch.float32).dtype == torch.float32


def test_what_a_format_cannot_hold_is_refused_before_writing(tmp_path):
    relu = random_dictionary("relu", D, S)
    with pytest.raises(DictionaryError, match="sparsify holds only topk dictionaries, not relu"):
        convert(relu, "sparsify", tmp_path / "a")
    transcoder = case_dictionary("relu", {"skip": True}, transcoder=True)
    with pytest.raises(DictionaryError, match="dictionary_learning 0.1.0 has no transcoders"):
        convert(transcoder, "dictionary_learning", tmp_path / "b")
    topk_transcoder = case_dictionary("topk", {"skip": True}, transcoder=True)
    with pytest.raises(DictionaryError, match="SAELens has no topk transcoder"):
        convert(topk_transcoder, "saelens", tmp_path / "c")
    wide = random_dictionary("topk", D, S, d_out=D + 2, center_input=False)
    with pytest.raises(DictionaryError, match="sparsify decodes to the input's width"):
        convert(wide, "sparsify", tmp_path / "d")
    signed = random_dictionary("topk", D, S, signed=True, center_input=False)
    with pytest.raises(DictionaryError, match="signed topk dictionary"):
        convert(signed, "saelens", tmp_path / "e")
    with pytest.raises(DictionaryError, match="cannot write format 'gguf'"):
        convert(relu, "gguf", tmp_path / "f")
    assert not any((tmp_path / name).exists() for name in "abcdef")

    relu.save(tmp_path / "native")
    with pytest.raises(DictionaryError, match="already holds a native dictionary"):
        convert(relu, "dictionary_learning", tmp_path / "native")


def test_command_line_convert(tmp_path, capsys):
    dictionary = random_dictionary("jumprelu", D, S, seed=2, place="resid.1")
    native = dictionary.save(tmp_path / "native")
    out = tmp_path / "dl"
    assert main(["convert", str(native), "--to", "dictionary_learning", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"out": str(out), "format": "dictionary_learning"}
    x = torch.randn(6, D)
    with torch.no_grad():
        torch.testing.assert_close(load_dictionary(out).encode(x), dictionary.encode(x))
        peer_f, _ = dictionary_learning_forward(out, x)
    torch.testing.assert_close(peer_f, dictionary.encode(x), atol=TOL, rtol=0)


def test_command_line_convert_errors_name_the_file_and_the_flag(tmp_path, capsys):
    native = random_dictionary("jumprelu", D, S, seed=2).save(tmp_path / "native")
    assert main(["convert", str(native), "--to", "sparsify", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err == (
        f"error: {native}: --to sparsify: sparsify holds only topk dictionaries, not jumprelu\n"
    )
    missing = tmp_path / "missing"
    assert main(["convert", str(missing), "--to", "saelens", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err == f"error: {missing}: no such file or folder\n"
    with pytest.raises(SystemExit, match="^2$"):  # argparse's usage error
        main(["convert", str(native), "--to", "gguf", str(tmp_path / "s")])
    assert "argument --to: invalid choice: 'gguf'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
