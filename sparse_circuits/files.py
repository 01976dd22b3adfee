"""Reading and writing files safely: atomic writes, and one clear error for a bad file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = [
    "atomic_path",
    "jsonl_records",
    "jsonl_strings",
    "read_utf8",
    "read_safetensors",
    "require_folder",
    "write_safetensors",
    "write_text_atomic",
]


def require_folder(path: str | Path) -> Path:
    """``path``, after checking that the folder it would be written into exists."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: folder {path.parent} does not exist")
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    A reader never sees a half-written file: either the old file (or none) or the whole new one.
    """
    path = require_folder(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; a normal file is what we promise
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata=None) -> Path:
    tensors = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def read_safetensors(
    path: str | Path, error: type[Exception] = ValueError
) -> dict[str, torch.Tensor]:
    """Every tensor in a safetensors file; a missing, truncated or corrupt file raises ``error``."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise error(f"{path}: not a readable safetensors file ({exc})") from None


def read_utf8(path: str | Path, error: type[Exception] = ValueError, *, what: str = "file") -> str:
    """The text of a UTF-8 file (BOM dropped, CRLF as LF); a missing file or a byte that is not
    UTF-8 raises ``error`` naming the file and line (``file:line``)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(
            f"{path}:{line}: not UTF-8 (byte offset {exc.start}: 0x{data[exc.start]:02x})"
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def jsonl_records(
    path: str | Path, error: type[Exception] = ValueError, *, what: str = "file"
) -> Iterator[tuple[str, dict]]:
    """``("file:line", object)`` for every non-blank line of a JSONL file; a missing file,
    non-UTF-8 text, a line that is not JSON or not an object raises ``error`` naming it
    (``file:line: ...``). Every JSONL reader of the project goes through here."""
    for number, line in enumerate(read_utf8(path, error, what=what).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise error(f"{where}: expected a JSON object")
        yield where, record


def jsonl_strings(
    path: str | Path,
    fields: tuple[str, ...],
    error: type[Exception] = ValueError,
    *,
    what: str = "file",
) -> Iterator[tuple[str, str]]:
    """``("file:line", text)`` for every record of a JSONL file, ``text`` the first of
    ``fields`` the record has; a record with none of them, or a value that is not a string,
    raises ``error`` naming the line."""
    names = " or ".join(repr(f) for f in fields)
    for where, record in jsonl_records(path, error, what=what):
        field = next((f for f in fields if f in record), None)
        if field is None:
            raise error(f"{where}: no {names} field")
        if not isinstance(record[field], str):
            kind = type(record[field]).__name__
            raise error(f"{where}: {field!r} is not a string ({kind})")
        yield where, record[field]
