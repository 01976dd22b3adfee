"""circuit-tracer side: run with .venv-peers/circuit_tracer/bin/python (``own`` only: nothing
here writes circuit-tracer files, so there is no ``ours``).

Per-layer transcoders are saved with ``SingleLayerTranscoder.to_safetensors``, a transcoder set
with ``TranscoderSet.to_safetensors`` (``layer_0 ... layer_2``) beside the ``config.yaml``
circuit-tracer's own cache writes (``model_kind``, hooks, ``scan``), and cross-layer
transcoders with ``CrossLayerTranscoder.to_safetensors`` (``W_enc_N`` + ``W_dec_N``), their
outputs those of the CLT circuit-tracer's ``load_clt`` reads back from the folder:
``encode``, ``decode`` of its features and ``forward``, each ``(n_layers, N, width)`` (one
that reads ``hook_resid_mid``, circuit-tracer's default, must be refused). circuit-tracer
saves no TopK ``k``: the ``topk`` case adds ``k`` to ``config.yaml`` (the one key we add by
hand), the ``topk-without-k`` case does not, and its outputs are then those of circuit-tracer's
own loader, which reads such a file back as ReLU. Outputs of a per-layer transcoder are
``encode(x)`` and ``decode(features, x)`` (decode plus skip).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from circuit_tracer.transcoder import SingleLayerTranscoder, TranscoderSet
from circuit_tracer.transcoder.activation_functions import JumpReLU, TopK
from circuit_tracer.transcoder.cross_layer_transcoder import CrossLayerTranscoder, load_clt
from circuit_tracer.transcoder.single_layer_transcoder import load_relu_transcoder
from peer_io import D_IN, D_SAE, K, inputs, jitter, main, record

CPU = torch.device("cpu")
CLT_LAYERS = 3
SET_CONFIG = {
    "model_kind": "transcoder_set",
    "model_name": "smollm2-135m",
    "feature_input_hook": "mlp.hook_in",
    "feature_output_hook": "mlp.hook_out",
    "scan": "sparse-circuits-peer-test",
}


def transcoder(activation, layer: int, *, skip: bool, dtype=torch.float32, seed: int):
    if activation == "jumprelu":
        activation = JumpReLU(torch.zeros(D_SAE, dtype=dtype), 0.1)
    module = SingleLayerTranscoder(
        D_IN, D_SAE, activation, layer, skip_connection=skip, device=CPU, dtype=dtype
    )
    return jitter(module, seed=seed)


@torch.no_grad()
def outputs_of(module, x: torch.Tensor, prefix: str = "") -> dict[str, torch.Tensor]:
    features = module.encode(x)
    return {
        f"{prefix}x": x,
        f"{prefix}features": features,
        f"{prefix}x_hat": module.decode(features, x),
    }


def write_config(folder: Path, **extra) -> None:
    (folder / "config.yaml").write_text(yaml.safe_dump({**SET_CONFIG, **extra}))


def own(out: Path) -> None:
    single = [  # (case, activation, skip, dtype)
        ("relu", F.relu, False, torch.float32),
        ("jumprelu-skip", "jumprelu", True, torch.float32),
        ("jumprelu-skip-bf16", "jumprelu", True, torch.bfloat16),
    ]
    for seed, (name, activation, skip, dtype) in enumerate(single):
        module = transcoder(activation, 2, skip=skip, dtype=dtype, seed=seed)
        (out / name / "files").mkdir(parents=True)
        module.to_safetensors(str(out / name / "files" / "layer_2.safetensors"))
        record(out / name, architecture=f"per-layer {name}", outputs=outputs_of(module, inputs(dtype=dtype)),
               path="files/layer_2.safetensors",
               expect_warning="load as ReLU" if activation is F.relu else None)  # fmt: skip

    topk = transcoder(TopK(K), 2, skip=True, seed=10)
    topk.b_enc.data -= 1.0  # some of the k largest pre-activations negative: signs matter
    (out / "topk" / "files").mkdir(parents=True)
    topk.to_safetensors(str(out / "topk" / "files" / "layer_2.safetensors"))
    write_config(out / "topk" / "files", k=K)
    record(out / "topk", architecture="per-layer topk-skip", outputs=outputs_of(topk, inputs()),
           note="k from config.yaml")  # fmt: skip

    (out / "topk-without-k" / "files").mkdir(parents=True)
    path = out / "topk-without-k" / "files" / "layer_2.safetensors"
    topk.to_safetensors(str(path))
    as_read = load_relu_transcoder(str(path), 2, device=CPU, lazy_encoder=False, lazy_decoder=False)
    record(out / "topk-without-k", architecture="per-layer topk, no k saved",
           outputs=outputs_of(as_read, inputs()), path="files/layer_2.safetensors",
           expect_warning="load as ReLU", note="both read it as ReLU")  # fmt: skip

    layers = {i: transcoder("jumprelu", i, skip=i == 1, seed=20 + i) for i in range(3)}
    tracer_set = TranscoderSet(layers, "mlp.hook_in", "mlp.hook_out", scan=SET_CONFIG["scan"])
    tracer_set.to_safetensors(str(out / "set" / "files"))
    write_config(out / "set" / "files")
    x = inputs()
    outputs = {k: v for i, m in layers.items() for k, v in outputs_of(m, x, f"mlp.{i}/").items()}
    record(out / "set", architecture="TranscoderSet folder (3 layers)", outputs=outputs, load="set")

    clts = [  # (case, activation, dtype)
        ("jumprelu", "jump_relu", torch.float32),
        ("relu", "relu", torch.float32),
        ("jumprelu-bf16", "jump_relu", torch.bfloat16),
    ]
    for seed, (name, activation, dtype) in enumerate(clts, start=30):
        cross_layer(out / f"cross-layer-{name}", activation, dtype, seed=seed)
    clt = CrossLayerTranscoder(CLT_LAYERS, D_SAE, D_IN, lazy_decoder=False, device=CPU,
                               dtype=torch.float32)  # fmt: skip
    jitter(clt, seed=40).to_safetensors(str(out / "cross-layer-resid-mid" / "files"))
    write_config(out / "cross-layer-resid-mid" / "files", model_kind="cross_layer_transcoder",
                 feature_input_hook="hook_resid_mid", feature_output_hook="hook_mlp_out")  # fmt: skip
    record(out / "cross-layer-resid-mid", architecture="cross-layer transcoder, hook_resid_mid",
           outputs={}, expect_error="hook_resid_mid")  # fmt: skip


@torch.no_grad()
def cross_layer(case: Path, activation: str, dtype: torch.dtype, *, seed: int) -> None:
    """A CLT saved by ``to_safetensors``, read back by ``load_clt``, and its outputs on one
    fixed input per layer ``(n_layers, N, d_model)``."""
    clt = CrossLayerTranscoder(CLT_LAYERS, D_SAE, D_IN, activation_function=activation,
                               lazy_decoder=False, device=CPU, dtype=dtype)  # fmt: skip
    jitter(clt, seed=seed).to_safetensors(str(case / "files"))
    write_config(case / "files", model_kind="cross_layer_transcoder")
    loaded = load_clt(str(case / "files"), feature_input_hook="mlp.hook_in",
                      feature_output_hook="mlp.hook_out", device=CPU, dtype=dtype,
                      lazy_decoder=False)  # fmt: skip
    x = torch.stack([inputs(dtype=dtype, seed=1234 + n) for n in range(CLT_LAYERS)])
    features = loaded.encode(x)
    x_hat = loaded.decode(features)
    if x_hat.shape != x.shape:  # decode sizes its output by the last active position
        raise SystemExit(f"{case.name}: decode gave {tuple(x_hat.shape)}, not {tuple(x.shape)}")
    outputs = {"x": x, "features": features, "x_hat": x_hat, "forward": loaded(x)}
    record(case, architecture=f"cross-layer transcoder {activation} ({CLT_LAYERS} layers)",
           outputs=outputs, load="cross_layer")  # fmt: skip


if __name__ == "__main__":
    main("circuit-tracer", version("circuit-tracer"), own)
