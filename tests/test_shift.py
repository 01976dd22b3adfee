"""SHIFT mechanics on a tiny model; the judge's AUROC against a hand computation."""

import json
import math
import random

import pytest
import torch

from sparse_circuits.circuits.data.prompts import PromptBatch
from sparse_circuits.circuits.discovery.attribution import AttributionConfig, node_effects
from sparse_circuits.circuits.discovery.metrics import ProbeLogit
from sparse_circuits.cli import main
from sparse_circuits.editing.interventions import FeatureAblation
from sparse_circuits.editing.probe import LinearProbe, pooled_activations, train_probe
from sparse_circuits.editing.shift import (
    ShiftConfig,
    _attribute,
    _balanced_draw,
    _candidates,
    _dictionaries_up_to,
    _FromPosition,
    _halves,
    _pool,
    _recentred,
    auroc,
    auroc_p_value,
    candidates_markdown,
    check_ablation_list,
    gap_closed,
    pooled_features,
    results_markdown,
    run_shift,
    zero_ablations,
)

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


def accuracies_by_hand(probe, X, rows):
    """Task accuracy and the lowest accuracy over the (label, group) cells of ``rows``."""
    cells: dict[tuple[int, int], list[bool]] = {}
    for row, prediction in zip(rows, probe.predict(X).tolist(), strict=True):
        cells.setdefault((row["label"], row["group"]), []).append(prediction == row["label"])
    hits = [hit for cell in cells.values() for hit in cell]
    return sum(hits) / len(hits), min(sum(cell) / len(cell) for cell in cells.values())


def test_shift_table_with_a_given_list(setup):
    model, adapter, dictionaries = setup
    config = ShiftConfig(
        place="resid.1", candidates=8, probe_epochs=50, label_tokens=0, attribution_examples=4
    )
    ablate = [("resid.0", 3), ("resid.1", 5)]
    train, test = bios(24, False, 0), bios(24, True, 1)
    results = run_shift(
        model, adapter, dictionaries, train, test, config, ablate=ablate, progress=False
    )
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
    assert results["settings"]["places"] == ["resid.0", "resid.1"]  # none after the probe
    assert len(results["candidates"]) == 8
    assert results["settings"]["attribution"]["n_examples"] == 4
    # the original and the oracle probe, retrained here and scored by hand on the same half
    oracle_rows, evaluation = _halves(test, random.Random(config.seed))
    X_eval = pooled_activations(model, adapter, [r["text"] for r in evaluation], "resid.1")
    for name, rows in (("original", train), ("oracle", oracle_rows)):
        X = pooled_activations(model, adapter, [r["text"] for r in rows], "resid.1")
        y = torch.tensor([r["label"] for r in rows])
        probe = train_probe(X, y, epochs=50, weight_decay=1e-2, seed=config.seed)
        task, worst = accuracies_by_hand(probe, X_eval, evaluation)
        assert methods[name]["task_acc"] == pytest.approx(task)
        assert methods[name]["worst_group_acc"] == pytest.approx(worst)


class SignedProbeLogit(ProbeLogit):
    """The probe's logit at resid.1 (positions from 1) times a fixed sign: one text's margin."""

    def __init__(self, probe: LinearProbe, sign: float):
        super().__init__("resid.1", probe.weight, probe.bias, start=1)
        self.sign = sign

    def __call__(self, model, adapter, batch):
        return self.sign * super().__call__(model, adapter, batch)


def test_attribution_over_a_balanced_draw(setup):
    """The draw holds as many texts of each label; ``_attribute`` (texts batched by length)
    matches ``node_effects`` run on each text alone with its own signed metric."""
    model, adapter, dictionaries = setup
    train = bios(16, False, 0)
    rows = _balanced_draw(train, 4, random.Random(0))
    assert len(set(rows)) == 4 and sorted(train[i]["label"] for i in rows) == [0, 0, 1, 1]
    data = [train[i] for i in rows]
    data[-1] = {**data[-1], "text": data[-1]["text"] + " and"}
    ids = [model.tokenizer(d["text"]).input_ids for d in data]
    lengths = [len(row) for row in ids]
    assert sorted(lengths.count(n) for n in set(lengths)) == [1, 3]  # batches of 3 and 1
    up_to_probe = {p: dictionaries[p] for p in ("resid.0", "resid.1")}
    probe = LinearProbe(torch.randn(D_MODEL, generator=torch.Generator().manual_seed(5)), 0.3)
    effects = _attribute(
        model, adapter, up_to_probe, probe, data, ShiftConfig("resid.1"), progress=False
    )
    expected = {p: torch.zeros(32) for p in up_to_probe}
    settings = AttributionConfig(aggregation="none")
    for d, row in zip(data, ids, strict=True):
        batch = PromptBatch(torch.tensor([row]), torch.zeros(1, dtype=torch.long))
        metric = SignedProbeLogit(probe, 2.0 * d["label"] - 1)
        alone = node_effects(
            model, adapter, up_to_probe, [batch], metric=metric, config=settings, progress=False
        )
        for place, effect_TF in alone.features.items():
            expected[place] += effect_TF[1:].sum(0) / len(data)
    for place in up_to_probe:
        assert expected[place].abs().max() > 1e-3
        assert torch.allclose(effects[place], expected[place], atol=1e-5)


def test_ablation_list_is_checked_before_any_model_pass(setup):
    _, adapter, dictionaries = setup  # no model: a model pass would fail otherwise
    config = ShiftConfig(place="resid.1")
    data = bios(8, False, 0)
    for ablate, message in (
        ([("resid.0", 1), ("resid.2", 5)], "resid.2:5: resid.2 comes after the probe place"),
        ([("resid.0", 1), ("resid.1", 2), ("resid.0", 1)], "resid.0:1 is listed twice"),
        ([("mlp.1", 2)], "mlp.1:2: no dictionary for mlp.1"),
        ([("resid.0", 32)], "feature 32 is beyond the dictionary at resid.0"),
        ([], "the ablation list is empty"),
    ):
        with pytest.raises(ValueError, match=message):
            run_shift(None, adapter, dictionaries, data, data, config, ablate=ablate)
        with pytest.raises(ValueError) as error:  # the file it was read from, named first
            run_shift(
                None, adapter, dictionaries, data, data, config,
                ablate=ablate, ablation_source="lists/ablate.txt",
            )  # fmt: skip
        assert str(error.value).startswith("lists/ablate.txt: ") and message in str(error.value)


def transcoder(layer: int):
    return random_dictionary(
        "relu", D_MODEL, 24, center_input=False, place=f"mlp_in.{layer}", writes=f"mlp.{layer}"
    )


def test_transcoders_are_refused(setup):
    _, adapter, dictionaries = setup
    with_transcoder = {**dictionaries, "mlp.0": transcoder(0)}
    data = bios(8, False, 0)
    with pytest.raises(ValueError, match="SHIFT ablates SAE features; mlp.0 holds a transcoder"):
        run_shift(
            None, adapter, with_transcoder, data, data, ShiftConfig(place="resid.1"),
            ablate=[("resid.0", 1)],
        )  # fmt: skip
    after_the_probe = {**dictionaries, "mlp.2": transcoder(2)}  # not used: no matter
    assert list(_dictionaries_up_to(adapter, after_the_probe, "resid.1")) == ["resid.0", "resid.1"]


def test_auroc_p_value_by_hand():
    # 10 + 10 examples: null variance (10 + 10 + 1) / (12 * 10 * 10) = 0.0175
    assert auroc_p_value(0.5, 10, 10) == pytest.approx(1.0)
    z = 0.25 / math.sqrt(0.0175)  # 1.890
    expected = 2 * (1 - 0.5 * (1 + math.erf(z / math.sqrt(2))))
    assert auroc_p_value(0.75, 10, 10) == pytest.approx(expected)
    assert auroc_p_value(0.25, 10, 10) == pytest.approx(expected)
    assert 0.05 < expected < 0.06


def test_config_is_validated():
    """Each error names the field."""
    for bad, message in (
        ({"attribution_share": 0.0}, r"^attribution_share must be in \(0, 1\], not 0.0$"),
        ({"candidates": 0}, r"^candidates must be positive, not 0$"),
        ({"judge_alpha": 0.0}, r"^judge_alpha must be in \(0, 1\], not 0.0$"),
        ({"judge_threshold": 1.5}, r"^judge_threshold must be in \[0, 1\], not 1.5$"),
        ({"first_position": -1}, r"^first_position must be >= 0, not -1$"),
        ({"attribution_examples": 1}, r"^attribution_examples must be at least 2 \(one of"),
    ):
        with pytest.raises(ValueError, match=message):
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


@pytest.fixture(scope="module")
def cli_files(setup, tmp_path_factory):
    """A saved model, its dictionaries, train and test splits; the CLI's common arguments."""
    model, _, dictionaries = setup
    folder = tmp_path_factory.mktemp("cli")
    model._module.save_pretrained(folder / "model")
    model.tokenizer.save_pretrained(folder / "model")
    for place, d in dictionaries.items():
        d.save(folder / "dicts" / place)
    for name, rows in (("train", bios(16, False, 0)), ("test", bios(16, True, 1))):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = ["shift", "--model", str(folder / "model"), "--dictionaries", str(folder / "dicts"),
            "--place", "resid.1", "--train", str(folder / "train.jsonl"),
            "--test", str(folder / "test.jsonl"), "--label-tokens", "0"]  # fmt: skip
    return folder, base


def test_cli_shift_and_its_errors(cli_files, tmp_path, capsys):
    folder, base = cli_files
    (tmp_path / "ablate.txt").write_text("resid.0:1\nresid.1:2\n")
    assert (
        main([*base, "--ablate", str(tmp_path / "ablate.txt"), "--out", str(tmp_path / "o")]) == 0
    )
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["methods"]["shift"]["ablated"] == ["resid.0:1", "resid.1:2"]
    assert (tmp_path / "o" / "results.html").is_file()
    capsys.readouterr()
    out = ["--out", str(tmp_path / "x")]
    for lines, message in (
        ("resid.0:99\n", "beyond the dictionary at resid.0"),
        ("resid.0:1\nmlp.1:2\n", "no dictionary for mlp.1"),
        ("resid.0:1\nresid.2:5\n", "resid.2:5: resid.2 comes after the probe place resid.1"),
        ("resid.0:1\nresid.0:1\n", "resid.0:1 is listed twice"),
        ("\n", "empty"),
        ("resid.0:1\nresid.0:one\n", "'resid.0:one' is not PLACE:FEATURE_ID"),
    ):
        (tmp_path / "bad.txt").write_text(lines)
        assert main([*base, "--ablate", str(tmp_path / "bad.txt"), *out]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {tmp_path / 'bad.txt'}: ") and message in err
        assert not (tmp_path / "x").exists()
    one_class = [r for r in bios(16, False, 0) if r["label"] == 1]
    (tmp_path / "one.jsonl").write_text("".join(json.dumps(r) + "\n" for r in one_class))
    assert main([*base[:7], "--train", str(tmp_path / "one.jsonl"), *base[9:],
                 "--ablate", str(tmp_path / "ablate.txt"), *out]) == 2  # fmt: skip
    assert "both classes" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_shift_checks_the_ablation_list_once(cli_files, tmp_path, capsys, monkeypatch):
    """The command leaves the check to ``run_shift``, which names the file."""
    import sparse_circuits.editing.shift as shift

    _, base = cli_files
    calls = []

    def counted(*args, **options):
        calls.append(options.get("source"))
        return check_ablation_list(*args, **options)

    monkeypatch.setattr(shift, "check_ablation_list", counted)
    (tmp_path / "bad.txt").write_text("resid.0:1\nmlp.1:2\n")
    ablate = ["--ablate", str(tmp_path / "bad.txt"), "--out", str(tmp_path / "x")]
    assert main([*base, *ablate]) == 2
    assert "no dictionary for mlp.1" in capsys.readouterr().err
    assert calls == [tmp_path / "bad.txt"]


def test_cli_shift_refuses_bad_options_at_once(cli_files, tmp_path, capsys):
    """Options are checked before the model loads (here it does not exist) and leave no
    output folder; options that would be ignored are errors."""
    folder, base = cli_files
    (tmp_path / "ablate.txt").write_text("resid.0:1\n")
    no_model = [*base[:1], "--model", str(tmp_path / "missing"), *base[3:]]
    ablate_out = ["--ablate", str(tmp_path / "ablate.txt"), "--out", str(tmp_path / "x")]
    for options, message in (
        (["--attribution-share", "2"], "--attribution-share must be in (0, 1], not 2.0"),
        (["--attribution-examples", "1"], "--attribution-examples must be at least 2"),
        (["--judge-alpha", "0.1"], "--judge-alpha: only for --auto, not with --ablate"),
        (["--concept", str(folder / "test.jsonl"), "--judge-alpha", "0.1"],
         "--judge-alpha and --concept: only for --auto"),
    ):  # fmt: skip
        assert main([*no_model, *options, *ablate_out]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
        assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit, match="^2$") as exit_:
        main([*base, "--candidates", "3", "--attribution-share", "0.5", *ablate_out])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_shift_keeps_the_candidates_when_the_judge_marks_none(cli_files, tmp_path, capsys):
    """A concept set of one text in both groups: every candidate's AUROC is 0.5."""
    _, base = cli_files
    concept = [{"text": "a cat she was a nurse near a cat", "group": i % 2} for i in range(8)]
    (tmp_path / "concept.jsonl").write_text("".join(json.dumps(r) + "\n" for r in concept))
    out = tmp_path / "o"
    assert main([*base, "--auto", "--concept", str(tmp_path / "concept.jsonl"),
                 "--candidates", "5", "--attribution-examples", "4", "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "the judge marked none of the 5 candidate features as spurious" in err
    assert f"the candidates are in {out / 'candidates.md'}" in err
    rows = (out / "candidates.md").read_text().splitlines()[2:]
    assert len(rows) == 5
    for row in rows:  # AUROC 0.50, not judged spurious, not ablated
        assert "| 0.50 | no | no |" in row
    assert not (out / "results.json").exists()


def test_auroc_counts_the_pairs_it_orders_ties_half():
    """Against the pairwise definition, on scores with many ties (features that stay at 0)."""
    generator = torch.Generator().manual_seed(3)
    for _ in range(50):
        scores = torch.randint(0, 4, (30,), generator=generator).float()
        labels = torch.arange(30) % 2
        pos, neg = scores[labels == 1], scores[labels == 0]
        pairs = (pos[:, None] > neg).double() + 0.5 * (pos[:, None] == neg).double()
        assert auroc(scores, labels) == pytest.approx(float(pairs.mean()), abs=1e-12)


def test_places_choose_the_dictionaries(setup):
    _, adapter, dictionaries = setup
    assert list(_dictionaries_up_to(adapter, dictionaries, "resid.2", ("resid.1",))) == ["resid.1"]
    for places, message in (
        (("resid.2",), "places: resid.2 comes after the probe place resid.1"),
        (("mlp.0",), "places: no dictionary for mlp.0"),
    ):
        with pytest.raises(ValueError, match=message):
            _dictionaries_up_to(adapter, dictionaries, "resid.1", places)
    with pytest.raises(ValueError, match=r"^places must name at least one place \(None: all\)$"):
        ShiftConfig(place="resid.1", places=())
    data = bios(8, False, 0)
    config = ShiftConfig(place="resid.1", places=("resid.1",))
    with pytest.raises(ValueError, match=r"resid.0:1: resid.0 is not one of the places \['resid"):
        run_shift(None, adapter, dictionaries, data, data, config, ablate=[("resid.0", 1)])


def test_shift_at_the_probe_place_only(setup):
    model, adapter, dictionaries = setup
    config = ShiftConfig(place="resid.1", places=("resid.1",), candidates=6, probe_epochs=30,
                         label_tokens=0, attribution_examples=4)  # fmt: skip
    results = run_shift(
        model, adapter, dictionaries, bios(16, False, 0), bios(16, True, 1), config,
        ablate=[("resid.1", 2)], progress=False,
    )  # fmt: skip
    assert results["settings"]["places"] == ["resid.1"]
    assert {c["place"] for c in results["candidates"]} == {"resid.1"}
    assert all(ref.startswith("resid.1:") for ref in results["methods"]["random"]["ablated"])


def test_gap_closed_and_the_table_by_hand():
    def scores(worst, task, n=0):
        return {"worst_group_acc": worst, "task_acc": task, "spurious_acc": 0.5,
                "ablated": [f"resid.0:{i}" for i in range(n)]}  # fmt: skip

    results = {"methods": {"original": scores(0.2, 0.6), "shift": scores(0.5, 0.7, 3),
                           "oracle": scores(0.8, 0.9)}}  # fmt: skip
    assert gap_closed(results, "shift") == pytest.approx((0.5 - 0.2) / (0.8 - 0.2))
    assert gap_closed(results, "shift", metric="task_acc") == pytest.approx(0.1 / 0.3)
    rows = results_markdown(results).splitlines()
    assert rows[0].startswith("| method | worst group | task acc.")
    assert rows[3] == "| SHIFT | 0.500 | 0.700 | 0.500 | 0.50 | 3 |"
    assert rows[2] == "| original probe | 0.200 | 0.600 | 0.500 |  | 0 |"
    flat = {"methods": {**results["methods"], "oracle": scores(0.2, 0.9)}}
    assert math.isnan(gap_closed(flat, "shift"))


def test_parts_readout_splits_the_activation(setup):
    """The pooled activation is the pooled reconstruction plus the pooled error; the readout's
    group probe on the activation is a probe trained by hand on the same halves; after the
    ablation it reads the ablated activations."""
    from sparse_circuits.editing.shift_diagnostics import _split_parts, parts_readout

    model, adapter, dictionaries = setup
    test = bios(32, True, 5)
    config = ShiftConfig(place="resid.1", probe_epochs=40)
    ablated = [("resid.0", 3), ("resid.1", 5), ("resid.1", 7)]
    readout = parts_readout(model, adapter, dictionaries, test, config, ablated)
    texts = [d["text"] for d in test]
    parts = _pool(model, adapter, texts, "resid.1", batch_size=4,
                  read=_split_parts(dictionaries["resid.1"]))  # fmt: skip
    x, x_hat, err = parts.split(D_MODEL, dim=-1)
    assert torch.allclose(x, pooled_activations(model, adapter, texts, "resid.1"), atol=1e-5)
    assert torch.allclose(x, x_hat + err, atol=1e-5) and err.abs().max() > 1e-3
    fit, scored = _halves(test, random.Random(config.seed))
    for when, edits in (("before", []), ("after", zero_ablations(dictionaries, ablated, first=1))):
        X = {name: _pool(model, adapter, [d["text"] for d in rows], "resid.1", edits,
                         batch_size=4) for name, rows in (("fit", fit), ("scored", scored))}  # fmt: skip
        probe = train_probe(X["fit"], torch.tensor([d["group"] for d in fit]), epochs=40,
                            weight_decay=1e-2, seed=0)  # fmt: skip
        truth = torch.tensor([d["group"] for d in scored])
        expected = float((probe.predict(X["scored"]) == truth).float().mean())
        assert readout[when]["activation"]["group_acc"] == pytest.approx(expected)
    assert set(readout["after"]) == {"activation", "reconstruction", "error"}


def test_judge_every_feature_counts_by_hand(setup):
    from sparse_circuits.editing.shift_diagnostics import judge_every_feature

    model, adapter, dictionaries = setup
    concept = [{"text": r["text"], "group": r["group"]} for r in bios(24, True, 2)]
    config = ShiftConfig(place="resid.1", judge_alpha=1.0, judge_threshold=0.0)
    candidates = [{"place": "resid.0", "feature": f, "judged_spurious": f < 2} for f in range(6)]
    counts = judge_every_feature(model, adapter, dictionaries, concept, config, candidates)
    refs = [(p, i) for p in ("resid.0", "resid.1") for i in range(32)]
    pooled = pooled_features(model, adapter, dictionaries, [d["text"] for d in concept], refs)
    groups = torch.tensor([d["group"] for d in concept])
    correlated = {
        ref for column, ref in enumerate(refs)
        if auroc_p_value(auroc(pooled[:, column], groups), 12, 12) < 1.0 / len(refs)
    }  # fmt: skip
    assert correlated  # the test means something
    total = counts["total"]
    assert total["features"] == 64 and total["correlated"] == len(correlated)
    assert total["candidates"] == 6 and total["marked"] == 2
    assert total["in_candidates"] == len(correlated & {("resid.0", f) for f in range(6)})
    assert counts["by_place"]["resid.1"]["correlated"] == sum(p == "resid.1" for p, _ in correlated)


def test_cli_shift_reads_the_chosen_generators_files(cli_files, tmp_path, monkeypatch, capsys):
    """``--generator profiles`` without --train/--test/--concept reads that generator's
    shipped files (here a small set written into a folder it is pointed at); ``--places``
    limits the dictionaries used."""
    from sparse_circuits.editing import profiles

    _, base = cli_files
    folder = tmp_path / "profiles"
    profiles.write_profiles(folder, n_train=12, n_test=8, n_concept=8)
    monkeypatch.setattr(profiles, "GENERATOR", profiles.GENERATOR._replace(data_dir=folder))
    without_files = [*base[:7], *base[11:]]  # no --train / --test
    assert "--train" not in without_files and "--test" not in without_files
    out = tmp_path / "o"
    assert main([*without_files, "--generator", "profiles", "--places", "resid.1",
                 "--ablate", str(_ablation_file(tmp_path, "resid.1:2")), "--out", str(out)]) == 0  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["n_train"] == 12 and results["settings"]["n_eval"] == 4
    assert results["settings"]["places"] == ["resid.1"]
    assert (out / "results.md").read_text().count("\n") == 2 + len(results["methods"])
    capsys.readouterr()
    with pytest.raises(SystemExit, match="^2$"):
        main([*without_files, "--generator", "news", "--auto", "--out", str(out)])
    assert "argument --generator: invalid choice: 'news'" in capsys.readouterr().err


def _ablation_file(folder, *features):
    path = folder / "ablate.txt"
    path.write_text("".join(f + "\n" for f in features))
    return path
