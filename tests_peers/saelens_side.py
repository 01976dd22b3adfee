"""SAELens side: run with .venv-peers/saelens/bin/python (see peer_io for what it does).

Inference SAEs are saved with ``SAE.save_model``; the training-only architectures (batch top-k,
Matryoshka batch top-k, and TopK trained with ``rescale_acts_by_decoder_norm``) with
``TrainingSAE.save_inference_model``, which is how SAELens ships them, and their outputs come
from the inference SAE ``SAE.load_from_disk`` reads back. Every other output comes from the
module that was saved. ``x_hat`` is ``sae(x)``: ``decode(encode(x))`` plus the skip term.
"""

from __future__ import annotations

from pathlib import Path

import sae_lens
import torch
from peer_io import D_IN, D_OUT, D_SAE, K, inputs, jitter, main, record
from sae_lens import SAE

RESID = {"model_name": "smollm2-135m", "hook_name": "blocks.2.hook_resid_post"}
MLP = {
    "model_name": "smollm2-135m",
    "hook_name": "blocks.2.ln2.hook_normalized",
    "hook_name_out": "blocks.2.hook_mlp_out",
}


def inference_cases():
    """(case name, config class, config fields) for ``SAE.save_model``."""
    s = sae_lens
    transcoder = {"d_out": D_OUT, "apply_b_dec_to_input": False, "metadata": MLP}
    return [
        ("standard", s.StandardSAEConfig, {"metadata": RESID}),
        ("standard-bf16", s.StandardSAEConfig, {"metadata": RESID, "dtype": "bfloat16"}),
        ("standard-uncentred", s.StandardSAEConfig, {"apply_b_dec_to_input": False}),
        ("gated", s.GatedSAEConfig, {"metadata": RESID}),
        ("jumprelu", s.JumpReLUSAEConfig, {"metadata": RESID, "apply_b_dec_to_input": False}),
        ("topk", s.TopKSAEConfig, {"k": K, "metadata": RESID}),
        ("transcoder", s.TranscoderConfig, transcoder),
        ("skip_transcoder", s.SkipTranscoderConfig, transcoder),
        ("jumprelu_transcoder", s.JumpReLUTranscoderConfig, transcoder),
        ("jumprelu_skip_transcoder", s.JumpReLUSkipTranscoderConfig, transcoder),
    ]


def training_cases():
    """(case name, training SAE class, config) for ``save_inference_model``."""
    s = sae_lens
    return [
        ("topk-training-rescaled", s.TopKTrainingSAE, s.TopKTrainingSAEConfig(
            d_in=D_IN, d_sae=D_SAE, k=K, rescale_acts_by_decoder_norm=True)),
        ("batchtopk-training", s.BatchTopKTrainingSAE, s.BatchTopKTrainingSAEConfig(
            d_in=D_IN, d_sae=D_SAE, k=K)),
        ("matryoshka_batchtopk-training", s.MatryoshkaBatchTopKTrainingSAE,
         s.MatryoshkaBatchTopKTrainingSAEConfig(
             d_in=D_IN, d_sae=D_SAE, k=K, matryoshka_widths=[16, 32, D_SAE])),
    ]  # fmt: skip


@torch.no_grad()
def outputs_of(sae: SAE, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    x = inputs(dtype=dtype)
    return {"x": x, "features": sae.encode(x), "x_hat": sae(x)}


def own(out: Path) -> None:
    for seed, (name, config_class, fields) in enumerate(inference_cases()):
        metadata = sae_lens.saes.sae.SAEMetadata(**fields.pop("metadata", {}))
        config = config_class(d_in=D_IN, d_sae=D_SAE, metadata=metadata, **fields)
        sae = jitter(SAE.from_dict(config.to_dict()), seed=seed).eval()
        sae.save_model(out / name / "files")
        record(out / name, architecture=name, outputs=outputs_of(sae, sae.dtype))
    for seed, (name, training_class, config) in enumerate(training_cases(), start=100):
        training = jitter(training_class(config), seed=seed)
        if hasattr(training, "topk_threshold"):
            training.topk_threshold.fill_(0.2)  # what training would have estimated
        training.save_inference_model(out / name / "files")
        sae = SAE.load_from_disk(out / name / "files").eval()
        note = f"saved as {sae.cfg.architecture()}"
        record(out / name, architecture=name, outputs=outputs_of(sae, sae.dtype), note=note)


@torch.no_grad()
def load(files: Path, x: torch.Tensor) -> dict[str, torch.Tensor]:
    sae = SAE.load_from_disk(files).eval()
    return {"features": sae.encode(x), "x_hat": sae(x)}


if __name__ == "__main__":
    main("sae-lens", sae_lens.__version__, own, load)
