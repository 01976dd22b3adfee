"""``sparse-circuits``: one sub-command per job, each a thin call into the Python API.

A command's options come from the library it calls: an option that sets a library setting (a
config dataclass's field, or a function's keyword argument) takes that setting's default,
choices come from the registries (``OBJECTIVES``, ``METHODS``, ``FORMATS``...), and the table
of which flag sets which setting, built with the parser, turns a ``ConfigError`` that names
settings (``node_threshold must be >= 0``) into one that names flags
(``--node-threshold must be >= 0``).

Errors a user can fix (a bad file, a bad name) print one line, ``error: ...``, and exit 2;
a result likely to mislead (``CircuitWarning``) prints one line, ``warning: ...``.
The library is imported inside the commands, and only the command asked for builds its
options (they import the library's configs), so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, get_args

from sparse_circuits.errors import CircuitWarning, ConfigError
from sparse_circuits.memory import keep_freed_memory
from sparse_circuits.precision import PRECISIONS

DTYPES = ("float32", "bfloat16", "float16")
"""Weight dtypes a command can load a model in or save a dictionary in."""
EVAL_TOKENS = 16_384
"""Held-out tokens a dictionary is evaluated on unless told otherwise (``train``, ``eval-dict``)."""


# --------------------------------------------------------------------------- options


def library_default(owner: Callable[..., Any], name: str) -> Any:
    """The default of the setting ``name`` of ``owner``: a config dataclass's field, or a
    function's keyword argument; ``None`` when it has none (a required field)."""
    if dataclasses.is_dataclass(owner):
        (field,) = [f for f in dataclasses.fields(owner) if f.name == name]
        return None if field.default is dataclasses.MISSING else field.default
    default = inspect.signature(owner).parameters[name].default
    return None if default is inspect.Parameter.empty else default


class Options:
    """One command's options as they are added to its parser, and ``flags``: each library
    setting an option sets -> that option's flag (what ``with_flags`` reads)."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.flags: dict[str, str] = {}
        parser.set_defaults(flags=self.flags)

    def add(self, *names: str, into: Any = None, **kwargs: Any) -> None:
        """An option of the command line alone (``add_argument``'s arguments), added to the
        parser or to the group ``into``."""
        (self.parser if into is None else into).add_argument(*names, **kwargs)

    def setting(
        self,
        owner: Callable[..., Any],
        name: str,
        *,
        help: str,
        flag: str | None = None,
        into: Any = None,
        **kwargs: Any,
    ) -> None:
        """An option (``flag``, by default ``--name-with-dashes``) that sets the setting
        ``name`` of ``owner`` and is stored as ``args.<name>``. Its default is the library's,
        shown in the help; ``default=None`` leaves it unset (the library's default applies)
        and any other ``default`` is the command line's own."""
        flag = flag or "--" + name.replace("_", "-")
        library = library_default(owner, name)
        default = kwargs.pop("default", library)
        shown = library if default is None else default
        if shown is not None and shown is not False and shown != ():
            help = f"{help} (default: {shown})"
        container = self.parser if into is None else into
        container.add_argument(flag, dest=name, default=default, help=help, **kwargs)
        self.flags[name] = flag

    def exclusive(self, *, required: bool = False) -> Any:
        """A group of options of which at most one (with ``required``, exactly one) is given;
        pass it as ``into``."""
        return self.parser.add_mutually_exclusive_group(required=required)


def with_flags(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with each setting named in ``flags`` (as a whole word) replaced by its flag:
    ``"k 40 must be between 1 and d_sae 32"`` -> ``"--k 40 must be between 1 and --dict-size
    32"``."""
    if not flags:
        return message
    names = sorted(flags, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    return pattern.sub(lambda match: flags[match.group(1)], message)


def config_from_args(config: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """``config`` built from the options that set its fields (an option left ``None`` keeps
    the field's default) and ``overrides``."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(config)
        if f.init and getattr(args, f.name, None) is not None
    }
    return config(**{**given, **overrides})


def comma_list(text: str) -> list[str]:
    """``"resid.1,resid.2"`` -> ``["resid.1", "resid.2"]``."""
    return text.split(",")


def int_tuple(text: str) -> tuple[int, ...]:
    """``"7,10"`` -> ``(7, 10)``; anything else is argparse's error naming the flag."""
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or N1,N2,..., got {text!r}") from None


def parse_feature_spec(spec: str, *, form: str, source: str | Path) -> tuple[str, int]:
    """``X:N`` -> ``(X, N)``: a dictionary folder or a place, and a feature id. ``form`` says
    what is expected (``PLACE:FEATURE_ID``); a bad spec is an error naming ``source``, the
    flag or file it came from."""
    head, _, feature = spec.rpartition(":")
    if not head or not feature.isdigit():
        raise ValueError(f"{source}: {spec!r} is not {form}")
    return head, int(feature)


def model_options(options: Options, *, model_from: str | None = None) -> None:
    """``--model``, ``--device`` and ``--precision``. ``--model`` defaults to the embedded
    default model, or with ``model_from`` to the model that names (``"the circuit's"``)."""
    from sparse_circuits.circuits.model.loading import DEFAULT_MODEL, load_model

    options.add(
        "--model",
        default=None if model_from else DEFAULT_MODEL,
        help="embedded name (smollm2-135m), .gguf file, checkpoint folder or hub id "
        f"(default: {model_from or DEFAULT_MODEL})",
    )
    options.setting(load_model, "device", help="torch device, e.g. cpu, cuda, cuda:1")
    options.setting(
        load_model, "precision", choices=PRECISIONS,
        default=None if model_from else library_default(load_model, "precision"),
        help="precision of the matrix products: auto is bfloat16 on CUDA (sm_80+) and on CPUs "
        "with AMX or AVX512-BF16, float32 elsewhere; norms, the residual stream, metrics and "
        "effects stay float32"
        + (f" (default: {model_from}, float32 if it records none)" if model_from else ""),
    )  # fmt: skip


def load_model_from(args: argparse.Namespace):
    """The model and adapter the options ``--model``, ``--device`` and ``--precision`` name."""
    from sparse_circuits.circuits.model.loading import load_model

    return load_model(args.model, device=args.device, precision=args.precision)


def dictionary_set_options(options: Options) -> None:
    """``--dictionaries`` and ``--places``: a dictionary set, and which of its places to use."""
    options.add(
        "--dictionaries", required=True, type=Path,
        help="dictionary set: a folder with one subfolder per place",
    )  # fmt: skip
    options.add(
        "--places", type=comma_list, help="comma-separated places (default: every one in the set)"
    )


def load_dictionary_set_from(args: argparse.Namespace):
    """The dictionaries the options ``--dictionaries``, ``--places`` and ``--device`` name."""
    from sparse_circuits.dictionaries.sets import load_dictionary_set

    return load_dictionary_set(args.dictionaries, args.places, device=args.device)


# --------------------------------------------------------------------------- commands


@dataclasses.dataclass(frozen=True)
class Command:
    help: str
    """One line, in ``sparse-circuits --help``."""
    add_options: Callable[[Options], None]
    """Adds the command's options (importing what their defaults and choices come from)."""
    run: Callable[[argparse.Namespace], int]
    """Runs the command on the parsed options; the exit status."""


COMMANDS: dict[str, Command] = {}
"""Sub-command name -> command, in the order ``--help`` lists them."""


def command(help: str, add_options: Callable[[Options], None]):
    """Register ``cmd_<name>`` as the sub-command ``<name>`` (underscores as dashes)."""

    def register(run: Callable[[argparse.Namespace], int]):
        name = run.__name__.removeprefix("cmd_").replace("_", "-")
        COMMANDS[name] = Command(help, add_options, run)
        return run

    return register


def info_options(options: Options) -> None:
    model_options(options)


@command("print a model's architecture and place names as JSON", info_options)
def cmd_info(args: argparse.Namespace) -> int:
    _, adapter = load_model_from(args)
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


def train_options(options: Options) -> None:
    from sparse_circuits.circuits.training.train import train_on_model
    from sparse_circuits.dictionaries.training import OBJECTIVES, TrainConfig

    model_options(options)
    options.add(
        "--submodule",
        required=True,
        help="place to read, e.g. resid.3; several (resid.1,resid.2 or 'resid.*') train on one "
        "shared stream into --out/<place>",
    )
    options.setting(
        TrainConfig, "arch", required=True, choices=list(OBJECTIVES), help="architecture"
    )
    options.setting(train_on_model, "transcoder_out", help="train a transcoder writing this place")
    options.setting(
        train_on_model, "skip", action="store_true", help="transcoder with a skip connection"
    )
    options.setting(
        TrainConfig, "d_sae", flag="--dict-size", type=int, required=True,
        help="number of features",
    )  # fmt: skip
    options.setting(
        TrainConfig, "k", type=int,
        help="active features per token (topk, batchtopk, matryoshka_batchtopk)",
    )  # fmt: skip
    options.setting(
        TrainConfig, "matryoshka_widths", type=int_tuple, metavar="M1,M2,...",
        help="matryoshka_batchtopk: widths of the nested prefixes, ending at --dict-size "
        "(default: 1/16, 1/8, 1/4, 1/2 and all of it)",
    )  # fmt: skip
    options.setting(
        TrainConfig, "l1_coefficient", flag="--l1", type=float,
        help="sparsity coefficient (relu, gated, jumprelu; default: per arch)",
    )  # fmt: skip
    options.add("--tokens", type=int, required=True, help="training tokens")
    options.setting(TrainConfig, "batch_size", type=int, help="tokens per step")
    options.setting(TrainConfig, "lr", type=float, help="peak learning rate (default: per arch)")
    options.setting(
        TrainConfig, "auxk_alpha", flag="--no-auxk", action="store_const", const=0.0,
        help="turn the AuxK loss off: its weight 0",
    )  # fmt: skip
    options.setting(
        TrainConfig,
        "dead_after_tokens",
        type=int,
        help="a latent that has not fired in this many tokens is dead (AuxK trains it); default "
        "min(10M, a tenth of the run). With small k and many latents a longer window keeps "
        "AuxK off latents that are only rare (README, measured figures)",
    )
    options.setting(train_on_model, "corpus", help="embedded, large, a .txt or .jsonl file")
    options.setting(train_on_model, "context_length", type=int, help="tokens per context")
    options.setting(
        train_on_model, "eval_tokens", type=int, default=EVAL_TOKENS,
        help="held-out tokens the dictionary is evaluated on, 0 for none",
    )  # fmt: skip
    options.setting(
        TrainConfig, "checkpoint_every", type=int, default=500,
        help="steps between resumable checkpoints, 0 for only at the end",
    )  # fmt: skip
    options.setting(
        TrainConfig, "seed", type=int, help="random seed: initialisation and data order"
    )
    options.setting(
        train_on_model, "save_dtype", default="float32", choices=DTYPES,
        help="dtype of the saved weights",
    )  # fmt: skip
    options.add("--out", required=True, type=Path, help="output folder")
    options.setting(train_on_model, "resume", action="store_true", help="continue the run in --out")
    options.setting(
        train_on_model, "overwrite", action="store_true", help="replace what --out holds"
    )


@command("train a sparse dictionary on a model's activations", train_options)
def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from sparse_circuits.circuits.training.train import train_on_model
    from sparse_circuits.dictionaries.training import TrainConfig

    steps = max(1, args.tokens // max(1, args.batch_size))
    config = config_from_args(TrainConfig, args, steps=steps)
    model, adapter = load_model_from(args)
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


def eval_dict_options(options: Options) -> None:
    from sparse_circuits.circuits.training.train import corpus_contexts
    from sparse_circuits.editing.biography_sets import GENERATORS
    from sparse_circuits.editing.saebench import SUITES, SaebenchConfig

    model_options(options)
    options.add("--dict", required=True, type=Path, help="dictionary folder")
    options.add("--submodule", help="place (default: the dictionary's own)")
    options.add(
        "--suite", choices=SUITES, default=SUITES[0],
        help="core: reconstruction and downstream loss on a corpus; saebench: SAEBench's "
        f"SCR, TPP and sparse probing on generated biographies (default: {SUITES[0]})",
    )  # fmt: skip
    core = options.parser.add_argument_group("--suite core")
    options.setting(
        corpus_contexts, "corpus", into=core, help="embedded, large, a .txt or .jsonl file"
    )
    options.setting(
        corpus_contexts, "context_length", into=core, type=int, help="tokens per context"
    )
    options.add(
        "--tokens", type=int, default=EVAL_TOKENS, into=core,
        help=f"held-out tokens evaluated on (default: {EVAL_TOKENS})",
    )  # fmt: skip
    options.add("--histogram", type=Path, into=core, help="write a feature-density plot (HTML)")
    saebench = options.parser.add_argument_group("--suite saebench")
    options.setting(
        SaebenchConfig, "generator", into=saebench, choices=GENERATORS, default=None,
        help="biography generator the texts are drawn from",
    )  # fmt: skip
    for name, flag, what in (
        ("n_biased", "--biased-examples", "biased train texts (male professors, female nurses)"),
        ("n_train", "--train-examples", "balanced train texts"),
        ("n_test", "--test-examples", "balanced test texts (held-out names)"),
    ):
        options.setting(SaebenchConfig, name, flag=flag, into=saebench, type=int, default=None,
                        metavar="N", help=what)  # fmt: skip
    options.setting(
        SaebenchConfig, "n_values", into=saebench, type=int_tuple, default=None,
        metavar="N1,N2,...", help="latents SCR and TPP ablate, each capped at the width",
    )  # fmt: skip
    options.setting(
        SaebenchConfig, "k_values", into=saebench, type=int_tuple, default=None,
        metavar="K1,K2,...", help="latents each sparse probe reads",
    )  # fmt: skip
    options.setting(
        SaebenchConfig, "seed", into=saebench, type=int, default=None,
        help="seed of the texts and the probes",
    )  # fmt: skip


@command("evaluate a dictionary spliced into a model", eval_dict_options)
def cmd_eval_dict(args: argparse.Namespace) -> int:
    from sparse_circuits.circuits.training.evaluation import evaluate_dictionary
    from sparse_circuits.circuits.training.train import corpus_contexts
    from sparse_circuits.dictionaries import load_dictionary
    from sparse_circuits.editing.saebench import SaebenchConfig

    if args.suite == "saebench":
        if args.histogram:
            raise ValueError("--histogram: only for --suite core")
        return _eval_dict_saebench(args)
    fields = {f.name for f in dataclasses.fields(SaebenchConfig)}
    saebench_flags = [
        flag
        for name, flag in args.flags.items()
        if name in fields and getattr(args, name) is not None
    ]
    if saebench_flags:
        raise ValueError(f"{' and '.join(saebench_flags)}: only for --suite saebench")
    model, adapter = load_model_from(args)
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


def _eval_dict_saebench(args: argparse.Namespace) -> int:
    """``eval-dict --suite saebench``: SCR, TPP and sparse probing as one JSON object."""
    from sparse_circuits.dictionaries import load_dictionary
    from sparse_circuits.editing.saebench import SaebenchConfig, run_saebench

    config = config_from_args(SaebenchConfig, args)  # bad options fail before the slow part
    dictionary = load_dictionary(args.dict, device=args.device)
    model, adapter = load_model_from(args)
    settings = {"model": args.model, "dictionary": str(args.dict)}
    result = run_saebench(
        model, adapter, dictionary, config, place=args.submodule, source=args.dict,
        settings=settings,
    )  # fmt: skip
    print(json.dumps(result))
    return 0


def discovery_options(
    options: Options, *, attribution: type, selection: type, label_tokens: bool = True
) -> None:
    """The options ``discover``, ``demo`` and ``behaviours`` share: ``--method`` and
    ``--batch-size``, set in the config ``attribution``; ``--node-threshold``,
    ``--edge-threshold``, ``--node-influence``, ``--edge-influence``, ``--supernode-cosine``
    and (with ``label_tokens``) ``--label-tokens``, set in the config ``selection``."""
    from sparse_circuits.circuits.discovery.attribution import METHODS

    options.setting(
        attribution, "method", choices=list(METHODS),
        help="node effects by attribution patching, integrated gradients or exact patching",
    )  # fmt: skip
    options.setting(attribution, "batch_size", type=int, help="prompts per forward pass")
    options.setting(
        selection, "node_threshold", type=float, help="keep nodes with |effect| at least this"
    )
    options.setting(
        selection, "edge_threshold", type=float,
        help="keep edges with |weight| at least this (unless pruning by influence)",
    )  # fmt: skip
    for name, kept in (
        ("node_influence", "nodes carrying this share of the influence on the metric (0.8"),
        ("edge_influence", "edges carrying this share of the edge influence (0.98"),
    ):
        options.setting(
            selection, name, type=float,
            help=f"prune by cumulative influence instead of --edge-threshold: keep the {kept} "
            "in circuit-tracer)",
        )  # fmt: skip
    options.setting(
        selection, "supernode_cosine", type=float,
        help="group features of one place whose decoder rows have at least this cosine into "
        "supernodes (one node in the figure, expandable in its table)",
    )  # fmt: skip
    if label_tokens:
        options.setting(
            selection, "label_tokens", type=int,
            help="corpus tokens scanned for feature labels, 0 for none",
        )  # fmt: skip


def discover_options(options: Options) -> None:
    from sparse_circuits.circuits.discovery.attribution import AttributionConfig
    from sparse_circuits.circuits.discovery.discover import CircuitFiles, DiscoverConfig
    from sparse_circuits.circuits.discovery.nodes import Aggregation

    model_options(options)
    dictionary_set_options(options)
    options.add("--prompts", required=True, type=Path, help="JSONL prompt set")
    discovery_options(options, attribution=AttributionConfig, selection=DiscoverConfig)
    options.setting(AttributionConfig, "steps", type=int, help="integration steps (ig)")
    options.setting(
        AttributionConfig, "aggregation", choices=get_args(Aggregation),
        help="sum effects over positions, or keep them per position",
    )  # fmt: skip
    options.setting(DiscoverConfig, "top_k", type=int, help="keep the k largest nodes instead")
    options.setting(CircuitFiles, "circuit", flag="--out", required=True, type=Path,
                    help="circuit JSON")  # fmt: skip
    options.setting(CircuitFiles, "html", type=Path, help="also write the interactive figure")
    options.setting(CircuitFiles, "graphml", type=Path, help="also write GraphML")
    options.setting(
        CircuitFiles, "neuronpedia", type=Path,
        help="also write the Neuronpedia / circuit-tracer graph JSON",
    )  # fmt: skip


@command("find a sparse feature circuit for a prompt set", discover_options)
def cmd_discover(args: argparse.Namespace) -> int:
    from sparse_circuits.circuits.data.prompts import read_prompts
    from sparse_circuits.circuits.discovery.attribution import AttributionConfig
    from sparse_circuits.circuits.discovery.discover import (
        CircuitFiles,
        DiscoverConfig,
        discover_and_write,
        error_share,
    )

    files = config_from_args(CircuitFiles, args)  # a missing folder fails before the slow part
    attribution = config_from_args(AttributionConfig, args)
    config = config_from_args(DiscoverConfig, args, attribution=attribution)
    read_prompts(args.prompts)  # a malformed file fails before anything slow
    dictionaries = load_dictionary_set_from(args)
    model, adapter = load_model_from(args)
    settings = {"model": args.model, "dictionaries": str(args.dictionaries)}
    written = discover_and_write(
        model, adapter, dictionaries, args.prompts, config, files, settings=settings
    )
    graph = written.graph
    n_features = sum(1 for _, d in graph.nodes(data=True) if d["feature"] >= 0)
    print(
        json.dumps(
            {
                "circuit": str(written.paths["circuit"]),
                "nodes": graph.number_of_nodes() - 1,
                "feature_nodes": n_features,
                "error_share": round(error_share(graph), 3),
                "edges": graph.number_of_edges(),
                "metric_clean": graph.graph["metric_clean"],
                "metric_patch": graph.graph["metric_patch"],
            }
        )
    )
    return 0


def evaluate_options(options: Options) -> None:
    from sparse_circuits.circuits.discovery.evaluate import evaluate_circuit_file
    from sparse_circuits.circuits.discovery.faithfulness import Ablation, ErrorNodes

    options.add("--circuit", required=True, type=Path, help="circuit JSON (from discover)")
    options.add("--prompts", required=True, type=Path, help="JSONL prompt set to evaluate on")
    model_options(options, model_from="the circuit's")
    options.add("--dictionaries", type=Path, help="dictionary set (default: the circuit's)")
    options.setting(
        evaluate_circuit_file, "ablation", choices=get_args(Ablation),
        help="what replaces an ablated node: its mean over the prompts, zero, or another "
        "prompt's value",
    )  # fmt: skip
    options.setting(
        evaluate_circuit_file, "errors", choices=get_args(ErrorNodes),
        help="ablate error nodes outside the circuit like features, or keep them",
    )  # fmt: skip
    options.setting(
        evaluate_circuit_file, "curve", type=Path,
        help="also sweep node thresholds and plot the curve (HTML)",
    )  # fmt: skip


@command(
    "faithfulness and completeness of a circuit by ablation, and its graph scores",
    evaluate_options,
)
def cmd_evaluate(args: argparse.Namespace) -> int:
    from sparse_circuits.circuits.discovery.evaluate import evaluate_circuit_file

    result = evaluate_circuit_file(
        args.circuit,
        args.prompts,
        model=args.model,
        dictionaries=args.dictionaries,
        device=args.device,
        precision=args.precision,
        ablation=args.ablation,
        errors=args.errors,
        curve=args.curve,
    )
    print(json.dumps(result))
    return 0


def demo_options(options: Options) -> None:
    from sparse_circuits.circuits.data.agreement_sets import TEMPLATES
    from sparse_circuits.circuits.discovery.demo import DemoConfig

    model_options(options)
    options.add("--out", type=Path, default=Path("demo"), help="output folder (default: demo)")
    options.setting(DemoConfig, "dictionaries", type=Path, help="dictionary set")
    options.setting(
        DemoConfig, "template", choices=TEMPLATES,
        help="agreement prompt set: its train split finds the circuit, its test split checks it",
    )  # fmt: skip
    options.setting(
        DemoConfig, "places", type=comma_list,
        help="comma-separated places (default: resid at --n-places evenly spaced layers)",
    )  # fmt: skip
    options.setting(
        DemoConfig, "n_places", type=int, help="evenly spaced resid places, without --places"
    )
    options.setting(DemoConfig, "examples", type=int, help="training prompts used, 0 for all")
    discovery_options(options, attribution=DemoConfig, selection=DemoConfig)


@command("the agreement circuit of the default model, written to --out", demo_options)
def cmd_demo(args: argparse.Namespace) -> int:
    """The agreement circuit of the default model with the starter dictionaries."""
    from sparse_circuits.circuits.discovery.demo import DemoConfig, run_demo

    config = config_from_args(DemoConfig, args)
    result = run_demo(
        args.out, config, model=args.model, device=args.device, precision=args.precision
    )
    for name, path in result.paths.items():
        print(f"{name:>8}: {path}")
    score = result.score
    print(
        f"faithfulness {score.faithfulness:.3f}, completeness {score.completeness:.3f} "
        f"({score.n_nodes} nodes, held-out {result.prompts['test'].name}, "
        f"precision {result.precision})"
    )
    print(json.dumps(result.summary()))
    return 0


def shift_options(options: Options) -> None:
    from sparse_circuits.editing.biography_sets import GENERATORS
    from sparse_circuits.editing.shift import ShiftConfig

    model_options(options)
    options.add(
        "--dictionaries", required=True, type=Path,
        help="dictionary set (its SAEs at or before --place are used)",
    )  # fmt: skip
    options.setting(
        ShiftConfig, "place", default="resid.16", help="where the probe reads (mean-pooled)"
    )
    options.setting(
        ShiftConfig, "places", type=lambda text: tuple(comma_list(text)),
        help="comma-separated dictionary places to attribute, judge and ablate at "
        "(default: every one up to --place)",
    )  # fmt: skip
    options.add(
        "--generator", choices=GENERATORS, default="bios",
        help="whose shipped files --train, --test and --concept default to: the development "
        "generator (bios) or the independent one SHIFT is reported on (profiles) "
        "(default: bios)",
    )  # fmt: skip
    options.add(
        "--train", type=Path,
        help="ambiguous split JSONL (text, label, group) (default: the generator's)",
    )  # fmt: skip
    options.add(
        "--test", type=Path,
        help="balanced split JSONL (text, label, group) (default: the generator's)",
    )  # fmt: skip
    options.add(
        "--concept", type=Path,
        help="concept set JSONL (text, group) for --auto (default: the generator's gender set)",
    )  # fmt: skip
    choose = options.exclusive(required=True)
    options.add("--ablate", into=choose, type=Path, help="file of PLACE:FEATURE_ID to ablate")
    options.add("--auto", into=choose, action="store_true", help="let the concept-set judge choose")
    options.add("--retrain", action="store_true", help="also retrain the probe")
    how_many = options.exclusive()
    options.setting(
        ShiftConfig, "candidates", into=how_many, type=int,
        help="judge this many top features (default: by --attribution-share)",
    )  # fmt: skip
    options.setting(
        ShiftConfig, "attribution_share", into=how_many, type=float,
        help="candidates: the top features carrying this share of all |attribution|",
    )  # fmt: skip
    options.setting(
        ShiftConfig, "attribution_examples", type=int,
        help="training texts the attribution averages over, 0 for all",
    )  # fmt: skip
    options.setting(
        ShiftConfig, "judge_alpha", type=float, default=None,
        help="family-wise error rate of the --auto judge",
    )  # fmt: skip
    options.setting(
        ShiftConfig, "label_tokens", type=int,
        help="corpus tokens scanned for the candidates' top contexts, 0 for none",
    )  # fmt: skip
    options.setting(
        ShiftConfig, "seed", type=int, help="seed of the probes, the splits and the baseline"
    )
    options.add(
        "--out", required=True, type=Path,
        help="output folder: results.json, results.md, candidates.md, results.html",
    )  # fmt: skip


@command("SHIFT: ablate spurious features of a probe classifier", shift_options)
def cmd_shift(args: argparse.Namespace) -> int:
    from sparse_circuits.dictionaries.sets import load_dictionary_set
    from sparse_circuits.editing.biography_sets import data_file, generator, read_labelled
    from sparse_circuits.editing.shift import (
        NoSpuriousFeature,
        candidates_markdown,
        plot_results,
        results_markdown,
        run_shift,
    )
    from sparse_circuits.files import read_utf8, write_text_atomic

    config = _shift_config(args)  # bad options fail before the slow part
    shipped = generator(args.generator).data_dir
    train = read_labelled(args.train or data_file("train", shipped))
    test = read_labelled(args.test or data_file("test", shipped))
    concept = ablate = None
    if args.auto:
        concept = read_labelled(
            args.concept or data_file("gender_concept", shipped), fields=("text", "group")
        )
    else:
        text = read_utf8(args.ablate, what="ablation list")
        ablate = [
            parse_feature_spec(item, form="PLACE:FEATURE_ID", source=args.ablate)
            for item in text.split()
        ]
    model, adapter = load_model_from(args)
    adapter.parse(args.place)
    dictionaries = load_dictionary_set(args.dictionaries, device=args.device)
    try:
        results = run_shift(
            model, adapter, dictionaries, train, test, config,
            concept=concept, ablate=ablate, ablation_source=args.ablate, retrain=args.retrain,
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
    write_text_atomic(args.out / "results.md", results_markdown(results))
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
    ignored = [flag for flag, value in judge_options.items() if value is not None]
    if args.ablate and ignored:
        raise ValueError(f"{' and '.join(ignored)}: only for --auto, not with --ablate")
    examples = None if args.attribution_examples == 0 else args.attribution_examples  # 0: all
    return config_from_args(ShiftConfig, args, attribution_examples=examples)


def steer_options(options: Options) -> None:
    from sparse_circuits.editing.steering import steered_generations

    model_options(options)
    options.add("--place", required=True, help="where to add the vector, e.g. resid.10")
    source = options.exclusive(required=True)
    options.add(
        "--feature", into=source, help="DICT_FOLDER:FEATURE_ID: a feature's decoder direction"
    )
    options.add(
        "--contrast", into=source, nargs=2, type=Path, metavar=("A", "B"),
        help="mean activation over prompts A minus over prompts B (.jsonl or .txt)",
    )  # fmt: skip
    options.add("--coef", type=float, required=True, help="multiple of the vector added")
    options.add("--prompt", required=True, help="text the model continues, greedily")
    options.setting(
        steered_generations, "max_new_tokens", type=int, help="tokens generated each time"
    )
    options.add("--json", action="store_true", help="print one JSON object instead")


def side_by_side(left: str, right: str, *, titles=("unsteered", "steered"), width=48) -> str:
    import textwrap

    columns = [textwrap.wrap(text, width) or [""] for text in (left, right)]
    rows = max(len(c) for c in columns)
    lines = [f"{titles[0]:<{width}} | {titles[1]}", f"{'-' * width}-+-{'-' * width}"]
    for i in range(rows):
        a, b = (c[i] if i < len(c) else "" for c in columns)
        lines.append(f"{a:<{width}} | {b}")
    return "\n".join(lines)


@command("generate with and without a steering vector", steer_options)
def cmd_steer(args: argparse.Namespace) -> int:
    from sparse_circuits.dictionaries import load_dictionary
    from sparse_circuits.editing.interventions import Steering
    from sparse_circuits.editing.steering import (
        contrastive_vector,
        feature_vector,
        read_texts,
        steered_generations,
    )

    if args.feature:
        spec = parse_feature_spec(args.feature, form="DICT_FOLDER:FEATURE_ID", source="--feature")
        folder, feature = Path(spec[0]), spec[1]
        dictionary = load_dictionary(folder)
        vector = feature_vector(dictionary, feature, place=args.place)
    else:
        positive, negative = (read_texts(p) for p in args.contrast)
    model, adapter = load_model_from(args)
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


def export_options(options: Options) -> None:
    from sparse_circuits.circuits.export import FORMATS

    options.add("circuit", type=Path, help="circuit JSON (from discover)")
    options.add("--format", required=True, choices=FORMATS, help="what to write")
    options.add("--out", required=True, type=Path, help="output file")


@command("write a circuit in another format", export_options)
def cmd_export(args: argparse.Namespace) -> int:
    from sparse_circuits.circuits.discovery.graph import load_circuit
    from sparse_circuits.circuits.export import export

    export(load_circuit(args.circuit), args.out, args.format)
    print(json.dumps({"out": str(args.out), "format": args.format}))
    return 0


def convert_options(options: Options) -> None:
    from sparse_circuits.dictionaries.convert import TARGET_FORMATS

    options.add(
        "dict", type=Path,
        help="dictionary folder in any readable format (or a circuit-tracer layer_N.safetensors)",
    )  # fmt: skip
    options.add(
        "--to", required=True, choices=TARGET_FORMATS,
        help="format to write, for that project's own loader",
    )  # fmt: skip
    options.add(
        "out", type=Path,
        help="folder to write (one holding a dictionary in another format is refused)",
    )  # fmt: skip


@command("write a dictionary in another project's format", convert_options)
def cmd_convert(args: argparse.Namespace) -> int:
    from sparse_circuits.dictionaries import load_dictionary
    from sparse_circuits.dictionaries.convert import FormatCannotHold, convert

    dictionary = load_dictionary(args.dict)  # a file it cannot read is named by its own error
    try:
        out = convert(dictionary, args.to, args.out)
    except FormatCannotHold as error:
        raise ValueError(f"{args.dict}: --to {args.to}: {error}") from None
    print(json.dumps({"out": str(out), "format": args.to}))
    return 0


def behaviours_options(options: Options) -> None:
    from sparse_circuits.circuits.behaviours.cluster_circuit import ClusterCircuitConfig
    from sparse_circuits.circuits.behaviours.clustering import ClusterConfig, ClusterMethod
    from sparse_circuits.circuits.behaviours.contexts import ContextConfig
    from sparse_circuits.circuits.behaviours.describe import DESCRIPTIONS
    from sparse_circuits.circuits.behaviours.pipeline import BehavioursConfig
    from sparse_circuits.circuits.discovery.attribution import AttributionConfig
    from sparse_circuits.circuits.discovery.discover import DiscoverConfig

    model_options(options)
    dictionary_set_options(options)
    options.setting(BehavioursConfig, "corpus", help="embedded, large, a .txt or .jsonl file")
    options.setting(
        ContextConfig, "corpus_tokens", type=int, help="read at most this many corpus tokens"
    )
    options.setting(
        ContextConfig, "n_contexts", flag="--contexts", type=int, help="low-loss contexts to find"
    )
    options.setting(
        ContextConfig, "max_loss", type=float,
        help="keep a context when the model's loss on its answer is below this (nats)",
    )  # fmt: skip
    options.setting(
        ContextConfig, "prefix_length", type=int, help="tokens of every prefix, BOS included"
    )
    options.setting(
        BehavioursConfig, "describe", choices=DESCRIPTIONS,
        help="a context's vector at its last position: activation x gradient of the answer's "
        "log-probability, feature activations, or gradients of each place",
    )  # fmt: skip
    options.setting(
        ClusterConfig, "clusters", type=int_tuple,
        help="cluster count K, or K1,K2,... of which the best silhouette is kept "
        "(default: a sweep, mean cluster sizes 80, 40, 20 and 10)",
    )  # fmt: skip
    options.setting(
        ClusterConfig, "algorithm", flag="--cluster-method", choices=get_args(ClusterMethod),
        help="spectral clustering on the angular affinity, k-means, or auto: spectral up to "
        f"{library_default(ClusterConfig, 'spectral_max')} contexts",
    )  # fmt: skip
    discovery_options(
        options, attribution=AttributionConfig, selection=DiscoverConfig, label_tokens=False
    )
    options.setting(AttributionConfig, "steps", type=int, help="integration steps (ig)")
    options.setting(
        ClusterCircuitConfig, "examples", type=int,
        help="contexts a cluster's circuit is found on, at most",
    )  # fmt: skip
    options.setting(
        ClusterCircuitConfig, "held_out", type=float,
        help="share of a cluster's contexts kept back to score faithfulness on",
    )  # fmt: skip
    options.setting(
        ClusterCircuitConfig, "top_features", type=int,
        help="features listed with their top activating contexts on a cluster's page",
    )  # fmt: skip
    options.setting(
        ClusterCircuitConfig, "seed", type=int,
        help="seed of the contexts' order, the clustering and the held-out splits",
    )  # fmt: skip
    options.add(
        "--out", required=True, type=Path,
        help="output folder: the site, index.html, clusters.jsonl; a rerun finishes it",
    )  # fmt: skip


def behaviours_config(args: argparse.Namespace):
    """The ``BehavioursConfig`` of the options given (``--seed`` seeds every stage,
    ``--batch-size`` describes contexts too)."""
    from sparse_circuits.circuits.behaviours.cluster_circuit import ClusterCircuitConfig
    from sparse_circuits.circuits.behaviours.clustering import ClusterConfig
    from sparse_circuits.circuits.behaviours.contexts import ContextConfig
    from sparse_circuits.circuits.behaviours.pipeline import BehavioursConfig
    from sparse_circuits.circuits.discovery.attribution import AttributionConfig
    from sparse_circuits.circuits.discovery.discover import DiscoverConfig

    attribution = config_from_args(AttributionConfig, args)
    discover = config_from_args(DiscoverConfig, args, attribution=attribution)
    return config_from_args(
        BehavioursConfig,
        args,
        contexts=config_from_args(ContextConfig, args),
        clustering=config_from_args(ClusterConfig, args),
        circuits=config_from_args(ClusterCircuitConfig, args, discover=discover),
        describe_batch_size=attribution.batch_size,
    )


@command("cluster a corpus's contexts into behaviours, a circuit each, a site", behaviours_options)
def cmd_behaviours(args: argparse.Namespace) -> int:
    """The unsupervised pipeline: corpus -> contexts -> clusters -> a circuit each -> a site."""
    from sparse_circuits.circuits.behaviours.pipeline import run_behaviours
    from sparse_circuits.distributed import init_distributed

    config = behaviours_config(args)  # bad options fail before the slow part
    init_distributed(args.device)  # under torchrun: before the model, so each rank has its GPU
    dictionaries = load_dictionary_set_from(args)
    model, adapter = load_model_from(args)
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


# --------------------------------------------------------------------------- entry point


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; of those, only ``commands`` (default: all) get their
    options, since building them imports the library."""
    parser = argparse.ArgumentParser(
        prog="sparse-circuits",
        description="Sparse dictionaries, sparse feature circuits and feature-level editing.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = set(COMMANDS if commands is None else commands)
    for name, spec in COMMANDS.items():
        command_parser = sub.add_parser(name, help=spec.help, description=spec.help)
        command_parser.set_defaults(run=spec.run)
        if name in wanted:
            spec.add_options(Options(command_parser))
    return parser


def quiet_transformers() -> None:
    """Loading-weights progress bars and advisory warnings would bury the one-line errors."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a warning as ``warning: ...`` on stderr, one line (``warnings.showwarning``)."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[:1]).parse_args(argv)  # argv[0] names the command
    quiet_transformers()
    keep_freed_memory()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warning
            warnings.simplefilter("always", CircuitWarning)
            return args.run(args)
    except (ValueError, FileNotFoundError, OSError) as error:
        message = str(error)
        if isinstance(error, ConfigError):  # it names settings: name their flags
            message = with_flags(message, args.flags)
        print(f"error: {message}", file=sys.stderr)
        return 2
