"""``sparse-circuits``: one sub-command per job, each a thin call into the Python API.

Errors a user can fix (a bad file, a bad name) print one line, ``error: ...``, and exit 2.
Imports are inside the commands so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from sparse_circuits.circuits.model.places import spaced_layers

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(function: Callable[[argparse.Namespace], int]):
    COMMANDS[function.__name__.replace("_", "-").removeprefix("cmd-")] = function
    return function


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="smollm2-135m",
        help="embedded name (smollm2-135m), .gguf file, checkpoint folder or hub id",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])


@command
def cmd_info(args: argparse.Namespace) -> int:
    from sparse_circuits.circuits.model.loading import load_model

    _, adapter = load_model(args.model, device=args.device, dtype=args.dtype)
    print(
        json.dumps(
            {
                "model": args.model,
                "model_type": adapter.model_type,
                "n_layers": adapter.n_layers,
                "d_model": adapter.d_model,
                "parallel_attn": adapter.parallel_attn,
                "submodules": adapter.places,
            }
        )
    )
    return 0


@command
def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from sparse_circuits.circuits.model.loading import load_model
    from sparse_circuits.circuits.training.train import train_on_model
    from sparse_circuits.dictionaries.training import TrainConfig

    config = TrainConfig(
        arch=args.arch,
        d_sae=args.dict_size,
        k=args.k,
        l1_coefficient=args.l1,
        steps=max(1, args.tokens // args.batch_size),
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        auxk_alpha=0.0 if args.no_auxk else 1 / 32,
        dead_after_tokens=args.dead_after_tokens,
    )
    model, adapter = load_model(args.model, device=args.device, dtype=args.dtype)
    places = [p for pattern in args.submodule.split(",") for p in _expand(adapter, pattern)]
    if args.transcoder_out:
        adapter.parse(args.transcoder_out)
    dictionaries = train_on_model(
        model,
        adapter,
        places,
        config,
        model_name=args.model,
        transcoder_out=args.transcoder_out,
        skip=args.skip,
        corpus=args.corpus,
        context_length=args.context_length,
        out_dir=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        eval_tokens=args.eval_tokens,
        save_dtype=getattr(torch, args.save_dtype),
    )
    if len(dictionaries) == 1:
        (dictionary,) = dictionaries.values()
        print(json.dumps({"out": str(args.out), **dictionary.config.metrics}))
    else:
        summary = {p: d.config.metrics for p, d in dictionaries.items()}
        print(json.dumps({"out": str(args.out), "places": summary}))
    return 0


def _expand(adapter, pattern: str) -> list[str]:
    """A place name, or a shell pattern over place names (``resid.*``) in forward order."""
    import fnmatch

    if not any(c in pattern for c in "*?["):
        adapter.parse(pattern)
        return [pattern]
    matches = [p for p in adapter.places if fnmatch.fnmatchcase(p, pattern)]
    if not matches:
        raise ValueError(f"--submodule {pattern!r} matches no place of this model")
    return matches


@command
def cmd_eval_dict(args: argparse.Namespace) -> int:
    from sparse_circuits.circuits.model.loading import load_model
    from sparse_circuits.circuits.training.evaluation import evaluate_dictionary
    from sparse_circuits.circuits.training.train import corpus_contexts
    from sparse_circuits.dictionaries import load_dictionary

    model, adapter = load_model(args.model, device=args.device, dtype=args.dtype)
    dictionary = load_dictionary(args.dict, device=args.device)
    place = args.submodule or dictionary.config.writes or dictionary.config.place
    if place is None:
        raise ValueError(f"{args.dict}: the dictionary does not say its place; pass --submodule")
    split = corpus_contexts(model.tokenizer, args.corpus, context_length=args.context_length)
    n_contexts = max(1, args.tokens // args.context_length)
    metrics = evaluate_dictionary(model, adapter, dictionary, split.eval[:n_contexts], place=place)
    density = metrics.pop("feature_density")
    if args.histogram:
        from sparse_circuits.dictionaries.evaluation import density_histogram

        density_histogram(density, args.histogram, title=f"{args.dict} feature density")
    print(json.dumps(metrics))
    return 0


def _load_dictionaries(folder: Path, places: str | None, device: str):
    from sparse_circuits.dictionaries.sets import load_dictionary_set

    return load_dictionary_set(folder, places.split(",") if places else None, device=device)


@command
def cmd_discover(args: argparse.Namespace) -> int:
    from sparse_circuits.circuits.data.prompts import read_prompts
    from sparse_circuits.circuits.discovery.attribution import AttributionConfig
    from sparse_circuits.circuits.discovery.discover import (
        DiscoverConfig,
        discover_circuit,
        load_prompt_batches,
    )
    from sparse_circuits.circuits.discovery.graph import save_circuit
    from sparse_circuits.circuits.export import export
    from sparse_circuits.circuits.model.loading import load_model
    from sparse_circuits.files import require_folder

    for path in (args.out, args.html, args.graphml):  # fail before the slow part
        if path is not None:
            require_folder(path)
    config = DiscoverConfig(
        attribution=AttributionConfig(
            method=args.method,
            steps=args.steps,
            aggregation=args.aggregation,
            batch_size=args.batch_size,
        ),
        node_threshold=args.node_threshold,
        top_k=args.top_k,
        edge_threshold=args.edge_threshold,
        label_tokens=args.label_tokens,
    )
    read_prompts(args.prompts)  # a malformed file fails before anything slow
    dictionaries = _load_dictionaries(args.dictionaries, args.places, args.device)
    model, adapter = load_model(args.model, device=args.device, dtype=args.dtype)
    batches = load_prompt_batches(model.tokenizer, args.prompts, aggregation=args.aggregation)
    settings = {
        "model": args.model,
        "dictionaries": str(args.dictionaries),
        "prompts": str(args.prompts),
    }
    graph, _ = discover_circuit(model, adapter, dictionaries, batches, config, settings=settings)
    save_circuit(graph, args.out)
    if args.html:
        export(graph, args.html, "html")
    if args.graphml:
        export(graph, args.graphml, "graphml")
    n_features = sum(1 for _, d in graph.nodes(data=True) if d["feature"] >= 0)
    print(
        json.dumps(
            {
                "circuit": str(args.out),
                "nodes": graph.number_of_nodes() - 1,
                "feature_nodes": n_features,
                "edges": graph.number_of_edges(),
                "metric_clean": graph.graph["metric_clean"],
                "metric_patch": graph.graph["metric_patch"],
            }
        )
    )
    return 0


@command
def cmd_evaluate(args: argparse.Namespace) -> int:
    from sparse_circuits.circuits.discovery.evaluate import evaluate_circuit_file

    result = evaluate_circuit_file(
        args.circuit,
        args.prompts,
        model=args.model,
        dictionaries=args.dictionaries,
        device=args.device,
        ablation=args.ablation,
        errors=args.errors,
        curve=args.curve,
    )
    print(json.dumps(result))
    return 0


@command
def cmd_export(args: argparse.Namespace) -> int:
    from sparse_circuits.circuits.discovery.graph import load_circuit
    from sparse_circuits.circuits.export import export

    export(load_circuit(args.circuit), args.out, args.format)
    print(json.dumps({"out": str(args.out), "format": args.format}))
    return 0


def parse_feature(spec: str) -> tuple[Path, int]:
    """``DICT_FOLDER:FEATURE_ID`` -> (folder, id)."""
    folder, _, feature = spec.rpartition(":")
    if not folder or not feature.isdigit():
        raise ValueError(f"--feature {spec!r}: expected DICT_FOLDER:FEATURE_ID")
    return Path(folder), int(feature)


def side_by_side(left: str, right: str, *, titles=("unsteered", "steered"), width=48) -> str:
    import textwrap

    columns = [textwrap.wrap(text, width) or [""] for text in (left, right)]
    rows = max(len(c) for c in columns)
    lines = [f"{titles[0]:<{width}} | {titles[1]}", f"{'-' * width}-+-{'-' * width}"]
    for i in range(rows):
        a, b = (c[i] if i < len(c) else "" for c in columns)
        lines.append(f"{a:<{width}} | {b}")
    return "\n".join(lines)


@command
def cmd_steer(args: argparse.Namespace) -> int:
    from sparse_circuits.circuits.model.loading import load_model
    from sparse_circuits.dictionaries import load_dictionary
    from sparse_circuits.editing.interventions import Steering
    from sparse_circuits.editing.steering import (
        contrastive_vector,
        feature_vector,
        read_texts,
        steered_generations,
    )

    if args.feature:
        folder, feature = parse_feature(args.feature)
        dictionary = load_dictionary(folder)
        vector = feature_vector(dictionary, feature, place=args.place)
    else:
        positive, negative = (read_texts(p) for p in args.contrast)
    model, adapter = load_model(args.model, device=args.device, dtype=args.dtype)
    adapter.parse(args.place)
    if args.feature:
        if dictionary.d_out != adapter.width(args.place):
            raise ValueError(
                f"{folder}: decoder width {dictionary.d_out} does not match {args.place} "
                f"(width {adapter.width(args.place)})"
            )
    else:
        vector = contrastive_vector(model, adapter, args.place, positive, negative)
    steering = Steering(args.place, vector, coef=args.coef)
    result = steered_generations(
        model, adapter, args.prompt, steering, max_new_tokens=args.max_new_tokens
    )
    if args.json:
        print(json.dumps({"prompt": args.prompt, "place": args.place, "coef": args.coef, **result}))
    else:
        print(f"prompt: {args.prompt!r}  (steering {args.place}, coef {args.coef})")
        print(side_by_side(result["unsteered"], result["steered"]))
    return 0


STARTER = Path(__file__).resolve().parents[1] / "starter" / "smollm2-135m"
"""The starter dictionaries trained for the embedded default model (see starter/README.md)."""
DEMO_PLACES = [f"resid.{layer}" for layer in spaced_layers(30, 5)]
"""The demo's circuit lives in the residual stream of five of smollm2-135m's 30 layers: mean-
ablating every layer's residual stream composes 30 lossy replacements, and no circuit of a
few hundred nodes survives that (README, "Faithfulness")."""
DEMO_NODE_THRESHOLD = 0.005
"""|effect| in logit-difference units; the README's faithfulness curve shows why."""


@command
def cmd_demo(args: argparse.Namespace) -> int:
    """The agreement circuit of the default model with the starter dictionaries."""
    import time

    from sparse_circuits.circuits.data.agreement_sets import agreement_file
    from sparse_circuits.circuits.discovery.attribution import AttributionConfig
    from sparse_circuits.circuits.discovery.discover import (
        DiscoverConfig,
        discover_circuit,
        load_prompt_batches,
    )
    from sparse_circuits.circuits.discovery.faithfulness import score_selection
    from sparse_circuits.circuits.discovery.graph import save_circuit
    from sparse_circuits.circuits.discovery.nodes import select_nodes
    from sparse_circuits.circuits.export import export
    from sparse_circuits.circuits.model.loading import load_model
    from sparse_circuits.dictionaries.sets import load_dictionary_set

    started = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    model, adapter = load_model("smollm2-135m", device=args.device)
    places = args.places.split(",") if args.places else DEMO_PLACES
    dictionaries = load_dictionary_set(args.dictionaries, places, device=args.device)
    train = agreement_file(args.template, "train")
    test = agreement_file(args.template, "test")
    config = DiscoverConfig(
        attribution=AttributionConfig(method=args.method, batch_size=32),
        node_threshold=args.node_threshold,
        edge_threshold=args.edge_threshold,
        label_tokens=args.label_tokens,
    )
    batches = load_prompt_batches(model.tokenizer, train)
    if args.examples:
        batches = [b.split(args.examples)[0] for b in batches]
    settings = {
        "model": "smollm2-135m",
        "dictionaries": str(args.dictionaries),
        "prompts": str(train),
        "places": list(dictionaries),
    }
    graph, effects = discover_circuit(
        model, adapter, dictionaries, batches, config, settings=settings
    )
    paths = {
        "circuit": save_circuit(graph, out / "circuit.json"),
        "html": export(graph, out / "circuit.html", "html"),
        "graphml": export(graph, out / "circuit.graphml", "graphml"),
    }
    test_batches = load_prompt_batches(model.tokenizer, test)
    selection = select_nodes(effects, threshold=args.node_threshold)
    (score,) = score_selection(model, adapter, dictionaries, test_batches, [selection])
    summary = {
        **{name: str(path) for name, path in paths.items()},
        "prompts": {"train": str(train), "test": str(test)},
        "nodes": score.n_nodes,
        "edges": graph.number_of_edges(),
        "faithfulness": round(score.faithfulness, 3),
        "completeness": round(score.completeness, 3),
        "seconds": round(time.perf_counter() - started, 1),
    }
    for name, path in paths.items():
        print(f"{name:>8}: {path}")
    print(
        f"faithfulness {score.faithfulness:.3f}, completeness {score.completeness:.3f} "
        f"({score.n_nodes} nodes, held-out {test.name})"
    )
    print(json.dumps(summary))
    return 0


@command
def cmd_shift(args: argparse.Namespace) -> int:
    from sparse_circuits.circuits.model.loading import load_model
    from sparse_circuits.editing.bios import bios_file, read_labelled
    from sparse_circuits.editing.shift import (
        NoSpuriousFeature,
        candidates_markdown,
        check_ablation_list,
        plot_results,
        run_shift,
    )
    from sparse_circuits.files import write_text_atomic

    config = _shift_config(args)  # bad options fail before the slow part
    train = read_labelled(args.train or bios_file("train"))
    test = read_labelled(args.test or bios_file("test"))
    concept = ablate = None
    if args.auto:
        concept = read_labelled(
            args.concept or bios_file("gender_concept"), fields=("text", "group")
        )
    else:
        ablate = [_feature_ref(line, args.ablate) for line in args.ablate.read_text().split()]
        if not ablate:
            raise ValueError(f"{args.ablate}: the ablation list is empty")
    model, adapter = load_model(args.model, device=args.device, dtype=args.dtype)
    adapter.parse(args.place)
    dictionaries = _load_dictionaries(args.dictionaries, None, args.device)
    if ablate is not None:
        try:
            check_ablation_list(adapter, dictionaries, args.place, ablate)
        except ValueError as error:
            raise ValueError(f"{args.ablate}: {error}") from None
    try:
        results = run_shift(
            model, adapter, dictionaries, train, test, config,
            concept=concept, ablate=ablate, retrain=args.retrain,
        )  # fmt: skip
    except NoSpuriousFeature as error:
        args.out.mkdir(parents=True, exist_ok=True)
        table = write_text_atomic(
            args.out / "candidates.md", candidates_markdown({"candidates": error.candidates})
        )
        raise ValueError(
            f"{error}; the candidates are in {table}: list those to ablate (PLACE:FEATURE_ID, "
            "one a line) in a file for --ablate"
        ) from None
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "results.json", json.dumps(results, indent=1))
    write_text_atomic(args.out / "candidates.md", candidates_markdown(results))
    plot_results(results, args.out / "results.html")
    table = {
        m: {k: round(v, 3) for k, v in r.items() if k.endswith("acc")}
        for m, r in results["methods"].items()
    }
    print(json.dumps({"out": str(args.out), "methods": table}))
    return 0


def _shift_config(args: argparse.Namespace):
    """The ``ShiftConfig`` of the options given; options of the judge with ``--ablate`` are an
    error (they would be ignored)."""
    from sparse_circuits.editing.shift import ShiftConfig

    judge_options = {"--judge-alpha": args.judge_alpha, "--concept": args.concept}
    ignored = [name for name, value in judge_options.items() if value is not None]
    if args.ablate and ignored:
        raise ValueError(f"{' and '.join(ignored)}: only for --auto, not with --ablate")
    names = (
        "candidates",
        "attribution_share",
        "attribution_examples",
        "judge_alpha",
        "label_tokens",
    )
    options = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.attribution_examples == 0:
        options["attribution_examples"] = None  # all
    try:
        return ShiftConfig(place=args.place, seed=args.seed, **options)
    except ValueError as error:  # name the option, not the field
        message = str(error)
        for name in names:
            message = message.replace(name, "--" + name.replace("_", "-"))
        raise ValueError(message) from None


def _feature_ref(item: str, source: Path) -> tuple[str, int]:
    place, _, feature = item.rpartition(":")
    if not place or not feature.isdigit():
        raise ValueError(f"{source}: {item!r} is not PLACE:FEATURE_ID")
    return place, int(feature)


@command
def cmd_behaviours(args: argparse.Namespace) -> int:
    """The unsupervised pipeline: corpus -> contexts -> clusters -> a circuit each -> a site."""
    from sparse_circuits.circuits.behaviours.cluster_circuit import ClusterCircuitConfig
    from sparse_circuits.circuits.behaviours.clustering import ClusterConfig
    from sparse_circuits.circuits.behaviours.contexts import ContextConfig
    from sparse_circuits.circuits.behaviours.pipeline import BehavioursConfig, run_behaviours
    from sparse_circuits.circuits.model.loading import load_model
    from sparse_circuits.distributed import init_distributed

    try:
        clusters = tuple(int(k) for k in args.clusters.split(",")) if args.clusters else ()
    except ValueError:
        raise ValueError(f"--clusters {args.clusters!r}: expected K or K1,K2,...") from None
    config = BehavioursConfig(
        contexts=ContextConfig(
            n_contexts=args.contexts,
            max_loss=args.max_loss,
            prefix_length=args.prefix_length,
            corpus_tokens=args.corpus_tokens,
            seed=args.seed,
        ),
        describe=args.describe,
        clustering=ClusterConfig(clusters=clusters, method=args.cluster_method, seed=args.seed),
        circuits=ClusterCircuitConfig(
            method=args.method,
            steps=args.steps,
            examples=args.examples,
            held_out=args.held_out,
            node_threshold=args.node_threshold,
            edge_threshold=args.edge_threshold,
            top_features=args.top_features,
            batch_size=args.batch_size,
            seed=args.seed,
        ),
        corpus=args.corpus,
        describe_batch_size=args.batch_size,
    )  # bad options fail before the slow part
    init_distributed(args.device)  # under torchrun: before the model, so each rank has its GPU
    dictionaries = _load_dictionaries(args.dictionaries, args.places, args.device)
    model, adapter = load_model(args.model, device=args.device, dtype=args.dtype)
    settings = {"model": args.model, "dictionaries": str(args.dictionaries), "corpus": args.corpus}
    run = run_behaviours(model, adapter, dictionaries, args.out, config, settings=settings)
    summary = {
        "out": str(run.out),
        "index": None if run.index is None else str(run.index),
        "contexts": run.n_contexts,
        "clusters": run.n_clusters,
        "computed": len(run.computed),
        "skipped": len(run.skipped),
        "seconds": run.seconds,
    }
    print(json.dumps(summary))
    return 0


def add_behaviours_parser(sub) -> None:
    behaviours = sub.add_parser(
        "behaviours", help="cluster a corpus's contexts into behaviours, a circuit each, a site"
    )
    add_model_arguments(behaviours)
    behaviours.add_argument("--dictionaries", required=True, type=Path, help="dictionary set")
    behaviours.add_argument("--places", help="comma-separated places (default: every one)")
    behaviours.add_argument("--corpus", default="embedded", help="embedded, a .txt or .jsonl file")
    behaviours.add_argument("--corpus-tokens", type=int, help="read at most this many tokens")
    behaviours.add_argument("--contexts", type=int, default=2000, help="contexts to find")
    behaviours.add_argument("--max-loss", type=float, default=1.0, help="keep answers below (nats)")
    behaviours.add_argument("--prefix-length", type=int, default=16, help="tokens per context")
    behaviours.add_argument(
        "--describe", default="attribution", choices=["attribution", "activations", "gradients"]
    )
    behaviours.add_argument("--clusters", help="K, or K1,K2,... to sweep (default: a sweep)")
    behaviours.add_argument(
        "--cluster-method", default="auto", choices=["auto", "spectral", "kmeans"]
    )
    behaviours.add_argument("--method", default="attrib", choices=["attrib", "ig"])
    behaviours.add_argument("--steps", type=int, default=10, help="integration steps (ig)")
    behaviours.add_argument("--examples", type=int, default=100, help="contexts per circuit")
    behaviours.add_argument("--held-out", type=float, default=0.2, help="share kept to score")
    behaviours.add_argument("--node-threshold", type=float, default=0.1)
    behaviours.add_argument("--edge-threshold", type=float, default=0.01)
    behaviours.add_argument("--top-features", type=int, default=10, help="listed per cluster")
    behaviours.add_argument("--batch-size", type=int, default=16)
    behaviours.add_argument("--seed", type=int, default=0)
    behaviours.add_argument("--out", required=True, type=Path, help="output folder (the site)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparse-circuits",
        description="Sparse dictionaries, sparse feature circuits and feature-level editing.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="print a model's architecture and place names as JSON")
    add_model_arguments(info)

    train = sub.add_parser("train", help="train a sparse dictionary on a model's activations")
    add_model_arguments(train)
    train.add_argument(
        "--submodule",
        required=True,
        help="place to read, e.g. resid.3; several (resid.1,resid.2 or 'resid.*') train on one "
        "shared stream into --out/<place>",
    )
    train.add_argument(
        "--arch", required=True, choices=["relu", "gated", "topk", "batchtopk", "jumprelu"]
    )
    train.add_argument("--transcoder-out", help="train a transcoder writing this place")
    train.add_argument("--skip", action="store_true", help="transcoder with a skip connection")
    train.add_argument("--dict-size", type=int, required=True, help="number of features")
    train.add_argument("--k", type=int, help="active features per token (topk, batchtopk)")
    train.add_argument("--l1", type=float, help="sparsity coefficient (relu, gated, jumprelu)")
    train.add_argument("--tokens", type=int, required=True, help="training tokens")
    train.add_argument("--batch-size", type=int, default=4096, help="tokens per step")
    train.add_argument("--lr", type=float, help="peak learning rate (default: per arch)")
    train.add_argument("--no-auxk", action="store_true", help="disable the AuxK loss")
    train.add_argument(
        "--dead-after-tokens",
        type=int,
        help="a latent that has not fired in this many tokens is dead (AuxK trains it); default "
        "min(10M, a tenth of the run). With small k and many latents a longer window keeps "
        "AuxK off latents that are only rare (README, measured figures)",
    )
    train.add_argument("--corpus", default="embedded", help="embedded, a .txt or .jsonl file")
    train.add_argument("--context-length", type=int, default=128)
    train.add_argument("--eval-tokens", type=int, default=16_384, help="held-out evaluation")
    train.add_argument("--checkpoint-every", type=int, default=500, help="steps; 0 = never")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--save-dtype", default="float32", choices=["float32", "bfloat16", "float16"]
    )
    train.add_argument("--out", required=True, type=Path, help="output folder")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--overwrite", action="store_true", help="replace what --out holds")

    evaluate = sub.add_parser("eval-dict", help="evaluate a dictionary spliced into a model")
    add_model_arguments(evaluate)
    evaluate.add_argument("--dict", required=True, type=Path, help="dictionary folder")
    evaluate.add_argument("--submodule", help="place (default: the dictionary's own)")
    evaluate.add_argument("--corpus", default="embedded")
    evaluate.add_argument("--context-length", type=int, default=128)
    evaluate.add_argument("--tokens", type=int, default=16_384)
    evaluate.add_argument("--histogram", type=Path, help="write a feature-density plot (HTML)")

    discover = sub.add_parser("discover", help="find a sparse feature circuit for a prompt set")
    add_model_arguments(discover)
    discover.add_argument("--dictionaries", required=True, type=Path, help="dictionary set")
    discover.add_argument("--places", help="comma-separated places (default: every one in the set)")
    discover.add_argument("--prompts", required=True, type=Path, help="JSONL prompt set")
    discover.add_argument("--method", default="attrib", choices=["attrib", "ig", "exact"])
    discover.add_argument("--steps", type=int, default=10, help="integration steps (ig)")
    discover.add_argument("--aggregation", default="sum", choices=["sum", "none"])
    discover.add_argument("--node-threshold", type=float, default=0.1)
    discover.add_argument("--top-k", type=int, help="keep the k largest nodes instead")
    discover.add_argument("--edge-threshold", type=float, default=0.01)
    discover.add_argument("--batch-size", type=int, default=16)
    discover.add_argument(
        "--label-tokens", type=int, default=0, help="corpus tokens for feature labels (0: none)"
    )
    discover.add_argument("--out", required=True, type=Path, help="circuit JSON")
    discover.add_argument("--html", type=Path, help="also write the interactive figure")
    discover.add_argument("--graphml", type=Path, help="also write GraphML")

    evaluate_circuit = sub.add_parser(
        "evaluate", help="faithfulness and completeness of a circuit by ablation"
    )
    evaluate_circuit.add_argument("--circuit", required=True, type=Path)
    evaluate_circuit.add_argument("--prompts", required=True, type=Path)
    evaluate_circuit.add_argument("--model", help="default: the circuit's model")
    evaluate_circuit.add_argument("--dictionaries", type=Path, help="default: the circuit's")
    evaluate_circuit.add_argument("--device", default="cpu")
    evaluate_circuit.add_argument(
        "--ablation", default="mean", choices=["mean", "zero", "resample"]
    )
    evaluate_circuit.add_argument("--errors", default="ablate", choices=["ablate", "keep"])
    evaluate_circuit.add_argument(
        "--curve", type=Path, help="also sweep node thresholds and plot the curve (HTML)"
    )

    demo = sub.add_parser(
        "demo", help="the agreement circuit of the default model, written to --out"
    )
    demo.add_argument("--out", type=Path, default=Path("demo"))
    demo.add_argument("--device", default="cpu")
    demo.add_argument("--dictionaries", type=Path, default=STARTER)
    demo.add_argument(
        "--template", default="across_rc", choices=["simple", "across_pp", "across_rc", "within_rc"]
    )
    demo.add_argument(
        "--places",
        help="comma-separated places (default: resid at five evenly spaced layers, "
        + ",".join(DEMO_PLACES)
        + ")",
    )
    demo.add_argument("--method", default="attrib", choices=["attrib", "ig"])
    demo.add_argument("--examples", type=int, default=64, help="training prompts used (0: all)")
    demo.add_argument("--node-threshold", type=float, default=DEMO_NODE_THRESHOLD)
    demo.add_argument("--edge-threshold", type=float, default=0.02)
    demo.add_argument("--label-tokens", type=int, default=4096)

    shift = sub.add_parser("shift", help="SHIFT: ablate spurious features of a probe classifier")
    add_model_arguments(shift)
    shift.add_argument("--dictionaries", required=True, type=Path)
    shift.add_argument("--place", default="resid.16", help="where the probe reads (mean-pooled)")
    shift.add_argument("--train", type=Path, help="ambiguous split JSONL (text, label, group)")
    shift.add_argument("--test", type=Path, help="balanced split JSONL (text, label, group)")
    shift.add_argument("--concept", type=Path, help="concept set JSONL (text, group) for --auto")
    choose = shift.add_mutually_exclusive_group(required=True)
    choose.add_argument("--ablate", type=Path, help="file of PLACE:FEATURE_ID to ablate")
    choose.add_argument("--auto", action="store_true", help="let the concept-set judge choose")
    shift.add_argument("--retrain", action="store_true", help="also retrain the probe")
    how_many = shift.add_mutually_exclusive_group()
    how_many.add_argument(
        "--candidates",
        type=int,
        help="judge this many top features (default: by --attribution-share)",
    )
    how_many.add_argument(
        "--attribution-share",
        type=float,
        help="candidates: the top features carrying this share of all |attribution|",
    )
    shift.add_argument(
        "--attribution-examples",
        type=int,
        help="training texts the attribution averages over (0: all)",
    )
    shift.add_argument(
        "--judge-alpha", type=float, help="family-wise error rate of the --auto judge"
    )
    shift.add_argument(
        "--label-tokens",
        type=int,
        help="corpus tokens scanned for the candidates' top contexts (default 4096; 0: none)",
    )
    shift.add_argument("--seed", type=int, default=0)
    shift.add_argument("--out", required=True, type=Path)

    steer = sub.add_parser("steer", help="generate with and without a steering vector")
    add_model_arguments(steer)
    steer.add_argument("--place", required=True, help="where to add the vector, e.g. resid.10")
    source = steer.add_mutually_exclusive_group(required=True)
    source.add_argument("--feature", help="DICT_FOLDER:FEATURE_ID: a feature's decoder direction")
    source.add_argument(
        "--contrast", nargs=2, type=Path, metavar=("A", "B"),
        help="mean activation over prompts A minus over prompts B (.jsonl or .txt)",
    )  # fmt: skip
    steer.add_argument("--coef", type=float, required=True, help="multiple of the vector added")
    steer.add_argument("--prompt", required=True)
    steer.add_argument("--max-new-tokens", type=int, default=30)
    steer.add_argument("--json", action="store_true", help="print one JSON object instead")

    export_parser = sub.add_parser("export", help="convert a circuit to another format")
    export_parser.add_argument("circuit", type=Path)
    export_parser.add_argument(
        "--format", required=True, choices=["graphml", "html", "neuronpedia"]
    )
    export_parser.add_argument("--out", required=True, type=Path)
    add_behaviours_parser(sub)
    return parser


def quiet_transformers() -> None:
    """Loading-weights progress bars and advisory warnings would bury the one-line errors."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_transformers()
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
