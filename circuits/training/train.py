"""Train a dictionary on a model's activations over a corpus, and evaluate it: the glue the
``train`` and ``eval-dict`` commands call.

1. Hold out ``EVAL_FRACTION`` of the corpus's documents for evaluation, chosen by the hash of
   their text (``corpus.split_documents``: no document or paragraph on both sides), then
   tokenise each side into contexts the way the tokenizer treats plain text (BOS or not).
2. Stream activations of the place (and a transcoder's output place) over the training contexts,
   each data-parallel rank its own shard (``torchrun``: gloo on CPU, NCCL on GPUs).
3. Train (``dictionaries.training.train_dictionary``), checkpointing into the output folder.
4. Evaluate on the held-out contexts and store the metrics in the dictionary's ``config.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparse_circuits.circuits.data.corpus import (
    CorpusError,
    read_documents,
    split_documents,
    tokenize_contexts,
)
from sparse_circuits.circuits.model.activations import (
    ActivationConfig,
    ModelActivationSource,
    SharedStream,
    uses_bos,
)
from sparse_circuits.circuits.model.adapters import model_device
from sparse_circuits.dictionaries import Dictionary
from sparse_circuits.dictionaries.training import DictionaryTrainer, TrainConfig, train_dictionaries
from sparse_circuits.distributed import init_distributed
from sparse_circuits.errors import ConfigError

__all__ = ["CorpusSplit", "corpus_contexts", "train_on_model"]

EVAL_FRACTION = 0.02
"""Share of the corpus's documents held out for evaluation (chosen by the hash of their text)."""
BUFFER_BYTES = 2**31
"""Cap on the shuffled activation buffer (it is copied once while refilling)."""


@dataclass
class CorpusSplit:
    train: torch.Tensor
    """``(n_train, T)`` token ids."""
    eval: torch.Tensor
    """``(n_eval, T)`` token ids, never trained on."""


def corpus_contexts(
    tokenizer: Any, corpus: str | Path = "embedded", *, context_length: int = 128
) -> CorpusSplit:
    """The corpus's training and held-out contexts: its documents split first (no document or
    paragraph shared), then each side tokenised; a side too short for one context is one
    ``CorpusError`` naming it."""
    documents = split_documents(read_documents(corpus), eval_fraction=EVAL_FRACTION)
    sides = {}
    for side, texts in (("training", documents.train), ("held-out", documents.eval)):
        try:
            sides[side] = tokenize_contexts(
                tokenizer, texts, context_length=context_length, prepend_bos=uses_bos(tokenizer)
            )
        except CorpusError as error:
            raise CorpusError(f"{corpus}: the {side} documents: {error}") from None
    return CorpusSplit(train=sides["training"], eval=sides["held-out"])


def _evaluate_into(model, adapter, dictionary, contexts, out_dir) -> None:
    from sparse_circuits.circuits.training.evaluation import evaluate_dictionary

    metrics = evaluate_dictionary(model, adapter, dictionary, contexts)
    metrics.pop("feature_density", None)
    dictionary.config.metrics = metrics
    if out_dir is not None:
        dictionary.save(out_dir)


def train_on_model(
    model: Any,
    adapter: Any,
    places: str | list[str],
    config: TrainConfig,
    *,
    model_name: str,
    transcoder_out: str | None = None,
    skip: bool = False,
    corpus: str | Path = "embedded",
    context_length: int = 128,
    activation: ActivationConfig | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    eval_tokens: int = 0,
    save_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> dict[str, Dictionary]:
    """Train a dictionary at each of ``places`` of a loaded model (several places share one
    activation stream and land in ``out_dir/<place>``, a dictionary set); evaluate each on
    held-out text; ``save_dtype`` (e.g. bfloat16, to keep files small) applies to what is
    saved and returned. Returns place -> dictionary."""
    places = [places] if isinstance(places, str) else list(places)
    if len(places) > 1 and (transcoder_out or resume):
        raise ConfigError("several places at once train SAEs only: no transcoder_out, no resume")
    device = model_device(model)
    rank, world = init_distributed(str(device))
    split = corpus_contexts(model.tokenizer, corpus, context_length=context_length)
    activation = activation or ActivationConfig(place=places[0], seed=config.seed)
    activation.place, activation.target_place = places[0], transcoder_out
    row_bytes = 4 * sum(adapter.width(p) for p in {*places, *filter(None, [transcoder_out])})
    run_tokens = config.steps * config.batch_size  # a buffer beyond twice the run only delays it
    activation.buffer_tokens = min(
        activation.buffer_tokens, BUFFER_BYTES // row_bytes, 2 * run_tokens
    )
    source = ModelActivationSource(
        model, adapter, split.train, activation, rank=rank, world=world, places=places
    )
    out = Path(out_dir) if out_dir is not None else None
    common = {"skip": skip, "model": model_name, "overwrite": overwrite, "device": device}
    if len(places) == 1:
        trainers = {
            places[0]: DictionaryTrainer(
                source,
                config,
                out_dir=out,
                place=places[0],
                writes=transcoder_out,
                resume=resume,
                **common,
            )  # fmt: skip
        }
    else:
        stream = SharedStream(source)
        views = {place: stream.view(place) for place in places}  # all before any batch is drawn
        trainers = {
            place: DictionaryTrainer(
                views[place],
                config,
                out_dir=None if out is None else out / place,
                place=place,
                **common,
            )  # fmt: skip
            for place in places
        }
    dictionaries = train_dictionaries(trainers, progress=progress)
    if rank != 0:
        return dictionaries
    contexts = split.eval[: max(1, eval_tokens // context_length)]
    for place, dictionary in dictionaries.items():
        if save_dtype is not None:
            dictionaries[place] = dictionary = dictionary.to(save_dtype)
        folder = None if out is None else (out if len(places) == 1 else out / place)
        if eval_tokens > 0:
            _evaluate_into(model, adapter, dictionary, contexts, folder)
        elif folder is not None:
            dictionary.save(folder)
    return dictionaries
