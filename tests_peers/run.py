"""The libraries people already use, as test oracles: SAELens, sparsify, dictionary_learning and
circuit-tracer, each in its own virtual environment (``make test-peers`` builds them).

1. For every peer whose environment ``.venv-peers/<peer>`` is built, run ``<peer>_side.py``
   inside it (all peers at once): the peer writes each of its architectures with its own save
   function, with its own encode/decode outputs on fixed inputs (``peer_io``). A peer whose
   environment pip could not build is reported on one line and skipped.
2. Load each file with ``load_dictionary`` (a circuit-tracer folder with ``load_dictionary_set``,
   a cross-layer transcoder with ``load_cross_layer_transcoder``) and compare: ``encode(x)``
   against the peer's features, and our decode of the PEER's features (plus the skip term)
   against the peer's reconstruction, so each column checks one map (for a cross-layer
   transcoder, every layer at once, and the decode column also holds our ``forward`` against
   the peer's). Cases the peer has and we do not (a CLT reading ``hook_resid_mid``) must be
   refused by name.
3. The way out: before step 1, write our dictionaries in the peer's format with
   ``dictionaries.convert``; the same side script reads them with the peer's own loading code;
   compare again.
4. Print the table (peer, version, direction, architecture, dtype, max |difference| of encode
   and decode, tolerance) and write it to ``tests_peers/RESULTS.md``. Exit 1 if any comparison
   is outside its tolerance or a peer's script fails, 0 otherwise (skipped peers included).

Tolerances: float32 1e-4 absolute (outputs are O(1) sums of at most 64 terms); bfloat16 1e-2
times the largest |output| (8 mantissa bits, and the peers round at different steps).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sparse_circuits.dictionaries import (
    CrossLayerTranscoder,
    Dictionary,
    DictionaryError,
    architecture_class,
    load_cross_layer_transcoder,
    load_dictionary,
)
from sparse_circuits.dictionaries.convert import convert
from sparse_circuits.dictionaries.sets import load_dictionary_set
from sparse_circuits.files import write_text_atomic

HERE = Path(__file__).resolve().parent
D_IN, D_SAE, D_OUT, K, N_TOKENS = 16, 64, 24, 8, 64  # as in peer_io


@dataclass(frozen=True)
class Peer:
    """One library checked here."""

    package: str
    """Its PyPI name."""
    script: str
    """Its side script in tests_peers/, run inside its environment."""
    writes_to: str | None = None
    """The format ``convert`` writes for it to load (none for circuit-tracer)."""


PEERS = {
    "saelens": Peer("sae-lens", "saelens_side.py", "saelens"),
    "sparsify": Peer("eai-sparsify", "sparsify_side.py", "sparsify"),
    "dictionary_learning": Peer("dictionary-learning", "dictionary_learning_side.py",
                                "dictionary_learning"),
    "circuit_tracer": Peer("circuit-tracer", "circuit_tracer_side.py"),
}  # fmt: skip

# our dictionaries written for each peer: (case, architecture, config fields)
SAE = {"place": "resid.2", "model": "smollm2-135m"}
TRANSCODER = {"place": "mlp_in.2", "writes": "mlp.2", "center_input": False}
SAES = [
    ("relu", "relu", SAE),
    ("relu-uncentred", "relu", {**SAE, "center_input": False}),
    ("gated", "gated", SAE),
    ("jumprelu", "jumprelu", SAE),
    ("topk", "topk", SAE),
    ("batchtopk", "batchtopk", SAE),
]
OURS = {
    "saelens": SAES
    + [
        ("relu-transcoder", "relu", {**TRANSCODER, "d_out": D_OUT}),
        ("relu-skip-transcoder", "relu", {**TRANSCODER, "skip": True}),
        ("jumprelu-skip-transcoder", "jumprelu", {**TRANSCODER, "d_out": D_OUT, "skip": True}),
        ("relu-bf16", "relu", {**SAE, "dtype": torch.bfloat16}),
    ],
    "dictionary_learning": SAES,
    "sparsify": [
        ("topk", "topk", SAE),
        ("topk-uncentred", "topk", {**SAE, "center_input": False}),
        ("topk-skip-transcoder", "topk", {**TRANSCODER, "skip": True}),
        ("topk-bf16", "topk", {**SAE, "dtype": torch.bfloat16}),
    ],
}


@dataclass
class Row:
    """One line of the results table."""

    peer: str
    version: str
    direction: str
    architecture: str
    dtype: str = ""
    encode: float = math.nan
    decode: float = math.nan
    tolerance: float = math.nan
    status: str = "ok"
    note: str = ""

    @property
    def failed(self) -> bool:
        return not self.status.startswith(("ok", "refused as expected", "skipped"))


def tolerance(dtype: torch.dtype, *references: torch.Tensor) -> float:
    if dtype == torch.float32:
        return 1e-4
    return 1e-2 * max(1.0, *(float(r.abs().max()) for r in references))


def max_diff(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours.float() - theirs.float()).abs().max())


def compare(dictionary: Dictionary, outputs: dict[str, torch.Tensor], prefix: str = ""):
    """(max |encode difference|, max |decode difference|, tolerance) on the peer's inputs."""
    x = outputs[f"{prefix}x"].to(dictionary.dtype)
    features, x_hat = outputs[f"{prefix}features"], outputs[f"{prefix}x_hat"]
    with torch.no_grad():
        encoded = dictionary.encode(x)
        decoded = dictionary.reconstruct(features.to(dictionary.dtype), x)
    return (
        max_diff(encoded, features),
        max_diff(decoded, x_hat),
        tolerance(dictionary.dtype, features, x_hat),
    )


def compare_cross_layer(clt: CrossLayerTranscoder, outputs: dict[str, torch.Tensor]):
    """(max |encode difference|, max |decode or forward difference|, tolerance) over every
    layer, on the peer's inputs ``(n_layers, N, d_model)``."""
    dtype = clt.layers[0].dtype
    x, features = outputs["x"].to(dtype), outputs["features"]
    with torch.no_grad():
        encoded, decoded, forward = clt.encode(x), clt.decode(features.to(dtype)), clt(x).x_hat
    decode = max(max_diff(decoded, outputs["x_hat"]), max_diff(forward, outputs["forward"]))
    return (
        max_diff(encoded, features),
        decode,
        tolerance(dtype, features, outputs["x_hat"], outputs["forward"]),
    )


def judged(row: Row, encode: float, decode: float, tol: float) -> Row:
    row.encode, row.decode, row.tolerance = encode, decode, tol
    if not (encode <= tol and decode <= tol):
        row.status = "FAILED"
    return row


def launch(python: Path, peer: Peer, work: Path) -> subprocess.Popen:
    """Start the peer's side script on ``work`` (it fills ``own/`` and answers ``ours/``)."""
    log = (work / "side.log").open("w")
    return subprocess.Popen(
        [str(python), str(HERE / peer.script), str(work)], stdout=log, stderr=subprocess.STDOUT
    )


def side_failure(process: subprocess.Popen, peer: Peer, work: Path) -> str | None:
    """``None`` when the side script succeeded, else the last line of its output."""
    if process.wait(timeout=900) == 0:
        return None
    lines = (work / "side.log").read_text().strip().splitlines() or [f"exit {process.returncode}"]
    return f"{peer.script}: {lines[-1]}"


def refusal(row: Row, path: Path, expected: str) -> Row:
    """A case we do not support must be refused with a message naming it."""
    try:
        load_dictionary(path)
    except DictionaryError as error:
        if expected in str(error):
            row.status, row.note = "refused as expected", str(error).split(": ", 1)[-1]
        else:
            row.status = f"FAILED: refused with {error}"
        return row
    row.status = "FAILED: loaded, but should be refused"
    return row


def load_case(path: Path, kind: str) -> tuple[dict[str, Dictionary], list[str]]:
    """``{output prefix: dictionary}`` (``"mlp.0/"``... for a set, ``""`` for one dictionary)
    and the warnings loading gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if kind == "set":
            members = {f"{place}/": d for place, d in load_dictionary_set(path).items()}
        else:
            members = {"": load_dictionary(path)}
    return members, [str(w.message) for w in caught]


def check_own(name: str, version: str, folder: Path) -> list[Row]:
    """Step 2: our readers against the peer's own files."""
    rows = []
    for case in sorted(p.parent for p in folder.glob("*/case.json")):
        description = json.loads((case / "case.json").read_text())
        row = Row(name, version, "peer file -> ours", description["architecture"])
        row.note = description["note"]
        path = case / description["path"]
        if "expect_error" in description:
            rows.append(refusal(row, path, description["expect_error"]))
            continue
        outputs = load_file(str(case / "outputs.safetensors"))
        if description["load"] == "cross_layer":
            clt = load_cross_layer_transcoder(path)
            row.dtype = str(clt.layers[0].dtype).removeprefix("torch.")
            row.note = f"{clt.n_layers} layers, decode column: decode and forward"
            rows.append(judged(row, *compare_cross_layer(clt, outputs)))
            continue
        members, caught = load_case(path, description["load"])
        row.dtype = str(next(iter(members.values())).dtype).removeprefix("torch.")
        peer_prefixes = {key.rpartition("x_hat")[0] for key in outputs if key.endswith("x_hat")}
        expected_warning = description.get("expect_warning")
        if peer_prefixes != set(members):
            row.status = f"FAILED: places {sorted(members)}, the peer's {sorted(peer_prefixes)}"
        elif expected_warning and not any(expected_warning in message for message in caught):
            row.status = f"FAILED: no warning {expected_warning!r}"
        else:
            scores = [compare(d, outputs, prefix) for prefix, d in members.items()]
            judged(row, *(max(column) for column in zip(*scores, strict=True)))
        if len(members) > 1:
            places = ", ".join(prefix.rstrip("/") for prefix in members)
            row.note = "; ".join(filter(None, [row.note, f"{len(members)} places: {places}"]))
        rows.append(row)
    return rows


def our_dictionary(arch: str, fields: dict, seed: int) -> Dictionary:
    """A dictionary with random weights, decoder rows of unit norm (dictionary_learning's
    ``from_pretrained`` renormalises them otherwise) and a positive batchtopk threshold."""
    fields = dict(fields)
    dtype = fields.pop("dtype", torch.float32)
    if arch in ("topk", "batchtopk"):
        fields["k"] = K
    dictionary = architecture_class(arch).create(D_IN, D_SAE, **fields)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in dictionary.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
        dictionary.W_dec.div_(dictionary.W_dec.norm(dim=-1, keepdim=True))
        if arch == "batchtopk":
            dictionary.threshold.fill_(0.2)
        if arch == "jumprelu":
            dictionary.threshold.abs_()
        if arch == "topk" and dtype == torch.bfloat16:  # as sparsify_side.separate_ranks
            dictionary.W_enc.mul_(0.05)
            dictionary.b_enc.copy_(torch.arange(D_SAE, dtype=torch.float32))
    return dictionary.to(dtype).eval()


def prepare_ours(target: str, folder: Path) -> dict[str, Dictionary]:
    """Step 3a: our dictionaries converted for the peer, with fixed inputs beside each."""
    dictionaries = {}
    for seed, (case, arch, fields) in enumerate(OURS[target]):
        dictionary = our_dictionary(arch, fields, seed)
        convert(dictionary, target, folder / case / "files")
        x = torch.randn(N_TOKENS, D_IN, generator=torch.Generator().manual_seed(99 + seed))
        save_file({"x": x.to(dictionary.dtype)}, str(folder / case / "inputs.safetensors"))
        description = {"architecture": case, "format": target}
        (folder / case / "case.json").write_text(json.dumps(description))
        dictionaries[case] = dictionary
    return dictionaries


def check_ours(name: str, version: str, folder: Path, dictionaries: dict[str, Dictionary]):
    """Step 3b: the peer's outputs on our converted dictionaries against ours."""
    rows = []
    for case, dictionary in dictionaries.items():
        outputs = load_file(str(folder / case / "outputs.safetensors"))
        outputs["x"] = load_file(str(folder / case / "inputs.safetensors"))["x"]
        row = Row(name, version, "ours -> peer loader", case)
        row.dtype = str(dictionary.dtype).removeprefix("torch.")
        rows.append(judged(row, *compare(dictionary, outputs)))
    return rows


def check_peers(names: list[str], venvs: Path, work: Path) -> list[Row]:
    """Steps 1-3 for every peer, their side scripts running side by side."""
    rows, running = [], {}
    for name in names:
        peer, folder = PEERS[name], work / name
        if not (venvs / name / ".installed").is_file():
            print(f"{name}: its environment could not be built (see {venvs / name}.log); skipped")
            rows.append(Row(name, "-", "-", "-", status="skipped: cannot build its environment"))
            continue
        folder.mkdir(parents=True)
        ours = prepare_ours(peer.writes_to, folder / "ours") if peer.writes_to else {}
        running[name] = (launch(venvs / name / "bin" / "python", peer, folder), ours)
    for name, (process, ours) in running.items():
        folder = work / name
        failure = side_failure(process, PEERS[name], folder)
        if failure:
            rows.append(Row(name, "?", "-", "-", status=f"FAILED: {failure}"))
            continue
        version = json.loads((folder / "peer.json").read_text())["version"]
        rows.extend(check_own(name, version, folder / "own"))
        rows.extend(check_ours(name, version, folder / "ours", ours))
    return rows


def table(rows: list[Row]) -> str:
    header = "| peer | version | direction | architecture | dtype | max abs diff encode | max abs diff decode | tolerance | result |"
    lines = [header, "|" + "---|" * 9]
    for r in rows:
        numbers = [
            f"{v:.1e}" if not math.isnan(v) else "-" for v in (r.encode, r.decode, r.tolerance)
        ]
        result = r.status + (f" ({r.note})" if r.note else "")
        lines.append(
            f"| {r.peer} | {r.version} | {r.direction} | {r.architecture} | {r.dtype or '-'} | "
            + " | ".join(numbers)
            + f" | {result} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--venvs", type=Path, default=HERE.parent / ".venv-peers")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    torch.manual_seed(0)  # our dictionaries' initial weights: the same table on every run
    with tempfile.TemporaryDirectory(prefix="peers-") as work:
        rows = check_peers(args.peers, args.venvs, Path(work))
    text = table(rows)
    print(text)
    write_text_atomic(args.results, "# Checked against the peers\n\n" + text + "\n")
    skipped = [r for r in rows if r.status.startswith("skipped")]
    failed = [r for r in rows if r.failed]
    passed = len(rows) - len(skipped) - len(failed)
    if passed or failed:
        print(f"{passed} passed, {len(failed)} failed, {len(skipped)} skipped")
    else:
        print("no peer environment could be built: nothing compared")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
