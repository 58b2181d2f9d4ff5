"""Probe: does a discrete latent help an unlabelled data set? Cluster the training images with
k-means on their pixels (no labels used), train class-conditional on the cluster ids, and sample the
clusters in proportion to their sizes, so that the mixture has the data's proportions.

    python benchmarks/pseudo_labels.py --data mnist5k --resolution 28 --k 50 --seeds 0 1
    python benchmarks/pseudo_labels.py --data stacked-mnist --k 1000 --iters 10 --restarts 1 --seeds 1 \\
        steps=12000 precision=bf16

k-means on the pixels (0..1) at `--resolution`: centres start at k random images (torch seed 0),
`--iters` Lloyd steps, the restart with the least squared distance kept. The data's own labels only score the clusters (purity: the share of
images whose cluster's most common label is theirs; for stacked-mnist, per channel). Each run is
`python -m ganforge train --data <clusters>.npy --seed S` with the settings given (the DCGAN preset;
class-conditional, as the .npy has labels). Its G_ema is judged on z seed 1000, each item's cluster
drawn in proportion to the cluster sizes: one channel, 5,000 digits (the shipped classifier's share
recognised at confidence >= 0.9, and the digit shares) and FID, precision and recall on the `mnist`
extractor (2,000 samples against the training data); three channels, the Stacked MNIST protocol
(26,000 samples, modes and KL; benchmarks/stacked_mnist.py) and the share recognised per channel.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import ganforge
from ganforge.data import load_source
from ganforge.data.dataset import to_uint8
from ganforge.metrics import digit_report, stacked_mnist_report
from ganforge.metrics.evaluate import evaluate
from ganforge.sample import latents

Z_SEED = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--resolution", type=int, default=32, help="image side the clusters are made at (default 32)")
    parser.add_argument("--k", type=int, default=50, help="clusters (default 50)")
    parser.add_argument("--iters", type=int, default=50, help="Lloyd steps per restart (default 50)")
    parser.add_argument("--restarts", type=int, default=3, help="k-means restarts (default 3)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default=None, help="keep the clusters and runs here (default: a temporary folder)")
    parser.add_argument("settings", nargs="*", metavar="key=value", help="settings added to every run")
    args = parser.parse_args()

    out = Path(args.out or tempfile.mkdtemp(prefix="ganforge-pseudo-"))
    print(f"clusters and runs are kept in {out}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_source(args.data, args.resolution)
    clusters = kmeans(ds.data.flatten(1).float() / 255, args.k, args.iters, args.restarts)
    sizes = torch.from_numpy(np.bincount(clusters, minlength=args.k)).float()
    print(f"{args.data}: {len(clusters):,} images in {args.k} clusters of {sizes.min():.0f}-{sizes.max():.0f}; "
          f"purity {purity(clusters, ds)}")
    data = out / f"{args.data}-k{args.k}.npy"
    np.save(data, ds.data.permute(0, 2, 3, 1).squeeze(-1).numpy())  # (N, H, W) or (N, H, W, C) uint8
    np.save(data.with_suffix(".labels.npy"), clusters)

    for seed in args.seeds:
        run = out / f"seed{seed}"
        subprocess.run([sys.executable, "-m", "ganforge", "train", "--data", str(data), "--seed", str(seed),
                        "--out", str(out), "--name", run.name, "--no-progress", *args.settings],
                       check=True, stdout=subprocess.DEVNULL)
        gen = ganforge.load(run, "cpu")
        if ds.data.shape[1] == 1:
            judge_digits(gen, sizes, out / f"seed{seed}-fakes.npy", args.data)
        else:
            judge_stacked(gen, sizes)


def kmeans(x: torch.Tensor, k: int, iters: int, restarts: int) -> np.ndarray:
    """Cluster ids (N,) of the rows of x, from the restart with the least squared distance."""
    g = torch.Generator().manual_seed(0)
    best = (float("inf"), None)
    for _ in range(restarts):
        centres = x[torch.randperm(len(x), generator=g)[:k]].clone()
        for _ in range(iters):
            assign = nearest(x, centres)
            sums = torch.zeros_like(centres).index_add_(0, assign, x)
            count = torch.bincount(assign, minlength=k)[:, None]
            centres = torch.where(count > 0, sums / count.clamp(min=1), centres)  # an empty cluster keeps its centre
        assign = nearest(x, centres)
        inertia = ((x - centres[assign]) ** 2).sum().item()
        if inertia < best[0]:
            best = (inertia, assign)
    return best[1].numpy()


def nearest(x: torch.Tensor, centres: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    return torch.cat([torch.cdist(x[i:i + chunk], centres).argmin(1) for i in range(0, len(x), chunk)])


def purity(clusters: np.ndarray, ds) -> str:
    if ds.labels is None:
        return "unknown (the data has no labels)"
    labels = ds.labels.numpy()
    by = [labels // 100, labels // 10 % 10, labels % 10] if ds.name == "stacked-mnist" else [labels]
    shares = [sum(np.bincount(y[clusters == c]).max() for c in np.unique(clusters)) / len(y) for y in by]
    return " / ".join(f"{s:.3f}" for s in shares)


def proportional(gen, sizes: torch.Tensor, n: int) -> torch.Tensor:
    """n samples of z seed Z_SEED, item i's cluster drawn in proportion to the cluster sizes."""
    clusters = torch.multinomial(sizes, n, replacement=True, generator=torch.Generator().manual_seed(Z_SEED))
    return gen.generate(latents(n, gen.G.z_dim, Z_SEED), clusters)


def judge_digits(gen, sizes: torch.Tensor, fakes: Path, data: str) -> None:
    img = proportional(gen, sizes, 5000)
    report = digit_report(img)
    np.save(fakes, to_uint8(img[:2000, 0]).numpy())  # the first 2,000: the same as drawing 2,000
    m = evaluate(fakes, real=data, metrics=("fid", "pr"), extractor="mnist", n=2000, seed=Z_SEED,
                 memorisation=False)["metrics"]
    print(f"seed {gen.config['seed']}, step {gen.step}: recognised {report['recognised']:.3f}, digit shares "
          f"{' '.join(f'{s:.3f}' for s in report['class_shares'])}; FID {m['fid']:.2f}, precision "
          f"{m['precision']:.3f}, recall {m['recall']:.3f}", flush=True)


def judge_stacked(gen, sizes: torch.Tensor) -> None:
    img = proportional(gen, sizes, 26_000)
    report = stacked_mnist_report(img)
    print(f"seed {gen.config['seed']}, step {gen.step}: modes {report['modes']}, KL {report['kl']:.4f}, channel KLs "
          f"{' / '.join(f'{k:.4f}' for k in report['channel_kl'])}, recognised "
          f"{' / '.join(f'{r:.3f}' for r in report['recognised'])}", flush=True)


if __name__ == "__main__":
    main()
