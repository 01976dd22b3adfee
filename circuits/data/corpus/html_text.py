"""The prose of an HTML page, with the standard library's ``html.parser``: one paragraph a block
element (``p``, headings, list items, ...), inline markup joined into its sentence, whitespace
collapsed. Left out with everything inside them: code (``pre``), tables, scripts, styles, the
page's head and navigation, and any element whose class or id is in ``skip_names`` (a
manual's own navigation bars, tables of contents, code examples)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from html.parser import HTMLParser

__all__ = ["SKIPPED_TAGS", "html_paragraphs"]

SKIPPED_TAGS = frozenset(
    {"head", "script", "style", "pre", "table", "nav", "header", "footer", "svg", "math"}
)
"""Elements whose content is never prose: left out with everything inside them."""
_BLOCKS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "dt", "dd", "div", "section", "blockquote"}
    | {"ul", "ol", "dl", "article", "aside", "figure", "figcaption", "br", "hr", "body"}
)
"""Elements that start and end a paragraph."""
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"})
"""Elements without an end tag: they never open a skipped region."""
_LETTER = re.compile(r"[^\W\d_]")


class _Paragraphs(HTMLParser):
    def __init__(self, skip_names: frozenset[str]):
        super().__init__(convert_charrefs=True)
        self.skip_names = skip_names
        self.paragraphs: list[str] = []
        self.words: list[str] = []
        self.skipping: list[str] = []  # the open elements of the skipped region, innermost last

    def _flush(self) -> None:
        text = " ".join("".join(self.words).split())
        if _LETTER.search(text):
            self.paragraphs.append(text)
        self.words = []

    def _skipped(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        names = {
            n for key, value in attrs if key in ("class", "id") and value for n in value.split()
        }
        return tag in SKIPPED_TAGS or bool(names & self.skip_names)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag in _BLOCKS and not self.skipping:
                self._flush()
            return
        if self.skipping:
            self.skipping.append(tag)
        elif self._skipped(tag, attrs):
            self._flush()
            self.skipping.append(tag)
        elif tag in _BLOCKS:
            self._flush()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS and not self.skipping:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag in self.skipping:  # close it and any element left open inside it
                del self.skipping[len(self.skipping) - 1 - self.skipping[::-1].index(tag) :]
        elif tag in _BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.words.append(data)


def html_paragraphs(html: str, *, skip_names: Iterable[str] = ()) -> list[str]:
    """The paragraphs of prose of an HTML page, in page order."""
    parser = _Paragraphs(frozenset(skip_names))
    parser.feed(html)
    parser.close()
    parser._flush()
    return parser.paragraphs
