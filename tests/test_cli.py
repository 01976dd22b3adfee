"""The command line, end to end on a tiny model saved to a folder."""

import json

import pytest

from sparse_circuits.circuits.data.agreement_sets import TEMPLATES
from sparse_circuits.circuits.discovery.graph import load_circuit
from sparse_circuits.cli import main

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
    for name in ("info", "train", "eval-dict", "discover", "evaluate", "export"):
        assert name in out


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
