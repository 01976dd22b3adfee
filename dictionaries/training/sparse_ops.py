"""Training arithmetic for TopK and BatchTopK SAEs that touches only the active latents.

A TopK SAE keeps ``k`` of ``d_sae`` latents per token, so after the encoder's dense product
``x @ W_enc`` (unavoidable: every latent must be scored) everything else, the decoder and every
gradient, involves only ``N * k`` (token, latent) pairs. The three ops here keep the codes in
that sparse form, ``values (N, k)`` with ``indices (N, k)``, and never build an ``(N, d_sae)``
tensor besides the encoder's pre-activations:

- ``topk_encode``: ``pre = (x - b_dec) @ W_enc + b_enc``, the ``k`` largest per token, ReLU.
- ``batch_topk_encode``: the ``k * N`` largest of the whole batch, padded to ``(N, k_max)``.
- ``sparse_decode``: ``x_hat = sum_j values[:, j] * W_dec[indices[:, j]] + b_dec``.

Costs per step, for ``N`` tokens, ``d_in = d_out = D`` and ``d_sae = F``:

- encoder forward: the dense ``N x D x F`` product and the top-k selection, on the CPU by
  slices of 512 tokens whose pre-activations are selected while in cache (``_product_topk``;
  a block-wise selection, see ``row_topk``, that reads them about once); in a lower compute
  dtype than the weights' the bias is folded into the product (``_affine``); asked for
  ``columns`` (AuxK's dead latents), their ``N x G`` pre-activations are copied out of the same
  slices, and their gradient costs one dense ``D x N x G`` product in the backward;
- encoder backward: ``dW_enc = x_c^T @ G`` with ``G`` the ``(N, F)`` gradient of the
  pre-activations, which has only ``N * k`` non-zeros: ``O(N k D)``, plus ``O(F D)`` to write
  the dense ``dW_enc``; ``db_enc`` and ``db_dec = -W_enc @ db_enc`` are ``O(N k + F D)``;
- decoder forward and backward: ``O(N k D)`` gathers and scatters, plus ``O(F D)`` for
  the dense ``dW_dec``.

The scatters (``sum over pairs of weight * row`` into ``F`` rows) and the decoder's gradient
for ``values`` (a dot product per pair) run on the CPU as sparse CSR kernels over the pairs
sorted by latent: MKL's CSR x dense product and ``torch.sparse.sampled_addmm``, in float32 or
float64 (bfloat16 is computed in float32 by blocks of latents: MKL has no bfloat16, see
below). Measured
on 2 cores at N 4096, D 576, F 16384, k 32, for one ``(F, D)`` scatter: ``index_add_`` by
chunks 43 ms, ``torch.sparse.mm`` on COO 25-36 ms, ``embedding_bag``'s own backward 20-230 ms,
``torch.mm`` on CSR 11 ms, the bare MKL call (``addmm`` into its own output) 3 ms; for the
``(D, F)`` layout of ``W_enc``, MKL's column-major output 22 ms, blocks of latents transposed
through a small buffer 6 ms. On other devices they run as ``index_add_`` into a float32
accumulator and ``bmm`` over gathered rows, in chunks of bounded memory: ordinary torch ops,
which CUDA has in float32 and bfloat16.

Training step, same shapes, float32 with Adam (``benchmarks/train_throughput.py``): about
0.85x the tokens/s of the bare ``x @ W_enc``, against 0.16x for dense autograd.

bfloat16. With ``compute_dtype=torch.bfloat16`` on float32 master weights (mixed-precision
training, ``benchmarks/precision.py``) only the encoder product and its selection run in
bfloat16, where oneDNN's AVX512-BF16/AMX kernels accumulate in float32; everything after
touches ``N * k`` pairs and runs in float32 on the master weights, so the gradients come out
in float32 with no conversion of an ``(F, D)`` matrix. The pair kernels do ``O(N k D)`` work
on memory they read about once, which bfloat16 dot products do not speed up; measured for
bfloat16 operands, medians on 1 core of a loaded machine (ms): ``pair_dots`` float32 CSR on a
float32 ``W_dec`` 139, bfloat16 ``W_dec`` converted by blocks 169, converted whole 196,
gathered rows + ``bmm`` in bfloat16 (oneDNN) 369, the dense bfloat16 product then a gather
about 10x the CSR; an ``(F, D)`` scatter: float32 CSR 230, bfloat16 by blocks 152, converted
whole 230, ``index_add_`` in bfloat16 594; transposed 261, 250, 287, 812. So bfloat16
operands take the float32 CSR kernels by blocks of latents (their bfloat16 path), and mixed
precision keeps them off it.

``x`` is data: the ops give no gradient for it (they refuse an ``x`` that needs one).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

from sparse_circuits.distributed import rank_and_world

__all__ = [
    "batch_topk_encode",
    "pair_dots",
    "row_topk",
    "scatter_outer",
    "sparse_decode",
    "topk_encode",
]

_CHUNK_ELEMENTS = 1 << 22
"""Elements of the largest temporary the fallback (non-CSR) kernels build at once."""


_TOPK_BLOCK = 8
"""Entries per block in ``row_topk``'s selection on the CPU (measured: 8 beats 4 and 16)."""
_TOPK_ROWS = 512
"""Rows per slice in ``row_topk``'s block-wise selection (measured: 25 ms, all at once 33)."""


def row_topk(
    scores_RL: torch.Tensor, k: int, *, block: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest entries of each row of ``scores_RL``, unsorted: ``(R, k)`` values, indices.

    Same result as ``scores_RL.topk(k, dim=-1, sorted=False)`` up to the order inside a row and
    the choice among tied values. ``torch.topk`` on the CPU copies every entry into a queue and
    runs ``std::nth_element``/``partial_sort`` on it, at 1.5 to 8 ns per entry: 47 ms for
    4096 x 16384 on 2 cores (the encoder product: 380 ms); this takes 25 ms. Here, when a row is long (``L >= 4 * block * k``),
    its first ``block * (L // block)`` entries are cut into ``L // block`` strided blocks of
    ``block`` entries (block ``b`` holds columns ``b, b + L // block, ...``) and each block's
    maximum is taken in one vectorised pass. The ``k`` blocks with the largest maxima hold all
    of the row's ``k`` largest entries (their ``k`` maxima are ``k`` entries at least as large
    as the smallest of them, and every entry that large lies in one of those blocks), so those
    blocks are found by the same function on the ``L // block`` maxima (recursively), and one
    ``topk`` runs over their ``k * block`` entries plus the ``L % block`` left over. ``block``
    defaults to 8 on the CPU; ``1`` (the default elsewhere: GPUs have fast top-k kernels) means
    a plain ``topk``.
    """
    n_rows, length = scores_RL.shape
    if not 0 < k <= length:
        raise ValueError(f"need 0 < k <= {length}, got k={k}")
    if block is None:
        block = _TOPK_BLOCK if scores_RL.device.type == "cpu" else 1
    if block < 2 or length < 4 * block * k:
        return scores_RL.topk(k, dim=-1, sorted=False)
    if n_rows > _TOPK_ROWS:  # by slices of rows, whose temporaries stay small (and in cache)
        values_RK = scores_RL.new_empty(n_rows, k)
        column_RK = torch.empty(n_rows, k, dtype=torch.int64, device=scores_RL.device)
        for start in range(0, n_rows, _TOPK_ROWS):
            rows = slice(start, start + _TOPK_ROWS)
            values_RK[rows], column_RK[rows] = row_topk(scores_RL[rows], k, block=block)
        return values_RK, column_RK
    n_blocks = length // block
    n_main = block * n_blocks
    main_RBC = scores_RL[:, :n_main].unflatten(1, (block, n_blocks))
    _, blocks_RK = row_topk(main_RBC.amax(1), k, block=block)
    candidates_RC = main_RBC.gather(2, blocks_RK[:, None, :].expand(n_rows, block, k))
    candidates_RC = candidates_RC.reshape(n_rows, block * k)
    if n_main < length:
        candidates_RC = torch.cat([candidates_RC, scores_RL[:, n_main:]], dim=1)
    values_RK, position_RK = candidates_RC.topk(k, dim=-1, sorted=False)
    # Candidate j * k + i is column j * n_blocks + blocks[i]; the tail follows in order.
    column_RK = (position_RK // k) * n_blocks + blocks_RK.gather(1, position_RK % k)
    if n_main < length:
        column_RK = torch.where(
            position_RK < block * k, column_RK, position_RK - block * k + n_main
        )
    return values_RK, column_RK


def _use_csr(tensor: torch.Tensor) -> bool:
    """Whether the CPU sparse kernels serve this tensor (they compute in float32/float64)."""
    return tensor.device.type == "cpu" and tensor.dtype.is_floating_point


def _accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class _ByLatent(NamedTuple):
    """The ``N * k`` pairs of an ``(N, k)`` index array grouped by latent: a CSR ``(F, N)``."""

    order: torch.Tensor
    """``(N * k,)``: positions in the flattened index array, sorted by latent."""
    crow: torch.Tensor
    """``(F + 1,)``: the sorted pairs of latent ``f`` are ``crow[f]:crow[f + 1]``."""
    token: torch.Tensor
    """``(N * k,)``: the token of each sorted pair."""
    shape: tuple[int, int]
    """``(F, N)``."""

    def matrix(self, values_NK: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """The CSR ``(F, N)`` matrix (or rows ``rows`` of it) holding ``values_NK``."""
        start, stop, _ = rows.indices(self.shape[0])
        crow = self.crow[start : stop + 1]
        first, last = (int(i) for i in crow[[0, -1]])
        values = values_NK.reshape(-1)[self.order[first:last]]
        shape = (stop - start, self.shape[1])
        return _csr(crow - first, self.token[first:last], values, shape)


def _by_latent(indices_NK: torch.Tensor, n_latents: int) -> _ByLatent:
    n, k = indices_NK.shape
    flat = indices_NK.reshape(-1)
    order = torch.argsort(flat)
    crow = torch.zeros(n_latents + 1, dtype=torch.int64, device=flat.device)
    torch.cumsum(torch.bincount(flat, minlength=n_latents), 0, out=crow[1:])
    return _ByLatent(order, crow, order // k, (n_latents, n))


_LATENT_BLOCK = 2048
"""Latents per sparse-kernel call when the result is transposed or converted by blocks."""


def _latent_blocks(n_latents: int):
    for start in range(0, n_latents, _LATENT_BLOCK):
        yield start, min(start + _LATENT_BLOCK, n_latents)


def _scatter_outer_csr(pairs: _ByLatent, weights_NK, rows_ND, transposed):
    """``scatter_outer`` through MKL: the CSR ``G^T`` (rows = latents) times ``rows``.

    ``torch.addmm(C, A, B, beta=0, out=C)`` into an uninitialised ``C`` is the bare MKL call
    (``torch.mm`` zeroes a temporary and copies it: four times slower). MKL's column-major
    output is slow (strided writes), so a transposed result is made by blocks of latents, each
    computed into a small buffer that stays in cache and copied transposed; a bfloat16 result
    likewise, computed in float32 by blocks and converted on the copy.
    """
    dtype = rows_ND.dtype
    compute = _accumulator_dtype(dtype)
    rows_ND, weights_NK = rows_ND.to(compute), weights_NK.to(compute)
    n_out, d = pairs.shape[0], rows_ND.shape[1]
    if not transposed and dtype == compute:
        out_FD = rows_ND.new_empty(n_out, d)
        return torch.addmm(out_FD, pairs.matrix(weights_NK), rows_ND, beta=0, out=out_FD)
    out = torch.empty((d, n_out) if transposed else (n_out, d), dtype=dtype)
    buffer = rows_ND.new_empty(min(_LATENT_BLOCK, n_out), d)
    for start, stop in _latent_blocks(n_out):
        part = buffer[: stop - start]
        torch.addmm(part, pairs.matrix(weights_NK, slice(start, stop)), rows_ND, beta=0, out=part)
        if transposed:
            out[:, start:stop] = part.t()
        else:
            out[start:stop] = part
    return out


def _pair_dots_csr(pairs: _ByLatent, left_ND, right_FD):
    """``pair_dots`` as a sampled product over pairs grouped by latent.

    Grouping by latent reads each row of ``right`` once (in token order each pair would
    fetch its own row of ``right`` from memory): 1.5x faster than the token-major order.
    A bfloat16 ``right`` is converted to float32 by blocks of latents.
    """
    compute = _accumulator_dtype(left_ND.dtype)
    left_T = left_ND.to(compute).t()
    zeros = left_T.new_zeros(pairs.order.numel())
    if right_FD.dtype == compute:
        dots = torch.sparse.sampled_addmm(pairs.matrix(zeros), right_FD, left_T, beta=0.0)
        dots = dots.values()
    else:
        dots = torch.empty_like(zeros)
        for start, stop in _latent_blocks(pairs.shape[0]):
            first, last = (int(i) for i in pairs.crow[[start, stop]])
            pattern = pairs.matrix(zeros, slice(start, stop))
            block = right_FD[start:stop].to(compute)
            dots[first:last] = torch.sparse.sampled_addmm(pattern, block, left_T, beta=0.0).values()
    out = torch.empty(dots.shape, dtype=left_ND.dtype)
    out[pairs.order] = dots.to(out.dtype)
    return out.view(left_ND.shape[0], -1)


def scatter_outer(
    indices_NK: torch.Tensor,
    weights_NK: torch.Tensor,
    rows_ND: torch.Tensor,
    n_out: int,
    *,
    transposed: bool = False,
) -> torch.Tensor:
    """``out[f] = sum over (n, j) with indices[n, j] == f of weights[n, j] * rows[n]``.

    That is ``G^T @ rows`` for the ``(N, n_out)`` matrix ``G`` with ``G[n, indices[n, j]] =
    weights[n, j]``: the gradient of ``W_dec`` (``rows`` = the output gradient) and, transposed,
    of ``W_enc`` (``rows`` = the encoder's input). Returns ``(n_out, D)``, or with
    ``transposed`` a contiguous ``(D, n_out)``, in ``rows_ND``'s dtype. ``O(N k D)`` work plus
    writing the dense result.
    """
    if _use_csr(rows_ND):
        return _scatter_outer_csr(_by_latent(indices_NK, n_out), weights_NK, rows_ND, transposed)
    n, k = indices_NK.shape
    d = rows_ND.shape[1]
    acc = torch.zeros(n_out, d, dtype=_accumulator_dtype(rows_ND.dtype), device=rows_ND.device)
    step = max(1, _CHUNK_ELEMENTS // max(1, k * d))
    for start in range(0, n, step):
        stop = start + step
        weights_CK = weights_NK[start:stop].to(acc.dtype)
        source = weights_CK[:, :, None] * rows_ND[start:stop, None, :].to(acc.dtype)
        acc.index_add_(0, indices_NK[start:stop].reshape(-1), source.reshape(-1, d))
    if transposed:
        acc = acc.t()
    out = torch.empty(acc.shape, dtype=rows_ND.dtype, device=rows_ND.device)
    return out.copy_(acc)


def pair_dots(
    left_ND: torch.Tensor, right_FD: torch.Tensor, indices_NK: torch.Tensor
) -> torch.Tensor:
    """``(N, k)``: ``out[n, j] = left[n] . right[indices[n, j]]``, in ``O(N k D)``."""
    if _use_csr(left_ND):
        return _pair_dots_csr(_by_latent(indices_NK, right_FD.shape[0]), left_ND, right_FD)
    n, k = indices_NK.shape
    d = left_ND.shape[1]
    out_NK = torch.empty(n, k, dtype=left_ND.dtype, device=left_ND.device)
    step = max(1, _CHUNK_ELEMENTS // max(1, k * d))
    for start in range(0, n, step):
        stop = start + step
        gathered_CKD = right_FD.index_select(0, indices_NK[start:stop].reshape(-1))
        gathered_CKD = gathered_CKD.view(-1, k, d)
        out_NK[start:stop] = torch.bmm(gathered_CKD, left_ND[start:stop, :, None])[..., 0]
    return out_NK


_BIAS_ALIGN = 8
"""A folded bias pads the product's inner dimension to a multiple of this (tensor cores want
multiples of 8 in bfloat16)."""


class _Affine(NamedTuple):
    """The encoder's pre-activations ``b + x @ W`` as operands of one product."""

    x_ND: torch.Tensor
    W_DF: torch.Tensor
    b_F: torch.Tensor | None
    """``None`` when the bias is folded into ``x`` and ``W``."""

    def rows(self, part: slice = slice(None), out: torch.Tensor | None = None) -> torch.Tensor:
        """``(rows, F)``: the pre-activations of the tokens ``part``, into ``out`` if given."""
        if self.b_F is None:
            return torch.mm(self.x_ND[part], self.W_DF, out=out)
        return torch.addmm(self.b_F, self.x_ND[part], self.W_DF, out=out)


def _affine(b_F: torch.Tensor, x_ND: torch.Tensor, W_DF: torch.Tensor, dtype: torch.dtype):
    """``b + x @ W`` with every product in ``dtype``, as an ``_Affine``.

    In ``W``'s own dtype the operands are used as they are (``addmm``: MKL adds the bias in
    its float32 kernel for free). Converted to another dtype (bfloat16 on float32 master
    weights), the bias is folded in: a row of ``W`` met by a column of ones in ``x``, the rest
    of the padding zeros, so the kernel adds it in its float32 accumulator. oneDNN's ``addmm``
    would first copy ``b`` into every row of its output, a pass over the step's largest
    tensor; the fold costs nothing extra, as the conversion copies ``W`` anyway. Measured on
    2 cores at N 4096, D 576, F 16384 in bfloat16: 123 ms for the product of the folded
    operands, 140 ms for ``addmm`` (in float32, folding would cost 30 ms more than ``addmm``).
    """
    if dtype == W_DF.dtype:  # x is in W's dtype already (``_encode`` casts it)
        return _Affine(x_ND, W_DF, b_F)
    (n, d), n_latents = x_ND.shape, W_DF.shape[1]
    width = -(-(d + 1) // _BIAS_ALIGN) * _BIAS_ALIGN
    x1_ND = x_ND.new_zeros(n, width, dtype=dtype)
    x1_ND[:, :d] = x_ND
    x1_ND[:, d] = 1
    W1_DF = W_DF.new_empty(width, n_latents, dtype=dtype)
    W1_DF[:d] = W_DF
    W1_DF[d] = b_F
    W1_DF[d + 1 :] = 0
    return _Affine(x1_ND, W1_DF, None)


def _product_topk(
    pre: _Affine, k: int, columns_G: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``row_topk`` of the pre-activations, ``(N, k)`` values and indices, and the
    pre-activations of the latents ``columns_G`` (``(N, G)``, or ``None`` without them); on
    the CPU by slices of ``_TOPK_ROWS`` tokens.

    Each slice's pre-activations are selected (and their columns copied) while they are still
    in cache, and one slice-sized buffer serves every slice: a fresh ``(N, F)`` product, the
    step's largest temporary, would come from the system and page-fault in at every step.
    Measured on 1 core of a loaded machine at N 4096, D 576, F 16384: 2.04 s in bfloat16
    against 2.36 s for the whole product then ``row_topk``, and 2.03 s for the bare product
    ``x @ W``; float32 4.66 against 5.33 s. GPUs take the product whole.
    """
    n = pre.x_ND.shape[0]
    rows = _TOPK_ROWS if pre.x_ND.device.type == "cpu" else n
    if n <= rows:
        pre_NF = pre.rows()
        columns_NG = None if columns_G is None else pre_NF.index_select(1, columns_G)
        return *row_topk(pre_NF, k), columns_NG
    values_NK = pre.x_ND.new_empty(n, k)
    indices_NK = torch.empty(n, k, dtype=torch.int64, device=pre.x_ND.device)
    columns_NG = None if columns_G is None else pre.x_ND.new_empty(n, len(columns_G))
    buffer_RF = pre.x_ND.new_empty(rows, pre.W_DF.shape[1])
    for start in range(0, n, rows):
        part = slice(start, start + rows)
        pre_RF = pre.rows(part, out=buffer_RF[: min(rows, n - start)])
        values_NK[part], indices_NK[part] = row_topk(pre_RF, k)
        if columns_G is not None:
            torch.index_select(pre_RF, 1, columns_G, out=columns_NG[part])
    return values_NK, indices_NK, columns_NG


def _global_batch_topk(pre_NF: torch.Tensor, n_keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's entries among the ``n_keep`` largest of every data-parallel rank's
    ``pre_NF`` (ranks hold equal row counts): flat values and flat indices, unsorted.

    The global ``n_keep`` largest lie among each rank's own ``n_keep`` largest, so each rank
    gathers only those candidates' values and keeps its entries at or above the ``n_keep``-th
    largest of them all (a tie at that value may keep one more).
    """
    values_M, flat_M = row_topk(pre_NF.reshape(1, -1), min(n_keep, pre_NF.numel()))
    values_M, flat_M = values_M[0], flat_M[0]
    every_rank = [torch.empty_like(values_M) for _ in range(dist.get_world_size())]
    dist.all_gather(every_rank, values_M.contiguous())
    everything = torch.cat(every_rank)
    smallest_kept = everything.topk(min(n_keep, len(everything)), sorted=False).values.min()
    kept = values_M >= smallest_kept
    return values_M[kept], flat_M[kept]


def _batch_select(pre_NF: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k * N`` largest entries of the batch, as ``(N, k_max)`` values and indices.

    Under ``torch.distributed`` the batch is the global one, ``k * N * world`` largest over
    every rank's rows, so that data-parallel training selects what one process would.
    Row ``n`` holds its kept entries first, then padding: value 0 at index 0.
    """
    n, n_latents = pre_NF.shape
    world = rank_and_world()[1]
    if world > 1:
        values_M, flat_M = _global_batch_topk(pre_NF, k * n * world)
    else:
        values_M, flat_M = row_topk(pre_NF.reshape(1, -1), min(k * n, n * n_latents))
        values_M, flat_M = values_M[0], flat_M[0]
    n_keep = len(flat_M)
    flat_M, order = torch.sort(flat_M)  # row-major order: grouped by token
    values_M = values_M[order]
    row_M = flat_M // n_latents
    counts_N = torch.bincount(row_M, minlength=n)
    k_max = int(counts_N.max())
    first_N = torch.cumsum(counts_N, 0) - counts_N
    slot_M = torch.arange(n_keep, device=pre_NF.device) - first_N[row_M]
    values_NK = pre_NF.new_zeros(n, k_max)
    indices_NK = torch.zeros(n, k_max, dtype=torch.int64, device=pre_NF.device)
    values_NK[row_M, slot_M] = values_M
    indices_NK[row_M, slot_M] = flat_M - row_M * n_latents
    return values_NK, indices_NK


class _SparseEncode(torch.autograd.Function):
    """Encoder with a top-k rule; the backward touches only the kept (token, latent) pairs,
    and the whole columns of the latents ``columns`` when their pre-activations are asked for
    too (AuxK's dead latents: ``TopKObjective.auxk_loss``)."""

    @staticmethod
    def forward(ctx, x_ND, W_enc_DF, b_enc_F, b_dec_D, k, batch, compute_dtype, columns_G):
        x_c_ND = x_ND if b_dec_D is None else x_ND - b_dec_D
        # in compute_dtype: e.g. bfloat16 on float32 master weights
        pre = _affine(b_enc_F, x_c_ND, W_enc_DF, compute_dtype)
        if batch:
            pre_NF = pre.rows()
            values_NK, indices_NK = _batch_select(pre_NF, k)
            columns_NG = None if columns_G is None else pre_NF.index_select(1, columns_G)
            del pre_NF
        else:
            values_NK, indices_NK, columns_NG = _product_topk(pre, k, columns_G)
        del pre
        values_NK = values_NK.to(W_enc_DF.dtype).clamp_min_(0)
        if columns_NG is None:  # an output all the same (autograd gives it a zero gradient)
            columns_NG = values_NK.new_empty(len(x_ND), 0)
        ctx.mark_non_differentiable(indices_NK)
        ctx.save_for_backward(x_c_ND, W_enc_DF, values_NK, indices_NK, columns_G)
        ctx.n_latents, ctx.compute_dtype = W_enc_DF.shape[1], compute_dtype
        return values_NK, indices_NK, columns_NG.to(W_enc_DF.dtype)

    @staticmethod
    def backward(ctx, grad_values_NK, _grad_indices, grad_columns_NG):
        x_c_ND, W_enc_DF, values_NK, indices_NK, columns_G = ctx.saved_tensors
        _, need_W_enc, need_b_enc, need_b_dec, _, _, _, _ = ctx.needs_input_grad
        # d pre at the kept pairs; ReLU passes gradient where the value is positive only.
        grad_NK = grad_values_NK * (values_NK > 0)
        with_columns = columns_G is not None and grad_columns_NG is not None
        grad_W_enc = grad_b_enc = grad_b_dec = None
        if need_W_enc:
            grad_W_enc = scatter_outer(indices_NK, grad_NK, x_c_ND, ctx.n_latents, transposed=True)
            if with_columns:  # dense columns: x_c^T @ G, one product in the compute dtype
                dtype = ctx.compute_dtype
                columns_DG = x_c_ND.t().to(dtype) @ grad_columns_NG.to(dtype)
                grad_W_enc.index_add_(1, columns_G, columns_DG.to(grad_W_enc.dtype))
        if need_b_enc or need_b_dec:
            sum_F = torch.zeros(
                ctx.n_latents, dtype=_accumulator_dtype(grad_NK.dtype), device=grad_NK.device
            )
            sum_F.index_add_(0, indices_NK.reshape(-1), grad_NK.reshape(-1).to(sum_F.dtype))
            if with_columns:
                sum_F.index_add_(0, columns_G, grad_columns_NG.sum(0, dtype=sum_F.dtype))
            sum_F = sum_F.to(grad_NK.dtype)
            if need_b_enc:
                grad_b_enc = sum_F
            if need_b_dec:  # pre = (x - b_dec) @ W_enc + ...: d b_dec = -W_enc @ sum_n G[n]
                grad_b_dec = -torch.mv(W_enc_DF, sum_F)
        return None, grad_W_enc, grad_b_enc, grad_b_dec, None, None, None, None


class _SparseDecode(torch.autograd.Function):
    """``embedding_bag`` forward; backward by pairs grouped by latent (one sort for both)."""

    @staticmethod
    def forward(ctx, values_NK, indices_NK, W_dec_FD, b_dec_D):
        x_hat_ND = F.embedding_bag(indices_NK, W_dec_FD, per_sample_weights=values_NK, mode="sum")
        if b_dec_D is not None:
            x_hat_ND += b_dec_D
        ctx.save_for_backward(values_NK, indices_NK, W_dec_FD)
        return x_hat_ND

    @staticmethod
    def backward(ctx, grad_ND):
        values_NK, indices_NK, W_dec_FD = ctx.saved_tensors
        need_values, _, need_W_dec, need_b_dec = ctx.needs_input_grad
        grad_ND = grad_ND.contiguous()
        grad_values = grad_W_dec = grad_b_dec = None
        if _use_csr(grad_ND) and (need_values or need_W_dec):
            pairs = _by_latent(indices_NK, W_dec_FD.shape[0])  # one sort serves both
            if need_values:
                grad_values = _pair_dots_csr(pairs, grad_ND, W_dec_FD)
            if need_W_dec:
                grad_W_dec = _scatter_outer_csr(pairs, values_NK, grad_ND, transposed=False)
        else:
            if need_values:
                grad_values = pair_dots(grad_ND, W_dec_FD, indices_NK)
            if need_W_dec:
                grad_W_dec = scatter_outer(indices_NK, values_NK, grad_ND, W_dec_FD.shape[0])
        if need_b_dec:
            grad_b_dec = grad_ND.sum(0)
        return grad_values, None, grad_W_dec, grad_b_dec


def _encode(x, W_enc_DF, b_enc_F, b_dec_D, k, batch, compute_dtype, columns):
    if torch.is_grad_enabled() and x.requires_grad:
        raise ValueError(
            "the sparse encoders give no gradient for x; pass x.detach() "
            "(or use Dictionary.encode when the input's gradient is needed)"
        )
    d_in, d_sae = W_enc_DF.shape
    if x.shape[-1] != d_in:
        raise ValueError(f"x has width {x.shape[-1]}, W_enc expects {d_in}")
    if not 0 < k <= d_sae:
        raise ValueError(f"need 0 < k <= d_sae ({d_sae}), got k={k}")
    if compute_dtype is not None and not compute_dtype.is_floating_point:
        raise ValueError(f"compute_dtype must be a floating-point dtype, got {compute_dtype}")
    lead = x.shape[:-1]
    x_ND = x.reshape(-1, d_in).to(W_enc_DF.dtype)
    values, indices, columns_NG = _SparseEncode.apply(
        x_ND, W_enc_DF, b_enc_F, b_dec_D, k, batch, compute_dtype or W_enc_DF.dtype, columns
    )
    codes = values.view(*lead, -1), indices.view(*lead, -1)
    return codes if columns is None else (*codes, columns_NG.view(*lead, -1))


def topk_encode(
    x_ND: torch.Tensor,
    W_enc_DF: torch.Tensor,
    b_enc_F: torch.Tensor,
    b_dec_D: torch.Tensor | None,
    k: int,
    *,
    compute_dtype: torch.dtype | None = None,
    columns: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """TopK codes of ``x_ND`` (``(..., d_in)``): ``values (..., k)``, ``indices (..., k)``.

    ``pre = (x - b_dec) @ W_enc + b_enc`` (``b_dec=None``: no centering); each token keeps its
    ``k`` largest pre-activations, in no particular order, through a ReLU (so a value can be 0).
    Differentiable in ``W_enc``, ``b_enc`` and ``b_dec``; ``indices`` (int64) are not, and
    ``x`` gets no gradient. The dense code is ``zeros(d_sae).scatter(-1, indices, values)``.

    ``compute_dtype`` (default ``W_enc``'s) is the dtype of the product and the selection:
    bfloat16 on float32 master weights is mixed precision, with the operands cast for the
    product only (its sums accumulate in float32 inside the kernel). ``x`` is cast to ``W_enc``'s
    dtype; ``values`` come back in it and every gradient in its parameter's dtype, computed
    from the kept pairs by the float32 kernels.

    ``columns`` (``(G,)`` int64 latent indices) asks for those latents' whole pre-activations
    as well, before any selection or ReLU: a third output ``(..., G)``, differentiable. Its
    gradient reaches ``W_enc``'s columns through one dense product in ``compute_dtype``, as an
    autocast product's would (float32 accumulation inside the kernel, the result rounded once:
    about 0.3 % per entry in bfloat16); its bias sums are float32. AuxK takes its dead latents'
    scores so from the product every latent needs anyway.
    """
    return _encode(x_ND, W_enc_DF, b_enc_F, b_dec_D, k, False, compute_dtype, columns)


def batch_topk_encode(
    x_ND: torch.Tensor,
    W_enc_DF: torch.Tensor,
    b_enc_F: torch.Tensor,
    b_dec_D: torch.Tensor | None,
    k: int,
    *,
    compute_dtype: torch.dtype | None = None,
    columns: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """BatchTopK codes: the ``k * n_tokens`` largest pre-activations of the whole batch.

    Same arithmetic as ``topk_encode``, but a token keeps however many of the batch's
    ``k * n_tokens`` largest pre-activations (after a ReLU) fall in its row, so the result is
    padded: ``values (..., k_max)`` and ``indices (..., k_max)`` with ``k_max`` the largest
    count of any token; each row's kept entries come first, then padding with value 0 and index
    0, which ``sparse_decode`` and every gradient treat as absent (the dense code is
    ``zeros(d_sae).scatter_add(-1, indices, values)``: ``scatter`` could let a padding 0
    overwrite a kept latent 0). Finding ``k_max`` reads one number back from the device.
    ``compute_dtype`` and ``columns`` as in ``topk_encode``.
    """
    return _encode(x_ND, W_enc_DF, b_enc_F, b_dec_D, k, True, compute_dtype, columns)


def sparse_decode(
    values_NK: torch.Tensor,
    indices_NK: torch.Tensor,
    W_dec_FD: torch.Tensor,
    b_dec_D: torch.Tensor | None,
) -> torch.Tensor:
    """``(..., d_out)``: ``sum_j values[..., j] * W_dec[indices[..., j]] + b_dec``.

    Takes the codes of ``topk_encode`` or ``batch_topk_encode``. Differentiable in ``values``,
    ``W_dec`` and ``b_dec`` at ``O(N k d_out)`` cost (plus writing the dense ``W_dec``
    gradient); ``b_dec=None`` adds no bias. Computes in ``W_dec``'s dtype (``values`` are cast
    to it): each output is a sum of only ``k`` rows, so float32 master weights cost little here.
    """
    lead = values_NK.shape[:-1]
    if indices_NK.shape != values_NK.shape:
        raise ValueError(f"values {tuple(values_NK.shape)} != indices {tuple(indices_NK.shape)}")
    k = values_NK.shape[-1]
    values_NK = values_NK.to(W_dec_FD.dtype)
    x_hat = _SparseDecode.apply(
        values_NK.reshape(-1, k), indices_NK.reshape(-1, k), W_dec_FD, b_dec_D
    )
    return x_hat.view(*lead, W_dec_FD.shape[1])
