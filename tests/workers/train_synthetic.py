"""Train a TopK SAE (or ``--arch``) on synthetic activations; run directly, or under torchrun
for data parallel.

python tests/workers/train_synthetic.py OUT [--resume] [--steps N] [--checkpoint-every N]
    [--arch topk|...] [--precision auto|float32|bfloat16]
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sparse_circuits.dictionaries.training import TensorSource, TrainConfig, train_dictionary  # noqa: E402
from sparse_circuits.distributed import init_distributed  # noqa: E402
from tests.synthetic import synthetic_activations  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--arch", default="topk")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank, world = init_distributed("cpu")
    x, _ = synthetic_activations(n=4096, d=32, n_true=64)
    source = TensorSource(x, seed=1, rank=rank, world=world)
    config = TrainConfig(
        arch=args.arch,
        d_sae=128,
        k=4,
        steps=args.steps,
        batch_size=256,
        warmup_steps=5,
        checkpoint_every=args.checkpoint_every,
        dead_after_tokens=2048,
        precision=args.precision,
    )
    train_dictionary(source, config, out_dir=args.out, resume=args.resume, progress=False)


if __name__ == "__main__":
    main()
