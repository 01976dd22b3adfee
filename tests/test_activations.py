"""Streaming activations from a model: right values, filtering, sharding, resumable state."""

import json

import pytest
import torch

from sparse_circuits.circuits.model.activations import (
    ActivationConfig,
    ModelActivationSource,
    collect_activations,
)
from sparse_circuits.cli import main

from .conftest import tiny_model


@pytest.fixture(scope="module")
def llama():
    return tiny_model("llama", seed=2)


def contexts(n=12, t=8, seed=0):
    return torch.randint(3, 30, (n, t), generator=torch.Generator().manual_seed(seed))


def test_rows_are_the_model_activations(llama):
    model, adapter = llama
    ids = contexts()
    config = ActivationConfig("resid.1", model_batch=4, buffer_tokens=84, outlier_factor=None)
    source = ModelActivationSource(model, adapter, ids, config)
    x, y = source.next_batch(84)
    assert y is x and x.shape == (12 * 7, 16)  # the first position of each context left out
    expected = collect_activations(model, adapter, ids, ["resid.1"])["resid.1"][:, 1:]
    # every streamed row is one of the model's activations, each exactly once
    expected_rows = expected.flatten(0, 1)
    distances = torch.cdist(x, expected_rows)
    assert torch.all(distances.min(1).values < 1e-3)  # cdist is approximate; rows differ by ~0.1
    assert len(set(distances.argmin(1).tolist())) == len(x)


def test_a_batch_larger_than_the_buffer_comes_whole(llama):
    model, adapter = llama
    config = ActivationConfig("resid.1", model_batch=2, buffer_tokens=7, outlier_factor=None)
    source = ModelActivationSource(model, adapter, contexts(), config)
    # 30 rows need 5 model batches of 2 contexts x 7 rows; the buffer alone holds 7
    assert [len(source.next_batch(30)[0]) for _ in range(2)] == [30, 30]


def test_transcoder_pairs_stay_aligned(llama):
    model, adapter = llama
    config = ActivationConfig("mlp_in.1", target_place="mlp.1", model_batch=4, buffer_tokens=64)
    x, y = ModelActivationSource(model, adapter, contexts(), config).next_batch(32)
    mlp = model._module.model.layers[1].mlp
    torch.testing.assert_close(mlp(x), y, atol=1e-5, rtol=1e-5)


def test_shards_are_disjoint_and_state_resumes(llama):
    model, adapter = llama
    config = ActivationConfig("resid.0", model_batch=2, buffer_tokens=32)
    ranks = [
        ModelActivationSource(model, adapter, contexts(), config, rank=r, world=2) for r in (0, 1)
    ]
    assert not set(map(tuple, ranks[0].contexts.tolist())) & set(
        map(tuple, ranks[1].contexts.tolist())
    )
    source = ranks[0]
    source.next_batch(16)
    state = source.state_dict()
    after = [source.next_batch(16)[0] for _ in range(5)]
    again = ModelActivationSource(model, adapter, contexts(), config, rank=0, world=2)
    again.load_state_dict(state)
    for expected in after:
        torch.testing.assert_close(again.next_batch(16)[0], expected)


def test_outliers_are_left_out(llama):
    model, adapter = llama
    keep_all = ActivationConfig("resid.2", model_batch=12, buffer_tokens=1, outlier_factor=None)
    strict = ActivationConfig("resid.2", model_batch=12, buffer_tokens=1, outlier_factor=1.0)
    n_all = len(ModelActivationSource(model, adapter, contexts(), keep_all).buffer_after_refill())
    n_strict = len(ModelActivationSource(model, adapter, contexts(), strict).buffer_after_refill())
    assert n_all == 84 and n_strict < n_all


def test_cli_train_and_eval_dict(tmp_path, capsys, llama):
    model, _ = llama
    model._module.save_pretrained(tmp_path / "model")
    model.tokenizer.save_pretrained(tmp_path / "model")
    corpus = tmp_path / "corpus.txt"
    nouns = "man men woman women nurse professor dog cat".split()  # distinct documents to hold out
    corpus.write_text(
        "\n\n".join([f"the keys to the cabinet are near the {n}" for n in nouns] * 25)
    )
    base = ["--model", str(tmp_path / "model"), "--corpus", str(corpus), "--context-length", "8"]
    code = main(
        ["train", *base, "--submodule", "resid.1", "--arch", "topk", "--dict-size", "32",
         "--k", "4", "--tokens", "2048", "--batch-size", "256", "--eval-tokens", "64",
         "--dead-after-tokens", "512", "--precision", "bfloat16", "--out", str(tmp_path / "sae")]
    )  # fmt: skip
    assert code == 0
    saved = json.loads((tmp_path / "sae" / "config.json").read_text())
    assert saved["training"]["dead_after_tokens"] == 512
    assert saved["training"]["precision"]["asked"] == "bfloat16"
    assert saved["training"]["precision"]["compute_dtype"] == "bfloat16"
    trained = json.loads(capsys.readouterr().out)
    assert trained["fvu"] < 1.0 and trained["l0"] <= 4
    code = main(
        ["eval-dict", *base, "--dict", str(tmp_path / "sae"), "--tokens", "64",
         "--histogram", str(tmp_path / "density.html")]
    )  # fmt: skip
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) >= {"fvu", "l0", "dead_fraction", "shrinkage", "ce_loss_recovered"}
    assert metrics["fvu"] == pytest.approx(trained["fvu"], rel=1e-4)
    assert (tmp_path / "density.html").is_file()
    code = main(
        ["train", *base, "--submodule", "resid.1", "--arch", "topk", "--dict-size", "32",
         "--k", "40", "--tokens", "2048", "--out", str(tmp_path / "bad")]
    )  # fmt: skip
    assert code == 2 and "--k 40 must be between 1 and --dict-size 32" in capsys.readouterr().err


def test_shared_stream_views_read_the_same_rows(llama):
    from sparse_circuits.circuits.model.activations import SharedStream

    model, adapter = llama
    places = ["resid.0", "resid.2"]
    config = ActivationConfig("resid.0", model_batch=4, buffer_tokens=32)
    reference = ModelActivationSource(model, adapter, contexts(), config, places=places)
    stream = SharedStream(ModelActivationSource(model, adapter, contexts(), config, places=places))
    views = {p: stream.view(p) for p in places}
    for _ in range(3):
        rows = reference.take_rows(16)
        for place, view in views.items():
            x, y = view.next_batch(16)
            assert y is x
            torch.testing.assert_close(x, rows[:, reference.columns(place)])


def test_cli_trains_several_places_into_a_set(tmp_path, capsys, llama):
    from sparse_circuits.dictionaries.sets import load_dictionary_set

    model, _ = llama
    model._module.save_pretrained(tmp_path / "model")
    model.tokenizer.save_pretrained(tmp_path / "model")
    corpus = tmp_path / "corpus.txt"
    nouns = "woman man nurse professor".split()  # distinct documents to hold out
    corpus.write_text("\n\n".join([f"the dogs near the {noun} were cats" for noun in nouns] * 25))
    code = main(
        ["train", "--model", str(tmp_path / "model"), "--corpus", str(corpus),
         "--context-length", "8", "--submodule", "resid.*", "--arch", "relu",
         "--dict-size", "32", "--tokens", "1024", "--batch-size", "256", "--eval-tokens", "32",
         "--out", str(tmp_path / "set")]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert sorted(summary["places"]) == ["resid.0", "resid.1", "resid.2"]
    loaded = load_dictionary_set(tmp_path / "set")
    assert {p: d.config.place for p, d in loaded.items()} == {p: p for p in loaded}
    assert all("fvu" in d.config.metrics for d in loaded.values())
