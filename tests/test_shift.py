"""SHIFT mechanics on a tiny model; the judge's AUROC against a hand computation."""

import json
import math
import random

import pytest
import torch

from editing.interventions import FeatureAblation
from editing.probe import LinearProbe, pooled_activations
from editing.shift import (
    ShiftConfig,
    _candidates,
    _FromPosition,
    _pool,
    _recentred,
    auroc,
    auroc_p_value,
    candidates_markdown,
    pooled_features,
    run_shift,
)
from sparse_circuits.cli import main

from .conftest import D_MODEL, random_dictionary, tiny_model


def bios(n, balanced, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        group = (i // 2) % 2 if balanced else label
        pronoun = "he" if group else "she"
        job = "professor" if label else "nurse"
        filler = rng.choice(["the man", "a cat", "the dogs", "a woman"])
        rows.append(
            {
                "text": f"{filler} {pronoun} was a {job} near {filler}",
                "label": label,
                "group": group,
            }
        )
    return rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model, adapter = tiny_model("llama", seed=8)
    dictionaries = {f"resid.{i}": random_dictionary("relu", D_MODEL, 32, seed=i) for i in range(3)}
    return model, adapter, dictionaries


def test_auroc_by_hand():
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    labels = torch.tensor([0, 0, 1, 1])
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4): 3 of 4
    assert auroc(scores, labels) == pytest.approx(0.75)
    assert auroc(torch.tensor([1.0, 1.0]), torch.tensor([0, 1])) == pytest.approx(0.5)


def test_shift_table_with_a_given_list(setup):
    model, adapter, dictionaries = setup
    config = ShiftConfig(place="resid.1", candidates=8, probe_epochs=50, label_tokens=0)
    ablate = [("resid.0", 3), ("resid.1", 5)]
    results = run_shift(
        model, adapter, dictionaries, bios(24, False, 0), bios(24, True, 1), config,
        ablate=ablate, progress=False,
    )  # fmt: skip
    methods = results["methods"]
    assert set(methods) == {
        "original",
        "shift",
        "shift_retrain",
        "random",
        "neuron_skyline",
        "oracle",
    }
    assert methods["shift"]["ablated"] == ["resid.0:3", "resid.1:5"]
    assert len(methods["random"]["ablated"]) == 2 and len(methods["neuron_skyline"]["ablated"]) == 2
    for scores in methods.values():
        assert 0 <= scores["worst_group_acc"] <= scores["task_acc"] <= 1
    assert results["settings"]["places"] == ["resid.0", "resid.1"]  # none after the probe
    assert len(results["candidates"]) == 8


def test_auroc_p_value_by_hand():
    # 10 + 10 examples: null variance (10 + 10 + 1) / (12 * 10 * 10) = 0.0175
    assert auroc_p_value(0.5, 10, 10) == pytest.approx(1.0)
    z = 0.25 / math.sqrt(0.0175)  # 1.890
    expected = 2 * (1 - 0.5 * (1 + math.erf(z / math.sqrt(2))))
    assert auroc_p_value(0.75, 10, 10) == pytest.approx(expected)
    assert auroc_p_value(0.25, 10, 10) == pytest.approx(expected)
    assert 0.05 < expected < 0.06


def test_config_is_validated():
    for bad in (
        {"attribution_share": 0.0},
        {"candidates": 0},
        {"judge_alpha": 0.0},
        {"judge_threshold": 1.5},
        {"first_position": -1},
        {"attribution_examples": 1},
    ):
        with pytest.raises(ValueError):
            ShiftConfig(place="resid.1", **bad)


def test_candidates_cover_the_share_of_attribution():
    effects = {"resid.0": torch.tensor([3.0, -1.0]), "resid.1": torch.tensor([-2.0, 0.5])}

    # |effects| sorted: 3, 2, 1, 0.5 (total 6.5)
    def picked(**options):
        chosen = _candidates(effects, ShiftConfig("resid.1", **options))
        return [(c["place"], c["feature"]) for c in chosen]

    assert picked(attribution_share=0.4) == [("resid.0", 0)]  # 3 >= 2.6
    assert picked(attribution_share=0.5) == [("resid.0", 0), ("resid.1", 0)]  # 5 >= 3.25
    assert len(picked(attribution_share=1.0)) == 4
    assert picked(candidates=3) == [("resid.0", 0), ("resid.1", 0), ("resid.0", 1)]


def test_recentred_probe_keeps_the_mean_logit():
    probe = LinearProbe(torch.tensor([1.0, -2.0]), 0.5)
    before, after = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[3.0, 0.0], [2.0, 0.0]])
    recentred, offset = _recentred(probe, before, after)
    # mean logits: before (1.5 - 1.5) / 2 = 0, after (3.5 + 2.5) / 2 = 3
    assert offset == pytest.approx(-3.0)
    assert recentred(after).mean() == pytest.approx(probe(before).mean())
    assert torch.equal(recentred.weight, probe.weight)


def test_ablation_spares_the_first_positions(setup):
    _, _, dictionaries = setup
    ablation = FeatureAblation("resid.0", dictionaries["resid.0"], list(range(32)))
    x_BTD = torch.randn(2, 5, D_MODEL)
    positions_BT = torch.arange(5).expand(2, 5)
    edited = _FromPosition(ablation, 2).apply(x_BTD, positions_BT)
    assert torch.equal(edited[:, :2], x_BTD[:, :2])
    assert torch.allclose(edited[:, 2:], ablation.apply(x_BTD, positions_BT)[:, 2:])


def test_ablation_at_the_probe_place_reaches_the_probe(setup):
    """Zero-ablating features at the place the probe reads moves the pooled activation by
    exactly their pooled decoder contribution (a hook there would not be seen)."""
    model, adapter, dictionaries = setup
    texts = [r["text"] for r in bios(6, True, 3)]
    features = [1, 4, 9]
    d = dictionaries["resid.1"]
    plain = pooled_activations(model, adapter, texts, "resid.1")
    ablated = _pool(
        model, adapter, texts, "resid.1", [FeatureAblation("resid.1", d, features)], batch_size=4
    )
    f_NK = pooled_features(model, adapter, dictionaries, texts, [("resid.1", f) for f in features])
    expected = plain - f_NK @ d.W_dec[features].float()
    assert torch.allclose(ablated, expected, atol=1e-5)
    assert not torch.allclose(ablated, plain)


def test_auto_judge_records_its_choices(setup, tmp_path):
    model, adapter, dictionaries = setup
    concept = [{"text": r["text"], "group": r["group"]} for r in bios(16, True, 2)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(r["text"] for r in bios(40, True, 4)))
    config = ShiftConfig(place="resid.2", candidates=10, judge_alpha=1.0, judge_threshold=0.0,
                         probe_epochs=30, label_tokens=128, label_corpus=str(corpus))  # fmt: skip
    results = run_shift(
        model, adapter, dictionaries, bios(16, False, 0), bios(16, True, 1), config,
        concept=concept, retrain=False, progress=False,
    )  # fmt: skip
    candidates = results["candidates"]
    assert len(candidates) == 10
    for c in candidates:  # judged: significant at 1.0 / 10 (Bonferroni) and any effect
        assert c["judged_spurious"] == (c["concept_p"] < 0.1)
        assert c["concept_p"] == pytest.approx(auroc_p_value(c["concept_auroc"], 8, 8))
    judged = [f"{c['place']}:{c['feature']}" for c in candidates if c["judged_spurious"]]
    assert results["methods"]["shift"]["ablated"] == judged
    assert results["settings"]["judge"]["p_below"] == pytest.approx(0.1)
    assert "shift_retrain" not in results["methods"]
    shift = results["methods"]["shift"]
    assert set(shift["not_recentred"]) == {"task_acc", "spurious_acc", "worst_group_acc"}
    # each candidate comes with its top corpus contexts, highest first, for a person to judge
    labelled = [c for c in candidates if c["top_contexts"]]
    assert labelled
    for c in labelled:
        activations = [h["activation"] for h in c["top_contexts"]]
        assert activations == sorted(activations, reverse=True) and activations[0] > 0
        assert "«" in c["top_contexts"][0]["text"]
    table = candidates_markdown(results).splitlines()
    assert len(table) == 2 + len(candidates)
    for c, row in zip(candidates, table[2:], strict=True):
        name = f"{c['place']}:{c['feature']}"
        assert row.startswith(f"| {name} |")
        assert ("| yes | yes |" in row) == (name in judged)


def test_cli_shift_and_its_errors(setup, tmp_path, capsys):
    model, adapter, dictionaries = setup
    model._module.save_pretrained(tmp_path / "model")
    model.tokenizer.save_pretrained(tmp_path / "model")
    for place, d in dictionaries.items():
        d.save(tmp_path / "dicts" / place)
    for name, rows in (("train", bios(16, False, 0)), ("test", bios(16, True, 1))):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "ablate.txt").write_text("resid.0:1\nresid.1:2\n")
    base = ["shift", "--model", str(tmp_path / "model"), "--dictionaries", str(tmp_path / "dicts"),
            "--place", "resid.1", "--train", str(tmp_path / "train.jsonl"),
            "--test", str(tmp_path / "test.jsonl"), "--label-tokens", "0"]  # fmt: skip
    assert (
        main([*base, "--ablate", str(tmp_path / "ablate.txt"), "--out", str(tmp_path / "o")]) == 0
    )
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["methods"]["shift"]["ablated"] == ["resid.0:1", "resid.1:2"]
    assert (tmp_path / "o" / "results.html").is_file()
    capsys.readouterr()
    (tmp_path / "bad.txt").write_text("resid.0:99\n")
    assert main([*base, "--ablate", str(tmp_path / "bad.txt"), "--out", str(tmp_path / "x")]) == 2
    assert "beyond the dictionary at resid.0" in capsys.readouterr().err
    (tmp_path / "elsewhere.txt").write_text("resid.0:1\nmlp.1:2\n")
    assert (
        main([*base, "--ablate", str(tmp_path / "elsewhere.txt"), "--out", str(tmp_path / "x")])
        == 2
    )
    assert "no dictionary for mlp.1" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("\n")
    assert main([*base, "--ablate", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "x")]) == 2
    assert "empty" in capsys.readouterr().err
    one_class = [r for r in bios(16, False, 0) if r["label"] == 1]
    (tmp_path / "one.jsonl").write_text("".join(json.dumps(r) + "\n" for r in one_class))
    assert main([*base[:7], "--train", str(tmp_path / "one.jsonl"), *base[9:],
                 "--ablate", str(tmp_path / "ablate.txt"), "--out", str(tmp_path / "x")]) == 2  # fmt: skip
    assert "both classes" in capsys.readouterr().err
    assert not (tmp_path / "x" / "results.json").exists()
