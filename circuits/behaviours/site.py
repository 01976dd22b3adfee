"""The static site of a behaviours run: plain HTML files that open offline in a browser.

Layout of the output folder (every file written atomically):

- ``index.html``: every cluster with its size, summary, faithfulness and circuit size, in a
  table sorted by a click on a column head and filtered by a search box (a little inline
  JavaScript; the table reads fine without it);
- ``clusters.jsonl``: one line per cluster, ``{"cluster", "size", "summary", "faithfulness",
  "contexts": [{"text", "answer", "document", "position"}, ...]}``;
- ``plotly.min.js``: the one copy of plotly.js every circuit figure loads (no network);
- ``clusters/<id>/index.html``: the cluster's page: its contexts with the answer highlighted,
  its circuit figure (``circuit.html``, embedded), its top features with their top activating
  contexts, and links to the clusters that share a top feature with it;
- ``clusters/<id>/circuit.json``, ``circuit.html``, ``result.json``: written by the cluster's
  own stage (``pipeline``); ``result.json`` holds what the pages show (``cluster_record``).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparse_circuits.files import write_text_atomic

__all__ = ["PLOTLY_JS", "cluster_folder", "shared_features", "write_site"]

PLOTLY_JS = "plotly.min.js"
"""The shared plotly.js, at the top of the site."""

_STYLE = """
body { font-family: sans-serif; margin: 1em 2em; max-width: 80em; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; cursor: pointer; }
mark { background: #ffd54f; }
.context { font-family: monospace; white-space: pre-wrap; }
.muted { color: #666; font-size: 12px; }
iframe { width: 100%; height: 720px; border: 1px solid #ccc; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}
</body>
</html>
"""

_INDEX_SCRIPT = """
(function () {
  var table = document.getElementById("clusters");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  document.getElementById("search").addEventListener("input", function (event) {
    var query = event.target.value.toLowerCase();
    rows.forEach(function (row) {
      row.hidden = row.textContent.toLowerCase().indexOf(query) < 0;
    });
  });
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (head, column) {
    head.addEventListener("click", function () {
      var direction = head.getAttribute("data-sorted") === "up" ? -1 : 1;
      head.setAttribute("data-sorted", direction === 1 ? "up" : "down");
      function key(row) {
        var cell = row.cells[column];
        var value = cell.getAttribute("data-value");
        return value === null ? cell.textContent : parseFloat(value);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        return (x > y ? 1 : x < y ? -1 : 0) * direction;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
})();
"""


def cluster_folder(out: Path, cluster: int) -> Path:
    return out / "clusters" / str(cluster)


def _page(title: str, body: str) -> str:
    return _PAGE.format(title=html.escape(title), style=_STYLE, body=body)


def _format_faithfulness(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _visible(text: str) -> str:
    """Escaped text with newlines shown as ``↵``."""
    return html.escape(text.replace("\n", "↵"))


def _marked(text: str) -> str:
    """A top-context text (its hit token marked ``«token»``) as HTML, the hit in bold."""
    return re.sub(r"«(.*?)»", r"<b>\1</b>", html.escape(text))


def shared_features(records: Sequence[dict[str, Any]]) -> dict[int, dict[int, list[str]]]:
    """``cluster -> other cluster -> [top-feature node ids both list]``."""
    owners: dict[str, list[int]] = {}
    for record in records:
        for feature in record["top_features"]:
            owners.setdefault(feature["node"], []).append(record["cluster"])
    links: dict[int, dict[int, list[str]]] = {record["cluster"]: {} for record in records}
    for node, clusters in sorted(owners.items()):
        for a in clusters:
            for b in clusters:
                if a != b:
                    links[a].setdefault(b, []).append(node)
    return links


def _context_list(record: dict[str, Any]) -> str:
    items = [
        f'<li><span class="context">{_visible(c["text"])}<mark>{_visible(c["answer"])}</mark>'
        f'</span> <span class="muted">document {c["document"]}, position {c["position"]}</span></li>'
        for c in record["contexts"]
    ]
    return "<ol>" + "".join(items) + "</ol>"


def _feature_table(record: dict[str, Any], links: dict[int, dict[int, list[str]]]) -> str:
    if not record["top_features"]:
        return "<p>No feature node passed the threshold.</p>"
    rows = []
    for feature in record["top_features"]:
        others = [c for c, nodes in links[record["cluster"]].items() if feature["node"] in nodes]
        also = ", ".join(f'<a href="../{c}/index.html">{c}</a>' for c in sorted(others))
        contexts = "<br>".join(
            f'<span class="context">{_marked(hit["text"])}</span> '
            f'<span class="muted">{hit["activation"]:.3g}</span>'
            for hit in feature["contexts"]
        )
        rows.append(
            f"<tr><td>{html.escape(feature['node'])}</td><td>{feature['effect']:+.4g}</td>"
            f"<td>{contexts}</td><td>{also}</td></tr>"
        )
    head = (
        "<tr><th>feature</th><th>effect</th><th>top activating contexts</th><th>also in</th></tr>"
    )
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _related(record, links, by_id) -> str:
    related = links[record["cluster"]]
    if not related:
        return "<p>No other cluster shares a top feature with this one.</p>"
    ordered = sorted(related, key=lambda c: (-len(related[c]), c))
    items = [
        f'<li><a href="../{c}/index.html">cluster {c}</a> ({by_id[c]["size"]} contexts): '
        f'{html.escape(", ".join(related[c]))} <span class="muted">'
        f"{html.escape(by_id[c]['summary'])}</span></li>"
        for c in ordered
    ]
    return "<ul>" + "".join(items) + "</ul>"


def _cluster_page(record, links, by_id, order: list[int]) -> str:
    cluster = record["cluster"]
    at = order.index(cluster)
    nav = ['<a href="../../index.html">all clusters</a>']
    if at > 0:
        nav.append(f'<a href="../{order[at - 1]}/index.html">previous</a>')
    if at + 1 < len(order):
        nav.append(f'<a href="../{order[at + 1]}/index.html">next</a>')
    faithfulness = _format_faithfulness(record["faithfulness"])
    body = f"""<nav>{" · ".join(nav)}</nav>
<h1>Cluster {cluster}</h1>
<p>{html.escape(record["summary"])}</p>
<p>{record["size"]} contexts; circuit of {record["nodes"]} nodes and {record["edges"]} edges from
{len(record["discovery"])} of them; faithfulness {faithfulness} on {len(record["held_out"])} held-out
contexts. Files: <a href="circuit.json">circuit.json</a>, <a href="circuit.html">circuit.html</a>,
<a href="result.json">result.json</a>.</p>
<h2>Contexts</h2>
{_context_list(record)}
<h2>Circuit</h2>
<iframe src="circuit.html" title="circuit of cluster {cluster}"></iframe>
<h2>Top features</h2>
{_feature_table(record, links)}
<h2>Clusters sharing features</h2>
{_related(record, links, by_id)}
"""
    return _page(f"cluster {cluster}", body)


def _index_page(records: Sequence[dict[str, Any]], run: dict[str, Any]) -> str:
    rows = []
    for r in records:
        faithfulness = r["faithfulness"]
        value = "-Infinity" if faithfulness is None else repr(faithfulness)
        rows.append(
            f'<tr><td data-value="{r["cluster"]}"><a href="clusters/{r["cluster"]}/index.html">'
            f'{r["cluster"]}</a></td><td data-value="{r["size"]}">{r["size"]}</td>'
            f'<td data-value="{value}">{_format_faithfulness(faithfulness)}</td>'
            f'<td data-value="{r["nodes"]}">{r["nodes"]}</td>'
            f"<td>{html.escape(r['summary'])}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("cluster", "size", "faithfulness", "nodes", "summary"))
    facts = ", ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in run.items())
    body = f"""<h1>Behaviours</h1>
<p class="muted">{facts}</p>
<p>{len(records)} clusters; <a href="clusters.jsonl">clusters.jsonl</a>. Click a column head
to sort; type to filter.</p>
<p><input id="search" type="search" placeholder="search summaries" size="40"></p>
<table id="clusters"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>
<script>{_INDEX_SCRIPT}</script>
"""
    return _page("behaviours", body)


def _jsonl_line(record: dict[str, Any]) -> str:
    fields = ("cluster", "size", "summary", "faithfulness", "contexts")
    return json.dumps({name: record[name] for name in fields}, ensure_ascii=False) + "\n"


def write_site(out: str | Path, records: Sequence[dict[str, Any]], *, run: dict[str, Any]) -> Path:
    """Write the site's shared files and pages from every cluster's ``record`` (the content of
    its ``result.json``), in cluster order; ``run`` are facts shown at the top of the index.
    Returns the path of ``index.html``."""
    import plotly.offline

    out = Path(out)
    records = sorted(records, key=lambda r: r["cluster"])
    write_text_atomic(out / PLOTLY_JS, plotly.offline.get_plotlyjs())
    links = shared_features(records)
    by_id = {r["cluster"]: r for r in records}
    order = [r["cluster"] for r in records]
    for record in records:
        page = _cluster_page(record, links, by_id, order)
        write_text_atomic(cluster_folder(out, record["cluster"]) / "index.html", page)
    write_text_atomic(out / "clusters.jsonl", "".join(_jsonl_line(r) for r in records))
    return write_text_atomic(out / "index.html", _index_page(records, run))
