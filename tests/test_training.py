"""Trainers recover known dictionaries; runs resume exactly; data parallel equals one process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sparse_circuits.dictionaries import load_dictionary
from sparse_circuits.dictionaries.training import (
    CHECKPOINT_FILE,
    RunFolderError,
    TensorSource,
    TrainConfig,
    TrainConfigError,
    fold_scales,
    geometric_median,
    train_dictionary,
)

from .conftest import random_dictionary
from .synthetic import recovery, synthetic_activations

WORKER = Path(__file__).parent / "workers" / "train_synthetic.py"
ROOT = Path(__file__).resolve().parents[1]

# Each trainer on 1.2M synthetic tokens; (arch, settings, minimum mean best cosine).
RECOVERY_CASES = [
    ("topk", {"k": 4}, 0.9),
    ("batchtopk", {"k": 4}, 0.9),
    ("matryoshka_batchtopk", {"k": 4}, 0.9),
    ("gated", {"l1_coefficient": 3.0}, 0.9),
    ("relu", {"l1_coefficient": 1.0}, 0.9),
    ("jumprelu", {"l1_coefficient": 1.0}, 0.9),
]


@pytest.mark.parametrize("arch, settings, minimum", RECOVERY_CASES)
def test_trainer_recovers_true_directions(arch, settings, minimum):
    x, directions = synthetic_activations(n=20_000, d=32, n_true=64)
    config = TrainConfig(
        arch=arch,
        d_sae=128,
        steps=1200,
        batch_size=1024,
        lr=3e-3,
        warmup_steps=50,
        dead_after_tokens=50_000,
        **settings,
    )
    dictionary = train_dictionary(TensorSource(x), config, progress=False)
    assert recovery(dictionary.W_dec.detach(), directions) >= minimum
    # the saved dictionary works on unscaled activations
    x_hat, _ = dictionary(x[:512])
    fvu = (x[:512] - x_hat).pow(2).sum() / (x[:512] - x[:512].mean(0)).pow(2).sum()
    assert fvu < 0.2


def test_fold_scales_matches_scaled_training_inputs():
    dictionary = random_dictionary("gated", 8, 16)
    x = torch.randn(10, 8)
    folded = fold_scales(dictionary, 3.0, 3.0)
    x_hat_scaled, f_scaled = dictionary(x * 3.0)
    x_hat, f = folded(x)
    torch.testing.assert_close(f, f_scaled)
    torch.testing.assert_close(x_hat, x_hat_scaled / 3.0)


def test_geometric_median_resists_outliers():
    points = torch.cat([torch.zeros(50, 2), torch.full((5, 2), 100.0)])
    assert geometric_median(points).norm() < 1e-3 < points.mean(0).norm()


def run_worker(out, *args, wait=True):
    command = [sys.executable, str(WORKER), str(out), *args]
    if wait:
        subprocess.run(command, check=True, cwd=ROOT)
        return None
    return subprocess.Popen(command, cwd=ROOT)


# (arch, precision) of the worker's runs: TopK in both precisions, Matryoshka in float32
RUN_CASES = [("topk", "float32"), ("topk", "bfloat16"), ("matryoshka_batchtopk", "float32")]


@pytest.mark.parametrize("arch, precision", RUN_CASES)
def test_killed_run_resumes_to_identical_weights(tmp_path, arch, precision):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    options = ["--steps", "400", "--checkpoint-every", "20", "--precision", precision]
    options += ["--arch", arch]
    run_worker(straight, *options)
    process = run_worker(killed, *options, wait=False)
    checkpoint = killed / CHECKPOINT_FILE
    deadline = time.time() + 120
    while time.time() < deadline:
        if checkpoint.is_file() and torch.load(checkpoint, weights_only=True)["step"] >= 100:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = torch.load(checkpoint, weights_only=True)
    assert 100 <= state["step"] < 400, "the run was not killed part-way"
    run_worker(killed, *options, "--resume")
    a, b = load_dictionary(straight), load_dictionary(killed)
    assert b.config.training["precision"]["compute_dtype"] == precision
    assert b.config.training["arch"] == arch
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name


@pytest.mark.parametrize("arch, precision", RUN_CASES)
def test_two_processes_equal_one(tmp_path, arch, precision):
    options = ["--steps", "30", "--precision", precision, "--arch", arch]
    run_worker(tmp_path / "one", *options)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",  # a free port, not a fixed one another process may hold
            "--nproc-per-node",
            "2",
            str(WORKER),
            str(tmp_path / "two"),
            *options,
        ],
        check=True,
        cwd=ROOT,
        env=env,
    )
    one, two = load_dictionary(tmp_path / "one"), load_dictionary(tmp_path / "two")
    assert two.config.training["data_parallel_ranks"] == 2
    for name, tensor in one.state_dict().items():
        torch.testing.assert_close(two.state_dict()[name], tensor, atol=1e-4, rtol=1e-4)


def test_refuses_a_folder_holding_another_run(tmp_path):
    x, _ = synthetic_activations(n=2048)
    config = TrainConfig(arch="topk", d_sae=64, k=4, steps=3, batch_size=128)
    train_dictionary(TensorSource(x), config, out_dir=tmp_path, progress=False)
    with pytest.raises(RunFolderError, match="--resume.*--overwrite"):
        train_dictionary(TensorSource(x), config, out_dir=tmp_path, progress=False)
    other = TrainConfig(arch="topk", d_sae=32, k=4, steps=3, batch_size=128)
    with pytest.raises(RunFolderError, match="holds a different run"):
        train_dictionary(TensorSource(x), other, out_dir=tmp_path, resume=True, progress=False)
    train_dictionary(TensorSource(x), other, out_dir=tmp_path, overwrite=True, progress=False)
    assert load_dictionary(tmp_path).d_sae == 32


def test_k_larger_than_dictionary_is_refused():
    with pytest.raises(TrainConfigError, match=r"^k 100 must be between 1 and d_sae 64$"):
        TrainConfig(arch="topk", d_sae=64, k=100, steps=1)
    with pytest.raises(TrainConfigError, match=r"^dead_after_tokens must be positive, got 0$"):
        TrainConfig(arch="topk", d_sae=64, k=4, steps=1, dead_after_tokens=0)
    assert TrainConfig(arch="topk", d_sae=64, k=4, steps=1, dead_after_tokens=7).dead_window == 7


def hand_auxk_nmse(dead_pre_NF, residual_ND, W_dec_FD, *, k_aux):
    """Normalised MSE of the residual's reconstruction from each token's ``k_aux`` most
    active dead latents (``dead_pre_NF``: the ReLU pre-activations, 0 for live latents)."""
    top_NF = dead_pre_NF >= dead_pre_NF.topk(k_aux, dim=-1).values[:, -1:]
    error = (residual_ND - (dead_pre_NF * top_NF) @ W_dec_FD).pow(2).sum(-1).mean()
    return error / (residual_ND - residual_ND.mean(0)).pow(2).sum(-1).mean()


def assert_same_gradients(loss, hand_loss, params):
    """The gradients of every parameter (the sparse ops against dense autograd)."""
    expected = torch.autograd.grad(hand_loss, params)
    for name, got, want in zip(
        ("W_enc", "b_enc", "W_dec", "b_dec"),
        torch.autograd.grad(loss, params),
        expected,
        strict=True,
    ):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("dense_from", [0.0, 2.0], ids=["dense_auxk", "sparse_auxk"])
def test_topk_loss_with_auxk_matches_a_hand_computation(monkeypatch, dense_from):
    """MSE over the k largest pre-activations, plus alpha * Var(y) * the normalised MSE of the
    residual's reconstruction from the auxk_k most active dead latents (decoded either way)."""
    from sparse_circuits.dictionaries.training import OBJECTIVES, topk

    monkeypatch.setattr(topk, "AUXK_DENSE_FROM", dense_from)

    dictionary = random_dictionary("topk", 8, 16, k=3)
    config = TrainConfig(arch="topk", d_sae=16, k=3, steps=10, auxk_alpha=0.5, auxk_k=2)
    objective = OBJECTIVES["topk"](dictionary, config)
    dead = torch.zeros(16, dtype=torch.bool)
    dead[[1, 4, 7, 9]] = True
    objective.tokens_since_fired[dead] = config.dead_window
    x = torch.randn(20, 8)

    params = (dictionary.W_enc, dictionary.b_enc, dictionary.W_dec, dictionary.b_dec)
    W_enc, b_enc, W_dec, b_dec = params  # the hand computation is dense autograd
    pre = torch.relu((x - b_dec) @ W_enc + b_enc)
    kept = pre * (pre >= pre.topk(3, dim=-1).values[:, -1:])
    y_hat = kept @ W_dec + b_dec
    mse = (x - y_hat).pow(2).sum(-1).mean()
    residual = (x - y_hat).detach()
    nmse = hand_auxk_nmse(pre * dead, residual, W_dec, k_aux=2)
    variance = (x - x.mean(0)).pow(2).sum(-1).mean()
    hand_loss = mse + 0.5 * variance * nmse
    out = objective.loss(x, x, step=0)
    torch.testing.assert_close(out.mse, mse.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss.detach(), hand_loss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.auxk_nmse, nmse.detach(), rtol=1e-5, atol=1e-6)
    assert_same_gradients(out.loss, hand_loss, params)


def test_matryoshka_loss_matches_a_hand_computation():
    """BatchTopK once over all latents; the mean over prefixes m of the MSE of the
    reconstruction from the kept latents [0, m) only; plus AuxK on the full residual."""
    from sparse_circuits.dictionaries.training import OBJECTIVES

    widths = [2, 6, 16]
    dictionary = random_dictionary("batchtopk", 8, 16, k=3).train()
    config = TrainConfig(
        arch="matryoshka_batchtopk",
        d_sae=16,
        k=3,
        steps=10,
        matryoshka_widths=widths,
        auxk_alpha=0.5,
        auxk_k=2,
    )
    objective = OBJECTIVES["matryoshka_batchtopk"](dictionary, config)
    dead = torch.zeros(16, dtype=torch.bool)
    dead[[0, 4, 9, 13]] = True
    objective.tokens_since_fired[dead] = config.dead_window
    x = torch.randn(20, 8)

    params = (dictionary.W_enc, dictionary.b_enc, dictionary.W_dec, dictionary.b_dec)
    W_enc, b_enc, W_dec, b_dec = params  # the hand computation is dense autograd
    pre = torch.relu((x - b_dec) @ W_enc + b_enc)
    kept = pre * (pre >= pre.flatten().topk(3 * 20).values[-1])  # the batch's 60 largest
    prefix_errors = [(x - (kept[:, :m] @ W_dec[:m] + b_dec)).pow(2).sum(-1).mean() for m in widths]
    full_mse = prefix_errors[-1]
    residual = (x - (kept @ W_dec + b_dec)).detach()
    nmse = hand_auxk_nmse(pre * dead, residual, W_dec, k_aux=2)
    variance = (x - x.mean(0)).pow(2).sum(-1).mean()
    hand_loss = sum(prefix_errors) / len(widths) + 0.5 * variance * nmse
    out = objective.loss(x, x, step=0)
    # the prefixes matter: each inner prefix's error is far from the full code's
    assert all(abs(error - full_mse) > 0.1 * full_mse for error in prefix_errors[:-1])
    torch.testing.assert_close(out.mse, full_mse.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss.detach(), hand_loss.detach(), rtol=1e-5, atol=1e-6)
    assert_same_gradients(out.loss, hand_loss, params)


def test_matryoshka_widths_are_validated_and_default_to_doubling_prefixes():
    def config(**settings):
        return TrainConfig(arch="matryoshka_batchtopk", d_sae=64, k=4, steps=1, **settings)

    assert config().matryoshka_widths == [4, 8, 16, 32, 64]
    assert config(matryoshka_widths=(16, 64)).matryoshka_widths == [16, 64]
    with pytest.raises(TrainConfigError, match=r"^matryoshka_widths must end at d_sae 64, got"):
        config(matryoshka_widths=[16, 32])
    with pytest.raises(
        TrainConfigError, match=r"positive and strictly increasing, got \[32, 16, 64\]"
    ):
        config(matryoshka_widths=[32, 16, 64])
    with pytest.raises(TrainConfigError, match=r"positive and strictly increasing, got \[0, 64\]"):
        config(matryoshka_widths=[0, 64])
    with pytest.raises(
        TrainConfigError, match=r"applies to arch matryoshka_batchtopk only, not topk"
    ):
        TrainConfig(arch="topk", d_sae=64, k=4, steps=1, matryoshka_widths=[64])
    with pytest.raises(TrainConfigError, match=r"^arch matryoshka_batchtopk needs k$"):
        TrainConfig(arch="matryoshka_batchtopk", d_sae=64, steps=1)


def test_matryoshka_saves_a_batchtopk_dictionary_with_its_widths(tmp_path):
    x, _ = synthetic_activations(n=2048)
    config = TrainConfig(
        arch="matryoshka_batchtopk", d_sae=64, k=4, steps=30, batch_size=128, warmup_steps=3
    )
    trained = train_dictionary(TensorSource(x), config, out_dir=tmp_path, progress=False)
    loaded = load_dictionary(tmp_path)
    assert loaded.arch == "batchtopk" and loaded.config.k == 4
    assert loaded.config.training["arch"] == "matryoshka_batchtopk"
    assert loaded.config.training["matryoshka_widths"] == [4, 8, 16, 32, 64]
    assert float(loaded.threshold) > 0  # learned during training: inference uses it
    with torch.no_grad():
        torch.testing.assert_close(loaded(x[:64]).x_hat, trained(x[:64]).x_hat)
    # resuming the finished run reads back the same recorded settings
    train_dictionary(TensorSource(x), config, out_dir=tmp_path, resume=True, progress=False)
