"""The precision setting, and bfloat16 dictionary arithmetic and training against float32.

Tolerances are in units of bfloat16's unit roundoff ``U = 2**-9`` (8 significant bits): a
product of a bfloat16 input and a bfloat16 weight carries two roundings, the float32
accumulation inside the kernel adds none worth counting, and the result rounds once more, so a
pre-activation is off by a few ``U`` of its scale (about 3.6 ``U`` of the largest seen here).
"""

import pytest
import torch

from sparse_circuits import precision
from sparse_circuits.dictionaries import ReluSAE
from sparse_circuits.dictionaries.training import TensorSource, TrainConfig, TrainConfigError
from sparse_circuits.dictionaries.training.trainer import DictionaryTrainer, run_to_end
from sparse_circuits.precision import (
    PrecisionError,
    ResolvedPrecision,
    announce_precision,
    resolve_precision,
)

from .conftest import ALL_ARCHS, random_dictionary
from .synthetic import synthetic_activations

U = 2.0**-9
"""bfloat16's unit roundoff."""

# --- resolving the setting ------------------------------------------------------------------


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    """Point the resolver at a fake ``/proc/cpuinfo`` with the given flags."""

    def write(flags: str):
        path = tmp_path / "cpuinfo"
        path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n\nprocessor\t: 1\n")
        monkeypatch.setattr(precision, "CPUINFO", path)

    return write


@pytest.mark.parametrize(
    "flags, dtype, reason",
    [
        ("amx_tile amx_bf16 avx512f", torch.bfloat16, "bfloat16: CPU has AMX (auto)"),
        ("avx512f avx512_bf16", torch.bfloat16, "bfloat16: CPU has AVX512-BF16 (auto)"),
        ("amx_bf16 avx512_bf16", torch.bfloat16, "bfloat16: CPU has AMX and AVX512-BF16 (auto)"),
        (
            "avx512f avx512_vnni",
            torch.float32,
            "float32: CPU has neither AMX nor AVX512-BF16 (auto)",
        ),
    ],
)
def test_auto_on_the_cpu_follows_its_flags(cpuinfo, flags, dtype, reason):
    cpuinfo(flags)
    resolved = resolve_precision("auto", "cpu")
    assert (resolved.compute_dtype, resolved.reason) == (dtype, reason)
    assert resolved.accumulate_dtype == torch.float32


def test_auto_without_cpuinfo_is_float32(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "missing")
    assert resolve_precision("auto", "cpu").compute_dtype == torch.float32


def test_explicit_settings_are_taken_as_asked(cpuinfo):
    cpuinfo("avx512f")
    assert resolve_precision("float32", "cpu").reason == "float32: asked for"
    slow = resolve_precision("bfloat16", "cpu")
    assert slow.compute_dtype == torch.bfloat16
    assert slow.reason == "bfloat16: asked for; slow here, CPU has neither AMX nor AVX512-BF16"
    cpuinfo("amx_bf16")
    assert resolve_precision("bfloat16", "cpu").reason == "bfloat16: asked for"


@pytest.mark.parametrize(
    "capability, dtype, reason",
    [
        ((8, 0), torch.bfloat16, "bfloat16: cuda:1 (sm_80) has bfloat16 tensor cores (auto)"),
        ((7, 5), torch.float32, "float32: cuda:1 (sm_75) has no bfloat16 tensor cores (auto)"),
    ],
)
def test_auto_on_cuda_follows_the_compute_capability(monkeypatch, capability, dtype, reason):
    asked = []
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda d: asked.append(d) or capability
    )
    resolved = resolve_precision("auto", "cuda:1")
    assert (resolved.compute_dtype, resolved.reason) == (dtype, reason)
    assert asked == [torch.device("cuda", 1)]


def test_other_devices_and_bad_settings():
    assert resolve_precision("auto", "mps").reason == (
        "float32: no known bfloat16 support on mps devices (auto)"
    )
    with pytest.raises(
        PrecisionError, match="precision must be one of auto, float32, bfloat16, got 'fp16'"
    ):
        resolve_precision("fp16", "cpu")
    with pytest.raises(
        PrecisionError, match="compute dtype must be float32 or bfloat16, got 'float16'"
    ):
        ResolvedPrecision("auto", "float16", "?")
    with pytest.raises(TrainConfigError, match="^precision must be one of auto, float32, bfloat16"):
        TrainConfig(arch="topk", d_sae=8, k=2, steps=1, precision="half")


def test_the_choice_is_recorded_and_announced_once(capsys, monkeypatch):
    monkeypatch.setattr(precision, "_announced", set())
    resolved = ResolvedPrecision("auto", "bfloat16", "bfloat16: CPU has AMX (auto)")
    assert resolved.to_json() == {
        "asked": "auto",
        "compute_dtype": "bfloat16",
        "accumulate_dtype": "float32",
        "reason": "bfloat16: CPU has AMX (auto)",
    }
    announce_precision(resolved)
    announce_precision(resolved)
    assert capsys.readouterr().err == "sparse-circuits: precision bfloat16: CPU has AMX (auto)\n"


# --- bfloat16 arithmetic ----------------------------------------------------------------------


def test_bfloat16_products_accumulate_in_float32():
    """1 + 511 * 2**-8 = 2.996: a bfloat16 running sum would stay at 1 (2**-8 is half of
    bfloat16's spacing at 1), a float32 one rounds to 3 only at the end. Encoder (a sum over
    d_in) and decoder (over d_sae) of a bfloat16 dictionary."""
    n = 512
    terms = torch.full((n,), 2.0**-8)
    terms[0] = 1.0
    expected = terms.double().sum().to(torch.bfloat16)
    assert expected == 3.0
    dictionary = ReluSAE.create(n, n, center_input=False).to(torch.bfloat16)
    with torch.no_grad():
        dictionary.W_enc.zero_()[:, 0] = terms
        dictionary.b_enc.zero_()
        dictionary.W_dec.zero_()[:, 0] = terms
        dictionary.b_dec.zero_()
    features = dictionary.encode(torch.ones(1, n))
    assert features.dtype == torch.bfloat16 and features[0, 0] == expected
    x_hat = dictionary.decode(torch.ones(1, n, dtype=torch.bfloat16))
    assert x_hat[0, 0] == expected


SKIP_TRANSCODER = {
    "d_out": 48,
    "center_input": False,
    "skip": True,
    "place": "mlp_in.0",
    "writes": "mlp.0",
}
X_HAT_TOLERANCE = {"topk": 0.06}
"""Relative reconstruction error allowed; 10 U (0.02) for the others. TopK's k-th place is a
jump: where the k-th and (k+1)-th pre-activations lie within a few U, bfloat16 may keep the
other one, which swaps a whole decoder row (seen: 0.031 to 0.036)."""


@pytest.mark.parametrize(
    "arch, config",
    [(arch, {}) for arch in ALL_ARCHS] + [("relu", SKIP_TRANSCODER)],
    ids=[*ALL_ARCHS, "skip_transcoder"],
)
def test_bfloat16_dictionary_agrees_with_float32(arch, config):
    """The bfloat16 copy of a random dictionary against the float32 original on the same
    float32 inputs (what a user gets from ``.to(torch.bfloat16)``).

    - pre-activations: within 8 U of the largest (seen: up to 3.6 U);
    - which features fire: at most 1 % of (token, feature) entries differ, those within a few
      U of the rule's boundary (seen: 0.1 %);
    - features active in both: within 10 U of the largest (seen: up to 4.7 U, gated's
      magnitude path adds its exp(r_mag) scaling);
    - the reconstruction: ``X_HAT_TOLERANCE``.
    """
    d_out = config.get("d_out", 64)
    for seed in range(3):
        d32 = random_dictionary(arch, 64, 256, seed=seed, **config)
        d16 = random_dictionary(arch, 64, 256, seed=seed, **config).to(torch.bfloat16)
        x = torch.randn(512, 64, generator=torch.Generator().manual_seed(10 + seed))
        pre32, pre16 = d32.pre_activation(x), d16.pre_activation(x)
        assert pre16.dtype == torch.bfloat16
        assert (pre16.float() - pre32).abs().max() <= 8 * U * pre32.abs().max()
        (x_hat32, f32), (x_hat16, f16) = d32(x), d16(x)
        assert x_hat16.dtype == f16.dtype == torch.bfloat16
        assert x_hat16.shape == (512, d_out)
        active32, active16 = f32 > 0, f16 > 0
        assert (active32 ^ active16).float().mean() <= 0.01
        both = active32 & active16
        assert (f16.float() - f32).abs()[both].max() <= 10 * U * f32.abs().max()
        error = (x_hat16.float() - x_hat32).norm() / x_hat32.norm()
        assert error <= X_HAT_TOLERANCE.get(arch, 10 * U), f"seed {seed}: {error:.4f}"


# --- training ---------------------------------------------------------------------------------

TRAINING_CASES = [
    ("topk", {"k": 4}),
    ("batchtopk", {"k": 4}),
    ("matryoshka_batchtopk", {"k": 4}),
    ("relu", {"l1_coefficient": 1.0}),
    ("gated", {"l1_coefficient": 3.0}),
]


def _train(arch, settings, precision_name, x_ND, *, steps=200):
    config = TrainConfig(
        arch=arch,
        d_sae=128,
        steps=steps,
        batch_size=512,
        lr=3e-3,
        warmup_steps=20,
        dead_after_tokens=20_000,
        log_every=10,
        precision=precision_name,
        **settings,
    )
    trainer = DictionaryTrainer(TensorSource(x_ND), config)
    dictionary = run_to_end(trainer, progress=False)
    return dictionary, trainer.history


def _fvu(dictionary, x_ND):
    x_hat, _ = dictionary(x_ND)
    return ((x_ND - x_hat.float()).pow(2).sum() / (x_ND - x_ND.mean(0)).pow(2).sum()).item()


@pytest.mark.parametrize("arch, settings", TRAINING_CASES, ids=[c[0] for c in TRAINING_CASES])
def test_bfloat16_training_follows_float32(arch, settings):
    """Same seed, same batches, float32 master weights in both; only the products differ.

    - the reconstruction loss (``mse``) at every logged step within 3 % (seen: up to 1.1 %):
      each step's pre-activations move by a few U, a few codes near the k-th place or a
      threshold change, and the two runs drift apart slowly;
    - the total loss within 1 % at the median logged step: AuxK switches on when the first
      latent counts as dead, which can happen a logged step apart (seen: 26 % at one step);
    - the held-out FVU of the final dictionaries within 0.005 (seen: up to 0.0005);
    - the run records the precision it used.
    """
    full, _ = synthetic_activations(n=10_240, d=32, n_true=64)
    x_train, x_held = full[:8192], full[8192:]
    d32, history32 = _train(arch, settings, "float32", x_train)
    d16, history16 = _train(arch, settings, "bfloat16", x_train)
    assert d16.config.training["precision"]["compute_dtype"] == "bfloat16"
    assert d16.dtype == torch.float32  # the master weights
    assert [e["step"] for e in history32] == [e["step"] for e in history16]
    for key, tolerance, reduce in (("mse", 0.03, torch.max), ("loss", 0.01, torch.median)):
        a = torch.tensor([e[key] for e in history32])
        b = torch.tensor([e[key] for e in history16])
        assert reduce((a - b).abs() / a) <= tolerance, key
    assert abs(_fvu(d16, x_held) - _fvu(d32, x_held)) <= 0.005


def test_jumprelu_trains_in_float32_under_bfloat16():
    """Its estimator needs float32 pre-activations (``dictionaries/training/jumprelu.py``): the
    run says so and equals a float32 run exactly."""
    x, _ = synthetic_activations(n=2048, d=16, n_true=32)
    settings = {"l1_coefficient": 1.0}
    d32, _ = _train("jumprelu", settings, "float32", x, steps=20)
    d16, _ = _train("jumprelu", settings, "bfloat16", x, steps=20)
    recorded = d16.config.training["precision"]
    assert recorded["asked"] == "bfloat16" and recorded["compute_dtype"] == "float32"
    assert recorded["reason"].startswith("float32: JumpReLU trains on float32 pre-activations")
    for name, tensor in d32.state_dict().items():
        assert torch.equal(tensor, d16.state_dict()[name]), name
