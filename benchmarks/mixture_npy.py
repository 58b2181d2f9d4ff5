"""Write the ring of 8 and the grid of 25 as .npy files of 2-D points, drawn by numpy rather than
by ganforge's own sampler, to train on them as a user's data:

    python benchmarks/mixture_npy.py --out /tmp/gf-mix
    python benchmarks/default_runs.py --data /tmp/gf-mix/ring8-numpy.npy --modes ring8 --seeds 0 1 2

Same centres and sigmas as the built-in sources; each point picks its mode uniformly.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

MIXTURES = {  # name: (centres (K, 2), sigma)
    "ring8": (np.stack([np.cos(2 * np.pi * np.arange(8) / 8), np.sin(2 * np.pi * np.arange(8) / 8)], 1), 0.01),
    "grid25": (np.array([(x, y) for x in range(-4, 5, 2) for y in range(-4, 5, 2)], dtype=np.float64), 0.05),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (centres, sigma) in MIXTURES.items():
        rng = np.random.default_rng(args.seed)
        points = centres[rng.integers(len(centres), size=args.n)] + rng.normal(scale=sigma, size=(args.n, 2))
        path = args.out / f"{name}-numpy.npy"
        np.save(path, points.astype(np.float32))
        print(f"{path}: {args.n} points, {len(centres)} modes, sigma {sigma}")


if __name__ == "__main__":
    main()
