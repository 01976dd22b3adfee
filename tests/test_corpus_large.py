"""The large corpus: its extractors on small fixtures laid out as the Debian packages lay them
out, deduplication, the held-out document split, and the training split built on it."""

import gzip
import hashlib
import struct
import time
import zlib

import pytest

from sparse_circuits.circuits.data.corpus import (
    CorpusError,
    deduplicate,
    large,
    read_documents,
    sources,
    split_documents,
)
from sparse_circuits.circuits.data.corpus.bible import WEB_DIR, bible_documents
from sparse_circuits.circuits.data.corpus.dictd import (
    DICTD_DIR,
    devil_from_root,
    dictd_entries,
    gcide_from_root,
)
from sparse_circuits.circuits.data.corpus.html_text import html_paragraphs
from sparse_circuits.circuits.data.corpus.manuals import HtmlManual, manual_documents
from sparse_circuits.circuits.data.corpus.sources import CorpusSource
from sparse_circuits.circuits.data.corpus.split import held_out_rank
from tests.conftest import tiny_tokenizer

# ---- HTML manuals

PAGE = """<!DOCTYPE html><html><head><title>zipfile</title><style>p {}</style></head><body>
<div class="related"><ul><li><a href="index.html">Python</a> &raquo;</li></ul></div>
<div class="body" role="main"><section id="zipfile">
<h1>zipfile &#8212; Work with <code>ZIP</code> archives<a class="headerlink" href="#z">¶</a></h1>
<p>The ZIP file format is a <em>common</em>
   archive standard.<br/>It is old.</p>
<div class="highlight"><pre>import zipfile
zipfile.ZipFile("x.zip")</pre></div>
<table><tr><td>42</td></tr></table>
<dl><dt class="sig">ZipFile(<em>file</em>)</dt><dd><p>Open a ZIP file.</p></dd></dl>
<ul><li>one item</li><li>12</li></ul>
</section></div><div class="footer">&copy; Copyright.</div></body></html>"""


def test_html_paragraphs_keep_prose_and_drop_code_tables_and_navigation():
    skip = {"related", "headerlink", "highlight", "sig", "footer"}
    assert html_paragraphs(PAGE, skip_names=skip) == [
        "zipfile — Work with ZIP archives",
        "The ZIP file format is a common archive standard.",
        "It is old.",
        "Open a ZIP file.",
        "one item",
    ]
    # Without the manual's own names only the generic elements (head, pre, table) are left out.
    unskipped = html_paragraphs(PAGE)
    assert "Python »" in unskipped and "© Copyright." in unskipped
    assert not any("import" in p or "42" == p for p in unskipped)


def test_manual_pages_are_documents_without_aliases_indexes_or_empty_pages(tmp_path):
    folder = tmp_path / "usr/share/doc/manual"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.html").write_text(PAGE)
    (folder / "sub" / "b.html").write_text("<p>" + "A long paragraph of prose. " * 10 + "</p>")
    (folder / "genindex.html").write_text("<p>" + "index entry " * 50 + "</p>")
    (folder / "stub.html").write_text("<p>Only a title.</p>")
    (folder / "alias.html").symlink_to(folder / "a.html")
    manual = HtmlManual(
        name="m", package="m-doc", folder=folder.relative_to(tmp_path), pattern="**/*.html",
        exclude=("genindex*",), skip_names=frozenset({"related", "highlight", "sig"}),
        min_characters=100,
    )  # fmt: skip
    documents = manual_documents(manual, tmp_path)
    assert len(documents) == 2
    assert documents[0].startswith("zipfile — Work with ZIP archives¶\n\nThe ZIP file format")
    assert documents[1] == ("A long paragraph of prose. " * 10).strip()
    with pytest.raises(CorpusError, match=r"nowhere/usr/share/doc/manual: no folder of m pages"):
        manual_documents(manual, tmp_path / "nowhere")
    with pytest.raises(ValueError, match="min_characters=-1 must be at least 0"):
        HtmlManual(name="m", package="p", folder=folder, min_characters=-1)


# ---- the World English Bible (a SWORD zText module)

GENESIS = (
    '<div type="book" osisID="Gen" sID="b1"/> <title type="main">Genesis</title> '
    '<chapter n="1" osisID="Gen.1" sID="Gen.1"/><div sID="p1" type="x-p"/>'
    '<w lemma="strong:H7225">In</w> <w lemma="strong:H7225">the beginning</w>, God created'
    '<note placement="foot"><reference>1:1 </reference>a footnote</note> the heavens.'
    '<div eID="p1" type="x-p"/><div sID="p2" type="x-p"/>The earth was &amp; formless.'
    '<chapter n="2" osisID="Gen.2" sID="Gen.2"/><lg sID="g1"/><l level="1" sID="l1"/>'
    '“Because you have done this,<l eID="l1" level="1"/> <l level="2" sID="l2"/>you are '
    'cursed.”<l eID="l2" level="2"/><lg eID="g1"/>'
)
PREFACE = '<title type="x-introduction">Why translate?</title> <div type="x-p" sID="q"/>Because.'
MATTHEW = '<chapter n="1" osisID="Matt.1" sID="Matt.1"/>The book of the genealogy.'


def write_ztext(folder, testament, books):
    blocks = [zlib.compress(book.encode("utf-8")) for book in books]
    index, offset = b"", 0
    for block, book in zip(blocks, books, strict=True):
        index += struct.pack("<III", offset, len(block), len(book.encode("utf-8")))
        offset += len(block)
    (folder / f"{testament}.bzz").write_bytes(b"".join(blocks))
    (folder / f"{testament}.bzs").write_bytes(index)


def test_bible_chapters_keep_paragraphs_and_verse_and_drop_notes_and_word_markup(tmp_path):
    folder = tmp_path / WEB_DIR
    folder.mkdir(parents=True)
    write_ztext(folder, "ot", [PREFACE, GENESIS])
    write_ztext(folder, "nt", [MATTHEW])
    assert bible_documents(folder) == [
        "Why translate?\n\nBecause.",
        "Genesis\n\nIn the beginning, God created the heavens.\n\nThe earth was & formless.",
        "“Because you have done this,\nyou are cursed.”",
        "The book of the genealogy.",
    ]
    (folder / "nt.bzz").write_bytes(b"not zlib")
    with pytest.raises(CorpusError, match=r"nt\.bzz: not a readable SWORD zText module"):
        bible_documents(folder)
    (folder / "nt.bzs").write_bytes(b"12345")
    with pytest.raises(CorpusError, match=r"nt\.bzs: 5 bytes is not a whole number of entries"):
        bible_documents(folder)
    with pytest.raises(CorpusError, match="no SWORD module folder"):
        bible_documents(tmp_path / "absent")


# ---- dictd dictionaries (GCIDE, The Devil's Dictionary)

DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64(number):
    digits = ""
    while True:
        number, digit = divmod(number, 64)
        digits = DIGITS[digit] + digits
        if number == 0:
            return digits


def write_dictd(folder, name, entries, aliases=()):
    """A dictd dictionary of (headword, text) entries; ``aliases`` are extra headwords of an
    entry (by position)."""
    folder.mkdir(parents=True, exist_ok=True)
    text, lines = b"", []
    for headword, entry in entries:
        lines.append(f"{headword}\t{b64(len(text))}\t{b64(len(entry.encode()))}")
        text += entry.encode() + b"\n"
    for alias, position in aliases:
        lines.append(f"{alias}\t{lines[position].split(chr(9), 1)[1]}")
    (folder / f"{name}.index").write_text("\n".join(sorted(lines)) + "\n")
    (folder / f"{name}.dict.dz").write_bytes(gzip.compress(text))


GCIDE = [
    ("00-database-info", "This file was converted by dictfmt."),
    (
        "Coagulate",
        'Coagulate \\Co*ag"u*late\\, v. t. [imp. & p. p. {Coagulated}.\n'
        "   [L. coagulatus, p. p. of coagulare. See {Cogent}.]]\n"
        "   To cause (a liquid) to change into a curdlike state;\n"
        "   to curdle; as, rennet coagulates milk. [Obs.]\n"
        "   [1913 Webster]\n",
    ),
    ("Coagulum", 'Coagulum \\Co*ag"u*lum\\, n.\n   The curd of milk.\n   [1913 Webster]\n'),
]
DEVIL = [
    ("CAT", "CAT, n.  A soft, indestructible automaton provided by nature\nto be kicked."),
    (
        "ABRACADABRA",
        "ABRACADABRA.\n\n    By _Abracadabra_ we signify\n        An infinite number of things.",
    ),
]


def test_dictd_entries_are_read_once_in_text_order_without_the_header(tmp_path):
    folder = tmp_path / DICTD_DIR
    write_dictd(folder, "gcide", GCIDE, aliases=[("Coagulated", 1)])
    assert dictd_entries(folder, "gcide") == [GCIDE[1][1], GCIDE[2][1]]
    assert gcide_from_root(tmp_path) == [
        "Coagulate, v. t. To cause (a liquid) to change into a curdlike state; to curdle; as, "
        "rennet coagulates milk.",
        "Coagulum, n. The curd of milk.",
    ]
    write_dictd(folder, "devil", DEVIL)
    assert devil_from_root(tmp_path) == [
        "CAT, n.  A soft, indestructible automaton provided by nature to be kicked.",
        "ABRACADABRA.\n\nBy _Abracadabra_ we signify\nAn infinite number of things.",
    ]


def test_a_bad_or_absent_dictd_file_is_one_error_naming_it(tmp_path):
    folder = tmp_path / DICTD_DIR
    write_dictd(folder, "devil", DEVIL)
    with (folder / "devil.index").open("a") as index:
        index.write("BROKEN\tnot base64!\n")
    with pytest.raises(CorpusError, match=r"devil\.index, line 3: not a headword, offset and"):
        dictd_entries(folder, "devil")
    (folder / "devil.dict.dz").write_bytes(b"not gzip")
    with pytest.raises(CorpusError, match=r"devil\.dict\.dz: not a readable dictd dictionary"):
        dictd_entries(folder, "devil")
    with pytest.raises(CorpusError, match=r"gcide\.dict\.dz: not a readable dictd dictionary"):
        gcide_from_root(tmp_path)


# ---- deduplication and the held-out split

LONG = "The nurse said that the keys to the cabinet were near the professor's old desk. " * 2
OTHER = "A completely different paragraph about dogs and cats running near the river bank. " * 2


def test_dedup_drops_exact_and_near_duplicates_and_keeps_distinct_documents():
    documents = [
        f"Title\n\n{LONG}",
        f"  TITLE \n\n{LONG.upper()}  ",  # the same text, other case and spacing: exact
        f"Another heading\n\n{LONG}\n\nShort tail.",  # its long paragraph seen: near
        f"Title\n\n{OTHER}",  # shares only the short title: distinct
        f"{LONG}\n\n{OTHER}\n\n{OTHER.replace('dogs', 'wolves')}",  # 2 of 3 long seen: near
        f"{LONG}\n\n{OTHER.replace('dogs', 'wolves')}\n\n{OTHER.replace('dogs', 'bears')}",
    ]
    result = deduplicate(documents)
    assert result.documents == [documents[0], documents[3], documents[5]]
    assert (result.exact, result.near) == (1, 2)
    assert deduplicate(["a", "b", "a"]).documents == ["a", "b"]  # short texts: exact only


def test_held_out_rank_is_the_hash_of_the_normalised_text():
    digest = hashlib.blake2b(b"the dog runs.", digest_size=8).digest()
    assert held_out_rank("The  dog\nRUNS. ") == int.from_bytes(digest, "big") / 2**64


def test_the_split_shares_no_document_or_paragraph_and_is_stable_under_additions():
    shared = "This paragraph is quoted by many documents of the corpus, word for word."
    documents = [f"Document number {i} says something.\n\n{shared}" for i in range(400)]
    documents += [f"Page {i} stands alone." for i in range(400)]
    split = split_documents(documents, eval_fraction=0.05)
    assert 10 < len(split.eval) < 80
    held = [doc for doc in documents if held_out_rank(doc) < 0.05]
    assert len(split.eval) == len(held)
    assert not set(split.train) & set(held)
    assert len(split.train) + len(held) == len(documents)
    train_paragraphs = {p.strip().casefold() for doc in split.train for p in doc.split("\n\n")}
    eval_paragraphs = {p.strip().casefold() for doc in split.eval for p in doc.split("\n\n")}
    assert shared.casefold() in train_paragraphs and not train_paragraphs & eval_paragraphs
    assert all(doc in documents or shared not in doc for doc in split.eval)
    # Adding documents moves none of the old ones from one side to the other.
    grown = split_documents(
        [*documents, *(f"New page {i}." for i in range(300))], eval_fraction=0.05
    )
    assert set(split.train) <= set(grown.train) and set(split.eval) <= set(grown.eval)


def test_a_small_corpus_holds_out_its_lowest_ranked_text_and_one_text_is_an_error():
    documents = ["the dog runs", "the cat runs", "the dog runs", "the man runs"]
    lowest = min(documents, key=held_out_rank)
    split = split_documents(documents, eval_fraction=1e-9)
    assert split.eval == [doc for doc in documents if doc == lowest]
    assert split.train == [doc for doc in documents if doc != lowest]
    with pytest.raises(CorpusError, match="needs two distinct documents; the corpus has 1"):
        split_documents(["The dog", "the  DOG"], eval_fraction=0.5)
    with pytest.raises(CorpusError, match="eval_fraction=1.5 must be between 0 and 1"):
        split_documents(documents, eval_fraction=1.5)


def test_corpus_contexts_tokenise_train_and_held_out_documents_apart(tmp_path):
    from sparse_circuits.circuits.model.activations import uses_bos
    from sparse_circuits.circuits.training.train import EVAL_FRACTION, corpus_contexts

    nouns = "man men woman women nurse professor dog cat".split()
    documents = [f"the {a} near the {b} runs" for a in nouns for b in nouns]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(documents))
    tokenizer = tiny_tokenizer()
    bos = int(uses_bos(tokenizer))
    split = corpus_contexts(tokenizer, corpus, context_length=4)
    held = split_documents(documents, eval_fraction=EVAL_FRACTION)
    for contexts, side in ((split.train, held.train), (split.eval, held.eval)):
        ids = [
            i
            for doc in side
            for i in [tokenizer.eos_token_id, *tokenizer(doc, add_special_tokens=False).input_ids]
        ][1:]
        width = 4 - bos  # text tokens a context holds
        assert contexts[:, bos:].flatten().tolist() == ids[: len(ids) // width * width]
        assert not bos or (contexts[:, 0] == tokenizer.bos_token_id).all()
    with pytest.raises(CorpusError, match=r"corpus\.txt: the held-out documents: the corpus is"):
        corpus_contexts(tokenizer, corpus, context_length=200)


# ---- the large corpus


def test_the_large_corpus_dedups_its_sources_caches_them_and_skips_what_cannot_be_had(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("SPARSE_CIRCUITS_CACHE", str(tmp_path))
    monkeypatch.setattr(sources, "_UNAVAILABLE", {})
    builds = []

    def build(documents):
        def run():
            builds.append(documents)
            return documents

        return run

    def absent():
        raise CorpusError("apt-get download failed: no such package")

    fixture_sources = (
        CorpusSource("one", "first", build([f"Title\n\n{LONG}", OTHER, "x"]), lambda: "t"),
        CorpusSource("gone", "an absent package", absent, lambda: "t"),
        CorpusSource("two", "second", build([f"Other title\n\n{LONG}", "X", "y"]), lambda: "t"),
    )
    monkeypatch.setattr(large, "LARGE_SOURCES", fixture_sources)
    with pytest.warns(UserWarning, match="^large corpus: skipping source 'gone'"):
        documents = read_documents("large")
    assert sorted(documents) == sorted([f"Title\n\n{LONG}", OTHER, "x", "y"])
    unique = large.large_corpus()
    assert (unique.exact, unique.near) == (1, 1)
    assert unique.documents == documents  # the same fixed-seed shuffle
    assert len(builds) == 2  # the second read came from the cache
    cached = sorted(path.name for path in (tmp_path / "corpus").glob("*.jsonl"))
    assert cached == ["one-t-v1.jsonl", "two-t-v1.jsonl"]


@pytest.mark.slow
def test_the_large_corpus_holds_ten_million_smollm2_tokens():
    """Builds the large corpus on first use (about a minute, cached after), then counts."""
    from transformers import AutoTokenizer

    from sparse_circuits.circuits.model.loading import convert_gguf, embedded_gguf

    sizes = {name: len(docs) for name, docs in large.large_sources().items()}
    assert {"austen", "bible", "gcide", "python-docs", "postgresql-docs"} <= set(sizes)
    started = time.perf_counter()
    documents = read_documents("large")
    assert time.perf_counter() - started < 60  # cached: read and deduplicated in seconds
    tokenizer = AutoTokenizer.from_pretrained(convert_gguf(embedded_gguf("smollm2-135m")))
    n_tokens = 0
    for start in range(0, len(documents), 1024):
        batch = documents[start : start + 1024]
        encoded = tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]
        n_tokens += sum(map(len, encoded))
    assert n_tokens >= 10_000_000
