"""Edge effects between circuit nodes, through direct paths only (Marks et al. 2024, section
2.2, "edge attribution"; every spliced place but the two ends held fixed).

The weight of the edge from upstream node ``u`` to downstream node ``d`` is

    w(u -> d) = sum over positions t of d and s of u of  dm/dd_t * dd_t/du_s * (u_patch - u_clean)_s

(an error node's delta is contracted over the model dimension), averaged over examples, where
``dm/dd`` is the total gradient of the metric at ``d`` and ``dd/du`` the Jacobian of ``d`` with
respect to ``u`` along direct paths, every other spliced place held fixed (stop-gradient).
With aggregation ``none`` a node has one position and nothing is summed. Edges into the
metric node use the metric's direct gradient.

Everything comes from one clean run spliced with ``hold_fixed``: each place's features and
error are leaves, and ``upstream_features``/``upstream_error`` are the same values as functions
of the earlier leaves, so a gradient between two places follows direct paths only. Per batch:

1. the held clean run (with its graph) and the patch run give the deltas; after a node pass
   with a ``cache`` (``node_effects(..., cache=...)``), the deltas come from it and no patch
   run is made;
2. one backward of the metric gives the edges into the metric and the direct part of every
   place's total gradient ``dm/d(output)``;
3. places from last to first: once every later place has passed back its share, a place's
   total gradient is complete (the chain rule, place by place: the gradient of an ordinary
   backward pass, without a second clean run; an ``attrib`` node pass's cache holds the total
   gradients already, and then nothing is passed back). One batch of vector-Jacobian products
   (``is_grads_batched``) through the place's direct paths then
   - passes the place's share back to every earlier place (row 0, seeded with the whole total
     gradient; not needed when the cache holds the totals), and
   - gives the edges into the place's selected nodes (the other rows, seeded with one node's
     own gradient each). Rows are packed on the example axis: examples are independent in a
     causal language model, and a feature's derivative is zero wherever the feature is zero
     (ReLU, TopK, JumpReLU, gated), so a node's seed lives only in the examples where it is
     active and nodes active in different examples share a row;
4. each row's gradient at an earlier place is contracted, per example, with the deltas of that
   place's selected nodes only (the decoder rows of selected features, never a features x
   features matrix) and split back per node. A feature of a cross-layer transcoder's layer
   writes several places (``config.writes_later``): its direct effect on a later node is the
   sum over the places it writes before that node, each through its own decoder.

Under bfloat16 the backward passes run in the model's dtype, their seeds for the features
cast to it; the total gradients, the feature gradients ``dm/df`` and every product with a
delta and sum over examples are float32.

``batched=False`` is the straightforward twin: one backward per downstream node, seeds not
packed, gradients with respect to every leaf; tests and the benchmark compare the two (which
also checks the zero-derivative assumption the packing rests on).

Cost: a row costs one backward through the blocks between the two places, like a node of the
twin. Packing saves rows only when nodes are active in few examples (per-position nodes, rare
features); features active in most examples leave about one row per node.

Edges are returned sparse, as ``{(upstream, downstream): weight}`` over selected nodes only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from sparse_circuits.circuits.data.prompts import PromptBatch
from sparse_circuits.circuits.discovery.metrics import LogitDiff, Metric
from sparse_circuits.circuits.discovery.nodes import (
    METRIC_NODE,
    Aggregation,
    NodeKey,
    NodeSelection,
)
from sparse_circuits.circuits.model.runner import BatchCache, PlaceValues, Runner, SplicedRun
from sparse_circuits.dictionaries import Dictionary

__all__ = ["edge_effects"]

DIRECT_PLACES = 4
"""Most places with a direct path into one place (resid.L: resid.L-1, attn.L, mlp.L, and a
transcoder's input), for sizing the chunks of batched vector-Jacobian products."""

Edges = dict[tuple[NodeKey, NodeKey], float]


def _feature_grad(
    grads: Mapping[str, torch.Tensor | None],
    place: str,
    dictionary: Dictionary,
    features: list[int] | None = None,
) -> torch.Tensor | None:
    """``dm/df (..., F)`` of the features at ``place`` from ``dm/d(output) (..., D)`` at the
    places they write (``grads``; a missing or ``None`` entry adds nothing; ``None`` when none
    has one). A spliced place writes ``decode(f) + error`` and the decoders are linear, so this
    is what autograd computes for the features leaf: for a layer of a cross-layer transcoder,
    the sum over every place it writes. Here in float32 (a sum over D); ``features`` keeps only
    those columns."""
    total = None
    for index, written in enumerate([place, *dictionary.config.writes_later]):
        grad_x = grads.get(written)
        if grad_x is None:
            continue
        W_dec_FD = dictionary.decoder(index).detach()
        W_dec_FD = W_dec_FD if features is None else W_dec_FD[features]
        part = grad_x.float() @ W_dec_FD.float().T
        total = part if total is None else total + part
    return total


def _contract(
    grad_f: torch.Tensor, grad_e: torch.Tensor, v: PlaceValues, aggregation: Aggregation
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``(n, B, T, F)``/``(n, B, T, D)`` times deltas, summed over examples (in
    float32): features ``(n, F)`` or ``(n, T, F)``, error ``(n,)`` or ``(n, T)``."""
    f = (grad_f.float() * v.delta_features).sum(1)
    e = (grad_e.float() * v.delta_error).sum(-1).sum(1)
    if aggregation == "sum":
        return f.sum(1), e.sum(1)
    return f, e


def _add_edges(
    edges: Edges,
    downstream: list[NodeKey],
    place: str,
    f_nTF: torch.Tensor,
    e_nT: torch.Tensor,
    selection: NodeSelection,
) -> None:
    """Accumulate the contributions of ``place``'s selected nodes into ``edges``."""
    upstream = selection.keys(place)
    if not upstream:
        return
    for _, feature, position in upstream:
        if feature >= 0:
            column = f_nTF[:, feature] if position < 0 else f_nTF[:, position, feature]
        else:
            column = e_nT if position < 0 else e_nT[:, position]
        for down, weight in zip(downstream, column.tolist(), strict=True):
            key = ((place, feature, position), down)
            edges[key] = edges.get(key, 0.0) + weight


def _downstream_vectors(
    nodes: list[NodeKey], grad_f: torch.Tensor, grad_e: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot-masked metric gradients: ``(n, B, T, F)`` and ``(n, B, T, D)`` for ``n``
    downstream nodes, each selecting its own feature (or the error) and position(s)."""
    go_f = grad_f.new_zeros(len(nodes), *grad_f.shape)
    go_e = grad_e.new_zeros(len(nodes), *grad_e.shape)
    for j, (_, feature, position) in enumerate(nodes):
        at = slice(None) if position < 0 else slice(position, position + 1)
        if feature >= 0:
            go_f[j, :, at, feature] = grad_f[:, at, feature]
        else:
            go_e[j, :, at] = grad_e[:, at]
    return go_f, go_e


@dataclass
class _Pass:
    """What the steps of one batch's edge pass read and write."""

    runner: Runner
    selection: NodeSelection
    aggregation: Aggregation
    run: SplicedRun
    """The clean run spliced with ``hold_fixed``, with its autograd graph."""
    values: dict[str, PlaceValues]
    edges: Edges
    """Summed over examples, accumulated over batches."""
    known_totals: dict[str, torch.Tensor] | None = None
    """Every place's total gradient from the node pass, when its cache had them."""
    total: dict[str, torch.Tensor] = field(default_factory=dict)
    """Each place's gradient ``dm/d(output) (B, T, D)`` in float32: the direct part from the
    metric, then the shares passed back by later places (or ``known_totals``)."""

    @property
    def passes_back(self) -> bool:
        """Whether later places pass their share of the gradient back (totals unknown)."""
        return self.known_totals is None


def _metric_edges(p: _Pass) -> None:
    """Edges from selected nodes straight into the metric, and the direct part of every
    place's total gradient (zero where no direct path reaches the metric)."""
    places, held = p.runner.places, p.run.places
    leaves = [held[place].error for place in places]
    grads = torch.autograd.grad(p.run.metric.sum(), leaves, retain_graph=True, allow_unused=True)
    direct = dict(zip(places, grads, strict=True))
    for place, grad_e in direct.items():
        if p.known_totals is not None:
            p.total[place] = p.known_totals[place].to(held[place].error.device)
        elif grad_e is None:
            p.total[place] = torch.zeros_like(held[place].error, dtype=torch.float32)
        else:
            p.total[place] = grad_e.float()
        grad_f = _feature_grad(direct, place, p.runner.dictionaries[place])
        if grad_f is not None and p.selection.keys(place):
            grad_e = torch.zeros_like(p.total[place]) if grad_e is None else grad_e
            f_w, e_w = _contract(grad_f[None], grad_e[None], p.values[place], p.aggregation)
            _add_edges(p.edges, [METRIC_NODE], place, f_w.cpu(), e_w.cpu(), p.selection)


def _pass_back(p: _Pass, places: list[str], shares) -> None:
    """Add a later place's share of the gradient to the earlier places it reaches directly.

    Not in place: autograd may hand two places one gradient tensor (a place's output and an
    earlier one added into the same residual stream, with nothing spliced between)."""
    for place, share in zip(places, shares, strict=True):
        if share is not None:
            p.total[place] = p.total[place] + share.float()


# --- one backward per downstream node: the straightforward twin -----------------------------


def _looped_place(
    p: _Pass, place: str, before: list[str], nodes: list[NodeKey], grads: tuple
) -> None:
    """One backward for the place's share of the total gradient, then one per node."""
    held = p.run.places
    outputs = [held[place].upstream_features, held[place].upstream_error]
    if p.passes_back:
        errors = [held[up].error for up in before]
        shares = torch.autograd.grad(outputs, errors, grads, retain_graph=True, allow_unused=True)
        _pass_back(p, before, shares)
    # every earlier place is an input: autograd returns None, at no cost, for the ones with no
    # direct path (hold_fixed cut them)
    leaves = [t for up in before for t in (held[up].features, held[up].error)]
    for node in nodes:
        go_f, go_e = _downstream_vectors([node], *grads)
        leaf_grads = torch.autograd.grad(
            outputs, leaves, [go_f[0], go_e[0]], retain_graph=True, allow_unused=True
        )
        for i, up_place in enumerate(before):
            g_f, g_e = leaf_grads[2 * i], leaf_grads[2 * i + 1]
            if g_f is None and g_e is None:
                continue  # no direct path from this place
            v = p.values[up_place]
            g_f = torch.zeros_like(v.delta_features) if g_f is None else g_f
            g_e = torch.zeros_like(v.delta_error) if g_e is None else g_e
            f_w, e_w = _contract(g_f[None], g_e[None], v, p.aggregation)
            _add_edges(p.edges, [node], up_place, f_w.cpu(), e_w.cpu(), p.selection)


# --- batched vector-Jacobian products, packed on the example axis ---------------------------


def _active(nodes: list[NodeKey], v: PlaceValues) -> torch.Tensor:
    """``(n, B)``: the examples where each node's seed can be non-zero (its feature is active
    at its position(s) in the clean run; the error node everywhere)."""
    on_BTF = v.clean_features != 0
    rows = []
    for _, feature, position in nodes:
        if feature < 0:
            rows.append(torch.ones(len(on_BTF), dtype=torch.bool, device=on_BTF.device))
        elif position < 0:
            rows.append(on_BTF[:, :, feature].any(1))
        else:
            rows.append(on_BTF[:, position, feature])
    return torch.stack(rows)


def _pack(
    active_nB: torch.Tensor, *, first: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Rows for the seeds of ``n`` nodes over ``B`` examples: node ``j``'s seed for example
    ``b`` goes to row ``first +`` (the number of nodes before ``j`` active in ``b``), so a row
    holds at most one node per example (rows before ``first``, row 0 when there is one, carry
    the place's whole gradient). Returns the active ``(j, b)`` pairs, their rows, and the
    number of rows."""
    row_nB = active_nB.long().cumsum(0) - 1 + first
    j, b = active_nB.nonzero(as_tuple=True)
    row = row_nB[j, b]
    return j, b, row, int(row.max()) + 1 if len(row) else first


def _place_seeds(
    go_f: torch.Tensor,
    go_e: torch.Tensor,
    nodes: list[NodeKey],
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    grads: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """Write node ``j``'s seed for example ``b`` into row ``r`` of ``go_f (R, B, T, F)`` /
    ``go_e (R, B, T, D)``, for every ``(j, b, r)`` in ``pairs``."""
    j, b, r = pairs
    grad_f, grad_e = grads
    if not nodes:
        return
    feature = torch.tensor([key[1] for key in nodes], dtype=torch.long, device=j.device)[j]
    position = torch.tensor([key[2] for key in nodes], dtype=torch.long, device=j.device)[j]
    is_feature, summed = feature >= 0, position < 0
    m = is_feature & summed  # a feature, summed over positions
    go_f[r[m], b[m], :, feature[m]] = grad_f[b[m], :, feature[m]]
    m = is_feature & ~summed  # a feature at one position
    go_f[r[m], b[m], position[m], feature[m]] = grad_f[b[m], position[m], feature[m]]
    m = ~is_feature & summed
    go_e[r[m], b[m]] = grad_e[b[m]]
    m = ~is_feature & ~summed
    go_e[r[m], b[m], position[m]] = grad_e[b[m], position[m]]


def _upstream_products(
    row_grads: Mapping[str, torch.Tensor | None],
    place: str,
    keys: list[NodeKey],
    v: PlaceValues,
    dictionary: Dictionary,
) -> torch.Tensor:
    """``(R, B, K)``: each row's gradient at the outputs of earlier places (``row_grads``,
    each ``(R, B, T, D)`` or ``None``), contracted per example with the deltas of the ``K``
    selected nodes of ``place`` (features through their decoder rows into every place they
    write only, the error through ``place`` itself), in float32."""
    features = sorted({f for _, f, _ in keys if f >= 0})
    column = {f: i for i, f in enumerate(features)}
    grad_x = row_grads.get(place)
    per_f = per_e = None
    if features:
        grad_f = _feature_grad(row_grads, place, dictionary, features)  # (R, B, T, K_f)
        per_f = grad_f * v.delta_features[..., features]
    if any(f < 0 for _, f, _ in keys) and grad_x is not None:
        per_e = (grad_x.float() * v.delta_error).sum(-1)  # (R, B, T)
    reference = next(g for g in row_grads.values() if g is not None)
    zeros = torch.zeros(reference.shape[:-1], device=reference.device)  # (R, B, T)
    products = []
    for _, feature, position in keys:
        per_position = per_f[..., column[feature]] if feature >= 0 else per_e  # (R, B, T)
        per_position = zeros if per_position is None else per_position
        products.append(per_position.sum(-1) if position < 0 else per_position[..., position])
    return torch.stack(products, -1)


def _batched_place(
    p: _Pass,
    place: str,
    before: list[str],
    nodes: list[NodeKey],
    grads: tuple,
    chunk_elements: int,
) -> None:
    """The place's share of the total gradient (row 0) and the edges into its nodes (packed
    rows), in as few batched backward passes as memory allows."""
    held = p.run.places
    outputs = [held[place].upstream_features, held[place].upstream_error]
    errors = [held[up].error for up in before]
    active_nB = _active(nodes, p.values[place]) if nodes else torch.zeros(0, 1, dtype=torch.bool)
    share_rows = int(p.passes_back)
    j, b, row, n_rows = _pack(active_nB, first=share_rows)
    upstream = {up: p.selection.keys(up) for up in before}
    weights = {
        up: torch.zeros(len(nodes), len(keys), device=j.device)
        for up, keys in upstream.items()
        if keys and nodes
    }
    widest = max(held[up].error.numel() for up in before)
    per_row = DIRECT_PLACES * widest + outputs[0].numel() + outputs[1].numel()
    size = max(1, chunk_elements // per_row)
    for start in range(0, n_rows, size):
        stop = min(start + size, n_rows)
        go_f = grads[0].new_zeros(stop - start, *grads[0].shape)
        go_e = grads[1].new_zeros(stop - start, *grads[1].shape)
        if start == 0 and share_rows:
            go_f[0], go_e[0] = grads
        here = (row >= start) & (row < stop)
        pairs = (j[here], b[here], row[here] - start)
        _place_seeds(go_f, go_e, nodes, pairs, grads)
        row_grads = torch.autograd.grad(
            outputs, errors, [go_f, go_e],
            retain_graph=True, allow_unused=True, is_grads_batched=True,
        )  # fmt: skip
        if start == 0 and share_rows:
            _pass_back(p, before, [None if g is None else g[0] for g in row_grads])
        by_place = dict(zip(before, row_grads, strict=True))
        for up_place in weights:
            dictionary = p.runner.dictionaries[up_place]
            written = [up_place, *dictionary.config.writes_later]
            if all(by_place.get(w) is None for w in written):
                continue  # no direct path from any place this one's nodes write
            products_RBK = _upstream_products(
                by_place, up_place, upstream[up_place], p.values[up_place], dictionary
            )
            # split the rows back per node: node j collects its rows' products in its examples
            weights[up_place].index_add_(0, pairs[0], products_RBK[pairs[2], pairs[1]])
    for up_place, weight_nK in weights.items():
        for up, column in zip(upstream[up_place], weight_nK.T.tolist(), strict=True):
            for down, weight in zip(nodes, column, strict=True):
                p.edges[(up, down)] = p.edges.get((up, down), 0.0) + weight


def edge_effects(
    model: Any,
    adapter: Any,
    dictionaries: Mapping[str, Dictionary],
    batches: list[PromptBatch],
    selection: NodeSelection,
    *,
    metric: Metric | None = None,
    aggregation: Aggregation = "sum",
    batch_size: int = 16,
    batched: bool = True,
    chunk_elements: int = 2**26,
    cache: list[BatchCache] | None = None,
    progress: bool = True,
) -> Edges:
    """Weights of the edges between selected nodes (and into the metric), averaged over
    examples. ``batched=False`` runs one backward per downstream node (the slow twin).
    ``cache``: what ``node_effects(..., cache=...)`` kept of the same batches (same prompts,
    same ``batch_size``); their patch runs and, after ``attrib``, the gradient shares passed
    back between places are then not computed again."""
    runner = Runner(model, adapter, dictionaries, metric or LogitDiff())
    places = runner.places
    edges: Edges = {}
    n_examples = 0
    chunks = [piece for batch in batches for piece in batch.split(batch_size)]
    if cache is not None and len(cache) != len(chunks):
        raise ValueError(
            f"cache holds {len(cache)} batches, the prompts make {len(chunks)} batches of "
            f"batch_size {batch_size}: the node pass must use the same prompts and batch_size"
        )
    for i, batch in enumerate(tqdm(chunks, desc="edges", disable=not progress)):
        known = None
        if cache is None:
            run, _, values = runner.clean_and_patch(batch, grad=True, hold_fixed=True)
        else:
            run = runner.run(batch.clean_ids, batch, grad=True, hold_fixed=True)
            values = {place: v.loaded(runner.device) for place, v in cache[i].values.items()}
            known = cache[i].totals
        n_examples += len(batch)
        p = _Pass(runner, selection, aggregation, run, values, edges, known)
        _metric_edges(p)
        for index in reversed(range(1, len(places))):
            place, before = places[index], places[:index]
            if not any(selection.keys(up) for up in before):
                continue  # no edge into this place, and no selected node needs its gradient
            # the seeds of the backward passes, in the dtypes of the features and the error
            held = run.places[place]
            grad_f = _feature_grad(p.total, place, runner.dictionaries[place])
            grads = (grad_f.to(held.features.dtype), p.total[place].to(held.error.dtype))
            nodes = selection.keys(place)
            if batched:
                _batched_place(p, place, before, nodes, grads, chunk_elements)
            else:
                _looped_place(p, place, before, nodes, grads)
    return {key: weight / n_examples for key, weight in edges.items() if weight != 0.0}
