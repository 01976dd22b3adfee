"""SAEBench's SCR, TPP and sparse probing against hand computations on planted latents; the
pooled ablation against the project's token-level ablation; the eval-dict command."""

import json

import numpy as np
import pytest
import torch

from sparse_circuits.cli import main
from sparse_circuits.editing.interventions import FeatureAblation
from sparse_circuits.editing.probe import LinearProbe, pooled_activations_at
from sparse_circuits.editing.saebench import (
    PooledSplit,
    SaebenchConfig,
    ablated,
    check_sae_at,
    pool_split,
    sparse_probing,
    spurious_correlation_removal,
    targeted_probe_perturbation,
    top_latents,
)
from sparse_circuits.errors import ConfigError

from .conftest import D_MODEL, random_dictionary, tiny_model

MALE, FEMALE, PROFESSOR, NURSE = 2, 3, 4, 5
"""Latents of the planted SCR set; 0 and 1 carry noise."""


def split_of(f_NF: torch.Tensor, **labels) -> PooledSplit:
    """A pooled split whose activations are its latents (``W_dec`` the identity, no error)."""
    return PooledSplit(f_NF.clone(), f_NF, {k: torch.tensor(v) for k, v in labels.items()})


def planted_scr_split(cells: list[tuple[int, int]], seed: int) -> PooledSplit:
    """One row per ``(profession, gender)`` cell: noise in latents 0 and 1, one-hot gender and
    profession in the latents named above."""
    generator = torch.Generator().manual_seed(seed)
    f_NF = torch.zeros(len(cells), 6)
    f_NF[:, :2] = torch.rand(len(cells), 2, generator=generator)
    for row, (label, group) in enumerate(cells):
        f_NF[row, MALE if group else FEMALE] = 1.0
        f_NF[row, PROFESSOR if label else NURSE] = 1.0
    return split_of(f_NF, profession=[c[0] for c in cells], gender=[c[1] for c in cells])


def probe(weights: dict[int, float], width: int, bias: float = 0.0) -> LinearProbe:
    weight = torch.zeros(width)
    for index, value in weights.items():
        weight[index] = value
    return LinearProbe(weight, bias)


BALANCED = [(label, group) for label in (0, 1) for group in (0, 1)] * 4


def test_scr_of_planted_gender_latents_by_hand():
    """The biased probe weighs gender twice as much as profession, so on the balanced test set
    it follows gender: 0.5 on profession, 1.0 on gender. Ablating the two gender latents
    leaves profession alone: 1.0, the clean probe's accuracy, SCR 1. Ablating only the female
    latent (the larger attribution) leaves only male nurses wrong: 0.75, SCR 0.5. The noise latents have no attribution (the gender
    probe ignores them), so N = 5 still ablates two. The reverse direction has no gap."""
    train, test = planted_scr_split(BALANCED, 0), planted_scr_split(BALANCED, 1)
    biased = probe({MALE: 2, FEMALE: -2, PROFESSOR: 1, NURSE: -1}, 6)
    probes = {
        "profession": probe({PROFESSOR: 1, NURSE: -1}, 6),
        "gender": probe({MALE: 1, FEMALE: -1.5}, 6),
    }
    result = spurious_correlation_removal(biased, probes, train, test, torch.eye(6), (1, 2, 5))
    assert result["biased_accuracy"] == {"profession": 0.5, "gender": 1.0}
    assert result["clean_accuracy"] == {"profession": 1.0, "gender": 1.0}
    assert result["dir1"]["scr"] == {"1": 0.5, "2": 1.0, "5": 1.0}
    assert result["dir1"]["accuracy_after"] == {"1": 0.75, "2": 1.0, "5": 1.0}
    assert result["dir1"]["n_ablated"] == {"1": 1, "2": 2, "5": 2}
    assert result["dir2"]["scr"] == {"1": None, "2": None, "5": None}
    assert result["direction"] == "dir1" and result["scr_metric"] == result["dir1"]["scr"]


def test_n_values_are_capped_at_the_width():
    split = planted_scr_split(BALANCED, 0)
    probes = {"profession": probe({PROFESSOR: 1}, 6), "gender": probe({MALE: 1}, 6)}
    result = spurious_correlation_removal(
        probes["profession"], probes, split, split, torch.eye(6), (2, 500, 100)
    )
    assert list(result["dir1"]["scr"]) == ["2", "6"]
    tpp = targeted_probe_perturbation(probes, split, split, torch.eye(6), (2, 500, 100))
    assert list(tpp["tpp_metric"]) == ["2", "6"]


def test_tpp_drops_by_hand():
    """Three tasks on latents ``[a, b, c, 1 - a, noise]``; ``c`` is 1 in a quarter of the rows,
    and its probe also reads ``a`` a little, which makes it wrong where ``a = 1, c = 0`` (3/8
    of the rows): clean accuracies 1, 1, 5/8. Each task's top latent (positive class only:
    ``1 - a`` counts for nobody though the probe of ``a`` weighs it) and the drops it causes:

    - a (latent 0): a falls to 1/2, c rises to 1 (drop -3/8): 1/2 - (0 - 3/8) / 2 = 11/16;
    - b (latent 1): b falls to 1/2: 1/2;
    - c (latent 2): c predicts ``a``, right in 1/2 of the rows (drop 1/8): 1/8.
    """
    rows = [(a, b, int(copy == 0)) for a in (0, 1) for b in (0, 1) for copy in range(4)]
    noise = torch.rand(len(rows), generator=torch.Generator().manual_seed(0))
    f_NF = torch.tensor([[a, b, c, 1 - a, 0.0] for a, b, c in rows])
    f_NF[:, 4] = noise
    split = split_of(f_NF, a=[r[0] for r in rows], b=[r[1] for r in rows], c=[r[2] for r in rows])
    probes = {
        "a": probe({0: 1, 3: -1}, 5, bias=-0.5),
        "b": probe({1: 1}, 5, bias=-0.5),
        "c": probe({2: 1, 0: 0.6}, 5, bias=-0.5),
    }
    result = targeted_probe_perturbation(probes, split, split, torch.eye(5), (1, 3))
    assert result["clean_accuracy"] == {"a": 1.0, "b": 1.0, "c": 5 / 8}
    expected = {
        "a": (1 / 2, (0 - 3 / 8) / 2),
        "b": (1 / 2, 0.0),
        "c": (1 / 8, 0.0),
    }
    for task, (intended, unintended) in expected.items():
        rows_of = result["per_task"][task]
        for n in ("1", "3"):  # each task has one latent with an attribution
            assert rows_of["intended"][n] == pytest.approx(intended)
            assert rows_of["unintended"][n] == pytest.approx(unintended)
            assert rows_of["total"][n] == pytest.approx(intended - unintended)
    assert result["tpp_metric"]["1"] == pytest.approx((11 / 16 + 1 / 2 + 1 / 8) / 3)


def test_top_latents_skip_latents_without_effect():
    effects = torch.tensor([0.0, 3.0, -1.0, 0.0, 2.0])
    assert top_latents(effects, 2).tolist() == [1, 4]
    assert top_latents(effects, 10).tolist() == [1, 4, 2]


def test_sparse_probing_selects_by_mean_difference():
    """The chosen latents are the columns ranked by a direct numpy mean difference; a latent
    that equals the label gives a perfect one-latent probe, and so does the activation."""
    generator = torch.Generator().manual_seed(3)

    def make(n):
        profession = torch.arange(n) % 2
        gender = (torch.arange(n) // 2) % 2
        f_NF = torch.rand(n, 8, generator=generator) * 0.3
        f_NF[:, 5] = profession.float()
        f_NF[:, 2] += 0.4 * profession
        f_NF[:, 6] = gender.float() * 2
        f_NF[:, 0] += 0.2 * gender
        x_ND = torch.randn(n, 4, generator=generator) * 0.1
        x_ND[:, 1] += profession - gender
        x_ND[:, 3] += profession + gender
        labels = {"profession": profession, "gender": gender}
        return PooledSplit(x_ND, f_NF, labels)

    train, test = make(64), make(32)
    options = {"epochs": 60, "weight_decay": 1e-3, "seed": 0}
    result = sparse_probing(train, test, (1, 2, 5), probe_options=options)
    for task in ("profession", "gender"):
        f = train.f_NF.numpy()
        y = train.labels[task].numpy()
        gaps = [abs(f[y == 1, j].mean() - f[y == 0, j].mean()) for j in range(f.shape[1])]
        ranking = list(np.argsort(gaps)[::-1])
        for k in (1, 2, 5):
            assert result[f"sae_top_{k}_latents"][task] == ranking[:k]
        assert result["sae_top_1"][task] == 1.0
        assert result["llm"][task] == 1.0
    assert set(result) >= {"llm", "llm_top_1", "llm_top_4", "sae", "sae_top_5"}  # 4 dimensions
    assert "llm_top_5" not in result
    assert result["llm_top_1"]["mean"] == pytest.approx(
        (result["llm_top_1"]["profession"] + result["llm_top_1"]["gender"]) / 2
    )


TEXTS = [
    {"text": "the man he was a professor near the cabinet", "label": 1, "group": 1},
    {"text": "a woman she is a nurse", "label": 0, "group": 0},
    {"text": "the keys to the cabinet are near the dogs that run", "label": 1, "group": 0},
    {"text": "he runs", "label": 0, "group": 1},
]


def test_pooled_ablation_is_the_token_ablation_pooled():
    """``ablated`` on pooled values equals ``FeatureAblation`` (zero, error kept) at every token
    followed by the probe's pooling."""
    model, adapter = tiny_model("llama", seed=4)
    dictionary = random_dictionary("relu", D_MODEL, 32, seed=1)
    split = pool_split(model, adapter, dictionary, "resid.1", TEXTS, batch_size=3)
    latents = split.f_NF.mean(0).topk(4).indices  # the most active: the ablation moves much
    ablation = FeatureAblation("resid.1", dictionary, latents.tolist())

    def edit(x_BTD):
        positions_BT = torch.arange(x_BTD.shape[1]).expand(x_BTD.shape[:2])
        return ablation.apply(x_BTD, positions_BT)

    texts = [e["text"] for e in TEXTS]
    by_tokens = pooled_activations_at(
        model, adapter, texts, ["resid.1"], encoders={"resid.1": edit}
    )["resid.1"]
    plain = pooled_activations_at(model, adapter, texts, ["resid.1"])["resid.1"]
    assert torch.allclose(split.x_ND, plain, atol=1e-6)
    pooled = ablated(split, dictionary.W_dec.detach(), latents)
    assert torch.allclose(pooled, by_tokens, atol=1e-6)
    assert (by_tokens - plain).abs().max() > 1e-3
    assert split.labels["profession"].tolist() == [1, 0, 1, 0]


def test_transcoders_are_refused():
    _, adapter = tiny_model("llama")
    transcoder = random_dictionary("relu", D_MODEL, 32, place="mlp_in.1", writes="mlp.1")
    with pytest.raises(ValueError, match=r"^t/c: the saebench suite ablates SAE latents"):
        check_sae_at(adapter, transcoder, "mlp.1", source="t/c")


def test_config_is_validated():
    for bad in (
        {"n_train": 6},
        {"n_biased": 3},
        {"n_values": ()},
        {"k_values": (0, 2)},
        {"generator": "novels"},
    ):
        with pytest.raises(ConfigError):
            SaebenchConfig(**bad)


@pytest.fixture(scope="module")
def cli_folder(tmp_path_factory):
    """A saved tiny model and SAEs: one that fits resid.1, one too narrow, one at a place the
    model lacks."""
    model, _ = tiny_model("llama", seed=5)
    folder = tmp_path_factory.mktemp("saebench")
    model._module.save_pretrained(folder / "model")
    model.tokenizer.save_pretrained(folder / "model")
    random_dictionary("topk", D_MODEL, 32, seed=2, place="resid.1").save(folder / "sae")
    random_dictionary("relu", 8, 32, place="resid.1").save(folder / "narrow")
    random_dictionary("relu", D_MODEL, 32, place="resid.7").save(folder / "far")
    return folder


def test_cli_eval_dict_saebench(cli_folder, capsys):
    sizes = ["--biased-examples", "8", "--train-examples", "8", "--test-examples", "8"]
    model = ["--model", str(cli_folder / "model"), "--precision", "float32"]
    args = ["eval-dict", *model, "--suite", "saebench", "--generator", "profiles", *sizes]
    code = main([*args, "--dict", str(cli_folder / "sae"), "--n-values", "2,5,100"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["scr"]["scr_metric"]) == ["2", "5", "32"]
    assert list(result["tpp"]["tpp_metric"]) == ["2", "5", "32"]
    assert set(result["sparse_probing"]) >= {"llm", "sae_top_1", "sae_top_2", "sae_top_5"}
    settings = result["settings"]
    assert settings["dictionary"] == str(cli_folder / "sae") and settings["place"] == "resid.1"
    assert settings["data"]["balanced_test"] == 8 and settings["data"]["generator"] == "profiles"
    assert settings["config"]["seed"] == 0
    assert settings["precision"] == "float32"


def test_cli_eval_dict_refuses_bad_input(cli_folder, capsys):
    base = ["eval-dict", "--model", str(cli_folder / "model"), "--precision", "float32"]
    with pytest.raises(SystemExit) as stop:
        main([*base, "--dict", str(cli_folder / "sae"), "--suite", "everything"])
    assert stop.value.code == 2 and "invalid choice: 'everything'" in capsys.readouterr().err
    for folder, message in (
        ("narrow", "has d_in 8, but resid.1 of this llama model has width 16"),
        ("far", "unknown place 'resid.7'"),
    ):
        code = main([*base, "--dict", str(cli_folder / folder), "--suite", "saebench"])
        lines = [
            line
            for line in capsys.readouterr().err.splitlines()
            if not line.startswith("sparse-circuits: precision")  # said once per process
        ]
        assert code == 2 and len(lines) == 1 and message in lines[0]
        assert lines[0].startswith(f"error: {cli_folder / folder}: ")
    for extra, message in (
        (["--suite", "saebench", "--train-examples", "6"], "--train-examples must be a multiple"),
        (["--suite", "saebench", "--histogram", "h.html"], "--histogram: only for --suite core"),
        (["--generator", "profiles"], "--generator: only for --suite saebench"),
    ):
        code = main([*base, "--dict", str(cli_folder / "sae"), *extra])
        assert code == 2 and message in capsys.readouterr().err
