"""``sparse-circuits``: one sub-command per job, each a thin call into the Python API.

Errors a user can fix (a bad file, a bad name) print one line, ``error: ...``, and exit 2.
Imports are inside the commands so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(function: Callable[[argparse.Namespace], int]):
    COMMANDS[function.__name__.replace("_", "-").removeprefix("cmd-")] = function
    return function


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="smollm2-135m",
        help="embedded name (smollm2-135m), .gguf file, checkpoint folder or hub id",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])


@command
def cmd_info(args: argparse.Namespace) -> int:
    from circuits.models import load_model

    _, adapter = load_model(args.model, device=args.device, dtype=args.dtype)
    print(
        json.dumps(
            {
                "model": args.model,
                "model_type": adapter.model_type,
                "n_layers": adapter.n_layers,
                "d_model": adapter.d_model,
                "parallel_attn": adapter.parallel_attn,
                "submodules": adapter.places,
            }
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparse-circuits",
        description="Sparse dictionaries, sparse feature circuits and feature-level editing.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="print a model's architecture and place names as JSON")
    add_model_arguments(info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
