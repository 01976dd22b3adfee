"""Train a sparse dictionary on a stream of activations.

1. Build the dictionary (seeded, so every data-parallel rank starts identical), or restore it,
   the optimiser, the objective's counters, the source's position and the RNG states from the
   checkpoint when resuming.
2. On a fresh run, estimate the input scale that gives mean squared norm ``d_in`` (Anthropic,
   April 2024 update) from a first batch, and let the objective initialise from it (``b_dec`` at
   the geometric median, Gao et al. 2024).
3. Each step: take this rank's rows of the batch, scale, compute the objective's loss,
   backpropagate, average gradients over ranks, clip, apply the objective's gradient surgery,
   step Adam at the scheduled learning rate, re-project, update the dead-latent counters.
4. Every ``checkpoint_every`` steps write a resumable checkpoint, atomically.
5. At the end fold the input scale back into the weights and save the dictionary with its
   training settings; the saved dictionary takes unscaled activations.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..base import Dictionary, DictionaryConfig, architecture_class
from ..files import atomic_path
from .config import TrainConfig, TrainConfigError
from .objective import OBJECTIVES, Objective, all_reduce_
from .sources import ActivationSource

__all__ = ["train_dictionary", "CHECKPOINT_FILE", "RunFolderError"]

CHECKPOINT_FILE = "checkpoint.pt"
RUN_FILE = "run.json"


class RunFolderError(ValueError):
    """An output folder that holds something else than what this run would write."""


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _new_dictionary(config: TrainConfig, source: ActivationSource, meta: dict[str, Any]):
    transcoder = meta.get("writes") is not None
    torch.manual_seed(config.seed)
    dictionary_config = DictionaryConfig(
        arch=config.arch,
        d_in=source.d_in,
        d_sae=config.d_sae,
        d_out=source.d_out,
        k=config.k,
        center_input=not transcoder,
        skip=bool(meta.get("skip", False)),
        place=meta.get("place"),
        writes=meta.get("writes"),
        model=meta.get("model"),
    )
    return architecture_class(config.arch)(dictionary_config)


def _gather(batch_ND: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, in rank order (the whole global batch); itself in one process."""
    world = _world()[1]
    if world == 1:
        return batch_ND
    parts = [torch.empty_like(batch_ND) for _ in range(world)]
    dist.all_gather(parts, batch_ND.contiguous())
    return torch.cat(parts)


def _scale_for(batch_ND: torch.Tensor) -> torch.Tensor:
    """Factor that brings the mean squared norm to ``d``."""
    mean_sq = batch_ND.float().pow(2).sum(-1).mean()
    return (batch_ND.shape[-1] / mean_sq.clamp_min(1e-12)).sqrt()


def fold_scales(dictionary: Dictionary, in_scale: float, out_scale: float) -> Dictionary:
    """A copy that takes unscaled inputs: trained on ``x * in_scale -> y * out_scale``.

    pre = (x s - b) W + c = (x - b/s)(s W) + c, and y = (f W_dec + b_dec + x s W_skip) / t.
    """
    folded = copy.deepcopy(dictionary)
    with torch.no_grad():
        folded.W_enc.mul_(in_scale)
        folded.W_dec.div_(out_scale)
        folded.b_dec.div_(out_scale)
        if folded.W_skip is not None:
            folded.W_skip.mul_(in_scale / out_scale)
    return folded


def _prepare_run_folder(
    out_dir: Path, config: TrainConfig, meta: dict, resume: bool, overwrite: bool
):
    """Refuse a folder holding another run (unless resuming it or overwriting); record this
    run. Rank 0 decides and every rank raises the same error."""
    rank, world = _world()
    problem = ""
    if rank == 0:
        run = {"train": config.to_json(), **meta}
        record = out_dir / RUN_FILE
        if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
            if not resume:
                problem = (
                    f"{out_dir}: already holds files; pass --resume to continue that run or "
                    "--overwrite to replace it"
                )
            elif record.is_file() and json.loads(record.read_text()) != run:
                problem = (
                    f"{out_dir}: holds a different run ({record} differs from these settings); "
                    "pass --overwrite to replace it"
                )
        if not problem:
            if overwrite:
                for name in (
                    RUN_FILE,
                    CHECKPOINT_FILE,
                    Dictionary.CONFIG_FILE,
                    Dictionary.WEIGHTS_FILE,
                ):
                    (out_dir / name).unlink(missing_ok=True)
            out_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(record) as tmp:
                tmp.write_text(json.dumps(run, indent=2, sort_keys=True))
    if world > 1:
        shared = [problem]
        dist.broadcast_object_list(shared, src=0)
        problem = shared[0]
    if problem:
        raise RunFolderError(problem)


def train_dictionary(
    source: ActivationSource,
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    place: str | None = None,
    writes: str | None = None,
    skip: bool = False,
    model: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Dictionary:
    """Train a dictionary of ``config.arch`` on ``source`` and return it (unscaled).

    ``place``/``writes``/``model`` are recorded in the dictionary's config; ``writes`` makes a
    transcoder (``skip`` adds its linear skip connection). With ``out_dir`` the run checkpoints
    there and the final dictionary is saved there; ``resume`` continues from its checkpoint.
    """
    rank, world = _world()
    if config.batch_size % world:
        raise TrainConfigError(f"--batch-size {config.batch_size} must divide by {world} ranks")
    meta = {"place": place, "writes": writes, "skip": skip, "model": model}
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None:
        _prepare_run_folder(out_dir, config, meta, resume, overwrite)
    dictionary = _new_dictionary(config, source, meta)
    dictionary.train()
    objective: Objective = OBJECTIVES[config.arch](dictionary, config)
    optimizer = torch.optim.Adam(objective.parameters(), lr=config.peak_lr, betas=(0.9, 0.999))
    checkpoint = out_dir / CHECKPOINT_FILE if out_dir is not None else None
    if resume and checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)
        dictionary.load_state_dict(state["dictionary"])
        optimizer.load_state_dict(state["optimizer"])
        objective.load_state_dict(state["objective"])
        source.load_state_dict(state["source"])
        torch.set_rng_state(state["rng"])
        start, in_scale, out_scale = state["step"], state["in_scale"], state["out_scale"]
        history = state["history"]
    else:
        x, y = source.next_batch(config.batch_size)
        x, y = _gather(x), (None if y is x else _gather(y))
        y = x if y is None else y
        in_scale = _scale_for(x) if config.normalize_inputs else torch.tensor(1.0)
        out_scale = in_scale if y is x else (_scale_for(y) if config.normalize_inputs else 1.0)
        out_scale = torch.as_tensor(out_scale)
        objective.initialize(x * in_scale, y * out_scale)
        start, history = 0, []

    def save_checkpoint(step: int) -> None:
        if checkpoint is None or rank != 0:
            return
        state = {
            "step": step,
            "dictionary": dictionary.state_dict(),
            "optimizer": optimizer.state_dict(),
            "objective": objective.state_dict(),
            "source": source.state_dict(),
            "rng": torch.get_rng_state(),
            "in_scale": in_scale,
            "out_scale": out_scale,
            "history": history,
        }
        with atomic_path(checkpoint) as tmp:
            torch.save(state, tmp)

    local_batch = config.batch_size // world
    bar = tqdm(
        range(start, config.steps),
        initial=start,
        total=config.steps,
        desc=f"train {config.arch}",
        disable=not progress or rank != 0,
    )
    started = time.perf_counter()
    for step in bar:
        x_raw, y_raw = source.next_batch(config.batch_size)
        x = x_raw.to(dictionary.device, dictionary.dtype) * in_scale
        y = x if y_raw is x_raw else y_raw.to(x) * out_scale
        out = objective.loss(x, y, step)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if world > 1:
            for param in objective.parameters():
                if param.grad is not None:
                    all_reduce_(param.grad).div_(world)
        torch.nn.utils.clip_grad_norm_(objective.parameters(), config.grad_clip)
        objective.before_optimizer_step()
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        optimizer.step()
        objective.after_optimizer_step()
        objective.record_firing(out.fired, local_batch)
        if step % config.log_every == 0 or step == config.steps - 1:
            entry = {
                "step": step,
                "loss": out.loss.item(),
                "mse": out.mse.item(),
                "l0": out.l0.item(),
                "dead_fraction": objective.dead_mask.float().mean().item(),
                "lr": config.lr_at(step),
            }
            history.append(entry)
            bar.set_postfix(
                loss=f"{entry['loss']:.3g}",
                l0=f"{entry['l0']:.1f}",
                dead=f"{entry['dead_fraction']:.1%}",
            )
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
            save_checkpoint(step + 1)
    bar.close()
    elapsed = time.perf_counter() - started

    final = fold_scales(dictionary, float(in_scale), float(out_scale)).eval()
    final.config.training = {
        **config.to_json(),
        "input_scale": float(in_scale),
        "output_scale": float(out_scale),
        "tokens": config.steps * config.batch_size,
        "data_parallel_ranks": world,
        "seconds": round(elapsed, 1),
        "history": history[-5:],
    }
    if out_dir is not None and rank == 0:
        final.save(out_dir)
        save_checkpoint(config.steps)
    return final
