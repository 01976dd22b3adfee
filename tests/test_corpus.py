"""The corpora: fortune files, R lazy-load data, text and JSONL files, and cutting into contexts."""

import gzip
import json
import os
import re
import shutil
import struct
import time
import zlib

import pytest
import torch

from sparse_circuits.circuits.data.corpus import (
    CorpusError,
    austen_documents,
    embedded_sources,
    fetch_debian_packages,
    fortune_documents,
    parse_fortunes,
    read_documents,
    read_r_lazyload,
    reader,
    sources,
    tokenize_contexts,
)
from sparse_circuits.circuits.data.corpus.fortunes import FORTUNE_DIR
from tests.conftest import tiny_tokenizer

FORTUNES = """\
A woman is the only thing I am afraid of that I know will not hurt me.
\t\t-- Abraham Lincoln
%
\tThe nurse was near the cabinet.  She said
that the keys were in it.
%
%
The man who runs, runs.
%
"""


def test_parse_fortunes_splits_on_percent_lines_and_keeps_layout():
    assert parse_fortunes(FORTUNES) == [
        "A woman is the only thing I am afraid of that I know will not hurt me.\n"
        "\t\t-- Abraham Lincoln",
        "\tThe nurse was near the cabinet.  She said\nthat the keys were in it.",
        "The man who runs, runs.",
    ]
    # No final "%", Windows line ends and a "%" with trailing blanks still separate entries.
    assert parse_fortunes("one\r\n% \r\ntwo\r\n") == ["one", "two"]
    assert parse_fortunes("%\n%\n") == []


def test_fortune_folder_skips_index_files_aliases_and_pictures(tmp_path):
    folder = tmp_path / "usr/share/games/fortunes"
    folder.mkdir(parents=True)
    (folder / "people").write_text(FORTUNES)
    (folder / "work").write_text(
        "Work is the curse of the drinking classes.\n\t\t-- Oscar Wilde\n%\n"
    )
    (folder / "people.dat").write_bytes(b"\x00\x00\x00\x02\x00\x00\x00\x03\xff\xfe%\n")
    (folder / "people.u8").symlink_to("people")
    (folder / "ascii-art").write_text(" /\\_/\\\n( o.o )\n%\n")
    documents = fortune_documents(folder)
    assert len(documents) == 4
    assert documents[0].startswith("A woman is the only thing")
    assert documents[2] == "The man who runs, runs."
    assert documents[3] == "Work is the curse of the drinking classes.\n\t\t-- Oscar Wilde"
    with pytest.raises(CorpusError, match="no folder of fortune files"):
        fortune_documents(tmp_path / "missing")


# ---- a tiny R lazy-load database, written the way R writes one (XDR, version 3)


def _r_int(value):
    return struct.pack(">i", value)


def _r_string(text):
    raw = text.encode()
    return _r_int(9 | (1 << 15)) + _r_int(len(raw)) + raw  # CHARSXP, UTF-8 flag


def _r_strings(values, attributes=b""):
    flags = 16 | ((1 << 9) if attributes else 0)
    return _r_int(flags) + _r_int(len(values)) + b"".join(map(_r_string, values)) + attributes


def _r_names(names):
    """An attribute pairlist holding ``names`` (the symbol written once, then referenced)."""
    tag = _r_int(1) + _r_string("names")
    return _r_int(2 | (1 << 10)) + tag + _r_strings(names) + _r_int(254)


def _r_named_list(items):
    body = b"".join(items.values())
    return _r_int(19 | (1 << 9)) + _r_int(len(items)) + body + _r_names(list(items))


def _r_serialize(body):
    return b"X\n" + _r_int(3) + _r_int(0x040201) + _r_int(0x030500) + _r_int(5) + b"UTF-8" + body


def write_lazyload(folder, objects):
    """``Rdata.rdx`` and ``Rdata.rdb`` for ``objects`` (name -> character vector)."""
    database, variables = b"", {}
    for name, lines in objects.items():
        data = _r_serialize(_r_strings(lines))
        blob = struct.pack(">I", len(data)) + zlib.compress(data)
        variables[name] = _r_int(13) + _r_int(2) + _r_int(len(database)) + _r_int(len(blob))
        database += blob
    index = _r_named_list(
        {
            "variables": _r_named_list(variables),
            "references": _r_int(19) + _r_int(0),
            "compressed": _r_int(10) + _r_int(1) + _r_int(1),
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Rdata.rdb").write_bytes(database)
    (folder / "Rdata.rdx").write_bytes(gzip.compress(_r_serialize(index)))


NOVEL = [
    "PERSUASION",
    "",
    "by Jane Austen",
    "",
    "Chapter 1",
    "",
    "",
    "Sir Walter Elliot, of Kellynch Hall, was a man who, for his own",
    "amusement, never took up any book but the Baronetage.",
    "",
    "She was the daughter of a nurse; they were near.",
    "",
    "VOLUME II",
    "",
    "Chapter 2",
    "",
    "Mr Shepherd, a civil, cautious lawyer,",
    "",
    "",
    "Finis",
]


def test_r_lazyload_reader_gives_named_character_vectors(tmp_path):
    write_lazyload(tmp_path, {"persuasion": NOVEL, "emma": ["CHAPTER I", "", "Emma Woodhouse."]})
    objects = read_r_lazyload(tmp_path)
    assert objects == {"persuasion": NOVEL, "emma": ["CHAPTER I", "", "Emma Woodhouse."]}


def test_austen_documents_are_unwrapped_chapters_in_novel_name_order(tmp_path):
    write_lazyload(tmp_path, {"persuasion": NOVEL, "emma": ["CHAPTER I", "", "Emma Woodhouse."]})
    assert austen_documents(tmp_path) == [
        "CHAPTER I\n\nEmma Woodhouse.",
        "Chapter 1\n\nSir Walter Elliot, of Kellynch Hall, was a man who, for his own "
        "amusement, never took up any book but the Baronetage.\n\n"
        "She was the daughter of a nurse; they were near.",
        "Chapter 2\n\nMr Shepherd, a civil, cautious lawyer,\n\nFinis",
    ]


def test_a_damaged_r_database_is_one_corpus_error(tmp_path):
    write_lazyload(tmp_path, {"emma": ["CHAPTER I", "", "Emma."]})
    (tmp_path / "Rdata.rdb").write_bytes(b"\x00\x00\x00\x10garbage")
    with pytest.raises(CorpusError, match="Rdata"):
        read_r_lazyload(tmp_path)


# ---- text and JSONL files


def test_plain_text_documents_are_separated_by_blank_lines(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the dog runs\nnear the cat\n\n\n  \t\nthe man was a nurse\n\n\n")
    assert read_documents(path) == ["the dog runs\nnear the cat", "the man was a nurse"]
    assert read_documents(str(path), max_documents=1) == ["the dog runs\nnear the cat"]


def test_jsonl_documents_are_the_text_fields(tmp_path):
    path = tmp_path / "corpus.jsonl"
    lines = [
        json.dumps({"text": "the keys to the cabinet are", "id": 1}),
        "",
        json.dumps({"text": "she was a professor\n\nwho runs"}),
        json.dumps({"text": "   "}),
    ]
    path.write_text("\n".join(lines) + "\n")
    assert read_documents(path) == [
        "the keys to the cabinet are",
        "she was a professor\n\nwho runs",
    ]


def _error(source):
    """The one-line message of reading ``source``; it starts by naming the source."""
    with pytest.raises(CorpusError, match=f"^{re.escape(str(source))}:") as caught:
        read_documents(source)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_bad_inputs_are_one_line_errors_naming_file_and_line(tmp_path):
    missing = tmp_path / "missing.txt"
    assert _error(missing) == f"{missing}: file not found"

    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n\n")
    assert _error(empty) == f"{empty}: empty corpus (no document with text)"
    empty_jsonl = tmp_path / "empty.jsonl"
    empty_jsonl.write_text("")
    assert str(empty_jsonl) in _error(empty_jsonl)

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("the dog\nthe caf\u00e9 is near\n".encode("latin-1"))
    assert _error(latin1) == f"{latin1}:2: not UTF-8 (byte offset 15: 0xe9)"

    not_json = tmp_path / "bad.jsonl"
    not_json.write_text('{"text": "the dog"}\n{"text": "the cat"\n')
    message = _error(not_json)
    assert message.startswith(f"{not_json}:2: not valid JSON")

    no_text = tmp_path / "notext.jsonl"
    no_text.write_text('{"text": "a"}\n\n{"body": "the cat"}\n')
    assert _error(no_text) == f"{no_text}:3: no 'text' field"

    not_object = tmp_path / "list.jsonl"
    not_object.write_text('["the cat"]\n')
    assert _error(not_object) == f"{not_object}:1: expected a JSON object"

    not_string = tmp_path / "number.jsonl"
    not_string.write_text('{"text": 3}\n')
    assert _error(not_string) == f"{not_string}:1: 'text' is not a string (int)"

    folder = tmp_path / "folder.txt"
    folder.mkdir()
    assert _error(folder) == f"{folder}: not a file"


def test_a_hub_dataset_without_datasets_or_network_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(reader, "hub_reachable", lambda: False)
    message = _error("someone/some-dataset")
    assert message.startswith("someone/some-dataset: no such file, and reading it as a hub dataset")
    assert "`datasets` package" in message and "network" in message


# ---- cutting into contexts


DOCUMENTS = [
    "the dog runs near the cat",
    "she was a nurse",
    "",  # tokenizes to nothing: skipped, so no double separator
    "the keys to the cabinet are near the man who runs",
    "he is a professor",
]


def _expected_stream(tokenizer, documents):
    stream = []
    for document in documents:
        ids = tokenizer(document, add_special_tokens=False).input_ids
        if ids:
            stream += ([tokenizer.eos_token_id] if stream else []) + ids
    return stream


def test_contexts_start_with_bos_and_hold_the_tokenizers_own_tokens():
    tokenizer = tiny_tokenizer()
    stream = _expected_stream(tokenizer, DOCUMENTS)
    # The same stream, tokenized by the tokenizer itself from the documents joined by EOS.
    joined = " <eos> ".join(doc for doc in DOCUMENTS if doc)
    assert stream == tokenizer(joined, add_special_tokens=False).input_ids
    assert len(stream) == 28

    contexts = tokenize_contexts(tokenizer, DOCUMENTS, context_length=8)
    assert contexts.dtype == torch.long and contexts.shape == (4, 8)  # 28 // 7 = 4
    assert (contexts[:, 0] == tokenizer.bos_token_id).all()
    assert contexts[:, 1:].flatten().tolist() == stream[:28]
    assert contexts[0, 1:].tolist() == tokenizer(
        "the dog runs near the cat", add_special_tokens=False
    ).input_ids + [2]

    plain = tokenize_contexts(tokenizer, DOCUMENTS, context_length=8, prepend_bos=False)
    assert plain.shape == (3, 8)
    assert plain.flatten().tolist() == stream[:24]
    assert tokenizer.bos_token_id not in plain.tolist()[0]


def test_max_contexts_and_batching_do_not_change_the_tokens():
    tokenizer = tiny_tokenizer()
    documents = DOCUMENTS * 20
    whole = tokenize_contexts(tokenizer, documents, context_length=6)
    batched = tokenize_contexts(tokenizer, documents, context_length=6, batch_size=3)
    assert torch.equal(whole, batched)
    assert torch.equal(whole, tokenize_contexts(tokenizer, iter(documents), context_length=6))
    first = tokenize_contexts(tokenizer, documents, context_length=6, max_contexts=5, batch_size=2)
    assert torch.equal(first, whole[:5])
    assert first.shape == (5, 6)


def test_unknown_words_are_unk_and_bos_separates_when_there_is_no_eos():
    tokenizer = tiny_tokenizer()
    tokenizer.eos_token = None
    contexts = tokenize_contexts(tokenizer, ["the zebra", "a cat"], context_length=6)
    the, unk, a, cat = (tokenizer.convert_tokens_to_ids(t) for t in ["the", "<unk>", "a", "cat"])
    bos = tokenizer.bos_token_id
    assert contexts.tolist() == [[bos, the, unk, bos, a, cat]]


def test_a_corpus_shorter_than_one_context_is_an_error():
    tokenizer = tiny_tokenizer()
    with pytest.raises(CorpusError, match="shorter than one context: 5 tokens in 1 documents"):
        tokenize_contexts(tokenizer, ["the dog runs near cats"], context_length=7)
    assert tokenize_contexts(tokenizer, ["the dog runs near cats"], context_length=6).shape == (
        1,
        6,
    )
    with pytest.raises(CorpusError, match="shorter than one context: 0 tokens"):
        tokenize_contexts(tokenizer, [], context_length=4)
    with pytest.raises(CorpusError, match="leaves no room for text after the BOS token"):
        tokenize_contexts(tokenizer, DOCUMENTS, context_length=1)
    with pytest.raises(CorpusError, match="max_contexts=0"):
        tokenize_contexts(tokenizer, DOCUMENTS, context_length=4, max_contexts=0)
    with pytest.raises(CorpusError, match="not one string"):
        tokenize_contexts(tokenizer, "the dog", context_length=2)


# ---- the embedded corpus


def test_without_apt_the_debian_sources_are_skipped_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSE_CIRCUITS_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    monkeypatch.setattr(sources, "_UNAVAILABLE", {})
    with pytest.warns(UserWarning, match="^embedded corpus: skipping source ") as caught:
        documents = read_documents("embedded")
    assert [str(warning.message) for warning in caught] == [
        "embedded corpus: skipping source 'fortunes' (Debian fortunes and fortunes-min): "
        "apt-get and dpkg-deb are needed to fetch Debian packages",
        "embedded corpus: skipping source 'austen' (Jane Austen's novels, Debian "
        "r-cran-janeaustenr): apt-get and dpkg-deb are needed to fetch Debian packages",
    ]
    assert any(doc.startswith('The "if" statement') for doc in documents)  # pydoc topics
    assert any(doc.startswith("textwrap\n\nText wrapping") for doc in documents)  # docstrings
    cached = sorted(path.name.split("-")[0] for path in (tmp_path / "corpus").glob("*.jsonl"))
    assert cached == ["docstrings", "pydoc"]
    # Deterministic, read from the cache, and a failed source is not tried again in this process.
    assert read_documents("embedded") == documents


def test_the_embedded_debian_source_fetches_unpacks_and_parses(tmp_path, monkeypatch):
    """The real fetch of the fortunes source, where apt-get can reach Debian's registry."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("needs apt-get and dpkg-deb")
    tools = tmp_path / "bin"
    tools.mkdir()
    # Stand-in apt-get: the real one, for "download" only (no update from a test).
    fake = tools / "apt-get"
    fake.write_text(
        f'#!/bin/sh\n[ "$1" = download ] && exec {shutil.which("apt-get")} "$@"\nexit 1\n'
    )
    fake.chmod(0o755)
    (tools / "dpkg-deb").symlink_to(shutil.which("dpkg-deb"))
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    try:
        root = fetch_debian_packages(["fortunes-min"], tmp_path / "work")
    except CorpusError as error:
        if not str(error).startswith("apt-get"):
            raise
        pytest.skip(f"Debian's registry cannot be reached here ({error})")
    documents = fortune_documents(root / FORTUNE_DIR)
    assert len(documents) > 300
    assert any("--" in doc for doc in documents)


@pytest.mark.slow
def test_the_embedded_corpus_is_everyday_english_of_a_megabyte_or_more():
    started = time.perf_counter()
    sources = embedded_sources()
    assert sorted(sources) == ["austen", "docstrings", "fortunes", "pydoc"]
    documents = read_documents("embedded")
    assert len(documents) == sum(map(len, sources.values())) > 10_000
    text = "\n".join(documents)
    assert len(text.encode("utf-8")) >= 1_000_000
    for word in [" she ", " he ", " they ", " were ", " her ", " his "]:
        per_million = text.count(word) / len(text) * 1e6
        assert per_million >= 200, f"{word!r}: {per_million:.0f} per million characters"
    assert any("Emma Woodhouse" in doc for doc in sources["austen"])
    assert time.perf_counter() - started < 300


@pytest.mark.slow
def test_the_embedded_corpus_tokenizes_with_smollm2_in_seconds():
    from transformers import AutoTokenizer

    from sparse_circuits.circuits.model.loading import convert_gguf, embedded_gguf

    tokenizer = AutoTokenizer.from_pretrained(convert_gguf(embedded_gguf("smollm2-135m")))
    documents = read_documents("embedded")
    started = time.perf_counter()
    contexts = tokenize_contexts(tokenizer, documents, context_length=128)
    assert time.perf_counter() - started < 60
    assert contexts.shape[1] == 128 and contexts.shape[0] > 10_000
    assert (contexts[:, 0] == tokenizer.bos_token_id).all()
    first = tokenizer(documents[0], add_special_tokens=False).input_ids
    assert contexts[0, 1 : 1 + min(127, len(first))].tolist() == first[:127]
