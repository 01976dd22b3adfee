"""SHIFT mechanics on a tiny model; the judge's AUROC against a hand computation."""

import json
import random

import pytest
import torch

from editing.shift import ShiftConfig, auroc, run_shift
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
    config = ShiftConfig(place="resid.1", candidates=8, probe_epochs=50)
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


def test_auto_judge_records_its_choices(setup):
    model, adapter, dictionaries = setup
    concept = [{"text": r["text"], "group": r["group"]} for r in bios(16, True, 2)]
    config = ShiftConfig(place="resid.2", candidates=10, judge_threshold=0.0, probe_epochs=30)
    results = run_shift(
        model, adapter, dictionaries, bios(16, False, 0), bios(16, True, 1), config,
        concept=concept, retrain=False, progress=False,
    )  # fmt: skip
    judged = [c for c in results["candidates"] if c["judged_spurious"]]
    assert len(judged) == 10 and all("concept_auroc" in c for c in judged)
    assert "shift_retrain" not in results["methods"]


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
            "--test", str(tmp_path / "test.jsonl")]  # fmt: skip
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
    (tmp_path / "empty.txt").write_text("\n")
    assert main([*base, "--ablate", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "x")]) == 2
    assert "empty" in capsys.readouterr().err
    one_class = [r for r in bios(16, False, 0) if r["label"] == 1]
    (tmp_path / "one.jsonl").write_text("".join(json.dumps(r) + "\n" for r in one_class))
    assert main([*base[:7], "--train", str(tmp_path / "one.jsonl"), *base[9:],
                 "--ablate", str(tmp_path / "ablate.txt"), "--out", str(tmp_path / "x")]) == 2  # fmt: skip
    assert "both classes" in capsys.readouterr().err
    assert not (tmp_path / "x" / "results.json").exists()
