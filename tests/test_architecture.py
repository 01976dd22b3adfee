"""The package's layout keeps its promises: one import name, no import cycle, data flowing one
way (dictionaries -> circuits -> editing -> the CLI), all read from the source files."""

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"circuits", "dictionaries", "editing", "sparse_circuits"}
"""Folders at the top of the repository and the import names they install under."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if parts[0] != "sparse_circuits":
        parts = ["sparse_circuits", *parts]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, anywhere in the file (inside functions
    too), except under ``if TYPE_CHECKING:``; ``from package import name`` counts as importing
    ``package.name`` when that is a module, else ``package``."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for statement in node.body
        for child in ast.walk(statement)
    }
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
    return {name for name in found if name in modules}


def import_graph() -> nx.DiGraph:
    files = [p for folder in MAPPED for p in (ROOT / folder).rglob("*.py")]
    modules = {module_name(p) for p in files}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for path in files:
        for target in imported_modules(path, modules):
            graph.add_edge(module_name(path), target)
    return graph


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_import_graph_is_read_from_the_source(graph):
    # a known edge each way the graph is built: absolute, from-package, inside a function
    assert graph.has_edge(
        "sparse_circuits.dictionaries.base", "sparse_circuits.dictionaries.native"
    )
    assert graph.has_edge(
        "sparse_circuits.circuits.discovery.discover", "sparse_circuits.dictionaries"
    )
    assert graph.has_edge("sparse_circuits.cli", "sparse_circuits.circuits.model.loading")
    assert graph.number_of_nodes() > 60


def test_no_import_cycle(graph):
    cycles = list(nx.simple_cycles(graph))
    assert cycles == [], f"import cycles: {cycles[:5]}"


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [
        ("sparse_circuits.dictionaries", ("sparse_circuits.circuits", "sparse_circuits.editing")),
        ("sparse_circuits.circuits", ("sparse_circuits.editing",)),
    ],
)
def test_data_flows_one_way(graph, room, forbidden):
    wrong = [
        (source, target)
        for source, target in graph.edges
        if source.startswith(room) and target.startswith(forbidden)
    ]
    assert wrong == []


def test_nothing_imports_the_cli(graph):
    assert sorted(graph.predecessors("sparse_circuits.cli")) == ["sparse_circuits.__main__"]


def test_one_import_name_outside_the_repository(tmp_path):
    """Installed, the folders are ``sparse_circuits.*``; their bare names do not import."""
    code = (
        "import importlib.util, sys\n"
        "import sparse_circuits.circuits, sparse_circuits.dictionaries, sparse_circuits.editing\n"
        "bare = [n for n in ('circuits', 'dictionaries', 'editing') if importlib.util.find_spec(n)]\n"
        "print(bare)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
