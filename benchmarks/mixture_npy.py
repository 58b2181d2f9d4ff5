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

from ganforge.data import load_source

MIXTURES = ("ring8", "grid25")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in MIXTURES:
        source = load_source(name)  # the built-in mixture's centres (K, 2) and sigma; its points are not used
        centres, sigma = source.modes.double().numpy(), source.sigma
        rng = np.random.default_rng(args.seed)
        points = centres[rng.integers(len(centres), size=args.n)] + rng.normal(scale=sigma, size=(args.n, 2))
        path = args.out / f"{name}-numpy.npy"
        np.save(path, points.astype(np.float32))
        print(f"{path}: {args.n} points, {len(centres)} modes, sigma {sigma}")


if __name__ == "__main__":
    main()
