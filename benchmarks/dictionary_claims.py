"""Published claims about dictionary architectures, reproduced at small scale on one place.

Claims, each tested with the same token budget, data and data order for every run:

(a) Gated SAEs (Rajamanoharan et al. 2024, "Improving Dictionary Learning with Gated Sparse
    Autoencoders", fig. 1) and TopK SAEs (Gao et al. 2024, "Scaling and evaluating sparse
    autoencoders", fig. 2) reach a lower FVU than ReLU+L1 at equal L0;
(b) Gated SAEs shrink less: their relative reconstruction bias ``gamma`` (Rajamanoharan et al.
    section 5.1; ``dictionaries.evaluation``) is closer to 1, and ReLU+L1's is below 1;
(c) the AuxK loss (Gao et al. appendix A.2) lowers the dead-latent fraction of TopK (pairs
    with and without it at ``--auxk-d-sae`` latents, in the settings of ``AUXK_RUNS``).

1. Collect activations at ``--place`` from the embedded corpus once, with the project's
   ``ModelActivationSource`` (first position and norm outliers dropped), training rows and
   evaluation rows from disjoint contexts; both are held in memory.
2. Train every run of the sweep (ReLU+L1 and Gated at several L1 coefficients, TopK at several
   k; for (c) wider TopK pairs with and without AuxK) with ``DictionaryTrainer`` on a
   ``TensorSource`` of the same rows: same seed, batch size and number of steps for all; the
   learning rates each architecture was published with (``L1_LR``), ``--topk-lr`` or the
   trainers' defaults otherwise (times the multiple of ``AUXK_RUNS`` for (c)); the (c) runs
   count a latent dead after ``--dead-after-tokens`` (default: the trainer's window).
3. Evaluate each on the held-out rows (``reconstruction_metrics``: FVU, L0, shrinkage, and the
   dead fraction over all ``--eval-tokens``).
4. Compare architectures at equal L0: interpolate each one's FVU (and ``gamma``) linearly in
   log L0, at L0 values inside both architectures' ranges. Print the runs as a markdown
   table, the interpolated comparison, one line per claim (for (c) with each pair's dead
   window), and write the FVU-vs-L0 plot.

    python benchmarks/dictionary_claims.py [--claims abc] [--place resid.12] [--tokens 480000]
        [--epochs 4] [--eval-tokens 50000] [--d-sae 2048] [--auxk-d-sae 16384] [--threads 1]
        [--topk-lr LR] [--dead-after-tokens N] [--cache FILE]
        [--plot benchmarks/out/dictionary_claims.html]

The plot is plotly HTML: plotly is the project's plotting dependency, and PNG would need kaleido.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from arguments import positive
from tqdm.auto import tqdm

from sparse_circuits.circuits.model.activations import ActivationConfig, ModelActivationSource
from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.circuits.training.train import corpus_contexts
from sparse_circuits.dictionaries.evaluation import reconstruction_metrics
from sparse_circuits.dictionaries.training import (
    DictionaryTrainer,
    TensorSource,
    TrainConfig,
    TrainConfigError,
)
from sparse_circuits.files import atomic_path

RELU_L1 = (1.0, 2.0, 4.0)
GATED_L1 = (2.0, 4.0, 8.0)
"""L1 sweeps around the trainers' default of 5 (Anthropic, April 2024 update), placed to cover
TopK's L0 range. Measured at the default budget with (1, 2, 4, 8) for both: ReLU L0 180, 70,
17, 1.7 (FVU 0.96: collapsed) and Gated L0 298, 142, 57, 16, so ReLU drops 8 and Gated 1."""
TOPK_KS = (16, 32, 64)
"""TopK sweep: the L0 range the L1 sweep reaches."""
AUXK_RUNS = ((8, 1.0), (32, 1.0), (8, 10.0), (32, 10.0))
"""Claim (c): ``(k, learning-rate multiple of --topk-lr or the TopK default)`` of the TopK
pairs trained with and without AuxK at ``--auxk-d-sae`` latents. At 2048 latents, and at 16384
with k 32 and the default rate, no latent dies in this budget (measured), so there is nothing
for AuxK to revive; a smaller k or a larger rate lets latents die."""
L1_LR = 3e-4
"""Learning rate of ReLU and Gated: the Gated SAE paper's, for Gated and the ReLU baseline
(its authors, on LessWrong: 3e-4 "for all Gated SAE experiments", swept for the baseline).
The trainers' default, 5e-5, is meant for runs of 10^5 steps: after this benchmark's ~470
steps both are still dense (measured: L0 620 of 2048 at coefficient 5, FVU 0.34-0.38). TopK
keeps its default (Gao et al.'s 1/sqrt(d_sae) scaling, 5.7e-4 at 2048 latents)."""
EVAL_BATCH = 4096
"""Rows per evaluation batch."""
THREADS_HELP = (
    "torch threads (default 1: on 2 shared cores, measured 48 ms per TopK step with 1 thread "
    "against 800 ms with 2 while other processes ran; on an idle machine 2 are faster)"
)
GRID_POINTS = 5
"""L0 values at which two architectures are compared, log-spaced over their shared range."""


@dataclass(frozen=True)
class Run:
    arch: str
    """``relu``, ``gated`` or ``topk``: the dictionary architecture."""
    label: str
    """Curve the run belongs to (``topk`` and ``topk, no AuxK`` are separate curves)."""
    setting: str
    """What varies along the curve, for the table (``l1=5``, ``k=32``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """``TrainConfig`` fields besides the shared ones (they win over them)."""


@dataclass
class Result:
    run: Run
    metrics: dict[str, Any]
    """``reconstruction_metrics`` on the held-out rows."""
    history: list[dict[str, float]]
    """The trainer's log entries (``step``, ``dead_fraction``, ``auxk_nmse``, ...); the last
    is the final step."""
    dead_window: int
    """Tokens without firing after which the trainer counted a latent dead."""
    seconds: float

    @property
    def train_dead(self) -> float:
        """Dead fraction the trainer saw at the end (no firing within its dead window)."""
        return self.history[-1]["dead_fraction"]

    @property
    def peak_train_dead(self) -> float:
        """The largest dead fraction the trainer logged."""
        return max(entry["dead_fraction"] for entry in self.history)

    @property
    def auxk_nmse(self) -> float | None:
        """The AuxK term's normalised MSE at the last logged step with dead latents (1 = what
        predicting zero gives; above 1 its gradient pushes the dead latents' activations
        down)."""
        logged = [entry["auxk_nmse"] for entry in self.history if "auxk_nmse" in entry]
        return logged[-1] if logged else None


def topk_lr_at(topk_lr: float | None, d_sae: int) -> float:
    """``topk_lr``, or the trainer's TopK default at ``d_sae`` latents when it is ``None``."""
    if topk_lr is not None:
        return topk_lr
    return TrainConfig(arch="topk", d_sae=d_sae, k=1, steps=1).peak_lr


def sweep(
    claims: str,
    *,
    l1_lr: float,
    topk_lr: float | None,
    auxk_d_sae: int,
    dead_after_tokens: int | None = None,
) -> list[Run]:
    """The runs the ``claims`` (a subset of ``abc``) need; ``topk_lr=None`` keeps the trainer's
    TopK default, ``dead_after_tokens=None`` its dead window (in the (c) runs)."""

    def l1(arch: str, c: float) -> Run:
        return Run(arch, arch, f"l1={c:g}", {"l1_coefficient": c, "lr": l1_lr})

    runs = []
    if "a" in claims or "b" in claims:
        runs += [l1("relu", c) for c in RELU_L1] + [l1("gated", c) for c in GATED_L1]
    if "a" in claims:
        runs += [Run("topk", "topk", f"k={k}", {"k": k, "lr": topk_lr}) for k in TOPK_KS]
    if "c" in claims:
        base_lr = topk_lr_at(topk_lr, auxk_d_sae)
        for k, scale in AUXK_RUNS:
            options = {
                "k": k,
                "d_sae": auxk_d_sae,
                "lr": scale * base_lr,
                "dead_after_tokens": dead_after_tokens,
            }
            setting = f"k={k}, lr={scale:g}x"
            runs.append(Run("topk", f"topk {auxk_d_sae}", setting, options))
            runs.append(
                Run("topk", f"topk {auxk_d_sae}, no AuxK", setting, {**options, "auxk_alpha": 0.0})
            )
    return runs


# --------------------------------------------------------------------------- 1. activations


def draw_rows(source: ModelActivationSource, n: int, desc: str) -> torch.Tensor:
    """``(n, d_in)``: the source's next ``n`` rows, with a progress bar."""
    parts, have = [], 0
    with tqdm(total=n, desc=desc, unit="tok", unit_scale=True) as bar:
        while have < n:
            x, _ = source.next_batch(min(EVAL_BATCH, n - have))
            parts.append(x)
            have += len(x)
            bar.update(len(x))
    return torch.cat(parts)


def collect(
    model_name: str, place: str, n_train: int, n_eval: int, *, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training rows ``(n_train, d)`` and evaluation rows ``(n_eval, d)`` at ``place``, from
    disjoint contexts: the evaluation ones are the corpus's last (its documents are shuffled)."""
    model, adapter = load_model(model_name)
    split = corpus_contexts(model.tokenizer)
    contexts_NT = torch.cat([split.train, split.eval])
    # Each context gives T - 1 rows (BOS dropped); 2% spare for the dropped outliers, and one
    # model batch more, which the last refill may take beyond what is needed.
    train_config = ActivationConfig(place=place, buffer_tokens=16_384, seed=seed)
    n_eval_contexts = math.ceil(1.02 * n_eval / (contexts_NT.shape[1] - 1))
    n_eval_contexts += train_config.model_batch
    if n_eval_contexts >= len(contexts_NT):
        raise SystemExit(f"--eval-tokens {n_eval} needs more than the whole corpus")
    # Buffers: a small one wastes little at the end (TensorSource reshuffles the rows anyway);
    # none for evaluation, so that it never reads past its contexts.
    eval_config = dataclasses.replace(train_config, buffer_tokens=1)
    train_source = ModelActivationSource(
        model, adapter, contexts_NT[:-n_eval_contexts], train_config
    )
    eval_source = ModelActivationSource(model, adapter, contexts_NT[-n_eval_contexts:], eval_config)
    eval_ND = draw_rows(eval_source, n_eval, f"eval activations {place}")
    if eval_source.epoch > 0:
        raise RuntimeError("evaluation contexts ran out: rows would repeat")
    train_ND = draw_rows(train_source, n_train, f"train activations {place}")
    if train_source.epoch > 0:
        print(f"note: the corpus gave fewer than {n_train} training rows; some repeat")
    return train_ND, eval_ND


def cached_activations(args: argparse.Namespace, n_train: int) -> tuple[torch.Tensor, ...]:
    """``collect``, or the rows an earlier run saved to ``--cache`` with the same settings."""
    key = {"model": args.model, "place": args.place, "train": n_train, "eval": args.eval_tokens}
    key["seed"] = args.seed
    if args.cache and Path(args.cache).is_file():
        saved = torch.load(args.cache, weights_only=True)
        if saved["key"] == key:
            return saved["train"], saved["eval"]
        print(f"{args.cache}: holds other activations ({saved['key']}); collecting anew")
    train_ND, eval_ND = collect(args.model, args.place, n_train, args.eval_tokens, seed=args.seed)
    if args.cache:
        Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.cache) as tmp:
            torch.save({"key": key, "train": train_ND, "eval": eval_ND}, tmp)
    return train_ND, eval_ND


# --------------------------------------------------------------------------- 2-3. train, evaluate


def train_configs(runs: list[Run], shared: dict[str, Any]) -> list[TrainConfig]:
    """Each run's settings: the shared ones, overridden by the run's own."""
    return [TrainConfig(arch=run.arch, **{**shared, **run.options}) for run in runs]


def train_and_evaluate(
    runs: list[Run],
    configs: list[TrainConfig],
    train_ND: torch.Tensor,
    eval_ND: torch.Tensor,
    *,
    place: str,
) -> list[Result]:
    """Train every run with its config on the same rows in the same order, one progress bar
    for all."""
    results = []
    with tqdm(total=sum(c.steps for c in configs), desc="train", unit="step") as bar:
        for run, config in zip(runs, configs, strict=True):
            bar.set_description(f"train {run.arch} {run.setting}")
            source = TensorSource(train_ND, seed=config.seed)
            trainer = DictionaryTrainer(source, config, place=place)
            while not trainer.done:
                entry = trainer.step()
                bar.update()
                if entry:
                    bar.set_postfix(l0=f"{entry['l0']:.1f}", dead=f"{entry['dead_fraction']:.1%}")
            dictionary = trainer.finish()
            metrics = reconstruction_metrics(dictionary, eval_ND.split(EVAL_BATCH))
            results.append(
                Result(run, metrics, trainer.history, config.dead_window, trainer.seconds)
            )
    return results


# --------------------------------------------------------------------------- 4. compare


def curve(results: list[Result], label: str) -> tuple[np.ndarray, ...]:
    """``log L0``, FVU and gamma of one architecture's runs, sorted by L0."""
    rows = sorted(
        (r.metrics["l0"], r.metrics["fvu"], r.metrics["shrinkage"])
        for r in results
        if r.run.label == label and r.metrics["l0"] > 0
    )
    l0, fvu, gamma = (np.array(column, dtype=float) for column in zip(*rows, strict=True))
    return np.log(l0), fvu, gamma


@dataclass
class Comparison:
    """Two architectures' FVU and gamma interpolated at the L0 values they share."""

    l0: np.ndarray
    """Log-spaced L0 values inside both L0 ranges (empty when the ranges do not overlap)."""
    fvu: dict[str, np.ndarray]
    gamma: dict[str, np.ndarray]
    ranges: dict[str, tuple[float, float]]


def compare(results: list[Result], labels: tuple[str, str]) -> Comparison:
    curves = {label: curve(results, label) for label in labels}
    ranges = {label: (math.exp(c[0][0]), math.exp(c[0][-1])) for label, c in curves.items()}
    low = max(log_l0[0] for log_l0, _, _ in curves.values())
    high = min(log_l0[-1] for log_l0, _, _ in curves.values())
    grid = np.linspace(low, high, GRID_POINTS) if low < high else np.array([])
    fvu = {label: np.interp(grid, c[0], c[1]) for label, c in curves.items()}
    gamma = {label: np.interp(grid, c[0], c[2]) for label, c in curves.items()}
    return Comparison(np.exp(grid), fvu, gamma, ranges)


def no_overlap(comparison: Comparison) -> str:
    ranges = ", ".join(f"{k} {a:.1f}-{b:.1f}" for k, (a, b) in comparison.ranges.items())
    return f"does not hold here: the L0 ranges do not overlap ({ranges}); widen the sweep"


def verdict(ok: bool) -> str:
    return "holds" if ok else "does not hold"


def claim_a(versus_gated: Comparison, versus_topk: Comparison) -> str:
    parts, ok = [], True
    for comparison, other in ((versus_gated, "gated"), (versus_topk, "topk")):
        if not len(comparison.l0):
            return f"(a) {other} vs relu: " + no_overlap(comparison)
        ratio = comparison.fvu[other] / comparison.fvu["relu"]
        ok &= bool((ratio < 1).all())
        parts.append(
            f"FVU {other}/relu at L0 {comparison.l0[0]:.1f}-{comparison.l0[-1]:.1f}: "
            + " ".join(f"{r:.2f}" for r in ratio)
            + f" (lower at {(ratio < 1).sum()}/{len(ratio)})"
        )
    return "(a) gated and topk beat relu+L1 at equal L0: " + "; ".join(parts) + f" -> {verdict(ok)}"


def claim_b(versus_gated: Comparison) -> str:
    if not len(versus_gated.l0):
        return "(b) gated shrinks less than relu+L1: " + no_overlap(versus_gated)
    relu, gated = versus_gated.gamma["relu"], versus_gated.gamma["gated"]
    closer = np.abs(1 - gated) < np.abs(1 - relu)
    ok = bool(closer.all() and (relu < 1).all())
    return (
        f"(b) gated shrinks less than relu+L1: gamma at L0 {versus_gated.l0[0]:.1f}-"
        f"{versus_gated.l0[-1]:.1f}: relu {' '.join(f'{g:.3f}' for g in relu)}, gated "
        f"{' '.join(f'{g:.3f}' for g in gated)} (gated closer to 1 at {closer.sum()}/"
        f"{len(closer)}, relu < 1 at {(relu < 1).sum()}/{len(relu)}) -> {verdict(ok)}"
    )


def _or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def claim_c(results: list[Result]) -> str:
    """AuxK against none, pair by pair, in the settings where latents die without it."""
    pairs: dict[str, dict[bool, Result]] = {}
    for r in results:
        if r.run.options.get("d_sae") and r.run.arch == "topk":
            with_auxk = r.run.options.get("auxk_alpha", None) != 0.0
            pairs.setdefault(r.run.setting, {})[with_auxk] = r
    details, lower, dying = [], 0, 0
    for setting, pair in pairs.items():
        a, b = pair[True].metrics["dead_fraction"], pair[False].metrics["dead_fraction"]
        if b > 0:
            dying += 1
            lower += a < b
        details.append(
            f"{setting}, dead window {pair[True].dead_window:,} tokens: {a:.2%} vs {b:.2%} "
            f"(in training, peak and end: {pair[True].peak_train_dead:.1%}, "
            f"{pair[True].train_dead:.1%} vs {pair[False].peak_train_dead:.1%}, "
            f"{pair[False].train_dead:.1%}; AuxK normalised MSE at the end "
            f"{_or_dash(pair[True].auxk_nmse)})"
        )
    if not dying:
        outcome = "not shown: TopK without AuxK has no dead latents in any setting"
    else:
        outcome = verdict(lower == dying) + f" (lower in {lower} of the {dying} settings "
        outcome += "where latents die without AuxK)"
    return f"(c) AuxK lowers TopK's dead fraction, AuxK vs none: {'; '.join(details)} -> {outcome}"


def markdown_table(results: list[Result]) -> str:
    lines = [
        "| arch | setting | L0 | FVU | shrinkage | dead fraction |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for r in results:
        m = r.metrics
        lines.append(
            f"| {r.run.label} | {r.run.setting} | {m['l0']:.1f} | {m['fvu']:.4f} | "
            f"{m['shrinkage']:.3f} | {m['dead_fraction']:.2%} |"
        )
    return "\n".join(lines)


def comparison_table(comparison: Comparison) -> str:
    labels = list(comparison.fvu)
    head = " | ".join(f"FVU {k}" for k in labels) + " | " + " | ".join(f"gamma {k}" for k in labels)
    lines = [f"| L0 | {head} |", "|--:" * (1 + 2 * len(labels)) + "|"]
    for i, l0 in enumerate(comparison.l0):
        fvu = " | ".join(f"{comparison.fvu[k][i]:.4f}" for k in labels)
        gamma = " | ".join(f"{comparison.gamma[k][i]:.3f}" for k in labels)
        lines.append(f"| {l0:.1f} | {fvu} | {gamma} |")
    return "\n".join(lines)


def write_plot(results: list[Result], path: Path, title: str) -> None:
    """FVU and gamma against L0 (log axis), one line per architecture, as plotly HTML (the
    project's plotting dependency; writing PNG would need kaleido)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=("FVU", "shrinkage (gamma)"))
    for i, label in enumerate(dict.fromkeys(r.run.label for r in results)):
        runs = sorted((r for r in results if r.run.label == label), key=lambda r: r.metrics["l0"])
        l0 = [r.metrics["l0"] for r in runs]
        text = [r.run.setting for r in runs]
        for col, key in ((1, "fvu"), (2, "shrinkage")):
            figure.add_trace(
                go.Scatter(
                    x=l0,
                    y=[r.metrics[key] for r in runs],
                    text=text,
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    line={"color": f"hsl({i * 80}, 70%, 45%)"},
                ),
                row=1,
                col=col,
            )
    figure.update_xaxes(type="log", title_text="L0 (active latents per token)")
    figure.update_yaxes(type="log", title_text="FVU", row=1, col=1)
    figure.update_yaxes(title_text="gamma (1 = no shrinkage)", row=1, col=2)
    figure.update_layout(title=title, template="plotly_white")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        figure.write_html(tmp, include_plotlyjs=True, full_html=True, auto_open=False)


def claim_settings(args: argparse.Namespace) -> list[str]:
    """Each requested claim's latents and learning rates, one line per group of claims."""
    lines = []
    l1_claims = [c for c in "ab" if c in args.claims]
    if l1_claims:
        line = f"({', '.join(l1_claims)}): d_sae {args.d_sae}, lr relu/gated {args.l1_lr:g}"
        if "a" in l1_claims:
            line += f", topk {topk_lr_at(args.topk_lr, args.d_sae):.2g}"
        lines.append(line)
    if "c" in args.claims:
        multiples = "/".join(f"{m:g}" for m in sorted({m for _, m in AUXK_RUNS}))
        base_lr = topk_lr_at(args.topk_lr, args.auxk_d_sae)
        lines.append(f"(c): d_sae {args.auxk_d_sae}, lr topk {base_lr:.2g} x {multiples}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--place", default="resid.12")
    parser.add_argument(
        "--tokens", type=positive(int), default=480_000, help="training tokens per run"
    )
    parser.add_argument(
        "--epochs",
        type=positive(int),
        default=4,
        help="passes over the collected rows (tokens / epochs)",
    )
    parser.add_argument("--eval-tokens", type=positive(int), default=50_000)
    parser.add_argument("--claims", default="abc", help="which claims to test (subset of abc)")
    parser.add_argument("--d-sae", type=positive(int), default=2048, help="latents for (a), (b)")
    parser.add_argument("--auxk-d-sae", type=positive(int), default=16384, help="latents for (c)")
    parser.add_argument("--batch-size", type=positive(int), default=1024)
    parser.add_argument("--l1-lr", type=positive(float), default=L1_LR, help="ReLU and Gated")
    parser.add_argument(
        "--topk-lr",
        type=positive(float),
        help="TopK, and the base rate the multiples of (c) scale (default: the trainer's)",
    )
    parser.add_argument(
        "--dead-after-tokens",
        type=positive(int),
        help="dead window of the (c) runs (default: the trainer's, a tenth of the run)",
    )
    parser.add_argument("--threads", type=positive(int), default=1, help=THREADS_HELP)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", help="save the activations here, or reuse those saved")
    parser.add_argument("--plot", default="benchmarks/out/dictionary_claims.html")
    args = parser.parse_args()
    if not args.claims or set(args.claims) - set("abc"):
        parser.error(f"--claims must be a subset of abc, not {args.claims!r}")
    if args.tokens < args.batch_size:
        parser.error(f"--tokens {args.tokens} is less than one --batch-size {args.batch_size}")
    steps = args.tokens // args.batch_size
    shared = {
        "d_sae": args.d_sae,
        "steps": steps,
        "batch_size": args.batch_size,
        "seed": args.seed,
    }
    runs = sweep(
        args.claims,
        l1_lr=args.l1_lr,
        topk_lr=args.topk_lr,
        auxk_d_sae=args.auxk_d_sae,
        dead_after_tokens=args.dead_after_tokens,
    )
    try:
        configs = train_configs(runs, shared)
    except TrainConfigError as error:
        parser.error(str(error))
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    n_train = math.ceil(args.tokens / args.epochs)
    train_ND, eval_ND = cached_activations(args, n_train)
    collected = time.perf_counter()

    results = train_and_evaluate(runs, configs, train_ND, eval_ND, place=args.place)
    trained = time.perf_counter()

    title = (
        f"{args.model} {args.place}: {steps * args.batch_size:,} training tokens per run "
        f"({len(train_ND):,} distinct), {len(eval_ND):,} eval tokens"
    )
    settings = f"batch {args.batch_size}, {steps} steps, seed {args.seed}, {args.threads} thread(s)"
    claims = claim_settings(args)
    print("\n" + "\n".join([title, settings, *claims]) + "\n")
    print(markdown_table(results))
    lines = []
    if "a" in args.claims or "b" in args.claims:
        versus_gated = compare(results, ("relu", "gated"))
        comparisons = [versus_gated]
        if "a" in args.claims:
            versus_topk = compare(results, ("relu", "topk"))
            comparisons.append(versus_topk)
            lines.append(claim_a(versus_gated, versus_topk))
        if "b" in args.claims:
            lines.append(claim_b(versus_gated))
        for comparison in comparisons:
            if len(comparison.l0):
                print("\nInterpolated at equal L0 (linear in log L0):\n")
                print(comparison_table(comparison))
    if "c" in args.claims:
        lines.append(claim_c(results))
    print("\n" + "\n".join(lines))
    write_plot(results, Path(args.plot), "<br>".join([title, *claims]))
    print(f"\nplot: {args.plot}")
    print(
        f"time: {trained - started:.0f} s ({collected - started:.0f} s activations, "
        f"{trained - collected:.0f} s training and evaluation)"
    )


if __name__ == "__main__":
    main()
