"""Shared fixtures: tiny random models of every supported architecture, and dictionaries."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub look-up fails at once instead of retrying

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    Gemma2Config,
    Gemma3TextConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
)

from sparse_circuits.circuits.model.loading import wrap_model
from sparse_circuits.circuits.model.mixed_precision import to_precision
from sparse_circuits.dictionaries import ARCHITECTURES, DictionaryConfig, architecture_class

WORDS = (
    "the a keys key to of cabinet cabinets is are dog dogs cat cats near runs run man men "
    "woman women that who he she his her nurse professor was were"
).split()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(["<unk>", "<bos>", "<eos>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<eos>",
    )


VOCAB = len(WORDS) + 3
D_MODEL = 16
N_LAYERS = 3
_COMMON = dict(vocab_size=VOCAB, num_hidden_layers=N_LAYERS, num_attention_heads=2)

TINY_CONFIGS = {
    "llama": lambda: LlamaConfig(
        hidden_size=D_MODEL, intermediate_size=32, num_key_value_heads=1, **_COMMON
    ),
    "gpt2": lambda: GPT2Config(
        n_embd=D_MODEL, n_layer=N_LAYERS, n_head=2, vocab_size=VOCAB, n_positions=64
    ),
    "gpt_neox": lambda: GPTNeoXConfig(
        hidden_size=D_MODEL, intermediate_size=32, use_parallel_residual=True, **_COMMON
    ),
    "gpt_neox_sequential": lambda: GPTNeoXConfig(
        hidden_size=D_MODEL, intermediate_size=32, use_parallel_residual=False, **_COMMON
    ),
    "gemma2": lambda: Gemma2Config(
        hidden_size=D_MODEL, intermediate_size=32, num_key_value_heads=1, head_dim=8, **_COMMON
    ),
    "gemma3_text": lambda: Gemma3TextConfig(
        hidden_size=D_MODEL, intermediate_size=32, num_key_value_heads=1, head_dim=8, **_COMMON
    ),
}


def tiny_model(kind: str = "llama", seed: int = 0, *, dtype: torch.dtype = torch.float32):
    """A random model of one architecture, wrapped for nnsight: ``(model, adapter)``; the same
    weights (rounded) for the same seed in any ``dtype`` (applied as ``load_model`` does)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    hf_model = AutoModelForCausalLM.from_config(TINY_CONFIGS[kind]()).eval()
    return wrap_model(to_precision(hf_model, dtype), tiny_tokenizer())


@pytest.fixture(params=sorted(TINY_CONFIGS))
def any_model(request):
    return tiny_model(request.param)


@pytest.fixture
def llama():
    return tiny_model("llama")


def random_dictionary(arch: str, d_in: int, d_sae: int, *, seed: int = 0, **config):
    """A dictionary with every parameter random (not the tidy initialisation)."""
    torch.manual_seed(seed)
    if arch in ("topk", "batchtopk"):
        config.setdefault("k", max(1, d_sae // 4))
    dictionary = architecture_class(arch)(
        DictionaryConfig(arch=arch, d_in=d_in, d_sae=d_sae, **config)
    )
    with torch.no_grad():
        for name, param in dictionary.named_parameters():
            param.copy_(torch.randn_like(param) * (0.3 if name.startswith("W") else 0.1))
    return dictionary.eval()


ALL_ARCHS = sorted(ARCHITECTURES)


@pytest.fixture
def edge_passes(monkeypatch):
    """Every ``edges._Pass`` (one batch's edge pass, its rebuilt total gradients included)
    that ``edge_effects`` makes during the test, in order."""
    from sparse_circuits.circuits.discovery import edges

    passes = []

    class Recorded(edges._Pass):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            passes.append(self)

    monkeypatch.setattr(edges, "_Pass", Recorded)
    return passes
