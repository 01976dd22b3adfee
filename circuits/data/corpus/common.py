"""What the corpus modules share: the error they raise and the progress line they print."""

from __future__ import annotations

import sys

__all__ = ["CorpusError", "announce"]


class CorpusError(ValueError):
    """A corpus that cannot be read or cut into contexts; the message names the file and line."""


def announce(message: str) -> None:
    """A progress line on stderr, for the steps that take seconds (fetching, collecting)."""
    print(f"sparse-circuits: {message}", file=sys.stderr, flush=True)
