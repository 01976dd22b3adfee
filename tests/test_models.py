"""Loading models by every accepted kind of name, and the errors for bad names."""

import json

import pytest
import torch

from sparse_circuits.circuits.model.adapters import UnsupportedModelError, spec_for
from sparse_circuits.circuits.model.loading import ModelLoadError, load_model
from sparse_circuits.cli import main

from .conftest import tiny_model


def test_local_folder_round_trip(tmp_path):
    model, adapter = tiny_model("gpt2")
    model._module.save_pretrained(tmp_path)
    model.tokenizer.save_pretrained(tmp_path)
    loaded, loaded_adapter = load_model(tmp_path, precision="float32")
    assert loaded_adapter.model_type == "gpt2" and loaded_adapter.n_layers == adapter.n_layers
    ids = torch.randint(3, 20, (1, 6))
    with torch.no_grad():
        torch.testing.assert_close(loaded._module(ids).logits, model._module(ids).logits)


def test_unknown_model_name_lists_what_is_accepted():
    with pytest.raises(ModelLoadError, match=r"nope-xyz.*embedded model \(smollm2-135m\).*\.gguf"):
        load_model("nope-xyz")


def test_missing_gguf_and_folder_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        load_model(tmp_path / "missing.gguf")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path)


def test_unknown_architecture_says_how_to_add_one():
    with pytest.raises(UnsupportedModelError, match="ArchitectureSpec in circuits/adapters.py"):
        spec_for("mamba")


def test_cli_info_on_a_local_model(tmp_path, capsys):
    model, _ = tiny_model("llama")
    model._module.save_pretrained(tmp_path)
    model.tokenizer.save_pretrained(tmp_path)
    assert main(["info", "--model", str(tmp_path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_type"] == "llama" and info["n_layers"] == 3 and info["d_model"] == 16
    assert info["submodules"][:5] == ["embed", "attn.0", "mlp_in.0", "mlp.0", "resid.0"]
    assert len(info["submodules"]) == 1 + 4 * 3


def test_cli_bad_model_is_one_line(capsys):
    assert main(["info", "--model", "nope-xyz"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot load model 'nope-xyz'") and "\n" not in err
