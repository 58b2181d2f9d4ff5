"""FID from two feature sets: ganforge against the usual numpy.cov + scipy.linalg.sqrtm code
(pytorch-fid, torch-fidelity 0.3), on the same float64 features.

    python benchmarks/fid_speed.py                 # 50,000 x 2,048 features per set, 3 repeats
    python benchmarks/fid_speed.py --n 10000 --d 512

Features are synthetic but shaped like Inception pool features (non-negative, correlated,
a few hundred strong directions); both sides share everything but their seed and a small shift.
Each repeat times, ganforge's then the reference's, the whole computation from the two [N, D] float64 arrays to the number, and
its two parts: the statistics of both sets, and the distance from those statistics.

It ends with the ceiling this machine puts on the whole FID: the two covariances need 2 N D (D + 1)
float64 flops whatever the code, so at the machine's best float64 rate (a large square matmul,
BLAS dgemm, best of 3) they take at least that many seconds.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg
import torch

from ganforge.metrics.scores import feature_stats, frechet_distance_from_stats


def features(n: int, d: int, seed: int, shift: float, mix: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, mix.shape[0], generator=gen, dtype=torch.float64)
    return torch.relu(z @ mix + shift)  # (n, d), like post-ReLU average-pooled activations


def ganforge_fid(f1: torch.Tensor, f2: torch.Tensor) -> tuple[float, float, float]:
    """(FID, seconds for the statistics, seconds for the distance)."""
    start = time.perf_counter()
    stats = (*feature_stats(f1), *feature_stats(f2))
    middle = time.perf_counter()
    fid = frechet_distance_from_stats(*stats)
    return fid, middle - start, time.perf_counter() - middle


def scipy_fid(f1: np.ndarray, f2: np.ndarray) -> tuple[float, float, float]:
    """The reference as pytorch-fid writes it (without its singular-matrix fallback)."""
    start = time.perf_counter()
    mu1, s1 = f1.mean(0), np.cov(f1, rowvar=False)
    mu2, s2 = f2.mean(0), np.cov(f2, rowvar=False)
    middle = time.perf_counter()
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    fid = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))
    return fid, middle - start, time.perf_counter() - middle


def float64_rate(size: int = 4096) -> float:
    """GFLOP/s of a size x size float64 matmul (BLAS dgemm), the best of 3."""
    a = torch.randn(size, size, dtype=torch.float64)
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        a @ a
        seconds.append(time.perf_counter() - start)
    return 2 * size ** 3 / min(seconds) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    mix = torch.randn(512, args.d, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / 512 ** 0.5
    f1, f2 = features(args.n, args.d, 1, 0.0, mix), features(args.n, args.d, 2, 0.05, mix)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; two sets of {args.n} x {args.d} "
          f"features, float64; median of {args.repeats} repeats")
    ours, theirs = [], []
    for _ in range(args.repeats):  # alternating, so that a change in the machine's speed hits both
        ours.append(ganforge_fid(f1, f2))
        theirs.append(scipy_fid(f1.numpy(), f2.numpy()))
    rel = abs(ours[0][0] - theirs[0][0]) / abs(theirs[0][0])

    def median(runs, part):
        return float(np.median([r[1] + r[2] if part == "whole" else r[part] for r in runs]))

    print("| method | statistics of both sets (s) | distance (s) | whole FID (s) | FID |")
    print("|---|---|---|---|---|")
    print(f"| ganforge (one syrk per covariance; eigenvalues of S1 S2 by LAPACK sygv) | {median(ours, 1):.2f} | "
          f"{median(ours, 2):.2f} | {median(ours, 'whole'):.2f} | {ours[0][0]:.9g} |")
    print(f"| numpy.cov + scipy.linalg.sqrtm(S1 S2) | {median(theirs, 1):.2f} | {median(theirs, 2):.2f} | "
          f"{median(theirs, 'whole'):.2f} | {theirs[0][0]:.9g} |")
    print(f"whole FID speed-up {median(theirs, 'whole') / median(ours, 'whole'):.2f}x "
          f"(statistics {median(theirs, 1) / median(ours, 1):.2f}x, distance {median(theirs, 2) / median(ours, 2):.2f}x); "
          f"relative difference {rel:.2e}")

    rate = float64_rate()
    floor = 2 * args.n * args.d * (args.d + 1) / (rate * 1e9)  # seconds for both covariances at that rate
    print(f"ceiling: float64 matmul at {rate:.0f} GFLOP/s; the two covariances need at least {floor:.2f} s "
          f"(ganforge's take {median(ours, 1):.2f} s, {floor / median(ours, 1):.0%} of that rate), so the whole FID "
          f"can be at most {median(theirs, 'whole') / floor:.2f}x faster than the reference with a free distance "
          f"step, {median(theirs, 'whole') / (floor + median(ours, 2)):.2f}x with ganforge's")


if __name__ == "__main__":
    main()
