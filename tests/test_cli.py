"""The command line, end to end on a tiny model saved to a folder; its options against the
library's configs and registries."""

import argparse
import dataclasses
import json
import re
from typing import get_args

import networkx as nx
import pytest
import torch

from sparse_circuits.circuits.behaviours.cluster_circuit import ClusterCircuitConfig
from sparse_circuits.circuits.behaviours.clustering import ClusterConfig, ClusterMethod
from sparse_circuits.circuits.behaviours.contexts import ContextConfig
from sparse_circuits.circuits.behaviours.describe import DESCRIPTIONS
from sparse_circuits.circuits.behaviours.pipeline import BehavioursConfig
from sparse_circuits.circuits.data.agreement_sets import TEMPLATES, agreement_file
from sparse_circuits.circuits.data.prompts import read_prompts
from sparse_circuits.circuits.discovery.attribution import METHODS, AttributionConfig
from sparse_circuits.circuits.discovery.demo import DemoConfig, run_demo
from sparse_circuits.circuits.discovery.discover import (
    DiscoverConfig,
    discover_circuit,
    load_prompt_batches,
)
from sparse_circuits.circuits.discovery.evaluate import evaluate_circuit_file
from sparse_circuits.circuits.discovery.faithfulness import Ablation, ErrorNodes
from sparse_circuits.circuits.discovery.graph import CircuitFileError, load_circuit, save_circuit
from sparse_circuits.circuits.discovery.influence import graph_scores
from sparse_circuits.circuits.discovery.metrics import METRICS
from sparse_circuits.circuits.export import FORMATS
from sparse_circuits.circuits.model.adapters import torch_module
from sparse_circuits.circuits.model.loading import load_model
from sparse_circuits.circuits.model.places import spaced_layers
from sparse_circuits.cli import (
    COMMANDS,
    behaviours_config,
    build_parser,
    config_from_args,
    main,
    parse_feature_spec,
    with_flags,
)
from sparse_circuits.dictionaries.convert import TARGET_FORMATS
from sparse_circuits.dictionaries.sets import load_dictionary_set
from sparse_circuits.dictionaries.training import OBJECTIVES, TrainConfig
from sparse_circuits.editing.shift import ShiftConfig
from sparse_circuits.errors import ConfigError
from sparse_circuits.precision import resolve_precision

from .conftest import D_MODEL, random_dictionary, tiny_model
from .reference import EXAMPLES


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model, _ = tiny_model("llama", seed=11)
    model._module.save_pretrained(root / "model")
    model.tokenizer.save_pretrained(root / "model")
    for i, place in enumerate(["resid.0", "mlp.1", "resid.1", "resid.2"]):
        random_dictionary("topk", D_MODEL, 24, seed=i, place=place).save(root / "dicts" / place)
    prompts = root / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps(
                {
                    "clean_prefix": e.clean_prefix,
                    "patch_prefix": e.patch_prefix,
                    "clean_answer": e.clean_answer,
                    "patch_answer": e.patch_answer,
                }
            )
            + "\n"
            for e in EXAMPLES
        )
    )
    return root


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit, match="^0$"):  # the exit code
        main(["--help"])
    out = capsys.readouterr().out
    listed = re.findall(r"^    (\S+)", out, flags=re.MULTILINE)  # one command a line
    commands = (
        "info",
        "train",
        "eval-dict",
        "discover",
        "evaluate",
        "export",
        "convert",
        "behaviours",
    )
    for name in commands:
        assert name in listed


def test_discover_evaluate_export(workspace, capsys):
    root = workspace
    code, out, err = run(
        capsys,
        "discover",
        "--model",
        root / "model",
        "--dictionaries",
        root / "dicts",
        "--prompts",
        root / "prompts.jsonl",
        "--top-k",
        "12",
        "--edge-threshold",
        "0",
        "--out",
        root / "c.json",
        "--html",
        root / "c.html",
        "--graphml",
        root / "c.graphml",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["nodes"] == 12
    graph = load_circuit(root / "c.json")
    assert graph.graph["settings"]["prompts"].endswith("prompts.jsonl")
    assert (root / "c.html").read_text().count("plotly") > 0
    code, out, err = run(
        capsys,
        "evaluate",
        "--circuit",
        root / "c.json",
        "--prompts",
        root / "prompts.jsonl",
        "--curve",
        root / "curve.html",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["nodes"] == 12 and len(result["curve"]) > 1
    assert -10 < result["faithfulness"] < 10
    code, out, err = run(
        capsys, "export", root / "c.json", "--format", "neuronpedia", "--out", root / "np.json"
    )
    assert code == 0, err
    assert set(json.loads((root / "np.json").read_text())) >= {"metadata", "nodes", "links"}


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "prompts.jsonl:2: not valid JSON"),
        ('{"clean_prefix": "the dog"}', "prompts.jsonl:2: missing or non-string field"),
        (
            '{"clean_prefix": "the dog", "clean_answer": "runs fast"}',
            "answer 'runs fast' is 2 tokens",
        ),
    ],
)
def test_bad_prompt_lines(workspace, capsys, tmp_path, line, message):
    prompts = tmp_path / "prompts.jsonl"
    good = '{"clean_prefix": "the dog", "clean_answer": "runs"}'
    prompts.write_text(good + "\n" + line + "\n")
    code, _, err = run(
        capsys,
        "discover",
        "--model",
        workspace / "model",
        "--dictionaries",
        workspace / "dicts",
        "--prompts",
        prompts,
        "--out",
        tmp_path / "c.json",
    )
    assert code == 2 and message in err and "\n" not in err.strip()
    assert not (tmp_path / "c.json").exists()


def test_unequal_lengths_with_aggregation_none(workspace, capsys, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        json.dumps({"clean_prefix": "the dog", "patch_prefix": "the big dog",
                    "clean_answer": "runs", "patch_answer": "run"}) + "\n"
    )  # fmt: skip
    code, _, err = run(
        capsys,
        "discover",
        "--model",
        workspace / "model",
        "--dictionaries",
        workspace / "dicts",
        "--prompts",
        prompts,
        "--aggregation",
        "none",
        "--out",
        tmp_path / "c.json",
    )
    assert code == 2 and "must be equally long" in err


def test_missing_dictionary_and_missing_folder(workspace, capsys, tmp_path):
    code, _, err = run(
        capsys,
        "discover",
        "--model",
        workspace / "model",
        "--dictionaries",
        workspace / "dicts",
        "--places",
        "resid.0,attn.2",
        "--prompts",
        workspace / "prompts.jsonl",
        "--out",
        tmp_path / "c.json",
    )
    assert code == 2 and "no dictionary for attn.2" in err
    code, _, err = run(
        capsys,
        "discover",
        "--model",
        workspace / "model",
        "--dictionaries",
        workspace / "dicts",
        "--prompts",
        workspace / "prompts.jsonl",
        "--out",
        tmp_path / "nope" / "c.json",
    )
    assert code == 2 and "does not exist" in err


def test_shipped_agreement_sets_exist():
    from sparse_circuits.circuits.data.agreement_sets import agreement_file
    from sparse_circuits.circuits.data.prompts import read_prompts

    for template in TEMPLATES:
        for split in ("train", "test"):
            assert len(read_prompts(agreement_file(template, split))) >= 50


def sub_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return subparsers.choices


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    (action,) = [a for a in parser._actions if flag in a.option_strings or a.dest == flag]
    return action


def test_every_option_of_every_command_has_help():
    commands = sub_parsers(build_parser())
    assert list(commands) == list(COMMANDS)
    for name, parser in commands.items():
        actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
        assert actions, name
        for action in actions:
            where = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and action.help.strip(), where


def test_choices_come_from_the_registries():
    commands = sub_parsers(build_parser())
    assert option(commands["train"], "--arch").choices == list(OBJECTIVES)
    for name in ("discover", "demo", "behaviours"):
        assert option(commands[name], "--method").choices == list(METHODS)
    assert tuple(option(commands["behaviours"], "--describe").choices) == DESCRIPTIONS
    assert DESCRIPTIONS == ("attribution", "activations", "gradients")
    methods = option(commands["behaviours"], "--cluster-method").choices
    assert tuple(methods) == get_args(ClusterMethod) == ("auto", "spectral", "kmeans")
    assert list(option(commands["export"], "--format").choices) == list(FORMATS)
    assert list(option(commands["convert"], "--to").choices) == list(TARGET_FORMATS)
    assert list(option(commands["evaluate"], "--ablation").choices) == list(get_args(Ablation))
    assert list(option(commands["evaluate"], "--errors").choices) == list(get_args(ErrorNodes))
    assert list(option(commands["demo"], "--template").choices) == list(TEMPLATES)


def test_options_left_out_give_the_configs_defaults():
    """With only the required options, each command's config equals the library's defaults
    (save the command line's own defaults, stated here)."""
    parser = build_parser()
    train = parser.parse_args(["train", "--submodule", "resid.0", "--arch", "topk",
                               "--dict-size", "64", "--k", "4", "--tokens", "8192", "--out", "x"])  # fmt: skip
    expected = TrainConfig(arch="topk", d_sae=64, k=4, steps=2, checkpoint_every=500)
    assert config_from_args(TrainConfig, train, steps=2) == expected
    assert expected.auxk_alpha > 0
    no_auxk = parser.parse_args(["train", "--submodule", "resid.0", "--arch", "relu",
                                 "--dict-size", "8", "--tokens", "8", "--no-auxk", "--out", "x"])  # fmt: skip
    assert config_from_args(TrainConfig, no_auxk, steps=1).auxk_alpha == 0.0
    matryoshka = parser.parse_args(["train", "--submodule", "resid.0", "--arch",
                                    "matryoshka_batchtopk", "--dict-size", "64", "--k", "4",
                                    "--matryoshka-widths", "8,16,64", "--tokens", "8", "--out", "x"])  # fmt: skip
    assert config_from_args(TrainConfig, matryoshka, steps=1).matryoshka_widths == [8, 16, 64]

    discover = parser.parse_args(
        ["discover", "--dictionaries", "d", "--prompts", "p", "--out", "c"]
    )
    attribution = config_from_args(AttributionConfig, discover)
    assert attribution == AttributionConfig()
    got = config_from_args(DiscoverConfig, discover, attribution=attribution)
    assert got == DiscoverConfig(AttributionConfig())

    demo = parser.parse_args(["demo"])
    assert config_from_args(DemoConfig, demo) == DemoConfig()

    behaviours = parser.parse_args(["behaviours", "--dictionaries", "d", "--out", "o"])
    assert behaviours_config(behaviours) == BehavioursConfig()
    seeded = parser.parse_args(["behaviours", "--dictionaries", "d", "--seed", "3",
                                "--batch-size", "4", "--clusters", "7,10", "--out", "o"])  # fmt: skip
    config = behaviours_config(seeded)
    seeds = (config.contexts.seed, config.clustering.seed, config.circuits.seed)
    assert seeds == (3, 3, 3) and config.clustering.clusters == (7, 10)
    assert config.describe_batch_size == config.circuits.discover.attribution.batch_size == 4
    assert config.contexts.score_batch_size == ContextConfig().score_batch_size

    shift = parser.parse_args(["shift", "--dictionaries", "d", "--auto", "--out", "o"])
    assert config_from_args(ShiftConfig, shift) == ShiftConfig(place="resid.16")

    auxk_default = {f.name: f.default for f in dataclasses.fields(TrainConfig)}["auxk_alpha"]
    assert f"(default: {auxk_default})" in option(sub_parsers(parser)["train"], "--no-auxk").help


def test_with_flags_rewrites_whole_setting_names_only():
    flags = {"k": "--k", "d_sae": "--dict-size", "arch": "--arch"}
    assert with_flags("arch topk needs k", flags) == "--arch topk needs --k"
    assert (
        with_flags("k 40 must be between 1 and d_sae 32", flags)
        == "--k 40 must be between 1 and --dict-size 32"
    )
    assert with_flags("d_sae_total and kk stay", flags) == "d_sae_total and kk stay"


@pytest.mark.parametrize(
    "build, field_message",
    [
        (lambda: DiscoverConfig(AttributionConfig(), node_threshold=-1.0),
         "node_threshold must be >= 0, got -1.0"),
        (lambda: AttributionConfig(steps=0), "steps must be at least 1, got 0"),
        (lambda: TrainConfig(arch="topk", d_sae=8, steps=1), "arch topk needs k"),
        (lambda: DemoConfig(n_places=0), "n_places must be at least 1, got 0"),
        (lambda: ShiftConfig("resid.1", attribution_share=2.0),
         "attribution_share must be in (0, 1], not 2.0"),
        (lambda: ContextConfig(n_contexts=0), "n_contexts must be at least 1, got 0"),
        (lambda: ClusterConfig(clusters=(4, 0)), "clusters must be at least 1, got [4, 0]"),
        (lambda: ClusterCircuitConfig(held_out=1.0), "held_out must be in [0, 1), got 1.0"),
        (lambda: BehavioursConfig(describe="words"),
         "describe must be one of attribution, activations, gradients, got 'words'"),
    ],
)  # fmt: skip
def test_config_errors_name_their_fields(build, field_message):
    with pytest.raises(ConfigError) as error:
        build()
    assert str(error.value) == field_message


@pytest.mark.parametrize(
    "argv, message",
    [
        (["discover", "--dictionaries", "{tmp}", "--prompts", "{tmp}/p.jsonl",
          "--node-threshold", "-1", "--out", "{tmp}/c.json"],
         "--node-threshold must be >= 0, got -1.0"),
        (["discover", "--dictionaries", "{tmp}", "--prompts", "{tmp}/p.jsonl",
          "--method", "ig", "--steps", "0", "--out", "{tmp}/c.json"],
         "--steps must be at least 1, got 0"),
        (["train", "--submodule", "resid.0", "--arch", "topk", "--dict-size", "8",
          "--tokens", "64", "--out", "{tmp}/sae"], "--arch topk needs --k"),
        (["demo", "--n-places", "0", "--out", "{tmp}/demo"], "--n-places must be at least 1, got 0"),
        (["shift", "--dictionaries", "{tmp}", "--auto", "--attribution-share", "2",
          "--out", "{tmp}/o"], "--attribution-share must be in (0, 1], not 2.0"),
        (["behaviours", "--dictionaries", "{tmp}", "--contexts", "0", "--out", "{tmp}/demo"],
         "--contexts must be at least 1, got 0"),
        (["behaviours", "--dictionaries", "{tmp}", "--clusters", "4,0", "--out", "{tmp}/demo"],
         "--clusters must be at least 1, got [4, 0]"),
        (["behaviours", "--dictionaries", "{tmp}", "--held-out", "1", "--out", "{tmp}/demo"],
         "--held-out must be in [0, 1), got 1.0"),
        (["behaviours", "--dictionaries", "{tmp}", "--steps", "0", "--out", "{tmp}/demo"],
         "--steps must be at least 1, got 0"),
    ],
)  # fmt: skip
def test_config_errors_name_the_flags_on_the_command_line(capsys, tmp_path, argv, message):
    """The model named does not exist: the error comes before anything loads."""
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, out, err = run(capsys, *argv[:1], "--model", tmp_path / "missing", *argv[1:])
    assert code == 2 and out == ""
    assert err == f"error: {message}\n"
    assert not (tmp_path / "demo").exists()


def test_a_malformed_cluster_list_is_an_error_naming_its_flag(capsys, tmp_path):
    argv = ["behaviours", "--dictionaries", tmp_path, "--clusters", "4,x", "--out", tmp_path / "o"]
    with pytest.raises(SystemExit, match="^2$"):
        run(capsys, *argv)
    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith("argument --clusters: expected N or N1,N2,..., got '4,x'")
    assert not (tmp_path / "o").exists()


def test_feature_specs_have_one_parser():
    form = "DICT_FOLDER:FEATURE_ID"
    assert parse_feature_spec("C:/dicts/a:12", form=form, source="--feature") == ("C:/dicts/a", 12)
    for spec in ("dicts/a", "dicts/a:x", ":3", "dicts/a:-1"):
        with pytest.raises(ValueError) as error:
            parse_feature_spec(spec, form=form, source="--feature")
        assert str(error.value) == f"--feature: {spec!r} is not DICT_FOLDER:FEATURE_ID"


def agreement_model(folder):
    """A tiny random Llama whose word-level vocabulary holds every word of the ``simple``
    agreement prompts (the default tiny tokenizer knows few of them), saved to ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    words = sorted(
        {
            word
            for split in ("train", "test")
            for example in read_prompts(agreement_file("simple", split))
            for text in (
                example.clean_prefix,
                example.patch_prefix,
                example.clean_answer,
                example.patch_answer,
            )  # fmt: skip
            for word in text.split()
        }
    )
    vocab = {token: i for i, token in enumerate(["<unk>", "<bos>", "<eos>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<bos>", eos_token="<eos>",
        pad_token="<eos>",
    )  # fmt: skip
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=D_MODEL, intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    torch.manual_seed(5)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for i, place in enumerate(["resid.0", "resid.1", "resid.2"]):
        random_dictionary("topk", D_MODEL, 24, seed=i, place=place).save(folder / "dicts" / place)
    return folder


def test_demo_on_a_tiny_model(capsys, tmp_path):
    """The library's ``run_demo`` and the ``demo`` command: places spread over the model's
    real depth (3 layers here), and the printed faithfulness is what evaluating the written
    circuit on the held-out split gives."""
    root = agreement_model(tmp_path / "model")
    options = {"template": "simple", "n_places": 2, "examples": 8, "label_tokens": 0}
    config = DemoConfig(dictionaries=root / "dicts", node_threshold=0.0, **options)
    everything = run_demo(tmp_path / "all", config, model=str(root), progress=False)
    expected_places = [f"resid.{layer}" for layer in spaced_layers(3, 2)]
    assert everything.places == expected_places == ["resid.0", "resid.2"]
    effects = [abs(d["effect"]) for n, d in load_circuit(everything.paths["circuit"]).nodes(data=True)
               if n != "metric"]  # fmt: skip
    assert len(effects) == 2 * 25 and max(effects) > 0
    threshold = sorted(effects)[-10]  # a circuit of the ten largest nodes

    code, out, err = run(
        capsys, "demo", "--model", root, "--dictionaries", root / "dicts",
        "--template", "simple", "--n-places", "2", "--examples", "8", "--label-tokens", "0",
        "--node-threshold", threshold, "--out", tmp_path / "demo",
    )  # fmt: skip
    assert code == 0, err
    *lines, last = out.rstrip().splitlines()
    summary = json.loads(last)
    assert set(summary) == {"circuit", "html", "graphml", "neuronpedia", "prompts", "nodes",
                            "edges", "faithfulness", "completeness", "figure_nodes",
                            "replacement_score", "completeness_score", "precision",
                            "seconds"}  # fmt: skip
    assert summary["precision"] == resolve_precision("auto").name  # the default, announced
    assert summary["prompts"] == {
        split: str(agreement_file("simple", split)) for split in ("train", "test")
    }
    files = {
        "circuit": "circuit.json",
        "html": "circuit.html",
        "graphml": "circuit.graphml",
        "neuronpedia": "circuit.neuronpedia.json",
    }
    for name, file in files.items():
        assert summary[name] == str(tmp_path / "demo" / file)
        assert f"{name:>8}: {summary[name]}" in lines
    graph = load_circuit(summary["circuit"])
    assert graph.graph["settings"]["places"] == expected_places
    assert graph.graph["settings"]["prompts"] == summary["prompts"]["train"]
    assert summary["edges"] == graph.number_of_edges()
    assert summary["nodes"] == graph.number_of_nodes() - 1 == 10
    scores = graph_scores(graph)
    assert summary["completeness_score"] == round(scores.completeness, 3)
    reaching = {n for n in graph if n != "metric" and nx.has_path(graph, n, "metric")}
    assert summary["figure_nodes"] == len(reaching)
    result = evaluate_circuit_file(summary["circuit"], summary["prompts"]["test"])
    assert 0 < abs(result["faithfulness"]) and result["nodes"] == 10
    assert summary["faithfulness"] == round(result["faithfulness"], 3)
    assert summary["completeness"] == round(result["completeness"], 3)
    assert lines[-1] == (
        f"faithfulness {result['faithfulness']:.3f}, completeness {result['completeness']:.3f} "
        f"(10 nodes, held-out simple_test.jsonl, precision {summary['precision']})"
    )


class CleanLogit:
    """The clean answer's logit at the last position: a metric other than the default."""

    last_position_only = True

    def __call__(self, model, adapter, batch):
        logits_BV = model.output.logits[:, -1]
        return logits_BV[torch.arange(len(batch)), batch.clean_answer]

    def __repr__(self) -> str:
        return "clean_logit"


def test_evaluate_uses_the_metric_recorded_in_the_circuit(workspace, capsys, tmp_path, monkeypatch):
    root = workspace
    model, adapter = load_model(root / "model")
    dictionaries = load_dictionary_set(root / "dicts")
    batches = load_prompt_batches(model.tokenizer, root / "prompts.jsonl")
    settings = {"model": str(root / "model"), "dictionaries": str(root / "dicts")}
    config = DiscoverConfig(AttributionConfig(), top_k=6)
    graph, _ = discover_circuit(
        model, adapter, dictionaries, batches, config,
        metric=CleanLogit(), settings=settings, progress=False,
    )  # fmt: skip
    circuit = save_circuit(graph, tmp_path / "c.json")
    assert graph.graph["settings"]["metric"] == "clean_logit"

    message = f"{circuit}: cannot rebuild its metric 'clean_logit' from the name"
    with pytest.raises(CircuitFileError) as error:
        evaluate_circuit_file(circuit, root / "prompts.jsonl")
    assert str(error.value).startswith(message)
    code, _, err = run(
        capsys, "evaluate", "--circuit", circuit, "--prompts", root / "prompts.jsonl"
    )
    assert code == 2 and err.startswith(f"error: {message}") and len(err.splitlines()) == 1

    monkeypatch.setitem(METRICS, "clean_logit", CleanLogit)
    result = evaluate_circuit_file(circuit, root / "prompts.jsonl")
    with torch.no_grad():  # the full model's metric by a plain forward, no nnsight
        clean = [
            torch_module(model)(b.clean_ids).logits[:, -1].gather(1, b.clean_answer[:, None])
            for b in batches
        ]
    assert result["m_full"] == pytest.approx(float(torch.cat(clean).mean()), rel=1e-4)


def test_evaluate_warns_when_faithfulness_is_ill_conditioned(workspace, capsys, monkeypatch):
    """|m(full) - m(empty)| under ILL_CONDITIONED of |m(full)| warns, once, on one line, and is
    recorded; just above it, nothing."""
    from sparse_circuits.circuits.discovery import evaluate
    from sparse_circuits.circuits.discovery.faithfulness import CircuitScore
    from sparse_circuits.errors import CircuitWarning

    root = workspace
    circuit = root / "c.json"
    if not circuit.exists():
        test_discover_evaluate_export(workspace, capsys)
    assert evaluate.ILL_CONDITIONED == 0.1
    spans = {"ill": 0.19, "fine": 0.21}  # m(full) 2.0: the bound is 0.2
    for name, span in spans.items():
        score = CircuitScore(5, 0.5, 0.5, 1.9, 1.9, 2.0, 2.0 - span)
        monkeypatch.setattr(evaluate, "score_selection", lambda *a, s=score, **k: [s])
        if name == "ill":
            with pytest.warns(CircuitWarning, match=r"faithfulness is ill-conditioned: .* 0\.19"):
                result = evaluate.evaluate_circuit_file(circuit, root / "prompts.jsonl")
            assert len(result["warnings"]) == 1
            assert "balanced prompts" in result["warnings"][0]
            assert "zero ablation" in result["warnings"][0]
        else:
            result = evaluate.evaluate_circuit_file(circuit, root / "prompts.jsonl")
            assert result["warnings"] == []
    code, out, err = run(
        capsys, "evaluate", "--circuit", circuit, "--prompts", root / "prompts.jsonl"
    )
    assert code == 0 and err == ""
    monkeypatch.setattr(
        evaluate, "score_selection", lambda *a, **k: [CircuitScore(5, 9, 9, 1.9, 1.9, 2.0, 1.99)]
    )
    code, out, err = run(
        capsys, "evaluate", "--circuit", circuit, "--prompts", root / "prompts.jsonl"
    )
    assert code == 0
    assert err.startswith("warning: faithfulness is ill-conditioned") and len(err.splitlines()) == 1
    assert json.loads(out)["warnings"] == [err.removeprefix("warning: ").strip()]


def test_evaluate_reports_graph_scores(workspace, capsys):
    from sparse_circuits.circuits.discovery.influence import graph_scores

    root = workspace
    if not (root / "c.json").exists():
        test_discover_evaluate_export(workspace, capsys)
    result = evaluate_circuit_file(root / "c.json", root / "prompts.jsonl")
    scores = graph_scores(load_circuit(root / "c.json"))
    assert result["replacement_score"] == pytest.approx(scores.replacement, nan_ok=True)
    assert result["completeness_score"] == pytest.approx(scores.completeness)
    assert 0 <= result["completeness_score"] <= 1


def test_discover_warns_when_error_nodes_carry_most_of_the_effect(workspace, capsys):
    import warnings

    from sparse_circuits.circuits.discovery.discover import ERROR_SHARE, error_share
    from sparse_circuits.errors import CircuitWarning

    root = workspace
    model, adapter = load_model(
        root / "model", precision="float32"
    )  # the shares below are float32's
    dictionaries = load_dictionary_set(root / "dicts")
    batches = load_prompt_batches(model.tokenizer, root / "prompts.jsonl")
    warned = {}
    for name, config in (
        ("top 12", DiscoverConfig(AttributionConfig(), top_k=12)),
        ("pruned", DiscoverConfig(AttributionConfig(), top_k=12, node_influence=0.8)),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            graph, effects = discover_circuit(
                model, adapter, dictionaries, batches, config, progress=False
            )
        # the share, recomputed from the node effects the circuit was selected from
        nodes = [d for n, d in graph.nodes(data=True) if n != "metric"]
        errors = sum(abs(float(effects.errors[d["place"]])) for d in nodes if d["is_error"])
        features = sum(
            abs(float(effects.features[d["place"]][d["feature"]]))
            for d in nodes
            if not d["is_error"]
        )
        share = errors / (errors + features)
        assert error_share(graph) == pytest.approx(share)
        ours = [w for w in caught if issubclass(w.category, CircuitWarning)]
        assert len(ours) == (share > ERROR_SHARE)
        if ours:
            assert str(ours[0].message).startswith(f"error nodes carry {share:.0%} of the")
        warned[name] = bool(ours)
    assert warned == {"top 12": False, "pruned": True}  # both sides of the bound are seen
    # the command line: one line on stderr, the share in the summary
    code, out, err = run(
        capsys, "discover", "--model", root / "model", "--dictionaries", root / "dicts",
        "--prompts", root / "prompts.jsonl", "--top-k", "12", "--node-influence", "0.8",
        "--precision", "float32", "--out", root / "w.json",
    )  # fmt: skip
    assert code == 0
    (line,) = [line for line in err.splitlines() if "warning" in line]  # besides progress bars
    assert line.startswith("warning: error nodes carry") and "lower reconstruction error" in line
    assert json.loads(out)["error_share"] == pytest.approx(share, abs=1e-3)


def test_discover_prunes_by_influence(workspace, capsys):
    from sparse_circuits.circuits.discovery.influence import prune_by_influence

    root = workspace
    model, adapter = load_model(root / "model")
    dictionaries = load_dictionary_set(root / "dicts")
    batches = load_prompt_batches(model.tokenizer, root / "prompts.jsonl")
    options = {"progress": False}
    whole, _ = discover_circuit(
        model, adapter, dictionaries, batches,
        DiscoverConfig(AttributionConfig(), top_k=12, edge_threshold=0.0), **options,
    )  # fmt: skip
    pruned, _ = discover_circuit(
        model, adapter, dictionaries, batches,
        DiscoverConfig(AttributionConfig(), top_k=12, node_influence=0.8, edge_influence=0.98),
        **options,
    )  # fmt: skip
    expected = prune_by_influence(whole, node_share=0.8, edge_share=0.98)
    assert set(pruned.nodes) == set(expected.nodes) and set(pruned.edges) == set(expected.edges)
    assert pruned.number_of_nodes() < whole.number_of_nodes()
    assert pruned.graph["settings"]["node_influence"] == 0.8
    assert pruned.graph["settings"]["edge_threshold"] is None
    with pytest.raises(ConfigError, match="node_influence must be between 0 and 1, got 1.2"):
        DiscoverConfig(AttributionConfig(), node_influence=1.2)
    with pytest.raises(ConfigError, match="supernode_cosine must be between -1 and 1, got 3"):
        DiscoverConfig(AttributionConfig(), supernode_cosine=3)
    grouped, _ = discover_circuit(
        model, adapter, dictionaries, batches,
        DiscoverConfig(AttributionConfig(), top_k=12, supernode_cosine=-1.0), **options,
    )  # fmt: skip
    # cosine >= -1 links every pair: one supernode per place with two or more features
    for place in dictionaries:
        names = [
            n for n, d in grouped.nodes(data=True) if d["place"] == place and not d["is_error"]
        ]
        groups = {grouped.nodes[n].get("supernode") for n in names}
        assert groups == ({f"{place}/S1"} if len(names) > 1 else {None})
    code, _, err = run(
        capsys, "discover", "--model", root / "model", "--dictionaries", root / "dicts",
        "--prompts", root / "prompts.jsonl", "--edge-influence", "2", "--out", root / "x.json",
    )  # fmt: skip
    assert code == 2 and "--edge-influence must be between 0 and 1, got 2.0" in err
