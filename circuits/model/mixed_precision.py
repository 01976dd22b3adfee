"""A transformers model in mixed precision: matrix products in bfloat16 (or float16), the rest in
float32 (issue 13; the split of Micikevicius et al. 2018, "Mixed precision training").

``to_precision(hf_model, dtype)``, in place, on a model loaded in any dtype:

1. the weights of every linear layer (``nn.Linear``, GPT-2's ``Conv1D``) and of the input
   embedding go to ``dtype``: the products run on the hardware's bfloat16 units (AMX,
   AVX512-BF16, tensor cores), their sums accumulated in float32 inside the kernels;
2. a linear layer casts its input to ``dtype`` and its output back to float32, the embedding
   its output: everything between the products stays float32;
3. every other parameter is float32: norms, and the unembedding (its own float32 parameter
   when it is tied to the embedding). A model read in float32 keeps those exact.

So the residual stream, a sum over every block, never rounds to 8 significant bits: in
bfloat16 its large outlier dimensions swamp the small differences between a clean and a
patch prompt that attribution measures (node effects at late layers then move by several
per cent). Norms, softmax and the logits are float32 too, so the metrics read from them are;
and every place's activation (``resid``, ``attn``, ``mlp``) is float32. Gradients follow the
same casts backwards.

``model_dtype`` reads the dtype back from the embedding's weights: the dtype dictionaries
spliced into the model compute in.
"""

from __future__ import annotations

import torch

__all__ = ["to_precision"]


def _matmul_modules() -> tuple[type, ...]:
    from transformers.pytorch_utils import Conv1D

    return (torch.nn.Linear, Conv1D)


def _output_to_float32(module: torch.nn.Module, args: tuple, output: torch.Tensor):
    return output.float()


def _inputs_to(dtype: torch.dtype):
    def cast(module: torch.nn.Module, args: tuple) -> tuple:
        return tuple(
            a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args
        )

    return cast


def _in(parameter: torch.nn.Parameter, dtype: torch.dtype) -> torch.nn.Parameter:
    """``parameter`` in ``dtype``: itself, or a new parameter (a tied one keeps its dtype)."""
    if parameter.dtype == dtype:
        return parameter
    return torch.nn.Parameter(parameter.detach().to(dtype), requires_grad=parameter.requires_grad)


def to_precision(hf_model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Put a transformers model's products in ``dtype`` and the rest in float32 (see the
    module's steps), in place; ``float32``: all of it float32. Returns the model."""
    if dtype == torch.float32:
        return hf_model.float()
    head = hf_model.get_output_embeddings()
    embedding = hf_model.get_input_embeddings()
    products = [m for m in hf_model.modules() if isinstance(m, _matmul_modules()) and m is not head]
    in_dtype = {id(m) for m in products} | {id(embedding)}
    for module in hf_model.modules():
        if id(module) not in in_dtype:
            for name, parameter in list(module.named_parameters(recurse=False)):
                setattr(module, name, _in(parameter, torch.float32))
    embedding.weight = _in(embedding.weight, dtype)
    embedding.register_forward_hook(_output_to_float32)
    cast_inputs = _inputs_to(dtype)
    for module in products:
        for name, parameter in list(module.named_parameters(recurse=False)):
            setattr(module, name, _in(parameter, dtype))
        module.register_forward_pre_hook(cast_inputs)
        module.register_forward_hook(_output_to_float32)
    return hf_model
