"""The Bias in Bios loader, on hub-shaped rows made here (the hub needs a network)."""

import re
from collections import Counter

import pytest

from sparse_circuits.editing import bias_in_bios
from sparse_circuits.editing.bias_in_bios import (
    AMBIGUOUS,
    BALANCED,
    select_cells,
    write_bias_in_bios,
)
from sparse_circuits.editing.bios import BiosError, read_labelled

# (hub profession id, hub gender, how many): professor 21, nurse 13, another profession 3;
# the hub's gender 0 is male
COUNTS = [(21, 0, 5), (21, 1, 3), (13, 0, 2), (13, 1, 7), (3, 0, 4)]


def hub_rows(split="train"):
    return [
        {"hard_text": f"{split} bio {prof}/{gender}/{i}", "profession": prof, "gender": gender}
        for prof, gender, n in COUNTS
        for i in range(n)
    ]


def cell_of(example):
    """The ``(profession id, hub gender)`` a text came from, read back from the text."""
    prof, gender, _ = example["text"].split()[-1].split("/")
    return int(prof), int(gender)


def test_ambiguous_cells_are_male_professors_and_female_nurses_equally():
    examples = select_cells(hub_rows(), AMBIGUOUS, seed=1)
    # the smaller of the two cells (5 male professors, 7 female nurses) sets the size
    assert Counter((e["label"], e["group"]) for e in examples) == {(1, 1): 5, (0, 0): 5}
    assert {cell_of(e) for e in examples if e["label"] == 1} == {(21, 0)}
    assert {cell_of(e) for e in examples if e["label"] == 0} == {(13, 1)}
    assert len({e["text"] for e in examples}) == 10


def test_balanced_cells_are_equal_and_per_cell_caps_them():
    examples = select_cells(hub_rows(), BALANCED, seed=0)
    assert Counter((e["label"], e["group"]) for e in examples) == {
        (1, 1): 2, (1, 0): 2, (0, 1): 2, (0, 0): 2
    }  # fmt: skip
    expected = {(1, 1): (21, 0), (1, 0): (21, 1), (0, 1): (13, 0), (0, 0): (13, 1)}
    assert all(cell_of(e) == expected[(e["label"], e["group"])] for e in examples)
    capped = select_cells(hub_rows(), AMBIGUOUS, per_cell=1)
    assert len(capped) == 2


def test_bad_rows_name_the_source_and_row():
    rows = hub_rows()
    rows[3] = {"hard_text": "x", "profession": 21}
    with pytest.raises(BiosError, match=r"hub \(train\), row 4: missing field\(s\) \['gender'\]"):
        select_cells(rows, AMBIGUOUS, source="hub (train)")
    no_nurses = [r for r in hub_rows() if r["profession"] != 13]
    with pytest.raises(BiosError, match=r"no biography in \(label, group\) cell\(s\) \[\(0, 0\)\]"):
        select_cells(no_nurses, AMBIGUOUS)


def test_written_files_are_shift_data(tmp_path, monkeypatch):
    import sparse_circuits.circuits.data.corpus

    monkeypatch.setattr(
        sparse_circuits.circuits.data.corpus,
        "open_hub_dataset",
        lambda name, *, split, error: hub_rows(split),
    )
    train, test = write_bias_in_bios(tmp_path, seed=3)
    ambiguous, balanced = read_labelled(train), read_labelled(test)
    assert all(e["label"] == e["group"] for e in ambiguous) and len(ambiguous) == 10
    assert all(e["text"].startswith("train ") for e in ambiguous)
    assert all(e["text"].startswith("test ") for e in balanced) and len(balanced) == 8


def test_offline_is_one_clear_error_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = re.escape(bias_in_bios.HUB_NAME)
    with pytest.raises(BiosError, match=f"^{hub}: reading it as a hub dataset needs") as caught:
        write_bias_in_bios(tmp_path / "bib")
    message = str(caught.value)
    assert message.startswith(f"{bias_in_bios.HUB_NAME}: reading it as a hub dataset needs")
    assert len(message.splitlines()) == 1
    assert not (tmp_path / "bib").exists()
