"""Training throughput of a TopK SAE step, against the encoder product it cannot avoid.

Prints   tokens/s(one full TopK training step) / tokens/s(x @ W_enc),
for the step built on ``dictionaries.training.sparse_ops`` (``topk_encode`` + ``sparse_decode``
+ MSE + backward + an Adam step on W_enc, b_enc, W_dec, b_dec) and, so the gain shows, for a
naive step with dense autograd (``TopKSAE``: dense top-k mask, dense decode). The floor is the
bare encoder product ``x @ W_enc`` of the same shapes: every step must score all ``d_sae``
latents of every token, so a ratio of 1.0 means the rest of the step is free. Medians over
interleaved repeats, after a warm-up, in one run. Goal: at least 0.6 for the sparse step on
the CPU at d_in 576, d_sae 16384, k 32, batch 4096, float32.

Run it on an otherwise idle machine: when another process takes one of the cores, each of
the step's many short multi-threaded ops waits for its descheduled thread, and the ratio
falls far more than the floor's single long product does (0.24 seen instead of 0.85).

    python benchmarks/train_throughput.py [--d-in 576 --d-sae 16384 --k 32 --batch 4096]
        [--dtype float32|bfloat16] [--repeats 5] [--no-naive] [--profile]
"""

from __future__ import annotations

import argparse

import torch
from timing import interleaved_seconds, medians

from sparse_circuits.dictionaries import TopKSAE
from sparse_circuits.dictionaries.training.sparse_ops import sparse_decode, topk_encode


def sparse_topk_step(
    x_ND: torch.Tensor, sae: TopKSAE, optimizer: torch.optim.Optimizer
) -> torch.Tensor:
    """One training step on the sparse ops: encode, decode, MSE, backward, Adam. Returns loss."""
    b_dec = sae.b_dec if sae.config.center_input else None
    values_NK, indices_NK = topk_encode(x_ND, sae.W_enc, sae.b_enc, b_dec, sae.config.k)
    x_hat_ND = sparse_decode(values_NK, indices_NK, sae.W_dec, sae.b_dec)
    loss = torch.nn.functional.mse_loss(x_hat_ND, x_ND)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def naive_topk_step(
    x_ND: torch.Tensor, sae: TopKSAE, optimizer: torch.optim.Optimizer
) -> torch.Tensor:
    """The same step through dense autograd: ``TopKSAE.forward`` (dense mask, dense decode)."""
    x_hat_ND, _ = sae(x_ND)
    loss = torch.nn.functional.mse_loss(x_hat_ND, x_ND)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def make_optimizer(sae: TopKSAE) -> torch.optim.Optimizer:
    # fused: one kernel over all parameters (CPU and CUDA); the same for both steps.
    return torch.optim.Adam(sae.parameters(), lr=1e-4, fused=True)


def profile_step(step, x_ND, sae, optimizer) -> None:
    """Where the time of one step goes, by operator (``torch.profiler``)."""
    from torch.profiler import ProfilerActivity, profile

    step(x_ND, sae, optimizer)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(x_ND, sae, optimizer)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=576)
    parser.add_argument("--d-sae", type=int, default=16384)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4096, help="tokens per step")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each (>= 5)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-naive", action="store_true", help="skip the dense-autograd step")
    parser.add_argument("--profile", action="store_true", help="print a profile of one step")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    x_ND = torch.randn(args.batch, args.d_in, device=device, dtype=dtype)

    def new_sae() -> TopKSAE:
        return TopKSAE.create(args.d_in, args.d_sae, k=args.k).to(device=device, dtype=dtype)

    sparse_sae = new_sae()
    sparse_opt = make_optimizer(sparse_sae)
    W_enc_DF = sparse_sae.W_enc.detach()
    runs = {
        "floor": lambda: x_ND @ W_enc_DF,
        "sparse": lambda: sparse_topk_step(x_ND, sparse_sae, sparse_opt),
    }
    if not args.no_naive:
        naive_sae = new_sae()
        naive_opt = make_optimizer(naive_sae)
        runs["naive"] = lambda: naive_topk_step(x_ND, naive_sae, naive_opt)

    if args.profile:
        profile_step(sparse_topk_step, x_ND, sparse_sae, sparse_opt)

    times = interleaved_seconds(runs, repeats=args.repeats, warmup=args.warmup, device=device)
    tokens_per_s = {name: args.batch / median for name, median in medians(times).items()}
    print(
        f"d_in {args.d_in}, d_sae {args.d_sae}, k {args.k}, batch {args.batch}, "
        f"{args.dtype}, {device}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats} interleaved repeats"
    )
    for name, rate in tokens_per_s.items():
        spread = ", ".join(f"{t * 1e3:.0f}" for t in sorted(times[name]))
        print(f"  {name:7s} {rate:10.0f} tokens/s   (ms: {spread})")
    for name in runs:
        if name != "floor":
            ratio = tokens_per_s[name] / tokens_per_s["floor"]
            print(f"ratio {name}: {ratio:.3f}  (tokens/s of the step / tokens/s of x @ W_enc)")


if __name__ == "__main__":
    main()
