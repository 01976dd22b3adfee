"""Export a circuit to GraphML, Neuronpedia graph JSON and an interactive HTML figure, and
render the figure to PNG when Chromium is installed.

    python examples/export_and_plot.py circuit.json [--out-dir exported]
"""

import argparse
from pathlib import Path

from sparse_circuits.circuits.discovery.graph import load_circuit
from sparse_circuits.circuits.export import CHROMIUM, export, render_png

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("circuit")
parser.add_argument("--out-dir", default="exported")
args = parser.parse_args()

graph = load_circuit(args.circuit)
out = Path(args.out_dir)
out.mkdir(parents=True, exist_ok=True)
for fmt, name in (
    ("graphml", "circuit.graphml"),
    ("neuronpedia", "circuit.np.json"),
    ("html", "circuit.html"),
):
    print(export(graph, out / name, fmt))
if Path(CHROMIUM).exists():
    print(render_png(out / "circuit.html", out / "circuit.png"))
else:
    print(f"no {CHROMIUM}: skipped the PNG (apt-get install chromium)")
