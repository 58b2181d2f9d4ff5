"""The training loop: alternating D and G updates, G_ema, logs, sample grids and checkpoints.

One step = one D update on a real and a fake batch, then one G update on the same fakes (as the
classic DCGAN example does: G runs forward once per step). Every random draw comes from a
generator that is saved in each checkpoint, so a resumed run continues exactly where it stopped.

The divergence guard: an update whose loss or gradients are not finite is skipped and counted;
`nan_patience` skips in a row send the run back to its newest checkpoint with halved learning
rates, at most MAX_ROLLBACKS times; weights that are not finite are never checkpointed.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ganforge import __version__, checkpoint, clusters, dist
from ganforge import state as state_io
from ganforge.augment import ADA_INTERVAL, adjust_p, diff_augment
from ganforge.checkpoint import atomic_write
from ganforge.config import TrainConfig, resolve, with_data_defaults
from ganforge.data import Dataset, load_source, to_model_space
from ganforge.diagnostics import Diagnostics, real_diversity
from ganforge.ema import ema_beta, refresh_batchnorm, update_ema
from ganforge.errors import UserError
from ganforge.logs import RunLog, is_terminal
from ganforge.losses import LOSSES, gradient_penalty, r1_penalty
from ganforge.models import CONDITIONAL_FAMILIES, FAMILIES, default_family
from ganforge.monitor import GRID_SIZE, SCATTER_SIZE, fid_judge, save_compare, save_samples
from ganforge.runs import (
    existing_run,
    new_run_dir,
    open_run,
    resumed_config,
    truncate_log,
)
from ganforge.runtime import Runtime, eager
from ganforge.sample import latents, pick_device
from ganforge.state import State

MAX_ROLLBACKS = 3     # the divergence guard gives up after this many

log = logging.getLogger(__name__)


class Diverged(Exception):
    """Training produced non-finite numbers that skipping steps did not cure."""

    def __init__(self, step: int, why: str):
        super().__init__(f"step {step}: {why}")
        self.step, self.why = step, why


@dataclass(frozen=True)
class Run:
    """Where and how a run trains (fixed for its whole life in this process)."""

    run_dir: Path
    model: dict            # {"arch": ..., "G": kwargs, "D": kwargs}
    device: torch.device
    ranks: dist.Dist
    rt: Runtime
    progress: bool


def train(user: dict | None = None, resume: str | Path | None = None, progress: bool = True) -> Path:
    """Train with the user's settings (a dict of TrainConfig fields), or continue a run: `resume`
    is a run folder (its newest checkpoint) or one of its checkpoint files. Naming an existing run
    folder (out/name) continues it too. Under torchrun, every process calls this. Returns the run folder."""
    user = dict(user or {})
    ranks, device_name = dist.init(str(user.get("device", "auto")))
    try:
        return _train(user, resume, progress, ranks, device_name)
    finally:
        dist.close(ranks)


def pack_images(img: torch.Tensor, pack: int) -> torch.Tensor:
    """PacGAN (Lin et al. 2018): each run of `pack` images stacked along the channels, so that D
    judges them together. (B, C, H, W) -> (B / pack, pack * C, H, W); images i*pack ... i*pack +
    pack - 1 make item i."""
    return img if pack == 1 else img.reshape(len(img) // pack, pack * img.shape[1], *img.shape[2:])


def _note_changed_runtime(saved: dict, device: torch.device) -> None:
    """Say when a resumed run continues under another PyTorch or CPU thread count than it started
    with: it trains on, but its weights will differ from those of a run that never stopped."""
    then = {"PyTorch": saved.get("torch"), "CPU threads": saved.get("cpu_threads")}  # absent in older runs
    now = {"PyTorch": torch.__version__, "CPU threads": torch.get_num_threads() if device.type == "cpu" else None}
    changed = [f"{key} {then[key]} -> {now[key]}" for key in then if None not in (then[key], now[key])
               and then[key] != now[key]]
    if changed:
        print(f"note: this run started with other software or threads ({', '.join(changed)}); it continues, "
              "but its weights will not match those of a run that never stopped")


def _train(user: dict, resume, progress: bool, ranks: dist.Dist, device_name: str) -> Path:
    started = ranks.broadcast_float(time.time())  # names a new run folder alike on every rank
    resume = resume if resume is not None else existing_run(user)
    if resume is not None:
        run_dir, tensors, record, saved = open_run(Path(resume))
        cfg = resumed_config(saved["config"], user)
        data = load_source(cfg.data, cfg.resolution, cfg.channels, cfg.data_root)
        model = saved["model"]
    else:
        resolve(user, user.get("arch") or "dcgan")  # validate before the data is loaded
        data = load_source(user.get("data", TrainConfig.data), user.get("resolution", TrainConfig.resolution),
                           user.get("channels"), user.get("data_root", TrainConfig.data_root))
        cfg = with_data_defaults(resolve(user, user.get("arch") or default_family(data.kind)), data)
        run_dir = new_run_dir(cfg, started)
        tensors, record, model = None, None, None

    family = FAMILIES[cfg.arch]
    if family.kind != data.kind:
        raise UserError(f"arch '{cfg.arch}' models {family.kind} data but '{cfg.data}' holds {data.kind}s: "
                        f"drop arch= or use arch={default_family(data.kind)}")
    if cfg.batch_size > len(data):
        raise UserError(f"batch_size {cfg.batch_size} is larger than the data set ({len(data)} items): lower it")
    if cfg.conditional and (data.labels is None or cfg.arch not in CONDITIONAL_FAMILIES):
        raise UserError(f"conditional=1 needs labelled images and the dcgan or resnet family; '{cfg.data}' has "
                        f"{'no labels' if data.labels is None else data.kind + 's'}: use mnist5k, digits, a folder "
                        "with one sub-folder per class, or a prepared file with labels")
    if cfg.clusters > len(data):
        raise UserError(f"clusters={cfg.clusters} is more than the data set's {len(data)} images: lower it")
    if cfg.batch_size % ranks.world:
        raise UserError(f"batch_size {cfg.batch_size} is the global batch and must divide by the {ranks.world} processes")
    if cfg.pack > 1 and (cfg.conditional or cfg.batch_size // ranks.world % cfg.pack):
        raise UserError(f"pack={cfg.pack} needs an unconditional run (conditional=0) and a batch per process "
                        f"({cfg.batch_size // ranks.world}) that is a multiple of it")
    device = pick_device(device_name if ranks.world > 1 else cfg.device)
    run = Run(run_dir, model or dict(zip(("G", "D"), family.model_args(cfg, data)), arch=cfg.arch), device, ranks,
              Runtime(cfg.precision, cfg.channels_last, cfg.compile, cfg.tf32, device), progress)
    state = _new_state(cfg, run, len(data))
    if record:
        state_io.restore(state, tensors, record)
        if state.step >= cfg.steps:
            raise UserError(f"{run_dir} is already at step {state.step}: pass --steps N with N > {state.step}")
    ranks.barrier()  # every rank has read the run folder before rank 0 changes it
    if ranks.main and resume is not None:
        checkpoint.remove_temporaries(run_dir)
        truncate_log(run_dir / "log.jsonl", state.step)
    elif ranks.main:
        # Besides the seed and settings, the same weights need the same PyTorch and, on the CPU, the
        # same number of threads (its kernels split their sums by thread).
        atomic_write(run_dir / "config.json", json.dumps(
            {"config": cfg.to_dict(), "model": run.model, "data": data.info, "version": __version__,
             "torch": torch.__version__, "cpu_threads": torch.get_num_threads()}, indent=2).encode())

    if ranks.main:
        print(f"ganforge {__version__}: {'resuming' if resume is not None else 'training'} {run_dir} on {device}"
              f"{f' x {ranks.world} processes' if ranks.world > 1 else ''} from step {state.step} to {cfg.steps}")
        print("config: " + " ".join(f"{k}={v}" for k, v in cfg.to_dict().items()))
        if resume is not None:
            _note_changed_runtime(saved, device)
        if cfg.conditional and "conditional" not in user and resume is None:
            print(f"class-conditional on the data's {len(data.class_names)} classes (conditional=0 trains one "
                  "model of them all); sample a class with --class K")
    while True:
        try:
            _loop(cfg, data, state, run)
            break
        except Diverged as err:
            state = _roll_back(cfg, run, len(data), state, err)
    if ranks.main:
        print(f"run folder: {run_dir}" + (f" ({state.skipped} non-finite steps skipped, {state.rollbacks} rollbacks)"
                                          if state.skipped else ""))
    return run_dir


def _new_state(cfg: TrainConfig, run: Run, n: int) -> State:
    state = state_io.new_state(cfg, run.model, run.device, n)
    images = FAMILIES[cfg.arch].kind == "image"
    run.rt.prepare(state.G, images)
    run.rt.prepare(state.D, images)
    return state


def _loop(cfg: TrainConfig, data: Dataset, state: State, run: Run) -> None:
    G, D, G_ema, opt_G, opt_D = state.G, state.D, state.G_ema, state.opt_G, state.opt_D
    rt, ranks, device = run.rt, run.ranks, run.device
    objective = LOSSES[cfg.loss]

    def judged(img: torch.Tensor) -> torch.Tensor:  # what D sees of a batch, real or fake
        return pack_images(diff_augment(img, state.aug_p, state.z_generator) if cfg.augment != "none" else img,
                           cfg.pack)

    def to_input(img: torch.Tensor) -> torch.Tensor:  # uint8 images -> G's and D's space, on the device
        return rt.batch(to_model_space(img.to(device, non_blocking=True)))

    # The data set on the device, decoded; a memory-mapped one stays on disk and is read per batch.
    pool = data.data if data.info.get("memory_mapped") else data.data.to(device)
    labels = data.labels.to(device) if cfg.conditional else None
    n_classes = len(data.class_names)
    # Self-conditioning: the clusters' shares, on the CPU for the fakes' draws (changed only by _recluster).
    cluster_prior = G.class_prior.cpu() if cfg.clusters else None
    fixed_z = latents(GRID_SIZE if data.kind == "image" else SCATTER_SIZE, cfg.z_dim, cfg.seed).to(device)
    judge = fid_judge(cfg, data, device) if cfg.eval_every and data.kind == "image" and ranks.main else None
    # Warnings with their fix (ganforge.diagnostics), from the log entries and the sample grids alone.
    diagnose = (Diagnostics(cfg.loss, real_diversity(data, len(fixed_z), cfg.seed), state.skipped)
                if cfg.diagnostics and ranks.main else None)
    sums = torch.zeros(5, device=device)     # loss_D, loss_G, D(x), D(G(z)), steps: finite steps since the last log
    tick, tick_nimg, waited = time.perf_counter(), state.nimg, 0.0
    # A bar on a terminal; otherwise (a log file, a batch job) a summary line per log interval.
    bar = tqdm(total=cfg.steps, initial=state.step, unit="step", disable=not (run.progress and ranks.main and is_terminal()),
               dynamic_ncols=True, file=sys.stderr)
    logs = RunLog(run.run_dir, state.step, cfg.steps, ranks.main, cfg.tensorboard,
                  summary_lines=run.progress and not is_terminal())
    try:
        while state.step < cfg.steps:
            scale = state.lr_scale * (_decay(state.step, cfg.steps, cfg.lr_decay_start)
                                      if cfg.lr_decay == "linear" else 1.0)
            _set_lr(opt_G, cfg.lr_g * scale)
            _set_lr(opt_D, cfg.lr_d * scale)
            # Every rank draws the global batch and keeps its own slice (see ganforge.dist).
            began = time.perf_counter()
            index = ranks.shard(state.order.next(cfg.batch_size))
            real = to_input(pool[index.to(pool.device)])
            waited += time.perf_counter() - began
            if cfg.clusters and (state.clusters is None or state.step % cfg.recluster_every == 0):
                cluster_prior = _recluster(cfg, state, pool, to_input, rt, logs)
            z = ranks.shard(torch.randn(cfg.batch_size, cfg.z_dim, generator=state.z_generator)).to(device)
            # Labels, for a conditional run: the real images' own, and uniform draws for the fakes;
            # self-conditioned: the real images' clusters, and draws in proportion to the clusters' sizes.
            real_c, fake_c = (), ()
            if labels is not None:
                real_c = (labels[index.to(device)],)
                fake_c = (ranks.shard(torch.randint(n_classes, (cfg.batch_size,), generator=state.z_generator)).to(device),)
            elif cfg.clusters:
                real_c = (state.clusters[index].to(device),)
                fake_c = (ranks.shard(torch.multinomial(cluster_prior, cfg.batch_size, replacement=True,
                                                        generator=state.z_generator)).to(device),)
            with rt.autocast():
                fake = G(z, *fake_c)

            # Lazy R1 and R2 (StyleGAN2): every r1_every steps, weighted by r1_every, for the same mean push.
            lazy = state.step % cfg.r1_every == 0
            r1, r2 = lazy and cfg.r1_gamma > 0, lazy and cfg.r2_gamma > 0
            fake_in = fake.detach().requires_grad_(r2)
            real.requires_grad_(r1)
            with rt.autocast():
                real_logits = (eager(D) if r1 else D)(judged(real), *real_c).float()
                fake_logits = (eager(D) if r2 else D)(judged(fake_in), *fake_c).float()
                loss_D = objective.d(real_logits, fake_logits)
                penalty = torch.zeros((), device=device)
                # The MLP's D standardises its input: R1 and R2 are measured per unit of the data's std.
                # They are per input of D: a pack's squared gradient norm is the sum of its images'.
                std, weight = getattr(D, "std", 1.0), cfg.r1_every * cfg.pack / 2
                if r1:
                    penalty = penalty + cfg.r1_gamma * weight * r1_penalty(real, real_logits, std, rt.grad_scale())
                if r2:
                    penalty = penalty + cfg.r2_gamma * weight * r1_penalty(fake_in, fake_logits, std, rt.grad_scale())
                if cfg.gp_lambda > 0:
                    # WGAN-GP: the penalty at random points between each real and its paired fake.
                    u = torch.rand((len(real),) + (1,) * (real.dim() - 1), generator=state.z_generator).to(device)
                    mixed = torch.lerp(real.detach(), fake.detach(), u).requires_grad_(True)
                    penalty = penalty + cfg.gp_lambda * gradient_penalty(mixed, eager(D)(mixed, *real_c).float(),
                                                                         rt.grad_scale())
            opt_D.zero_grad(set_to_none=True)
            rt.backward(loss_D + penalty)
            # Under fp16 an overflowed penalty is the scaler's to skip; only the loss itself is judged.
            finite_D = _update(loss_D if rt.scaler else loss_D + penalty, D, opt_D, run)

            D.requires_grad_(False)  # G's update needs gradients through D, not for D's weights
            with rt.autocast():
                # RpGAN's G pairs each fake with a real: their logits from D's pass above, as constants.
                loss_G = objective.g(D(judged(fake), *fake_c).float(), real_logits.detach())
            opt_G.zero_grad(set_to_none=True)
            rt.backward(loss_G)
            finite_G = _update(loss_G, G, opt_G, run)
            D.requires_grad_(True)
            rt.update()

            if finite_D and finite_G:
                if cfg.augment == "ada":
                    _adapt(state, real_logits, cfg.batch_size, ranks)
                state.bad_streak = 0
                with torch.no_grad():
                    sums += torch.stack([loss_D, loss_G, real_logits.sigmoid().mean(),
                                         fake_logits.sigmoid().mean(), torch.ones((), device=device)])
            else:
                state.skipped += 1
                state.bad_streak += 1
                if state.bad_streak >= cfg.nan_patience:
                    raise Diverged(state.step + 1, f"{state.bad_streak} steps in a row with a non-finite "
                                               f"{'loss or gradient of D' if not finite_D else 'loss or gradient of G'}")
            state.step += 1
            state.nimg += cfg.batch_size
            update_ema(G_ema, G, ema_beta(state.nimg, cfg.batch_size, cfg.ema_kimg, cfg.ema_rampup))
            bar.update(1)
            last = state.step == cfg.steps

            if state.step % cfg.log_every == 0 or last:
                now = time.perf_counter()
                total = ranks.mean(sums)
                means = (total[:4] / total[4].clamp(min=1)).tolist()
                entry = dict(step=state.step, nimg=state.nimg, loss_D=means[0], loss_G=means[1],
                             D_real=means[2], D_fake=means[3], img_per_s=(state.nimg - tick_nimg) / (now - tick),
                             data_share=waited / (now - tick), skipped=state.skipped, aug_p=state.aug_p,
                             time=time.time())
                logs.scalars(entry)
                for found in diagnose.entry(entry) if diagnose else ():
                    logs.warning(found)
                bar.set_postfix(loss_D=f"{means[0]:.3f}", loss_G=f"{means[1]:.3f}",
                                img_s=f"{entry['img_per_s']:.0f}", refresh=False)
                sums.zero_()
                tick, tick_nimg, waited = now, state.nimg, 0.0
            sample_now = state.step % cfg.sample_every == 0 or last
            save_now = state.step % cfg.checkpoint_every == 0 or last
            eval_now = cfg.eval_every and data.kind == "image" and (state.step % cfg.eval_every == 0 or last)
            if sample_now or save_now or eval_now:
                refresh_batchnorm(G_ema, cfg.z_dim)  # once for all: it depends only on G_ema's weights
            if eval_now and judge is not None:
                fid = judge(G_ema)
                logs.fid(state.step, state.nimg, fid)
                if math.isfinite(fid) and (state.best_fid is None or fid < state.best_fid):
                    state.best_fid = fid
                    _save_checkpoint(state, cfg, run, best=True)
            if sample_now and ranks.main:
                shown = save_samples(G_ema, fixed_z, data, run.run_dir / "samples" / f"step-{state.step:07d}.png",
                                     state, cfg, logs)
                for found in diagnose.samples(state.step, shown) if diagnose else ():
                    logs.warning(found)
            if save_now:
                _save_checkpoint(state, cfg, run)
    finally:
        logs.close()
        bar.close()
    if ranks.main:
        save_compare(G_ema, fixed_z, data, run.run_dir / "compare.png", cfg.seed)


def _recluster(cfg: TrainConfig, state: State, pool: torch.Tensor, to_input, rt: Runtime,
               logs: RunLog) -> torch.Tensor:
    """Self-conditioning: cluster the data set in D's features (ganforge.clusters) and set G's and
    G_ema's prior to the clusters' sizes, which it returns (K,) on the CPU. Every process clusters
    alike: the same D, the same draws."""
    began = time.perf_counter()
    feats = clusters.features(state.D, pool, to_input, rt.autocast)
    generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + state.step)  # a function of the step, for resume
    old = state.clusters
    state.clusters = clusters.cluster(feats, cfg.clusters, old, generator)
    prior = clusters.sizes(state.clusters, cfg.clusters)
    for G in (state.G, state.G_ema):
        G.class_prior.copy_(prior)
    moved = None if old is None else (state.clusters != old).float().mean().item()
    seconds = time.perf_counter() - began
    logs.event(dict(step=state.step, nimg=state.nimg, event="clusters", clusters=cfg.clusters,
                    cluster_min=prior.min().item(), cluster_max=prior.max().item(), cluster_moved=moved,
                    seconds=seconds),
               f"step {state.step}: {cfg.clusters} clusters of D's features, {100 * prior.min():.2f}%-"
               f"{100 * prior.max():.2f}% of the images each"
               + ("" if moved is None else f"; {100 * moved:.1f}% of the images changed cluster") + f" ({seconds:.0f} s)")
    return prior


def _update(loss: torch.Tensor, module: torch.nn.Module, optimizer: torch.optim.Optimizer, run: Run) -> bool:
    """Average the gradients over the ranks, then apply them if they (and the loss) are finite.
    Under fp16 the GradScaler judges the gradients (it skips overflowed steps by design), so
    only the loss counts. Returns whether the update was finite."""
    loss = run.ranks.average_gradients(module, loss.detach())
    run.rt.unscale(optimizer)
    finite = _finite(loss, None if run.rt.scaler else module)
    if finite:  # the divergence guard: a non-finite update is skipped, not applied
        run.rt.step(optimizer)
    return finite


def _adapt(state: State, real_logits: torch.Tensor, batch_size: int, ranks: dist.Dist) -> None:
    """ADA: gather sign(D(x)) over the reals, and every ADA_INTERVAL steps move the augmentation
    probability towards E[sign(D(x))] = ADA_TARGET."""
    signs = ranks.mean(real_logits.detach().sign().mean().reshape(1)).item()
    state.ada_signs += signs * batch_size
    state.ada_count += batch_size
    if (state.step + 1) % ADA_INTERVAL == 0:
        state.aug_p = adjust_p(state.aug_p, state.ada_signs / state.ada_count, state.ada_count)
        state.ada_signs, state.ada_count = 0.0, 0


def _decay(step: int, steps: int, start: float) -> float:
    """Learning-rate factor: 1 until `start` * steps, then falling linearly to 0 at `steps`."""
    return min(1.0, (steps - step) / (steps * (1 - start)))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _finite(loss: torch.Tensor, module: torch.nn.Module | None) -> bool:
    """Whether a loss and the gradients it left in `module` are all finite (one device sync).
    A sum of finite gradients so large that it overflows counts as non-finite too."""
    grads = [p.grad.sum().reshape(1) for p in module.parameters() if p.grad is not None] if module else []
    return bool(torch.isfinite(torch.cat([loss.detach().float().reshape(1), *grads]).sum()))


def _save_checkpoint(state: State, cfg: TrainConfig, run: Run, best: bool = False) -> None:
    """Write the state as the step's checkpoint (or as the best one), from rank 0 once every rank
    agrees on the weights. Weights that are not finite are never written: that is a divergence.
    A failed write leaves the previous checkpoints intact."""
    bad = state_io.non_finite(state)
    if bad:
        raise Diverged(state.step, f"non-finite weights in {', '.join(bad)}")
    if not best:  # the best checkpoint is written by rank 0 alone, so no collective call there
        run.ranks.check_in_sync(state.G, state.D, state.G_ema)
    if run.ranks.main:
        run_dir = run.run_dir
        path = checkpoint.best_path(run_dir) if best else checkpoint.path_for(run_dir, state.step)
        try:
            state_io.save(state, cfg, run.model, path)
        except OSError as err:
            kept = checkpoint.checkpoints(run_dir)
            intact = f"the last checkpoint, {kept[-1]}, is intact" if kept else "no checkpoint was written yet"
            reason = os.strerror(err.errno) if err.errno else str(err)
            raise OSError(err.errno, f"could not write {path} ({reason}); {intact}: free space or "
                                     f"fix the folder's permissions, then continue with --resume {run_dir}") from err
        checkpoint.prune(run_dir, cfg.keep)


def _roll_back(cfg: TrainConfig, run: Run, n: int, state: State, err: Diverged) -> State:
    """The divergence guard's second line: back to the newest checkpoint (or to step 0), with the
    learning rates halved. Gives up, with the run's checkpoints intact, after MAX_ROLLBACKS."""
    run_dir = run.run_dir
    if state.rollbacks >= MAX_ROLLBACKS:
        raise UserError(f"training diverged ({err}) and did not recover after {MAX_ROLLBACKS} rollbacks with "
                        f"halved learning rates: lower lr_g and lr_d, or raise r1_gamma; the checkpoints in "
                        f"{run_dir / checkpoint.CHECKPOINT_DIR} are intact")
    run.ranks.barrier()  # rank 0's last checkpoint is on disk before anyone reads it
    fresh = _new_state(cfg, run, n)
    kept = checkpoint.checkpoints(run_dir)
    if kept:
        state_io.restore(fresh, *checkpoint.load(kept[-1]))
    fresh.lr_scale, fresh.rollbacks = state.lr_scale / 2, state.rollbacks + 1
    fresh.skipped, fresh.best_fid, fresh.bad_streak = state.skipped, state.best_fid, 0
    if run.ranks.main:
        log.warning("training diverged (%s): back to step %d with learning rates x%g", err, fresh.step, fresh.lr_scale)
        truncate_log(run_dir / "log.jsonl", fresh.step)
        with (run_dir / "log.jsonl").open("a") as log_file:
            log_file.write(json.dumps(dict(step=fresh.step, event="rollback", diverged_at=err.step,
                                           why=err.why, lr_scale=fresh.lr_scale)) + "\n")
    return fresh
