"""Labels for circuit features: the corpus tokens where each feature fires hardest.

``top_activating_contexts`` runs corpus contexts ``(N, T)`` through the model once per batch,
only as far as the deepest place it needs (``circuits.activations.collect_activations``),
encodes each place's activation with its dictionary (a transcoder reads its input place,
``DictionaryConfig.reads_at``) and keeps, per feature, a running top-k over every token seen
so far: the batch's ``(B * T, F)`` activations are concatenated to the ``(k, F)`` best so far
and ``torch.topk`` keeps the ``k`` largest per column. Only positive activations count (a
feature at 0 is inactive), so a rarely active feature may get fewer than ``k``. The first
``exclude_first`` positions of every context (BOS / attention sinks) are skipped.

Each hit is ``{"activation", "text", "context", "position"}``: ``text`` is the window of up to
``window`` decoded tokens ending at the hit, the hit token marked ``«token»`` (newlines shown
as ``↵``); ``context`` and ``position`` index ``contexts_NT``. ``label_circuit`` writes them
onto the circuit graph: a ``label`` (the first contexts' texts) and the full list as
``top_contexts``; ``short_label`` makes the few characters a figure prints beside a node from
the marked tokens of the top contexts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx
import torch
from tqdm.auto import tqdm

from sparse_circuits.circuits.data.corpus import read_documents, tokenize_contexts
from sparse_circuits.circuits.discovery.nodes import METRIC_NODE, NodeKey
from sparse_circuits.circuits.model.activations import collect_activations, uses_bos
from sparse_circuits.circuits.model.adapters import ModelAdapter, model_device
from sparse_circuits.dictionaries import Dictionary

__all__ = [
    "top_activating_contexts",
    "corpus_labels",
    "label_circuit",
    "feature_nodes",
    "marked_window",
    "short_label",
]

LABEL_CONTEXT_LENGTH = 64
"""Tokens per corpus context scanned by ``corpus_labels``."""


def feature_nodes(graph: nx.DiGraph) -> list[NodeKey]:
    """The circuit's feature nodes as ``(place, feature, position)`` keys (no errors, no
    metric)."""
    return [
        (str(d["place"]), int(d["feature"]), int(d.get("position", -1)))
        for _, d in graph.nodes(data=True)
        if d.get("place") != "metric" and not d.get("is_error") and int(d["feature"]) >= 0
    ]


def marked_window(tokenizer: Any, ids: list[int]) -> str:
    """Decode ``ids``, the last token marked ``«token»`` (its leading space kept outside; a
    token of whitespace alone marked itself, spaces as ``␣``), newlines as ``↵``."""
    prefix = tokenizer.decode(ids[:-1]) if len(ids) > 1 else ""
    whole = tokenizer.decode(ids)
    last = whole[len(prefix) :] if whole.startswith(prefix) else tokenizer.decode(ids[-1:])
    token = last.lstrip()
    lead = last[: len(last) - len(token)]
    if not token:  # "«»" would hide which token it was
        token, lead = last.replace(" ", "␣"), ""
    return f"{prefix}{lead}«{token}»".replace("\n", "↵")


def short_label(data: Mapping[str, Any], *, n: int = 2, width: int = 9) -> str:
    """A few characters naming a node: the distinct marked tokens (``«token»``) of its first
    top contexts, up to ``n`` of them, each cut to ``width`` characters, joined by ``/``
    (``"are/were"``), short enough for a figure's neighbouring labels not to overlap;
    ``"error"`` for an error node; ``"#<feature>"`` for an unlabelled
    feature."""
    if data.get("is_error"):
        return "error"
    tokens: list[str] = []
    for hit in data.get("top_contexts") or []:
        text = str(hit.get("text", "")) if isinstance(hit, Mapping) else str(hit)
        token = text.rpartition("«")[2].partition("»")[0].strip() if "«" in text else ""
        token = token[:width] + "…" if len(token) > width else token
        if token and token not in tokens:
            tokens.append(token)
        if len(tokens) == n:
            break
    return "/".join(tokens) if tokens else f"#{data.get('feature')}"


def top_activating_contexts(
    model: Any,
    adapter: ModelAdapter,
    dictionaries: Mapping[str, Dictionary],
    nodes: Iterable[NodeKey],
    contexts_NT: torch.Tensor,
    *,
    k: int = 5,
    window: int = 8,
    batch_size: int = 16,
    exclude_first: int = 1,
    tokenizer: Any = None,
    progress: bool = True,
) -> dict[NodeKey, list[dict[str, Any]]]:
    """For each feature node (its position ignored), its ``k`` highest activations over the
    token contexts ``contexts_NT`` ``(N, T)``, highest first. Error and metric nodes are
    skipped. ``tokenizer`` defaults to ``model.tokenizer``."""
    if k < 1 or window < 1 or batch_size < 1 or exclude_first < 0:
        raise ValueError("k, window and batch_size must be at least 1, exclude_first >= 0")
    if contexts_NT.dim() != 2:
        raise ValueError(f"contexts must be (N, T) token ids, got shape {tuple(contexts_NT.shape)}")
    N, T = contexts_NT.shape
    kept_T = T - exclude_first
    if kept_T < 1:
        raise ValueError(f"contexts of {T} tokens leave nothing after excluding {exclude_first}")
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    keys = [key for key in nodes if key != METRIC_NODE and key[0] != "metric" and key[1] >= 0]
    wanted: dict[str, set[int]] = {}
    for place, feature, _ in keys:
        if place not in dictionaries:
            raise KeyError(f"no dictionary for place {place} (circuit node {place}/{feature})")
        if feature >= dictionaries[place].d_sae:
            raise ValueError(
                f"{place} feature {feature} does not exist: its dictionary has "
                f"{dictionaries[place].d_sae} features"
            )
        wanted.setdefault(place, set()).add(feature)
    features = {p: torch.tensor(sorted(f), dtype=torch.long) for p, f in wanted.items()}
    reads = {p: dictionaries[p].config.reads_at(p) for p in features}
    # running best per place: values (k', F_p) and flat token indices context * kept_T + pos
    best_values = {p: torch.empty(0, len(f)) for p, f in features.items()}
    best_index = {p: torch.empty(0, len(f), dtype=torch.long) for p, f in features.items()}
    device = model_device(model)
    if features:
        starts = range(0, N, batch_size)
        for start in tqdm(starts, desc="top contexts", disable=not progress):
            ids_BT = contexts_NT[start : start + batch_size].to(device)
            B = ids_BT.shape[0]
            acts = collect_activations(model, adapter, ids_BT, sorted(set(reads.values())))
            flat_B1 = (start + torch.arange(B))[:, None] * kept_T
            index_BT = (flat_B1 + torch.arange(kept_T)[None]).flatten()  # (B * kept_T,)
            for place, feats_F in features.items():
                dictionary = dictionaries[place]
                x_BTD = acts[reads[place]][:, exclude_first:]
                with torch.no_grad():
                    f_BTS = dictionary.encode(x_BTD.to(dictionary.device, dictionary.dtype))
                values = f_BTS[..., feats_F.to(f_BTS.device)].flatten(0, 1).float().cpu()
                values = values.nan_to_num(nan=float("-inf"))  # (B * kept_T, F)
                all_values = torch.cat([best_values[place], values])
                all_index = torch.cat(
                    [best_index[place], index_BT[:, None].expand(-1, len(feats_F))]
                )
                top = all_values.topk(min(k, len(all_values)), dim=0)
                best_values[place] = top.values
                best_index[place] = all_index.gather(0, top.indices)

    texts: dict[tuple[int, int], str] = {}

    def text_at(context: int, position: int) -> str:
        if (context, position) not in texts:
            ids = contexts_NT[context, max(0, position - window + 1) : position + 1].tolist()
            texts[context, position] = marked_window(tokenizer, ids)
        return texts[context, position]

    hits: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for place, feats_F in features.items():
        for column, feature in enumerate(feats_F.tolist()):
            entries = []
            values = best_values[place][:, column].tolist()
            indices = best_index[place][:, column].tolist()
            for value, flat in zip(values, indices, strict=True):
                if not value > 0:
                    continue
                context, position = divmod(flat, kept_T)
                position += exclude_first
                entries.append(
                    {
                        "activation": float(value),
                        "text": text_at(context, position),
                        "context": int(context),
                        "position": int(position),
                    }
                )
            hits[place, feature] = entries
    return {key: [dict(hit) for hit in hits[key[0], key[1]]] for key in keys}


def corpus_labels(
    model: Any,
    adapter: ModelAdapter,
    dictionaries: Mapping[str, Dictionary],
    nodes: Iterable[NodeKey],
    *,
    tokens: int,
    corpus: str = "embedded",
    progress: bool = True,
) -> dict[NodeKey, list[dict[str, Any]]]:
    """``top_activating_contexts`` over the first ``tokens`` tokens of a corpus (``embedded``
    or a file, as ``circuits.corpus.read_documents`` takes it), in contexts of
    ``LABEL_CONTEXT_LENGTH`` tokens."""
    contexts_NT = tokenize_contexts(
        model.tokenizer,
        read_documents(corpus),
        context_length=LABEL_CONTEXT_LENGTH,
        prepend_bos=uses_bos(model.tokenizer),
        max_contexts=max(1, tokens // LABEL_CONTEXT_LENGTH),
    )
    return top_activating_contexts(
        model, adapter, dictionaries, nodes, contexts_NT, progress=progress
    )


def label_circuit(
    graph: nx.DiGraph,
    labels: Mapping[NodeKey, list[dict[str, Any]]],
    *,
    n: int = 3,
    separator: str = " | ",
) -> nx.DiGraph:
    """Write each labelled node's ``label`` (the texts of its ``n`` top contexts joined by
    ``separator``) and ``top_contexts`` (the full list); returns the graph, changed in place.
    A node at a position also takes the label of its feature summed over positions."""
    for _, data in graph.nodes(data=True):
        if data.get("place") == "metric" or data.get("is_error"):
            continue
        place, feature = str(data["place"]), int(data["feature"])
        position = int(data.get("position", -1))
        contexts = labels.get((place, feature, position), labels.get((place, feature, -1)))
        if contexts is None:
            continue
        data["top_contexts"] = [dict(hit) for hit in contexts]
        data["label"] = separator.join(str(hit["text"]) for hit in contexts[:n])
    return graph
