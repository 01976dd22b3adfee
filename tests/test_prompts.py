"""Prompt sets: a bad file or example is one error naming its file and line."""

import json
import re

import pytest

from sparse_circuits.circuits.data.prompts import (
    Example,
    PromptError,
    read_prompts,
    tokenize_prompts,
)

from .conftest import tiny_tokenizer
from .reference import EXAMPLES

WITH_PATCH = {"clean_prefix": "the dogs", "clean_answer": "run"}
WITH_PATCH |= {"patch_prefix": "the dog", "patch_answer": "runs"}


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_a_line_without_the_patch_fields_the_others_have_names_its_line(tmp_path):
    no_patch = {"clean_prefix": "the cats", "clean_answer": "were"}
    # the blank line counts: the bad record is on line 4 of the file, example 3
    lines = [json.dumps(WITH_PATCH), json.dumps(WITH_PATCH), "", json.dumps(no_patch)]
    path = write_lines(tmp_path / "prompts.jsonl", lines)
    message = (
        f"{path}:4: patch fields [], but {path}:1 has ['patch_prefix', 'patch_answer']; "
        "either every example has patch fields or none does"
    )
    with pytest.raises(PromptError, match=f"^{re.escape(message)}$"):
        read_prompts(path)


def test_a_patch_answer_missing_on_one_line_names_that_line(tmp_path):
    no_answer = {k: v for k, v in WITH_PATCH.items() if k != "patch_answer"}
    path = write_lines(tmp_path / "p.jsonl", [json.dumps(no_answer), json.dumps(WITH_PATCH)])
    with pytest.raises(
        PromptError, match=rf"^{re.escape(str(path))}:2: patch fields \['patch_prefix', "
    ):
        read_prompts(path)


def test_the_patch_fields_may_be_absent_everywhere(tmp_path):
    no_patch = [{"clean_prefix": e.clean_prefix, "clean_answer": e.clean_answer} for e in EXAMPLES]
    path = write_lines(tmp_path / "p.jsonl", [json.dumps(r) for r in no_patch])
    examples = read_prompts(path)
    assert examples == [Example(e.clean_prefix, e.clean_answer) for e in EXAMPLES]
    (batch,) = tokenize_prompts(tiny_tokenizer(), examples)
    assert batch.patch_ids is None and batch.patch_answer is None


def test_mixed_examples_given_in_code_name_the_example():
    examples = [*EXAMPLES[:2], Example("the cats of the woman", "were")]
    with pytest.raises(PromptError, match=r"^mine:3: patch fields \[\], but mine:1 has "):
        tokenize_prompts(tiny_tokenizer(), examples, source="mine")
