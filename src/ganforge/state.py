"""The full training state, and its round trip through a checkpoint.

A checkpoint holds everything that changes during training: G, D, G_ema, both optimizers, the
counters, the divergence guard's learning-rate scale, the clusters of self-conditioning, and every
random generator (ganforge's own z and data-order generators, plus torch's, CUDA's, NumPy's and
Python's global ones), so a run that resumes from it continues bit for bit as if it had never stopped.
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganforge import __version__, checkpoint
from ganforge.checkpoint import flatten, prefixed, unflatten
from ganforge.config import TrainConfig
from ganforge.models import FAMILIES


class BatchOrder:
    """Shuffled passes over the data set: each pass a fresh permutation, the last partial batch
    dropped. Its whole state (generator, permutation, position) goes into checkpoints."""

    def __init__(self, n: int, seed: int):
        self.n = n
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.generator)
        self.pos = 0

    def next(self, batch_size: int) -> torch.Tensor:
        if self.pos + batch_size > self.n:
            self.perm = torch.randperm(self.n, generator=self.generator)
            self.pos = 0
        self.pos += batch_size
        return self.perm[self.pos - batch_size:self.pos]


@dataclass
class State:
    """Everything that changes during training."""

    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    z_generator: torch.Generator
    order: BatchOrder
    step: int = 0
    nimg: int = 0
    best_fid: float | None = None   # lowest FID of the checks so far (eval_every)
    lr_scale: float = 1.0           # halved at each rollback of the divergence guard
    skipped: int = 0                # steps skipped for a non-finite loss or gradient
    rollbacks: int = 0              # times the guard went back to the last good checkpoint
    bad_streak: int = 0             # consecutive skipped steps up to now
    aug_p: float = 0.0              # augmentation probability (augment=ada adapts it)
    ada_signs: float = 0.0          # sum of sign(D(x)) since ADA's last adjustment
    ada_count: int = 0              # and the number of reals in it
    clusters: torch.Tensor | None = None  # (N,) int64: each image's cluster (self-conditioning)


def new_state(cfg: TrainConfig, model: dict, device: torch.device, n: int) -> State:
    """The state at step 0: weights initialised from the seed, fresh optimizers and generators."""
    family = FAMILIES[cfg.arch]
    torch.manual_seed(cfg.seed)  # weight initialisation
    np.random.seed(cfg.seed)     # the global generators too, so that a run is one function of its seed
    random.seed(cfg.seed)
    G = family.Generator(**model["G"]).to(device)
    D = family.Discriminator(**model["D"]).to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    betas = (cfg.beta1, cfg.beta2)
    # foreach: one call per step for all tensors (on the CPU PyTorch otherwise loops over them in
    # Python); the weights come out bit for bit the same.
    return State(G, D, G_ema,
                 torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=betas, foreach=True),
                 torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=betas, foreach=True),
                 z_generator=torch.Generator().manual_seed(cfg.seed + 1),
                 order=BatchOrder(n, cfg.seed + 2),
                 aug_p=1.0 if cfg.augment == "diffaug" else 0.0)


def non_finite(state: State) -> list[str]:
    """Names of the modules whose weights hold a NaN or an infinity."""
    return [name for name in ("G", "D", "G_ema")
            if not all(torch.isfinite(t).all() for t in getattr(state, name).state_dict().values()
                       if t.is_floating_point())]


def save(state: State, cfg: TrainConfig, model: dict, path: Path) -> None:
    """Write the whole state to a checkpoint file (atomically, with its checksum)."""
    tensors = {**prefixed("G", state.G.state_dict()), **prefixed("D", state.D.state_dict()),
               **prefixed("G_ema", state.G_ema.state_dict()),
               "rng.z": state.z_generator.get_state(), "rng.order": state.order.generator.get_state(),
               "order.perm": state.order.perm, **({} if state.clusters is None else {"clusters": state.clusters})}
    record = dict(step=state.step, nimg=state.nimg, config=cfg.to_dict(), model=model, version=__version__,
                  order_pos=state.order.pos, best_fid=state.best_fid, lr_scale=state.lr_scale,
                  skipped=state.skipped, rollbacks=state.rollbacks, bad_streak=state.bad_streak,
                  aug_p=state.aug_p, ada_signs=state.ada_signs, ada_count=state.ada_count,
                  opt_G=flatten("opt_G", state.opt_G.state_dict(), tensors),
                  opt_D=flatten("opt_D", state.opt_D.state_dict(), tensors),
                  global_rng=_global_rng(tensors))
    checkpoint.save(path, tensors, record)


def restore(state: State, tensors: dict, record: dict) -> None:
    """Load a checkpoint written by `save` into `state` (built by `new_state` with its config)."""
    for name in ("G", "D", "G_ema"):
        checkpoint.load_module(getattr(state, name), name, tensors, record,
                               fix="continue it with that version, or train anew")
    state.opt_G.load_state_dict(unflatten(record["opt_G"], tensors))
    state.opt_D.load_state_dict(unflatten(record["opt_D"], tensors))
    state.z_generator.set_state(tensors["rng.z"])
    state.order.generator.set_state(tensors["rng.order"])
    state.order.perm, state.order.pos = tensors["order.perm"], record["order_pos"]
    state.step, state.nimg = record["step"], record["nimg"]
    state.best_fid = record.get("best_fid")
    state.lr_scale = record.get("lr_scale", 1.0)
    state.skipped, state.rollbacks = record.get("skipped", 0), record.get("rollbacks", 0)
    state.bad_streak = record.get("bad_streak", 0)
    state.aug_p = record.get("aug_p", state.aug_p)
    state.ada_signs, state.ada_count = record.get("ada_signs", 0.0), record.get("ada_count", 0)
    state.clusters = tensors.get("clusters")
    if "global_rng" in record:
        _set_global_rng(tensors, record["global_rng"])


def _global_rng(tensors: dict) -> dict:
    """torch's, CUDA's, NumPy's and Python's global generators: tensors into `tensors`, the rest
    returned as JSON. ganforge draws from its own generators; these are kept so that code which
    draws from the global ones (a user's model, an augmentation) resumes exactly too."""
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, python_state, python_gauss = random.getstate()
    return dict(numpy=[kind, pos, has_gauss, gauss], python=[version, list(python_state), python_gauss])


def _set_global_rng(tensors: dict, record: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(sum(k.startswith("rng.cuda.") for k in tensors))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, gauss = record["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, python_state, python_gauss = record["python"]
    random.setstate((version, tuple(python_state), python_gauss))
