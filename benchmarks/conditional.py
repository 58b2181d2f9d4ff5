"""Does a class-conditional model make the digit it is asked for?

    python benchmarks/conditional.py --seeds 0

Trains `ganforge train conditional=1 --seed S` (the default DCGAN recipe on mnist5k, with the
projection discriminator and G's class embedding), then draws --n samples of each class
(`gen.sample(n, seed=1000, class_=K)`) and has the shipped digit classifier name them. Prints, per
class, the share named K, and the smallest share over the classes.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ganforge
from ganforge.metrics import classify_digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--n", type=int, default=1000, help="samples per class")
    parser.add_argument("--run", type=Path, help="judge this run instead of training one (seeds ignored)")
    parser.add_argument("settings", nargs="*", metavar="key=value", help="settings added to training")
    args = parser.parse_args()

    out = None if args.run else Path(tempfile.mkdtemp(prefix="ganforge-cond-"))
    if out:
        print(f"runs are kept in {out}", file=sys.stderr)
    print("| seed | minutes | " + " | ".join(f"class {k}" for k in range(10)) + " | smallest |")
    print("|---|---|" + "---|" * 11)
    smallest = []
    for seed in ([None] if args.run else args.seeds):
        minutes = float("nan")
        run = args.run
        if run is None:
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ganforge", "train", "conditional=1", "--seed", str(seed),
                            "--out", str(out), "--name", f"seed{seed}", "--no-progress", *args.settings],
                           check=True, stdout=subprocess.DEVNULL)
            minutes, run = (time.perf_counter() - began) / 60, out / f"seed{seed}"
        gen = ganforge.load(run, "cpu")
        shares = []
        for k in range(10):
            pred, _ = classify_digits(gen.sample(args.n, seed=1000, class_=k))
            shares.append(float((pred == k).float().mean()))
        smallest.append(min(shares))
        print(f"| {seed if seed is not None else run} | {minutes:.1f} | " + " | ".join(f"{v:.3f}" for v in shares)
              + f" | {min(shares):.3f} |", flush=True)
    print(f"smallest per-class share: mean {statistics.mean(smallest):.3f} over {len(smallest)} run(s)")


if __name__ == "__main__":
    main()
