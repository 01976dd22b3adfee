"""Independent reference computations the tests check the library against, and the data
their fixtures share.

Nothing here goes through nnsight or the code under test: activations are read and replaced
by ordinary PyTorch forward hooks on the torch modules, and a dictionary's maps are written out
from its weights. Test modules import from here (and from ``conftest``), never from each other.
"""

import copy
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from sparse_circuits.circuits.data.prompts import Example, PromptBatch
from sparse_circuits.circuits.model.adapters import torch_module
from sparse_circuits.circuits.model.loading import wrap_model

EXAMPLES = [
    Example("the keys to the cabinet", "are", "the key to the cabinet", "is"),
    Example("the dogs near the man", "run", "the dog near the man", "runs"),
    Example("the cats of the woman", "were", "the cat of the woman", "was"),
]
"""Agreement prompts whose clean and patch prefixes all have one token length."""

PLACES = ["resid.0", "attn.1", "mlp.1", "resid.1", "resid.2"]
"""The spliced places of the attribution, edge and circuit tests, in forward order."""


# --- the model, by plain hooks ------------------------------------------------------------


def float64_copy(model):
    """``(model, adapter)``: a float64 copy of a wrapped model, for finite differences."""
    module = copy.deepcopy(model._module).double()
    for norm in module.modules():
        if type(norm).__name__.endswith("RMSNorm"):
            # transformers computes it in float32 whatever the dtype: too coarse for the
            # finite differences, so it is recomputed in float64
            norm.register_forward_hook(
                lambda n, inputs, _: (
                    n.weight
                    * inputs[0]
                    * torch.rsqrt(inputs[0].pow(2).mean(-1, keepdim=True) + n.variance_epsilon)
                )
            )
    return wrap_model(module, model.tokenizer)


def hooked_run(
    model,
    adapter,
    ids_BT: torch.Tensor,
    *,
    read: Iterable[str] = (),
    replace: dict[str, Callable[[torch.Tensor], torch.Tensor | None]] | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run the torch model on ``ids_BT`` with plain hooks: every place in ``read`` or
    ``replace`` records what it computed (a module's output or input, before any replacement),
    and a place in ``replace`` passes on ``replace[place](computed)`` instead (``None`` keeps
    it). Returns ``(computed, logits_BTV)``; runs under the caller's grad mode."""
    replace = replace or {}
    computed, handles = {}, []

    def swap(place, current):
        computed[place] = current
        return replace[place](current) if place in replace else None

    for place in dict.fromkeys([*read, *replace]):
        site, module = adapter.site(place), adapter.module(place)
        if site.io == "input":

            def pre_hook(module, args, place=place):
                value = swap(place, args[0])
                return None if value is None else (value, *args[1:])

            handles.append(module.register_forward_pre_hook(pre_hook))
        else:

            def hook(module, inputs, output, place=place, site=site):
                value = swap(place, output if site.index is None else output[site.index])
                if value is None or site.index is None:
                    return value
                return (*output[: site.index], value, *output[site.index + 1 :])

            handles.append(module.register_forward_hook(hook))
    try:
        logits_BTV = torch_module(model)(ids_BT).logits
    finally:
        for handle in handles:
            handle.remove()
    return computed, logits_BTV


def logit_diff(logits_BTV: torch.Tensor, batch: PromptBatch) -> torch.Tensor:
    """``(B,)``: clean answer's minus patch answer's logit at the last position."""
    rows = torch.arange(len(batch))
    last_BV = logits_BTV[:, -1]
    return last_BV[rows, batch.clean_answer] - last_BV[rows, batch.patch_answer]


def capture(model, adapter, ids_BT, place, dictionary):
    """Features ``(B, T, d_sae)`` and error ``(B, T, d_model)`` at a place, by a plain hook."""
    with torch.no_grad():
        computed, _ = hooked_run(model, adapter, ids_BT, read=[place])
    f = dictionary.encode(computed[place])
    return f, computed[place] - dictionary.decode(f)


def run_frozen(model, adapter, batch, frozen, replace=None):
    """Plain-PyTorch run on the clean prompts: every place in ``frozen`` outputs its given
    constant, ``replace`` maps a place to a function of what it computed giving what it outputs
    instead; returns what every place of ``PLACES`` (and of ``frozen``, ``replace``) computed,
    before any replacement, and the metric ``(B,)``."""
    replace = replace or {}
    outputs = {p: (lambda _, value=value: value) for p, value in frozen.items() if p not in replace}
    computed, logits_BTV = hooked_run(
        model, adapter, batch.clean_ids, read=PLACES, replace={**outputs, **replace}
    )
    return computed, logit_diff(logits_BTV, batch)


# --- node selections ---------------------------------------------------------------------


def masked_nodes(selection, place):
    """The nodes ``(place, feature, position)`` a selection's masks hold at a place, read off
    the masks (not ``NodeSelection.keys``)."""
    f_mask, e_mask = selection.features[place].tolist(), selection.errors[place].tolist()
    if selection.features[place].dim() == 1:
        error = [(place, -1, -1)] if e_mask else []
        return [(place, f, -1) for f, on in enumerate(f_mask) if on] + error
    features = [(place, f, t) for t, row in enumerate(f_mask) for f, on in enumerate(row) if on]
    return features + [(place, -1, t) for t, on in enumerate(e_mask) if on]


# --- dictionaries, from their weights -----------------------------------------------------


def reference_features(dictionary, x: torch.Tensor) -> torch.Tensor:
    """``(..., d_in) -> (..., d_sae)``: the architecture's encoder as its paper writes it,
    from the weights (the gated magnitude path by its own matrix product, top-k by sorting)."""
    W_enc, b_enc = dictionary.W_enc.detach(), dictionary.b_enc.detach()
    centred = x - dictionary.b_dec.detach() if dictionary.config.center_input else x
    pre = centred @ W_enc + b_enc
    arch = dictionary.arch
    if arch == "relu":
        return torch.relu(pre)
    if arch == "gated":
        W_mag = W_enc * torch.exp(dictionary.r_mag.detach())
        magnitude = centred @ W_mag + dictionary.b_mag.detach()
        return torch.where(pre > 0, torch.relu(magnitude), torch.zeros_like(pre))
    if arch == "batchtopk" and dictionary.training:  # the k * n_tokens largest of the batch
        n_keep = dictionary.config.k * pre[..., 0].numel()
        kth_largest = pre.flatten().sort(descending=True).values[n_keep - 1]
        return torch.where(pre >= kth_largest, torch.relu(pre), torch.zeros_like(pre))
    if arch == "topk":
        kth_largest = pre.sort(dim=-1, descending=True).values[..., dictionary.config.k - 1]
        return torch.where(pre >= kth_largest[..., None], torch.relu(pre), torch.zeros_like(pre))
    if arch in ("jumprelu", "batchtopk"):  # batchtopk at inference: one global threshold
        threshold = dictionary.threshold.detach()
        return torch.where((pre > threshold) & (pre > 0), pre, torch.zeros_like(pre))
    raise AssertionError(f"no reference encoder for {arch!r}")


def reference_reconstruction(dictionary, f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(..., d_sae), (..., d_in) -> (..., d_out)``: ``f @ W_dec + b_dec``, plus ``x @ W_skip``
    for a skip transcoder."""
    x_hat = f @ dictionary.W_dec.detach() + dictionary.b_dec.detach()
    if dictionary.config.skip:
        x_hat = x_hat + x @ dictionary.W_skip.detach()
    return x_hat


# --- other projects' dictionaries, from their raw tensors ---------------------------------


def dense_topk(values: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest entries of the last axis, zero elsewhere (no sign change)."""
    top = values.topk(k, dim=-1)
    return torch.zeros_like(values).scatter(-1, top.indices, top.values)


def sparsify_forward(w: dict, x: torch.Tensor, k: int, transcode: bool):
    """sparsify's ``SparseCoder.encode`` (fused_encoder: relu then top-k) and ``decode``
    (+ ``W_skip``) from its tensors: ``(..., d_in) -> (..., num_latents), (..., d_in)``. The
    decode gathers the k decoder rows, as sparsify does, instead of a dense matrix product."""
    sae_in = x if transcode else x - w["b_dec"]
    pre_acts = F.relu(F.linear(sae_in, w["encoder.weight"], w["encoder.bias"]))
    top = pre_acts.topk(k, dim=-1, sorted=False)
    f = torch.zeros_like(pre_acts).scatter(-1, top.indices, top.values)
    out = (top.values.unsqueeze(-1) * w["W_dec"][top.indices]).sum(-2) + w["b_dec"]
    if "W_skip" in w:
        out = out + x @ w["W_skip"].mT
    return f, out


def cross_layer_tensors(
    n_layers: int, d_model: int, d_sae: int, *, threshold: bool, seed: int = 0
) -> dict[str, dict[str, torch.Tensor]]:
    """Random weights of a circuit-tracer cross-layer transcoder, ``{file name: tensors}`` as
    ``CrossLayerTranscoder.to_safetensors`` lays them out: ``W_enc_N (F, D)``, ``b_enc_N``,
    ``b_dec_N``, ``threshold_N`` (JumpReLU) in ``W_enc_N.safetensors`` and
    ``W_dec_N (F, n_layers - N, D)`` in ``W_dec_N.safetensors``."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape, scale):
        return torch.randn(*shape, generator=generator) * scale

    files = {}
    for n in range(n_layers):
        encoder = {
            f"W_enc_{n}": randn(d_sae, d_model, scale=0.5),
            f"b_enc_{n}": randn(d_sae, scale=0.3),
            f"b_dec_{n}": randn(d_model, scale=0.1),
        }
        if threshold:
            encoder[f"threshold_{n}"] = torch.rand(d_sae, generator=generator) * 0.5
        files[f"W_enc_{n}.safetensors"] = encoder
        files[f"W_dec_{n}.safetensors"] = {
            f"W_dec_{n}": randn(d_sae, n_layers - n, d_model, scale=0.3)
        }
    return files


def write_cross_layer(folder: Path, files: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write ``cross_layer_tensors`` into ``folder``, one safetensors file each."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, tensors in files.items():
        save_file(tensors, str(folder / name))
    return folder


def cross_layer_forward(files: dict[str, dict[str, torch.Tensor]], x_LND: torch.Tensor):
    """circuit-tracer's ``CrossLayerTranscoder`` from its saved tensors: layer N's features
    ``F.linear(x[N], W_enc_N, b_enc_N)`` through ReLU or ``pre * (pre > threshold_N)``, and
    output M the sum over N <= M of ``f_N @ W_dec_N[:, M - N]`` plus ``b_dec_M``. Returns
    features ``(L, ..., F)`` and reconstructions ``(L, ..., D)``."""
    encoders = [files[f"W_enc_{n}.safetensors"] for n in range(len(x_LND))]
    features = []
    for n, (encoder, x) in enumerate(zip(encoders, x_LND, strict=True)):
        pre = F.linear(x, encoder[f"W_enc_{n}"], encoder[f"b_enc_{n}"])
        threshold = encoder.get(f"threshold_{n}")
        features.append(F.relu(pre) if threshold is None else pre * (pre > threshold))
    outputs = []
    for m in range(len(x_LND)):
        out = encoders[m][f"b_dec_{m}"]
        for n in range(m + 1):
            out = out + features[n] @ files[f"W_dec_{n}.safetensors"][f"W_dec_{n}"][:, m - n]
        outputs.append(out)
    return torch.stack(features), torch.stack(outputs)
