"""FID from feature statistics: ganforge's two symmetric eigendecompositions against the usual
scipy.linalg.sqrtm code (pytorch-fid, torch-fidelity 0.3), on the same float64 statistics.

    python benchmarks/fid_speed.py                 # 50,000 x 2,048 features, 3 repeats
    python benchmarks/fid_speed.py --n 10000 --d 512

Features are synthetic but shaped like Inception pool features (non-negative, correlated,
a few hundred strong directions); both sides share everything but their seed and a small shift.
Prints the statistics time, both distance times, their ratio and the relative difference.
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


def scipy_fid(mu1, s1, mu2, s2) -> float:
    """The reference formula as pytorch-fid writes it (without its singular-matrix fallback)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    mix = torch.randn(512, args.d, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / 512 ** 0.5
    start = time.perf_counter()
    f1 = features(args.n, args.d, 1, 0.0, mix)
    start = time.perf_counter()
    mu1, s1 = feature_stats(f1)
    stats_s = time.perf_counter() - start
    start = time.perf_counter()
    np.cov(f1.numpy(), rowvar=False)   # what pytorch-fid and torch-fidelity compute
    numpy_stats_s = time.perf_counter() - start
    del f1
    mu2, s2 = feature_stats(features(args.n, args.d, 2, 0.05, mix))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; {args.n} x {args.d} features, float64")
    print(f"statistics per set: ganforge.feature_stats {stats_s:.2f} s, numpy.cov {numpy_stats_s:.2f} s")

    ours, theirs = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        fid_ours = frechet_distance_from_stats(mu1, s1, mu2, s2)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        fid_scipy = scipy_fid(mu1.numpy(), s1.numpy(), mu2.numpy(), s2.numpy())
        theirs.append(time.perf_counter() - start)
    rel = abs(fid_ours - fid_scipy) / abs(fid_scipy)
    print("| method | seconds (median of %d) | FID |" % args.repeats)
    print("|---|---|---|")
    print(f"| ganforge (eigh of S1^1/2 S2 S1^1/2) | {np.median(ours):.2f} | {fid_ours:.9g} |")
    print(f"| scipy.linalg.sqrtm(S1 S2) | {np.median(theirs):.2f} | {fid_scipy:.9g} |")
    print(f"distance from statistics: speed-up {np.median(theirs) / np.median(ours):.1f}x; relative difference {rel:.2e}")
    whole_ours, whole_theirs = 2 * stats_s + np.median(ours), 2 * numpy_stats_s + np.median(theirs)
    print(f"whole FID from two feature sets: {whole_ours:.1f} s against {whole_theirs:.1f} s, "
          f"speed-up {whole_theirs / whole_ours:.1f}x")


if __name__ == "__main__":
    main()
