"""SAEBench's probe metrics for one dictionary at its place in a model (Karvonen et al. 2025,
"SAEBench: a comprehensive benchmark for sparse autoencoders"; SCR and TPP from Karvonen et
al. 2024, "Evaluating sparse autoencoders on targeted concept removal tasks"), on the
biographies of ``editing.biography_sets`` instead of Bias in Bios.

1. Data: a biased train split (every professor a man, every nurse a woman), a balanced train
   split and a balanced test split with held-out names, drawn from one generator.
2. Pool each text at the dictionary's place (the mean over positions after the first, as the
   SHIFT probes do) together with the dictionary's latents pooled the same way; one partial
   forward pass per split, and none after it: zero-ablating latents at every token with the
   error kept and pooling afterwards equals subtracting their pooled activations times their
   decoder rows from the pooled activation (``ablated``), since pooling is a mean and the
   decoder affine.
3. Probes (``editing.probe.train_probe``): the biased probe (profession on the biased split)
   and one probe per task (profession, gender) on the balanced split.
4. SCR: rank latents by ``|mean difference between the spurious attribute's classes x
   (decoder row . that attribute's probe)|`` on the balanced train split, zero-ablate the top
   N and score the biased probe on the test split's other attribute:
   ``(acc_ablated - acc_biased) / (acc_clean - acc_biased)``, ``acc_clean`` that attribute's
   own probe. Both directions are computed (remove gender to recover profession, and the
   reverse); the reported metric is the direction the biased probe is worse at, as in SAEBench.
5. TPP: per task, rank latents by the same attribution with the mean difference clamped at
   zero (latents of the positive class only), zero-ablate the top N and take the test
   accuracy drop of that task's probe minus the mean drop of the other tasks' probes;
   averaged over the tasks.
6. Sparse probing: per task, the k latents (and, as the baseline, the k model dimensions) with
   the largest ``|difference of class means|`` on the balanced train split, a probe on those k
   alone, its test accuracy; and probes on every latent and on the full activation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from sparse_circuits.circuits.model.splice import cast_dictionaries, check_dictionaries
from sparse_circuits.dictionaries import Dictionary, DictionaryError
from sparse_circuits.dictionaries.evaluation import eval_mode
from sparse_circuits.editing.biography_sets import GENERATORS, generator
from sparse_circuits.editing.probe import LinearProbe, pooled_activations_at, train_probe
from sparse_circuits.errors import ConfigError
from sparse_circuits.precision import precision_name

__all__ = [
    "SUITES",
    "TASKS",
    "PooledSplit",
    "SaebenchConfig",
    "ablated",
    "accuracy",
    "check_sae_at",
    "class_mean_difference",
    "latent_effects",
    "mean_difference_ranking",
    "pool_split",
    "run_saebench",
    "spurious_correlation_removal",
    "sparse_probing",
    "targeted_probe_perturbation",
    "top_latents",
]

SUITES = ("core", "saebench")
"""What ``eval-dict --suite`` runs: ``core``, the reconstruction and downstream-loss metrics of
``circuits.training.evaluation``, or ``saebench``, this module's probe metrics."""
TASKS = {"profession": "label", "gender": "group"}
"""Binary task -> the field of a biography that labels it (1: professor, male)."""


@dataclass
class SaebenchConfig:
    generator: str = "bios"
    """Which biography generator draws the texts (``editing.biography_sets.GENERATORS``)."""
    n_biased: int = 400
    """Texts of the biased train split (half male professors, half female nurses); SAEBench:
    4000."""
    n_train: int = 400
    """Texts of the balanced train split (a quarter per profession and gender); SAEBench:
    4000 per probe."""
    n_test: int = 400
    """Texts of the balanced test split, names held out; SAEBench: 1000."""
    n_values: tuple[int, ...] = (2, 5, 10, 20, 50, 100, 500)
    """Numbers of latents SCR and TPP ablate (SAEBench's), each capped at the width."""
    k_values: tuple[int, ...] = (1, 2, 5)
    """Numbers of latents the sparse probes read (SAEBench's)."""
    probe_epochs: int = 300
    """Full-batch Adam steps of each probe (``train_probe``)."""
    probe_weight_decay: float = 1e-2
    """L2 penalty of the probes on their standardised weights (SHIFT's)."""
    batch_size: int = 16
    """Texts per forward pass."""
    seed: int = 0
    """Seeds the texts drawn and the probes."""

    def __post_init__(self) -> None:
        self.n_values, self.k_values = tuple(self.n_values), tuple(self.k_values)
        if self.generator not in GENERATORS:
            raise ConfigError(f"generator must be one of {GENERATORS}, not {self.generator!r}")
        if self.n_biased < 2 or self.n_biased % 2:
            raise ConfigError(f"n_biased must be even and >= 2, not {self.n_biased}")
        for name in ("n_train", "n_test"):
            value = getattr(self, name)
            if value < 4 or value % 4:
                raise ConfigError(
                    f"{name} must be a multiple of 4 (one quarter a cell), not {value}"
                )
        for name in ("n_values", "k_values"):
            values = getattr(self, name)
            if not values or min(values) < 1:
                raise ConfigError(f"{name} must be positive numbers, not {values}")
        if self.probe_epochs < 1 or self.batch_size < 1:
            raise ConfigError("probe_epochs and batch_size must be positive")
        if self.probe_weight_decay < 0:
            raise ConfigError(f"probe_weight_decay must be >= 0, not {self.probe_weight_decay}")


class PooledSplit(NamedTuple):
    """One split, pooled at the dictionary's place."""

    x_ND: torch.Tensor
    """``(N, d_in)`` float32 mean-pooled activations."""
    f_NF: torch.Tensor
    """``(N, d_sae)`` float32 mean-pooled latent activations."""
    labels: dict[str, torch.Tensor]
    """Task -> ``(N,)`` long labels, 0 or 1."""


# --------------------------------------------------------------------------- pieces


def ablated(split: PooledSplit, W_dec_FD: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """``(N, d_in)``: the pooled activations had ``latents`` been zero-ablated at every pooled
    token with the error kept (``FeatureAblation``, mode zero): each token's activation moves
    by ``-f_S @ W_dec[S]``, so its mean moves by the pooled ``-f_S @ W_dec[S]``."""
    W_dec_SD = W_dec_FD[latents].float()
    return split.x_ND - split.f_NF[:, latents] @ W_dec_SD


def accuracy(probe: LinearProbe, X_ND: torch.Tensor, y_N: torch.Tensor) -> float:
    """The share of rows where the probe predicts ``y``."""
    return (probe.predict(X_ND) == y_N).float().mean().item()


def latent_effects(
    split: PooledSplit,
    task: str,
    probe: LinearProbe,
    W_dec_FD: torch.Tensor,
    *,
    positive_class_only: bool,
) -> torch.Tensor:
    """``(d_sae,)``: each latent's attribution to ``probe``, ``(mean f over the task's class 1
    - over class 0) * (W_dec[f] . probe weight)``; with ``positive_class_only`` (TPP) the
    mean difference is clamped at zero first, else (SCR) the product's magnitude is taken."""
    difference_F = class_mean_difference(split.f_NF, split.labels[task])
    if positive_class_only:
        difference_F = difference_F.clamp_min(0)
    effect_F = difference_F * (W_dec_FD.float() @ probe.weight)
    return effect_F if positive_class_only else effect_F.abs()


def top_latents(effects_F: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` latents of largest effect among those with an effect other than zero (fewer
    when fewer have one). SAEBench counts the latents with an effect the same way but then
    takes the top of all of them, where a latent without effect outranks a negative one."""
    with_effect_F = effects_F != 0
    ranked_F = effects_F.masked_fill(~with_effect_F, -math.inf)
    return ranked_F.topk(min(n, int(with_effect_F.sum()))).indices


def class_mean_difference(X_NF: torch.Tensor, y_N: torch.Tensor) -> torch.Tensor:
    """``(F,)``: the mean of each column over the rows with ``y = 1`` minus over ``y = 0``."""
    y_N = y_N.bool()
    return X_NF[y_N].mean(0) - X_NF[~y_N].mean(0)


def mean_difference_ranking(X_NF: torch.Tensor, y_N: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` columns with the largest ``|mean over y = 1 - mean over y = 0|``."""
    gap_F = class_mean_difference(X_NF, y_N).abs()
    return gap_F.topk(min(k, len(gap_F))).indices


def _capped(values: Sequence[int], width: int) -> list[int]:
    return sorted({min(v, width) for v in values})


# --------------------------------------------------------------------------- the metrics


def spurious_correlation_removal(
    biased_probe: LinearProbe,
    probes: Mapping[str, LinearProbe],
    train: PooledSplit,
    test: PooledSplit,
    W_dec_FD: torch.Tensor,
    n_values: Sequence[int],
) -> dict[str, Any]:
    """SCR per number of ablated latents. ``biased_probe`` was trained where profession and
    gender agree; ``probes`` hold each task's probe from the balanced split. Direction 1
    ablates the gender latents and scores the biased probe on profession, direction 2 the
    reverse; ``scr_metric`` is direction 1 unless the biased probe is better at profession than
    at gender. A score is ``None`` where the clean probe does no better than the biased one."""
    first, second = TASKS
    directions = {"dir1": (first, second), "dir2": (second, first)}
    result: dict[str, Any] = {"biased_accuracy": {}, "clean_accuracy": {}}
    for name, (target, spurious) in directions.items():
        y_N = test.labels[target]
        biased = accuracy(biased_probe, test.x_ND, y_N)
        clean = accuracy(probes[target], test.x_ND, y_N)
        result["biased_accuracy"][target] = biased
        result["clean_accuracy"][target] = clean
        effects_F = latent_effects(
            train, spurious, probes[spurious], W_dec_FD, positive_class_only=False
        )
        scores, accuracies, counts = {}, {}, {}
        for n in _capped(n_values, len(effects_F)):
            latents = top_latents(effects_F, n)
            after = accuracy(biased_probe, ablated(test, W_dec_FD, latents), y_N)
            gap = clean - biased
            scores[str(n)] = (after - biased) / gap if gap != 0 else None
            accuracies[str(n)] = after
            counts[str(n)] = len(latents)
        result[name] = {
            "removed": spurious,
            "scored_on": target,
            "scr": scores,
            "accuracy_after": accuracies,
            "n_ablated": counts,
        }
    worse_at_first = result["biased_accuracy"][first] <= result["biased_accuracy"][second]
    result["direction"] = "dir1" if worse_at_first else "dir2"
    result["scr_metric"] = result[result["direction"]]["scr"]
    return result


def targeted_probe_perturbation(
    probes: Mapping[str, LinearProbe],
    train: PooledSplit,
    test: PooledSplit,
    W_dec_FD: torch.Tensor,
    n_values: Sequence[int],
) -> dict[str, Any]:
    """TPP per number of ablated latents: for each task ``i`` ablate its top latents (positive
    class attribution), ``intended`` = the test accuracy drop of probe ``i``, ``unintended`` =
    the mean drop of the other probes, ``total`` = intended - unintended; ``tpp_metric`` and
    the other means are over the tasks."""
    clean = {task: accuracy(p, test.x_ND, test.labels[task]) for task, p in probes.items()}
    per_task: dict[str, dict[str, dict[str, float]]] = {}
    n_capped = _capped(n_values, W_dec_FD.shape[0])
    for task, probe in probes.items():
        effects_F = latent_effects(train, task, probe, W_dec_FD, positive_class_only=True)
        rows: dict[str, dict[str, float]] = {"intended": {}, "unintended": {}, "total": {}}
        for n in n_capped:
            X_ND = ablated(test, W_dec_FD, top_latents(effects_F, n))
            drops = {
                other: clean[other] - accuracy(p, X_ND, test.labels[other])
                for other, p in probes.items()
            }
            others = [drop for other, drop in drops.items() if other != task]
            rows["intended"][str(n)] = drops[task]
            rows["unintended"][str(n)] = sum(others) / len(others)
            rows["total"][str(n)] = drops[task] - rows["unintended"][str(n)]
        per_task[task] = rows
    mean = {
        what: {str(n): sum(r[what][str(n)] for r in per_task.values()) / len(per_task)
               for n in n_capped}
        for what in ("intended", "unintended", "total")
    }  # fmt: skip
    return {
        "tpp_metric": mean["total"],
        "intended": mean["intended"],
        "unintended": mean["unintended"],
        "per_task": per_task,
        "clean_accuracy": clean,
    }


def sparse_probing(
    train: PooledSplit,
    test: PooledSplit,
    k_values: Sequence[int],
    *,
    probe_options: Mapping[str, Any],
) -> dict[str, Any]:
    """Test accuracy per task of probes on the activation (``llm``) and on the latents
    (``sae``): on all of them, and on the top ``k`` by ``mean_difference_ranking`` on the
    train split (``llm_top_k``, ``sae_top_k``); each with the mean over the tasks. The chosen
    latents are listed under ``sae_top_k_latents``."""
    sources = {"llm": (train.x_ND, test.x_ND), "sae": (train.f_NF, test.f_NF)}
    result: dict[str, Any] = {}
    chosen: dict[str, dict[str, list[int]]] = {}
    for task in TASKS:
        y_train, y_test = train.labels[task], test.labels[task]
        for source, (X_train, X_test) in sources.items():
            columns = {source: None}
            for k in _capped(k_values, X_train.shape[1]):
                columns[f"{source}_top_{k}"] = mean_difference_ranking(X_train, y_train, k)
            for name, index in columns.items():
                train_X = X_train if index is None else X_train[:, index]
                test_X = X_test if index is None else X_test[:, index]
                probe = train_probe(train_X, y_train, **probe_options)
                result.setdefault(name, {})[task] = accuracy(probe, test_X, y_test)
                if source == "sae" and index is not None:
                    chosen.setdefault(f"{name}_latents", {})[task] = index.tolist()
    for accuracies in result.values():
        accuracies["mean"] = sum(accuracies[t] for t in TASKS) / len(TASKS)
    return {**result, **chosen}


# --------------------------------------------------------------------------- end to end


def _draw(config: SaebenchConfig) -> dict[str, list[dict[str, Any]]]:
    """The three splits: biased and balanced train (train names, no text twice), balanced
    test (held-out names)."""
    draw = generator(config.generator).generate
    biased = draw(config.n_biased, split="ambiguous", seed=config.seed, names="train")
    train = draw(
        config.n_train, split="balanced", seed=config.seed, names="train",
        exclude={e["text"] for e in biased},
    )  # fmt: skip
    test = draw(config.n_test, split="balanced", seed=config.seed, names="test")
    return {"biased": biased, "train": train, "test": test}


def pool_split(
    model: Any,
    adapter: Any,
    dictionary: Dictionary,
    place: str,
    examples: Sequence[Mapping[str, Any]],
    *,
    batch_size: int = 16,
    progress: str | None = None,
) -> PooledSplit:
    """Biographies ``{"text", "label", "group"}`` pooled at ``place``: each token's activation
    and its latents side by side through one encoder, so one partial forward pass gives both."""

    def with_latents(x_BTD: torch.Tensor) -> torch.Tensor:
        return torch.cat([x_BTD.float(), dictionary.encode(x_BTD).float()], dim=-1)

    pooled = pooled_activations_at(
        model, adapter, [e["text"] for e in examples], [place], batch_size=batch_size,
        encoders={place: with_latents}, progress=progress,
    )[place]  # fmt: skip
    labels = {task: torch.tensor([e[field] for e in examples]) for task, field in TASKS.items()}
    return PooledSplit(pooled[:, : dictionary.d_in], pooled[:, dictionary.d_in :], labels)


def check_sae_at(
    adapter: Any, dictionary: Dictionary, place: str, *, source: str | Path | None = None
) -> None:
    """Raise ``DictionaryError`` (naming ``source``, the dictionary's folder, when given)
    unless ``dictionary`` is an SAE that fits ``place`` of the model."""
    try:
        if dictionary.config.is_transcoder:
            raise DictionaryError(
                f"the saebench suite ablates SAE latents where it reads; this is a transcoder "
                f"({dictionary.config.place} -> {dictionary.config.writes})"
            )
        check_dictionaries(adapter, {place: dictionary})
    except ValueError as error:
        raise DictionaryError(str(error) if source is None else f"{source}: {error}") from None


def run_saebench(
    model: Any,
    adapter: Any,
    dictionary: Dictionary,
    config: SaebenchConfig,
    *,
    place: str | None = None,
    source: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """SCR, TPP and sparse probing of ``dictionary`` at ``place`` (default: its own), with the
    settings they were measured with (``settings`` added to them). The dictionary is checked
    against the model before any forward pass (errors name ``source``)."""
    started = time.perf_counter()
    place = place or dictionary.config.place
    if place is None:
        raise DictionaryError(f"{source or 'the dictionary'}: no place given or recorded")
    check_sae_at(adapter, dictionary, place, source=source)
    (dictionary,) = cast_dictionaries({place: dictionary}, adapter.dtype).values()
    examples = _draw(config)
    with eval_mode(dictionary):
        pooled = {
            name: pool_split(
                model, adapter, dictionary, place, rows, batch_size=config.batch_size,
                progress=f"pooling the {name} split",
            )
            for name, rows in examples.items()
        }  # fmt: skip
    probe_options = {
        "epochs": config.probe_epochs,
        "weight_decay": config.probe_weight_decay,
        "seed": config.seed,
    }
    biased, train, test = pooled["biased"], pooled["train"], pooled["test"]
    biased_probe = train_probe(biased.x_ND, biased.labels["profession"], **probe_options)
    probes = {task: train_probe(train.x_ND, train.labels[task], **probe_options) for task in TASKS}
    W_dec_FD = dictionary.W_dec.detach().float().cpu()
    result = {
        "scr": spurious_correlation_removal(
            biased_probe, probes, train, test, W_dec_FD, config.n_values
        ),
        "tpp": targeted_probe_perturbation(probes, train, test, W_dec_FD, config.n_values),
        "sparse_probing": sparse_probing(train, test, config.k_values, probe_options=probe_options),
    }
    result["settings"] = {
        **dict(settings or {}),
        "suite": "saebench",
        "place": place,
        "d_sae": dictionary.d_sae,
        "precision": precision_name(adapter.dtype),
        "data": {
            "generator": config.generator,
            "biased_train": len(examples["biased"]),
            "balanced_train": len(examples["train"]),
            "balanced_test": len(examples["test"]),
            "test_names": "held out (the generator's test pool)",
        },
        "pooling": "mean over every position after the first",
        "ablation": "zero, error kept, at the dictionary's place",
        "probe": "editing.probe.train_probe: standardised inputs, full-batch Adam, L2",
        "n_values": _capped(config.n_values, dictionary.d_sae),
        "config": asdict(config),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return result
