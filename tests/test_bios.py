"""Synthetic biographies (SHIFT data), their reader, and linear probes on pooled activations."""

import json
import re
from collections import Counter

import pytest
import torch

from sparse_circuits.editing.bios import (
    FEMALE_NAMES,
    MALE_NAMES,
    BiosError,
    bios_file,
    generate_bios,
    generate_gender_concept,
    read_labelled,
    write_bios,
)
from sparse_circuits.editing.probe import (
    LinearProbe,
    ProbeError,
    group_accuracies,
    pooled_activations,
    pooled_activations_at,
    train_probe,
)

from .conftest import tiny_model

# --- generator --------------------------------------------------------------------------------


def test_generation_is_deterministic_and_seeded():
    a = generate_bios(40, split="balanced", seed=3)
    assert a == generate_bios(40, split="balanced", seed=3)
    assert a != generate_bios(40, split="balanced", seed=4)
    assert generate_gender_concept(20, seed=1) == generate_gender_concept(20, seed=1)


def test_ambiguous_split_ties_label_to_group():
    bios = generate_bios(200, split="ambiguous", seed=0)
    assert all(e["label"] == e["group"] for e in bios)
    assert Counter(e["label"] for e in bios) == {0: 100, 1: 100}
    assert len({e["text"] for e in bios}) == len(bios)


def test_balanced_split_has_four_equal_groups():
    bios = generate_bios(200, split="balanced", seed=0)
    cells = Counter((e["label"], e["group"]) for e in bios)
    assert cells == {(1, 1): 50, (1, 0): 50, (0, 1): 50, (0, 0): 50}
    assert len({e["text"] for e in bios}) == len(bios)


def test_examples_have_the_fields_and_gender_shows():
    for e in generate_bios(100, split="balanced", seed=1):
        assert set(e) == {"text", "label", "group"}
        assert isinstance(e["text"], str) and e["text"].strip()
        assert e["label"] in (0, 1) and e["group"] in (0, 1)
        words = set(re.findall(r"[A-Za-z]+", e["text"]))
        names = MALE_NAMES if e["group"] == 1 else FEMALE_NAMES
        other = FEMALE_NAMES if e["group"] == 1 else MALE_NAMES
        assert words & set(names) and not words & set(other)
        assert 2 <= len(re.findall(r"(?<!Mr|Ms)\.(\s|$)", e["text"])) <= 4


def test_name_pools_are_disjoint():
    def words(bios):
        return {w for e in bios for w in re.findall(r"[A-Za-z]+", e["text"])}

    names = set(MALE_NAMES + FEMALE_NAMES)
    train = words(generate_bios(200, split="ambiguous", seed=0, names="train")) & names
    test = words(generate_bios(200, split="balanced", seed=0, names="test")) & names
    assert len(train) > 20 and len(test) > 20 and not train & test


def test_concept_set_varies_gender_only():
    concept = generate_gender_concept(60, seed=0)
    assert Counter(e["group"] for e in concept) == {0: 30, 1: 30}
    assert all(set(e) == {"text", "group"} for e in concept)
    joined = " ".join(e["text"] for e in concept).lower()
    for word in ("professor", "nurse", "hospital", "university", "patients", "students"):
        assert word not in joined


def test_bad_arguments():
    with pytest.raises(ValueError, match="multiple of 4"):
        generate_bios(10, split="balanced")
    with pytest.raises(ValueError, match="even"):
        generate_bios(9, split="ambiguous")
    with pytest.raises(ValueError, match="split must be"):
        generate_bios(8, split="other")
    with pytest.raises(ValueError, match="names must be"):
        generate_bios(8, split="balanced", names="dev")


# --- files and reader -------------------------------------------------------------------------


def test_write_and_read_round_trip(tmp_path):
    paths = write_bios(tmp_path, n_train=40, n_test=40, n_concept=20)
    assert [p.name for p in paths] == ["train.jsonl", "test.jsonl", "gender_concept.jsonl"]
    train = read_labelled(tmp_path / "train.jsonl")
    assert len(train) == 40 and all(e["label"] == e["group"] for e in train)
    concept = read_labelled(tmp_path / "gender_concept.jsonl", fields=("text", "group"))
    assert len(concept) == 20
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_shipped_files_are_readable():
    train = read_labelled(bios_file("train"))
    test = read_labelled(bios_file("test"))
    concept = read_labelled(bios_file("gender_concept"), fields=("text", "group"))
    assert all(e["label"] == e["group"] for e in train)
    assert len(set(Counter((e["label"], e["group"]) for e in test).values())) == 1
    assert not {e["text"] for e in train} & {e["text"] for e in test}
    assert len(concept) > 0


def _write(tmp_path, lines):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOOD = [
    json.dumps({"text": "She is a nurse.", "label": 0, "group": 0}),
    json.dumps({"text": "He is a professor.", "label": 1, "group": 1}),
]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"text": "x", "label": 1}), r"missing field\(s\) \['group'\]"),
        (json.dumps({"text": "", "label": 1, "group": 0}), "non-empty string"),
        (json.dumps({"text": 3, "label": 1, "group": 0}), "non-empty string"),
        (json.dumps({"text": "x", "label": 2, "group": 0}), "'label' must be 0 or 1"),
        (json.dumps({"text": "x", "label": "1", "group": 0}), "'label' must be 0 or 1"),
        (json.dumps({"text": "x", "label": 1, "group": True}), "'group' must be 0 or 1"),
    ],
)
def test_reader_errors_name_file_and_line(tmp_path, bad, message):
    path = _write(tmp_path, [*GOOD, "", bad])
    with pytest.raises(BiosError, match=rf"data\.jsonl:4: .*{message}"):
        read_labelled(path)


def test_reader_needs_both_classes(tmp_path):
    path = _write(tmp_path, [GOOD[0], GOOD[0]])
    with pytest.raises(BiosError, match="needs both classes of label"):
        read_labelled(path)
    with pytest.raises(BiosError, match="needs both classes of group"):
        read_labelled(_write(tmp_path, GOOD[:1] * 2), fields=("text", "group"))
    with pytest.raises(BiosError, match="file not found"):
        read_labelled(tmp_path / "missing.jsonl")
    with pytest.raises(BiosError, match="no examples"):
        read_labelled(_write(tmp_path, [""]))


def test_reader_keeps_only_the_fields(tmp_path):
    path = _write(tmp_path, [line[:-1] + ', "extra": 5}' for line in GOOD])
    assert read_labelled(path, fields=("text", "label")) == [
        {"text": "She is a nurse.", "label": 0},
        {"text": "He is a professor.", "label": 1},
    ]


# --- probes -----------------------------------------------------------------------------------


def test_probe_separates_separable_data(tmp_path):
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(200, 10, generator=generator) * torch.linspace(0.1, 50, 10) + 7.0
    y = torch.randint(0, 2, (200,), generator=generator)
    # the deciding feature has a small scale, an offset and a margin
    X[:, 3] = 7.0 + (2 * y - 1) * (0.05 + 0.3 * torch.rand(200, generator=generator))
    probe = train_probe(X, y, epochs=300, lr=0.05, weight_decay=1e-4, seed=0)
    assert probe.weight.shape == (10,) and probe.bias.shape == ()
    assert torch.equal(probe.predict(X), y)
    assert torch.equal(probe(X), probe.logits(X))
    path = probe.save(tmp_path / "probe.safetensors")
    again = LinearProbe.load(path)
    torch.testing.assert_close(again.logits(X), probe.logits(X))
    assert again.meta == {"epochs": 300, "lr": 0.05, "weight_decay": 1e-4, "seed": 0}


def test_probe_rejects_bad_inputs(tmp_path):
    X = torch.randn(8, 3)
    with pytest.raises(ProbeError, match="both classes"):
        train_probe(X, torch.ones(8))
    with pytest.raises(ProbeError, match="0 or 1"):
        train_probe(X, torch.arange(8))
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ProbeError, match="not a readable safetensors"):
        LinearProbe.load(tmp_path / "junk.safetensors")


def test_group_accuracies_by_hand():
    label = [1, 1, 1, 1, 0, 0, 0, 0, 1, 0]
    group = [1, 1, 0, 0, 1, 1, 0, 0, 1, 0]
    pred = [1, 1, 1, 0, 0, 1, 0, 0, 0, 1]
    result = group_accuracies(pred, label, group)
    # cells: (1,1) rows 0,1,8 -> 2/3; (1,0) rows 2,3 -> 1/2; (0,1) rows 4,5 -> 1/2;
    # (0,0) rows 6,7,9 -> 2/3
    assert result["task_acc"] == pytest.approx(6 / 10)
    assert result["spurious_acc"] == pytest.approx(6 / 10)  # pred == group at 0,1,3,5,6,7
    assert result["label1_group1"] == pytest.approx(2 / 3)
    assert result["label1_group0"] == pytest.approx(1 / 2)
    assert result["label0_group1"] == pytest.approx(1 / 2)
    assert result["label0_group0"] == pytest.approx(2 / 3)
    assert result["worst_group_acc"] == pytest.approx(1 / 2)


def test_group_accuracies_skip_empty_cells():
    result = group_accuracies([1, 0, 0], [1, 0, 0], [1, 0, 0])
    assert result["worst_group_acc"] == 1.0 and result["spurious_acc"] == 1.0
    assert result["label1_group0"] != result["label1_group0"]  # NaN


@pytest.fixture(scope="module")
def llama():
    return tiny_model("llama", seed=1)


def test_pooling_ignores_padding(llama):
    model, adapter = llama
    texts = [
        "the dog runs",
        "a man who was near the cabinets is her professor",
        "she was a nurse",
        "the keys to the cabinet are near the cats that run",
        "he is",
    ]
    together = pooled_activations_at(model, adapter, texts, ["resid.0", "resid.2"], batch_size=8)
    for index, text in enumerate(texts):
        alone = pooled_activations(model, adapter, [text], "resid.2")
        torch.testing.assert_close(together["resid.2"][index], alone[0], atol=1e-4, rtol=0)
    assert together["resid.0"].shape == (5, adapter.d_model)
    # by hand: the mean of positions 1.. of the text run alone
    ids = model.tokenizer(texts[1], return_tensors="pt").input_ids
    from sparse_circuits.circuits.model.activations import collect_activations

    acts = collect_activations(model, adapter, ids, ["resid.2"])["resid.2"][0, 1:].mean(0)
    torch.testing.assert_close(together["resid.2"][1], acts, atol=1e-4, rtol=0)
    # batch sizes change nothing either
    small = pooled_activations(model, adapter, texts, "resid.2", batch_size=2)
    torch.testing.assert_close(small, together["resid.2"], atol=1e-4, rtol=0)


def test_pooling_needs_two_tokens(llama):
    model, adapter = llama
    with pytest.raises(ValueError, match="at least 2"):
        pooled_activations(model, adapter, ["the"], "resid.1")
