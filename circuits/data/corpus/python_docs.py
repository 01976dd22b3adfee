"""The running Python's own documentation as corpus documents: the language reference's pydoc
topics, one a document, and the docstrings of the modules in ``STDLIB_MODULES``, one document a
module (its docstring, then those of its public classes, functions and methods).

Licence: PSF.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from sparse_circuits.circuits.data.corpus.common import CorpusError

__all__ = [
    "STDLIB_MODULES",
    "pydoc_topic_documents",
    "stdlib_docstring_documents",
    "python_version",
]

STDLIB_MODULES = (
    "abc", "argparse", "array", "ast", "base64", "bisect", "calendar", "cmath", "codecs",
    "collections", "colorsys", "configparser", "contextlib", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "email.message", "enum", "filecmp", "fnmatch", "fractions",
    "functools", "getopt", "gettext", "glob", "graphlib", "gzip", "hashlib", "heapq", "hmac",
    "html", "html.parser", "http", "http.client", "inspect", "io", "ipaddress", "itertools",
    "json", "keyword", "linecache", "locale", "logging", "lzma", "math", "mimetypes", "numbers",
    "operator", "os", "pathlib", "pickle", "platform", "pprint", "queue", "random", "re",
    "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "socket", "sqlite3",
    "statistics", "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap",
    "threading", "time", "timeit", "tokenize", "traceback", "types", "typing", "unicodedata",
    "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "weakref", "zipfile",
    "zlib", "bz2", "binascii", "errno", "signal", "stat", "sys", "zoneinfo",
)  # fmt: skip
"""Standard-library modules whose docstrings join the embedded corpus: importing any of them
has no side effect (no ``this``, ``antigravity``, GUI or platform-only modules)."""


def pydoc_topic_documents() -> list[str]:
    """The language reference's topics shipped with Python, in topic order."""
    try:
        from pydoc_data.topics import topics
    except ImportError as error:
        raise CorpusError(f"pydoc_data is missing from this Python ({error})") from None
    return [topics[name].strip() for name in sorted(topics) if topics[name].strip()]


def _docstring(obj: Any) -> str:
    doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else ""
    return inspect.cleandoc(doc) if doc else ""


def _module_document(module: Any) -> str:
    sections = []
    if doc := _docstring(module):
        sections.append(f"{module.__name__}\n\n{doc}")
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if doc := _docstring(obj):
            sections.append(f"{module.__name__}.{name}\n\n{doc}")
        if inspect.isclass(obj):
            for member, value in sorted(vars(obj).items()):
                value = getattr(value, "__func__", value)  # staticmethod, classmethod
                if member.startswith("_") or not inspect.isroutine(value):
                    continue
                if doc := _docstring(value):
                    sections.append(f"{module.__name__}.{name}.{member}\n\n{doc}")
    return "\n\n".join(sections)


def stdlib_docstring_documents(modules: Sequence[str] = STDLIB_MODULES) -> list[str]:
    """One document a module in ``modules`` (those that import here), in the given order."""
    from tqdm.auto import tqdm

    documents = []
    for name in tqdm(modules, desc="docstrings", unit="module", delay=3, file=sys.stderr):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except ImportError:
            continue  # e.g. a Python built without sqlite3
        # A module whose members misbehave on inspection is left out; deprecated aliases
        # (typing.io) warn when looked at.
        with contextlib.suppress(Exception), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if document := _module_document(module):
                documents.append(document)
    return documents


def python_version() -> str:
    """What these documents depend on, for their cache file's name: e.g. ``py3.11.7``."""
    return "py" + ".".join(map(str, sys.version_info[:3]))
