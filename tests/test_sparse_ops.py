"""The sparse TopK / BatchTopK training ops against plain dense autograd."""

import pytest
import torch
from torch.testing import assert_close

from sparse_circuits.dictionaries.topk import topk_mask
from sparse_circuits.dictionaries.training import sparse_ops
from sparse_circuits.dictionaries.training.sparse_ops import (
    batch_topk_encode,
    pair_dots,
    row_topk,
    scatter_outer,
    sparse_decode,
    topk_encode,
)

N, D, D_SAE, K = 7, 12, 40, 5


def weights(dtype=torch.float32, seed=0):
    """x (N, D) and the four SAE parameters, as leaf tensors that need gradients."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

    x_ND = randn(N, D)
    params = {
        "W_enc": randn(D, D_SAE) / D**0.5,
        "b_enc": randn(D_SAE) * 0.1,
        "W_dec": randn(D_SAE, D) / D**0.5,
        "b_dec": randn(D) * 0.1,
    }
    return x_ND, {name: p.requires_grad_() for name, p in params.items()}


def dense_codes(x_ND, p, k, *, center, batch):
    """The reference: the dense pre-activations and the dense top-k rule of ``dictionaries``."""
    x_c = x_ND - p["b_dec"] if center else x_ND
    pre_NF = x_c @ p["W_enc"] + p["b_enc"]
    if batch:
        return topk_mask(pre_NF.flatten(), k * x_ND.shape[0]).view_as(pre_NF)
    return topk_mask(pre_NF, k)


def densify(values_NK, indices_NK):
    return torch.zeros(values_NK.shape[0], D_SAE, dtype=values_NK.dtype).scatter_add(
        1, indices_NK, values_NK
    )


def grads(loss, p):
    names = sorted(p)
    return dict(zip(names, torch.autograd.grad(loss, [p[n] for n in names]), strict=True))


def loss_of(codes_NF_or_x_hat, target):
    """A loss whose gradient differs per element, so every entry of every gradient is tested."""
    scale = torch.linspace(0.5, 2.0, codes_NF_or_x_hat.numel()).view_as(codes_NF_or_x_hat)
    return (scale.to(target.dtype) * (codes_NF_or_x_hat - target) ** 2).sum()


@pytest.mark.parametrize("block", [8, 2], ids=["plain_topk", "blockwise_topk"])
@pytest.mark.parametrize("batch", [False, True], ids=["topk", "batchtopk"])
@pytest.mark.parametrize("center", [True, False], ids=["centered", "uncentered"])
def test_encode_forward_and_gradients_match_dense(monkeypatch, batch, center, block):
    monkeypatch.setattr(sparse_ops, "_TOPK_BLOCK", block)  # 2: the block-wise selection runs
    x_ND, p = weights()
    encode = batch_topk_encode if batch else topk_encode
    values, indices = encode(x_ND, p["W_enc"], p["b_enc"], p["b_dec"] if center else None, K)
    if batch:
        assert values.shape[0] == N and (values > 0).sum() <= K * N
    else:
        assert values.shape == indices.shape == (N, K)
    assert indices.dtype == torch.int64
    sparse_NF = densify(values, indices)
    dense_NF = dense_codes(x_ND, p, K, center=center, batch=batch)
    assert_close(sparse_NF, dense_NF)

    target = torch.randn(N, D_SAE, generator=torch.Generator().manual_seed(1))
    leaves = {name: p[name] for name in ("W_enc", "b_enc", "b_dec")[: 3 if center else 2]}
    sparse_grads = grads(loss_of(sparse_NF, target), leaves)
    dense_grads = grads(loss_of(dense_NF, target), leaves)
    for name in leaves:
        assert_close(sparse_grads[name], dense_grads[name], msg=name)


@pytest.mark.parametrize("center", [True, False], ids=["centered", "uncentered"])
@pytest.mark.parametrize("rows", [512, 3], ids=["one_slice", "slices"])
@pytest.mark.parametrize("batch", [False, True], ids=["topk", "batchtopk"])
def test_columns_are_the_whole_pre_activations_with_their_gradients(
    monkeypatch, batch, rows, center
):
    """``columns``: the chosen latents' pre-activations (no selection, no ReLU), with gradients
    joining the kept pairs' in the encoder's backward; also by slices of tokens."""
    monkeypatch.setattr(sparse_ops, "_TOPK_ROWS", rows)
    x_ND, p = weights()
    columns = torch.tensor([3, 17, 18, 39])
    encode = batch_topk_encode if batch else topk_encode
    b_dec = p["b_dec"] if center else None
    values, indices, pre_NG = encode(x_ND, p["W_enc"], p["b_enc"], b_dec, K, columns=columns)
    dense_pre_NF = (x_ND - p["b_dec"] if center else x_ND) @ p["W_enc"] + p["b_enc"]
    assert_close(pre_NG, dense_pre_NF[:, columns])
    sparse_NF = densify(values, indices)
    dense_NF = dense_codes(x_ND, p, K, center=center, batch=batch)
    assert_close(sparse_NF, dense_NF)

    generator = torch.Generator().manual_seed(2)
    target_NF, target_NG = torch.randn(N, D_SAE, generator=generator), torch.randn(N, 4)
    leaves = {name: p[name] for name in ("W_enc", "b_enc", "b_dec")[: 3 if center else 2]}
    sparse_loss = loss_of(sparse_NF, target_NF) + loss_of(pre_NG, target_NG)
    dense_loss = loss_of(dense_NF, target_NF) + loss_of(dense_pre_NF[:, columns], target_NG)
    sparse_grads, dense_grads = grads(sparse_loss, leaves), grads(dense_loss, leaves)
    for name in leaves:
        assert_close(sparse_grads[name], dense_grads[name], msg=name)


@pytest.mark.parametrize("batch", [False, True], ids=["topk", "batchtopk"])
def test_codes_clipped_by_the_relu_get_no_gradient(batch):
    """With a negative encoder bias many kept pre-activations are <= 0: value 0, no gradient."""
    x_ND, p = weights(seed=4)
    with torch.no_grad():
        p["b_enc"] -= 1.5
    encode = batch_topk_encode if batch else topk_encode
    values, indices = encode(x_ND, p["W_enc"], p["b_enc"], p["b_dec"], K)
    kept = N * K if batch else values.numel()
    assert 0 < (values > 0).sum() < kept
    x_hat = sparse_decode(values, indices, p["W_dec"], p["b_dec"])
    dense_x_hat = dense_codes(x_ND, p, K, center=True, batch=batch) @ p["W_dec"] + p["b_dec"]
    assert_close(x_hat, dense_x_hat)
    sparse_grads = grads(loss_of(x_hat, x_ND), p)
    dense_grads = grads(loss_of(dense_x_hat, x_ND), p)
    for name in p:
        assert_close(sparse_grads[name], dense_grads[name], msg=name)


@pytest.mark.parametrize("center", [True, False], ids=["centered", "uncentered"])
def test_decode_forward_and_gradients_match_dense(center):
    x_ND, p = weights()
    values, indices = topk_encode(x_ND, p["W_enc"], p["b_enc"], p["b_dec"] if center else None, K)
    values = values.detach().requires_grad_()
    b_dec = p["b_dec"] if center else None
    x_hat = sparse_decode(values, indices, p["W_dec"], b_dec)
    dense = densify(values, indices) @ p["W_dec"] + (b_dec if center else 0)
    assert_close(x_hat, dense)

    leaves = {"values": values, "W_dec": p["W_dec"]} | ({"b_dec": b_dec} if center else {})
    sparse_grads = grads(loss_of(x_hat, x_ND), leaves)
    dense_grads = grads(loss_of(dense, x_ND), leaves)
    for name in leaves:
        assert_close(sparse_grads[name], dense_grads[name], msg=name)


@pytest.mark.parametrize("use_csr", [True, False], ids=["csr", "fallback"])
@pytest.mark.parametrize("batch", [False, True], ids=["topk", "batchtopk"])
def test_full_step_gradients_match_dense_autograd(monkeypatch, batch, use_csr):
    """Encode, decode, MSE: every parameter's gradient equals the dense TopK SAE's."""
    monkeypatch.setattr(sparse_ops, "_use_csr", lambda tensor: use_csr)
    x_ND, p = weights(seed=3)
    encode = batch_topk_encode if batch else topk_encode
    values, indices = encode(x_ND, p["W_enc"], p["b_enc"], p["b_dec"], K)
    x_hat = sparse_decode(values, indices, p["W_dec"], p["b_dec"])
    dense_x_hat = dense_codes(x_ND, p, K, center=True, batch=batch) @ p["W_dec"] + p["b_dec"]
    assert_close(x_hat, dense_x_hat)
    sparse_grads = grads(torch.nn.functional.mse_loss(x_hat, x_ND), p)
    dense_grads = grads(torch.nn.functional.mse_loss(dense_x_hat, x_ND), p)
    for name in p:
        assert_close(sparse_grads[name], dense_grads[name], msg=name)


@pytest.mark.parametrize("use_csr", [True, False], ids=["csr", "fallback"])
@pytest.mark.parametrize("batch", [False, True], ids=["topk", "batchtopk"])
@pytest.mark.parametrize("center", [True, False], ids=["centered", "uncentered"])
def test_gradcheck_float64(monkeypatch, batch, center, use_csr):
    """Finite differences of encode + decode, in every weight, in float64."""
    monkeypatch.setattr(sparse_ops, "_use_csr", lambda tensor: use_csr)
    x_ND, p = weights(torch.float64, seed=5)
    encode = batch_topk_encode if batch else topk_encode

    def step(W_enc, b_enc, W_dec, b_dec):
        values, indices = encode(x_ND, W_enc, b_enc, b_dec if center else None, K)
        return sparse_decode(values, indices, W_dec, b_dec)

    inputs = (p["W_enc"], p["b_enc"], p["W_dec"], p["b_dec"])
    assert torch.autograd.gradcheck(step, inputs, eps=1e-6, atol=1e-6)

    values, indices = encode(x_ND, *inputs[:2], p["b_dec"] if center else None, K)
    values = values.detach().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, W_dec, b_dec: sparse_decode(v, indices, W_dec, b_dec),
        (values, p["W_dec"], p["b_dec"]),
    )


def test_leading_dimensions_are_flattened():
    x_ND, p = weights()
    x_BSD = x_ND[:6].reshape(2, 3, D)
    values, indices = topk_encode(x_BSD, p["W_enc"], p["b_enc"], p["b_dec"], K)
    assert values.shape == indices.shape == (2, 3, K)
    x_hat = sparse_decode(values, indices, p["W_dec"], p["b_dec"])
    flat = sparse_decode(
        *topk_encode(x_ND[:6], p["W_enc"], p["b_enc"], p["b_dec"], K), p["W_dec"], p["b_dec"]
    )
    assert_close(x_hat, flat.view(2, 3, D))


def test_x_that_needs_a_gradient_is_refused():
    x_ND, p = weights()
    with pytest.raises(ValueError, match="no gradient for x"):
        topk_encode(x_ND.requires_grad_(), p["W_enc"], p["b_enc"], p["b_dec"], K)
    with torch.no_grad():
        topk_encode(x_ND, p["W_enc"], p["b_enc"], p["b_dec"], K)


@pytest.mark.parametrize("use_csr", [True, False], ids=["csr", "fallback"])
@pytest.mark.parametrize("batch", [False, True], ids=["topk", "batchtopk"])
def test_bfloat16_runs_and_matches_float32(monkeypatch, batch, use_csr):
    """bfloat16 in, bfloat16 out; the gradients those of float32 on the same (rounded) numbers."""
    monkeypatch.setattr(sparse_ops, "_use_csr", lambda tensor: use_csr)
    monkeypatch.setattr(sparse_ops, "_LATENT_BLOCK", 16)  # bfloat16 goes by blocks of latents
    x_ND, p = weights()
    p16 = {name: t.detach().bfloat16().requires_grad_() for name, t in p.items()}
    p32 = {name: t.detach().float().requires_grad_() for name, t in p16.items()}
    x16 = x_ND.bfloat16()
    encode = batch_topk_encode if batch else topk_encode
    losses, codes = [], []
    for x, q in ((x16, p16), (x16.float(), p32)):
        values, indices = encode(x, q["W_enc"], q["b_enc"], q["b_dec"], K)
        x_hat = sparse_decode(values, indices, q["W_dec"], q["b_dec"])
        assert values.dtype == x_hat.dtype == x.dtype
        losses.append(torch.nn.functional.mse_loss(x_hat.float(), x16.float()))
        codes.append(indices.sort(-1).values)
    assert torch.equal(*codes)  # the same latents win in both precisions on this data
    grads16, grads32 = grads(losses[0], p16), grads(losses[1], p32)
    for name, grad in grads16.items():
        assert grad.dtype == torch.bfloat16, name
        scale = grads32[name].abs().max()
        assert_close(grad.float(), grads32[name], atol=0.02 * scale, rtol=0.02, msg=name)


@pytest.mark.parametrize("block", [2, 3, 4])
def test_row_topk_blocks_match_topk(monkeypatch, block):
    """The block-wise CPU selection (recursing 3, 1, 1 levels), with columns left over."""
    monkeypatch.setattr(sparse_ops, "_TOPK_ROWS", 4)  # and by slices of 4, 4 and 1 rows
    scores = torch.randn(9, 101, generator=torch.Generator().manual_seed(7))
    values, indices = row_topk(scores, 3, block=block)
    expected = scores.topk(3, dim=-1).values
    assert_close(values.sort(-1, descending=True).values, expected)
    assert_close(scores.gather(1, indices), values)
    assert (indices.sort(-1).values.diff(dim=-1) > 0).all()  # distinct columns


def test_row_topk_default_block_on_large_rows():
    scores = torch.randn(5, 4096, generator=torch.Generator().manual_seed(8))
    values, indices = row_topk(scores, 8)
    assert_close(values.sort(-1).values, scores.topk(8, dim=-1).values.sort(-1).values)
    assert_close(scores.gather(1, indices), values)


@pytest.mark.parametrize("use_csr", [True, False], ids=["csr", "fallback"])
@pytest.mark.parametrize("transposed", [False, True])
def test_scatter_outer_and_pair_dots(monkeypatch, use_csr, transposed):
    """Both kernels of each helper; 5000 outputs span several transposed blocks, most empty."""
    monkeypatch.setattr(sparse_ops, "_use_csr", lambda tensor: use_csr)
    monkeypatch.setattr(sparse_ops, "_LATENT_BLOCK", 1024)
    generator = torch.Generator().manual_seed(9)
    indices = torch.randint(0, 3000, (N, K), generator=generator)
    weights_NK = torch.randn(N, K, generator=generator)
    rows = torch.randn(N, D, generator=generator)
    table = torch.randn(5000, D, generator=generator)
    dense_NF = torch.zeros(N, 5000).scatter_add(1, indices, weights_NK)
    out = scatter_outer(indices, weights_NK, rows, 5000, transposed=transposed)
    assert out.is_contiguous()
    assert_close(out, rows.T @ dense_NF if transposed else dense_NF.T @ rows)
    assert_close(pair_dots(rows, table, indices), (table[indices] * rows[:, None]).sum(-1))


@pytest.mark.parametrize("use_csr", [True, False], ids=["csr", "fallback"])
@pytest.mark.parametrize("batch", [False, True], ids=["topk", "batchtopk"])
def test_mixed_precision_selects_in_bfloat16_and_gives_float32_gradients(
    monkeypatch, batch, use_csr
):
    """``compute_dtype`` bfloat16 on float32 weights (mixed-precision training): the kept codes
    are a true top-k of the product of the rounded operands (itself rounded to bfloat16, ties
    and all), the values those pre-activations in float32, and every gradient float32 and
    within 2 % of float32 autograd's on the same kept pairs (the values carry bfloat16's
    rounding, 2**-9 relative, into the loss)."""
    monkeypatch.setattr(sparse_ops, "_use_csr", lambda tensor: use_csr)
    monkeypatch.setattr(sparse_ops, "_TOPK_ROWS", 3)  # the product by slices of 3 tokens
    x_ND, p = weights(seed=6)
    encode = batch_topk_encode if batch else topk_encode
    values, indices = encode(
        x_ND, p["W_enc"], p["b_enc"], p["b_dec"], K, compute_dtype=torch.bfloat16
    )
    assert values.dtype == torch.float32

    def rounded(t):
        return t.detach().bfloat16().float()

    pre_NF = rounded(x_ND - p["b_dec"]) @ rounded(p["W_enc"]) + rounded(p["b_enc"])
    pre_NF = rounded(pre_NF)
    code_NF = densify(values, indices)
    kept_NF = code_NF > 0
    assert kept_NF.sum() == N * K  # every kept pre-activation is positive on this data
    # nothing left out is larger than anything kept (per token; for BatchTopK in the batch)
    left_out = pre_NF.masked_fill(kept_NF, -torch.inf)
    kept = pre_NF.masked_fill(~kept_NF, torch.inf)
    if batch:
        assert left_out.max() <= kept.min()
    else:
        assert (left_out.amax(-1) <= kept.amin(-1)).all()
    assert_close(code_NF, torch.relu(pre_NF) * kept_NF, atol=0, rtol=0)

    x_hat = sparse_decode(values, indices, p["W_dec"], p["b_dec"])
    pre32_NF = (x_ND - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
    dense_x_hat = (torch.relu(pre32_NF) * kept_NF) @ p["W_dec"] + p["b_dec"]
    sparse_grads = grads(loss_of(x_hat, x_ND), p)
    dense_grads = grads(loss_of(dense_x_hat, x_ND), p)
    for name, grad in sparse_grads.items():
        assert grad.dtype == torch.float32, name
        scale = dense_grads[name].abs().max()
        assert_close(grad, dense_grads[name], atol=0.02 * scale, rtol=0.02, msg=name)
