"""The training loop: alternating D and G updates, G_ema, logs, sample grids and checkpoints.

One step = one D update on a real and a fake batch, then one G update on the same fakes (as the
classic DCGAN example does: G runs forward once per step). Every random draw comes from a
generator that is saved in each checkpoint, so a resumed run continues exactly where it stopped.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ganforge import __version__, checkpoint
from ganforge.checkpoint import atomic_write, flatten, prefixed, unflatten, unprefixed
from ganforge.config import RESUMABLE, TrainConfig, resolve
from ganforge.data import Dataset, load_source, to_model_space
from ganforge.ema import ema_beta, refresh_batchnorm, update_ema
from ganforge.errors import UserError
from ganforge.losses import G_LOSSES, d_loss, r1_penalty
from ganforge.models import FAMILIES, default_family
from ganforge.sample import latents, pick_device
from ganforge.viz import image_grid, save_png, scatter, side_by_side


GRID_SIZE = 64        # samples in each progress grid, from fixed z
SCATTER_SIZE = 2500   # points in each scatter plot of vector data


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


def train(user: dict | None = None, resume: str | Path | None = None, progress: bool = True) -> Path:
    """Train with the user's settings (a dict of TrainConfig fields), or continue the run folder
    `resume` from its newest checkpoint. Returns the run folder."""
    user = dict(user or {})
    if resume is not None:
        run_dir = Path(resume)
        tensors, record = checkpoint.load(checkpoint.find(run_dir))
        cfg = _resumed_config(record["config"], user)
        data = load_source(cfg.data, cfg.resolution, cfg.channels, cfg.data_root)
    else:
        resolve(user, user.get("arch") or "dcgan")  # validate before the data is loaded
        data = load_source(user.get("data", TrainConfig.data), user.get("resolution", TrainConfig.resolution),
                           user.get("channels"), user.get("data_root", TrainConfig.data_root))
        cfg = resolve(user, user.get("arch") or default_family(data.kind))
        run_dir = _new_run_dir(cfg)
        tensors, record = None, None

    family = FAMILIES[cfg.arch]
    if family.kind != data.kind:
        raise UserError(f"arch '{cfg.arch}' models {family.kind} data but '{cfg.data}' holds {data.kind}s: "
                        f"drop arch= or use arch={default_family(data.kind)}")
    if cfg.batch_size > len(data):
        raise UserError(f"batch_size {cfg.batch_size} is larger than the data set ({len(data)} items): lower it")
    device = pick_device(cfg.device)
    model = record["model"] if record else dict(zip(("G", "D"), family.model_args(cfg, data)), arch=cfg.arch)
    state = _new_state(cfg, model, device, len(data))
    if record:
        _restore(state, tensors, record)
        if state.step >= cfg.steps:
            raise UserError(f"{run_dir} is already at step {state.step}: pass --steps N with N > {state.step}")
        _truncate_log(run_dir / "log.jsonl", state.step)
    else:
        atomic_write(run_dir / "config.json", json.dumps(
            {"config": cfg.to_dict(), "model": model, "data": data.info, "version": __version__}, indent=2).encode())

    print(f"ganforge {__version__}: {'resuming' if record else 'training'} {run_dir} on {device} "
          f"from step {state.step} to {cfg.steps}")
    print("config: " + " ".join(f"{k}={v}" for k, v in cfg.to_dict().items()))
    _loop(cfg, data, state, model, run_dir, device, progress)
    print(f"run folder: {run_dir}")
    return run_dir


def _loop(cfg: TrainConfig, data: Dataset, state: State, model: dict, run_dir: Path,
          device: torch.device, progress: bool) -> None:
    G, D, G_ema, opt_G, opt_D = state.G, state.D, state.G_ema, state.opt_G, state.opt_D
    g_loss = G_LOSSES[cfg.loss]
    pool = data.data.to(device)              # the whole data set, decoded, on the device
    fixed_z = latents(GRID_SIZE if data.kind == "image" else SCATTER_SIZE, cfg.z_dim, cfg.seed).to(device)
    judge = _fid_judge(cfg, data, device) if cfg.eval_every and data.kind == "image" else None
    sums = torch.zeros(4, device=device)     # loss_D, loss_G, D(x), D(G(z)) since the last log line
    tick, tick_nimg, tick_step = time.perf_counter(), state.nimg, state.step
    bar = tqdm(total=cfg.steps, initial=state.step, unit="step", disable=not progress or None,
               dynamic_ncols=True, file=sys.stderr)

    with (run_dir / "log.jsonl").open("a") as log_file:
        while state.step < cfg.steps:
            if cfg.lr_decay == "linear":
                scale = _decay(state.step, cfg.steps, cfg.lr_decay_start)
                _set_lr(opt_G, cfg.lr_g * scale)
                _set_lr(opt_D, cfg.lr_d * scale)
            real = to_model_space(pool[state.order.next(cfg.batch_size).to(device)])
            z = torch.randn(cfg.batch_size, cfg.z_dim, generator=state.z_generator).to(device)
            fake = G(z)

            # Lazy R1 (StyleGAN2): every r1_every steps, weighted by r1_every, for the same mean push.
            regularise = cfg.r1_gamma > 0 and state.step % cfg.r1_every == 0
            real.requires_grad_(regularise)
            real_logits, fake_logits = D(real), D(fake.detach())
            loss_D = d_loss(real_logits, fake_logits)
            penalty = 0.0
            if regularise:
                # The MLP's D standardises its input: R1 is measured per unit of the data's std.
                gamma = cfg.r1_gamma * cfg.r1_every
                penalty = gamma / 2 * r1_penalty(real, real_logits, getattr(D, "std", 1.0))
            opt_D.zero_grad(set_to_none=True)
            (loss_D + penalty).backward()
            opt_D.step()

            D.requires_grad_(False)  # G's update needs gradients through D, not for D's weights
            loss_G = g_loss(D(fake))
            opt_G.zero_grad(set_to_none=True)
            loss_G.backward()
            opt_G.step()
            D.requires_grad_(True)

            state.step += 1
            state.nimg += cfg.batch_size
            update_ema(G_ema, G, ema_beta(state.nimg, cfg.batch_size, cfg.ema_kimg, cfg.ema_rampup))
            with torch.no_grad():
                sums += torch.stack([loss_D, loss_G, real_logits.sigmoid().mean(), fake_logits.sigmoid().mean()])
            bar.update(1)
            last = state.step == cfg.steps

            if state.step % cfg.log_every == 0 or last:
                now = time.perf_counter()
                means = (sums / (state.step - tick_step)).tolist()
                entry = dict(step=state.step, nimg=state.nimg, loss_D=means[0], loss_G=means[1],
                             D_real=means[2], D_fake=means[3], img_per_s=(state.nimg - tick_nimg) / (now - tick),
                             time=time.time())
                log_file.write(json.dumps(entry) + "\n")
                log_file.flush()
                bar.set_postfix(loss_D=f"{means[0]:.3f}", loss_G=f"{means[1]:.3f}",
                                img_s=f"{entry['img_per_s']:.0f}", refresh=False)
                if bar.disable and progress:
                    print(" ".join(f"{k}={v:.4g}" for k, v in entry.items() if k != "time"), flush=True)
                sums.zero_()
                tick, tick_nimg, tick_step = now, state.nimg, state.step
            sample_now = state.step % cfg.sample_every == 0 or last
            save_now = state.step % cfg.checkpoint_every == 0 or last
            eval_now = judge is not None and (state.step % cfg.eval_every == 0 or last)
            if sample_now or save_now or eval_now:
                refresh_batchnorm(G_ema, cfg.z_dim)  # once for all: it depends only on G_ema's weights
            if eval_now:
                fid = judge(G_ema)
                log_file.write(json.dumps(dict(step=state.step, nimg=state.nimg, fid=fid)) + "\n")
                log_file.flush()
                if state.best_fid is None or fid < state.best_fid:
                    state.best_fid = fid
                    _save_checkpoint(state, cfg, model, run_dir, checkpoint.best_path(run_dir))
            if sample_now:
                _save_samples(G_ema, fixed_z, data, run_dir / "samples" / f"step-{state.step:07d}.png")
            if save_now:
                _save_checkpoint(state, cfg, model, run_dir)
    bar.close()
    _save_compare(G_ema, fixed_z, data, run_dir / "compare.png", cfg.seed)


@torch.no_grad()
def _save_samples(G_ema, z: torch.Tensor, data: Dataset, path: Path) -> None:
    fake = G_ema(z).float().cpu()
    title = f"{path.stem}: {len(fake)} samples"
    save_png(image_grid(fake) if data.kind == "image" else scatter(fake, data.data[:SCATTER_SIZE], title), path)


@torch.no_grad()
def _save_compare(G_ema, z: torch.Tensor, data: Dataset, path: Path, seed: int) -> None:
    """Real items beside generated ones (images), or generated points over real ones (vectors)."""
    fake = G_ema(z).float().cpu()
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:len(fake)]
    real = data.data[pick]
    if data.kind == "image":
        save_png(side_by_side(image_grid(real), image_grid(fake)), path)
    else:
        save_png(scatter(fake, real, f"{len(fake)} generated over {len(real)} real points"), path)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from (those steps run again), and
    a last line cut short by a crash."""
    def before(line: str) -> bool:
        try:
            return json.loads(line)["step"] <= step
        except (ValueError, KeyError):
            return False

    if path.exists():
        lines = [line for line in path.read_text().splitlines(keepends=True) if before(line)]
        atomic_write(path, "".join(lines).encode())


def _new_run_dir(cfg: TrainConfig) -> Path:
    name = cfg.name or f"{Path(cfg.data).stem or 'data'}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.out) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"run folder {run_dir} already exists: continue it with --resume {run_dir} "
                        "or choose another --name")
    return run_dir


def _resumed_config(saved: dict, user: dict) -> TrainConfig:
    """The saved config, with the few settings a resumed run may change."""
    changed = sorted(k for k, v in user.items() if k not in RESUMABLE and saved.get(k, v) != v)
    if changed:
        raise UserError(f"cannot change {', '.join(changed)} when resuming; only "
                        f"{', '.join(sorted(RESUMABLE))} may change (or start a new run)")
    return resolve({**saved, **{k: v for k, v in user.items() if k in RESUMABLE}}, saved["arch"])


def _new_state(cfg: TrainConfig, model: dict, device: torch.device, n: int) -> State:
    family = FAMILIES[cfg.arch]
    torch.manual_seed(cfg.seed)  # weight initialisation
    G = family.Generator(**model["G"]).to(device)
    D = family.Discriminator(**model["D"]).to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    betas = (cfg.beta1, cfg.beta2)
    return State(G, D, G_ema,
                 torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=betas),
                 torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=betas),
                 z_generator=torch.Generator().manual_seed(cfg.seed + 1),
                 order=BatchOrder(n, cfg.seed + 2))


def _decay(step: int, steps: int, start: float) -> float:
    """Learning-rate factor: 1 until `start` * steps, then falling linearly to 0 at `steps`."""
    return min(1.0, (steps - step) / (steps * (1 - start)))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _fid_judge(cfg: TrainConfig, data: Dataset, device: torch.device):
    """G_ema -> FID of `eval_n` samples (fixed z) against the training data, on the extractor
    `ganforge eval` picks for this data."""
    from ganforge.metrics import frechet_distance
    from ganforge.metrics.evaluate import default_extractor
    from ganforge.metrics.extractors import get_extractor

    extractor = get_extractor(default_extractor(data.sample_shape), device)
    real_features, _ = extractor(data.data)
    z = latents(cfg.eval_n, cfg.z_dim, cfg.seed + 3)

    @torch.no_grad()
    def judge(G_ema) -> float:
        fake = torch.cat([G_ema(chunk.to(device)).float() for chunk in z.split(250)])
        return frechet_distance(real_features, extractor(fake)[0])

    return judge


def _save_checkpoint(state: State, cfg: TrainConfig, model: dict, run_dir: Path, path: Path | None = None) -> None:
    tensors = {**prefixed("G", state.G.state_dict()), **prefixed("D", state.D.state_dict()),
               **prefixed("G_ema", state.G_ema.state_dict()),
               "rng.z": state.z_generator.get_state(), "rng.order": state.order.generator.get_state(),
               "order.perm": state.order.perm}
    record = dict(step=state.step, nimg=state.nimg, config=cfg.to_dict(), model=model, version=__version__,
                  order_pos=state.order.pos, best_fid=state.best_fid,
                  opt_G=flatten("opt_G", state.opt_G.state_dict(), tensors),
                  opt_D=flatten("opt_D", state.opt_D.state_dict(), tensors))
    checkpoint.save(path or checkpoint.path_for(run_dir, state.step), tensors, record)
    checkpoint.prune(run_dir, cfg.keep)


def _restore(state: State, tensors: dict, record: dict) -> None:
    for name in ("G", "D", "G_ema"):
        getattr(state, name).load_state_dict(unprefixed(name, tensors))
    state.opt_G.load_state_dict(unflatten(record["opt_G"], tensors))
    state.opt_D.load_state_dict(unflatten(record["opt_D"], tensors))
    state.z_generator.set_state(tensors["rng.z"])
    state.order.generator.set_state(tensors["rng.order"])
    state.order.perm, state.order.pos = tensors["order.perm"], record["order_pos"]
    state.step, state.nimg = record["step"], record["nimg"]
    state.best_fid = record.get("best_fid")
