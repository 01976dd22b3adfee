"""Speed against the peers: one TopK training step (d_in 576, 16384 latents, k 32, batch 4096)
in this project, SAELens, sparsify and dictionary_learning, side by side.

1. Start one worker per library (``benchmarks/peer_steps.py``, which states each library's
   step, optimiser and AuxK setting), each in its own environment: ours in ``.venv``, the peers
   in the ``.venv-peers/<peer>`` that ``make test-peers`` builds (a missing one is skipped),
   and ours once more with glibc's malloc defaults (``sparse_circuits.memory``), as the peers
   run.
2. For each precision (float32, and bfloat16), for each round, ask every worker in turn for
   ``--steps`` timed steps, so a slow spell of a shared machine falls on every library alike.
3. Print tokens/s (batch / step seconds) as min / median / max over every timed step, and the
   ratio of our median to each peer's in the same precision.

    python benchmarks/peers.py [--rounds 3] [--steps 2] [--dtypes float32 bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from arguments import positive

from sparse_circuits.memory import OPT_OUT

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "benchmarks" / "peer_steps.py"
BATCH = 4096
ENVIRONMENTS = {  # library -> its environment's python
    "ours": ROOT / ".venv" / "bin" / "python",
    "sae-lens": ROOT / ".venv-peers" / "saelens" / "bin" / "python",
    "eai-sparsify": ROOT / ".venv-peers" / "sparsify" / "bin" / "python",
    "dictionary-learning": ROOT / ".venv-peers" / "dictionary_learning" / "bin" / "python",
}
GLIBC_DEFAULTS = "ours, glibc's malloc defaults"
"""Our step again with ``SPARSE_CIRCUITS_KEEP_FREED_MEMORY=0`` (``sparse_circuits.memory``):
freed large blocks returned to the kernel, as in the peers' processes."""


def start_workers() -> dict[str, subprocess.Popen]:
    workers = {}
    runs = [(library, library, None) for library in ENVIRONMENTS]
    runs.insert(1, (GLIBC_DEFAULTS, "ours", {**os.environ, OPT_OUT: "0"}))
    for name, library, env in runs:
        python = ENVIRONMENTS[library]
        if not python.is_file():
            print(f"{library}: no environment at {python.parent.parent} (make test-peers); skipped")
            continue
        workers[name] = subprocess.Popen(
            [str(python), str(WORKER), library],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
    return workers


def ask(worker: subprocess.Popen, dtype: str, steps: int) -> list[float]:
    """The seconds of ``steps`` timed steps in ``dtype``."""
    worker.stdin.write(f"{dtype} {steps}\n")
    worker.stdin.flush()
    line = worker.stdout.readline()
    if not line:
        raise RuntimeError(f"worker exited with status {worker.wait()}")
    return json.loads(line)["seconds"]


def report(dtype: str, seconds: dict[str, list[float]]) -> None:
    print(f"\n{dtype}: tokens/s per step (min / median / max), ratio ours / peer (medians)")
    medians = {lib: BATCH / statistics.median(s) for lib, s in seconds.items()}
    width = max(map(len, seconds))
    for library, times in seconds.items():
        rates = sorted(BATCH / t for t in times)
        ratio = ""
        if library != "ours" and "ours" in medians:
            ratio = f"   ours / {library} = {medians['ours'] / medians[library]:.2f}"
        print(
            f"  {library:{width}s} {rates[0]:9.0f} {medians[library]:9.0f} {rates[-1]:9.0f}{ratio}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=positive(int), default=3)
    parser.add_argument("--steps", type=positive(int), default=2, help="timed steps per round")
    parser.add_argument(
        "--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"]
    )
    args = parser.parse_args()
    workers = start_workers()
    try:
        for dtype in args.dtypes:
            seconds: dict[str, list[float]] = {library: [] for library in workers}
            for _ in range(args.rounds):
                for library, worker in workers.items():
                    seconds[library] += ask(worker, dtype, args.steps)
            report(dtype, seconds)
    finally:
        for worker in workers.values():
            worker.stdin.close()
            worker.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
