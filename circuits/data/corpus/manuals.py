"""Manuals shipped as HTML in Debian's documentation packages, as corpus documents: one page a
document, its prose only (``html_text``: no code, tables or navigation).

``MANUALS`` names each manual's package, where its pages lie below the unpacked root, which
pages are left out (indexes, search pages) and which classes of element are not prose there.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from sparse_circuits.circuits.data.corpus.common import CorpusError
from sparse_circuits.circuits.data.corpus.html_text import html_paragraphs

__all__ = ["HtmlManual", "MANUALS", "manual_documents"]

_PYTHON = "{}.{}".format(*sys.version_info[:2])
"""The running Python's version: its documentation is the one fetched (Debian's python3.X-doc)."""
_SPHINX_SKIP = frozenset(
    {"sphinxsidebar", "related", "footer", "headerlink", "highlight", "sig", "mobile-nav"}
)
"""Sphinx's navigation bars, sidebars, pilcrow links, code blocks and API signatures."""
_DOCBOOK_SKIP = frozenset(
    {"navheader", "navfooter", "toc", "programlisting", "screen", "synopsis", "cmdsynopsis"}
    | {"funcsynopsis", "indexterm", "index", "table-contents", "informaltable"}
)
"""DocBook's navigation bars, tables of contents, code, command synopses and index terms."""


@dataclass(frozen=True)
class HtmlManual:
    """Where one manual's pages are in its unpacked Debian package, and what is not prose."""

    name: str
    """The source's name in the corpus."""
    package: str
    """The Debian package that ships it."""
    folder: Path
    """The pages' folder below the unpacked root."""
    pattern: str = "*.html"
    """The pages, a glob below ``folder`` (``**`` for sub-folders)."""
    exclude: tuple[str, ...] = ()
    """Globs (matched against the path below ``folder``) of pages left out: indexes, search."""
    skip_names: frozenset[str] = _DOCBOOK_SKIP
    """Classes and ids of the elements that are not prose in this manual's HTML."""
    min_characters: int = 200
    """Pages with less prose than this are left out: title pages, empty section stubs."""

    def __post_init__(self) -> None:
        if self.min_characters < 0:
            raise ValueError(f"min_characters={self.min_characters} must be at least 0")


MANUALS: dict[str, HtmlManual] = {
    manual.name: manual
    for manual in (
        HtmlManual(
            name="python-docs",
            package=f"python{_PYTHON}-doc",
            folder=Path(f"usr/share/doc/python{_PYTHON}/html"),
            pattern="**/*.html",
            exclude=("genindex*", "py-modindex.html", "search.html", "_*/*", "contents.html"),
            skip_names=_SPHINX_SKIP,
        ),
        HtmlManual(
            name="debian-handbook",
            package="debian-handbook",
            folder=Path("usr/share/doc/debian-handbook/html/en-US"),
            exclude=("ix01.html",),
            skip_names=_DOCBOOK_SKIP | {"docnav", "banner", "url"},
        ),
        HtmlManual(
            name="debian-reference",
            package="debian-reference-en",
            folder=Path("usr/share/debian-reference"),
            pattern="*.en.html",
            exclude=("index.en.html",),
        ),
        HtmlManual(
            name="debian-faq",
            package="debian-faq",
            folder=Path("usr/share/doc/debian/FAQ"),
            pattern="*.en.html",
            exclude=("index.en.html",),
        ),
        HtmlManual(
            name="postgresql-docs",
            package="postgresql-doc-15",
            folder=Path("usr/share/doc/postgresql-doc-15/html"),
            exclude=("bookindex.html", "index.html"),
        ),
    )
}
"""The HTML manuals of the large corpus, by source name."""


def manual_documents(manual: HtmlManual, root: Path) -> list[str]:
    """The manual's pages below ``root``, in path order: each page's paragraphs, blank-line
    separated; pages that are symbolic links (aliases) or excluded are left out."""
    folder = root / manual.folder
    if not folder.is_dir():
        raise CorpusError(f"{folder}: no folder of {manual.name} pages ({manual.package})")
    documents = []
    for path in sorted(folder.glob(manual.pattern)):
        relative = path.relative_to(folder)
        if path.is_symlink() or any(relative.match(glob) for glob in manual.exclude):
            continue
        html = path.read_bytes().decode("utf-8", errors="replace")
        text = "\n\n".join(html_paragraphs(html, skip_names=manual.skip_names))
        if len(text) >= manual.min_characters:
            documents.append(text)
    if not documents:
        raise CorpusError(f"{folder}: no page of {manual.name} holds prose")
    return documents
