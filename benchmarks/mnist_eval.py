"""`ganforge eval` numbers for MNIST runs, beside the real-vs-held-out-real baseline.

    python benchmarks/mnist_eval.py RUN [RUN ...] [--extractor mnist] [--n 1000]

The reference set is the digit classifier's training part of mnist5k (4,000 images,
ganforge.metrics.mnist_split); the baseline is its 1,000 held-out real digits, which the
classifier never saw. Each run is sampled with --n images (seed 0) and compared with the same
4,000. Prints one markdown row per input, then the mean and std over the runs.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

from ganforge.metrics import mnist_split
from ganforge.metrics.evaluate import evaluate

COLUMNS = ("fid", "kid_mean", "precision", "recall", "density", "coverage", "is_mean")


def row(name: str, report: dict) -> str:
    m = report["metrics"]
    near = report["memorisation"]["near_copy_share"]
    return f"| {name} | " + " | ".join(f"{m[c]:.4g}" for c in COLUMNS) + f" | {near:.4f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--extractor", default="mnist")
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ganforge-mnist-eval-") as folder:  # removed on exit
        compare(args, Path(folder))


def compare(args, folder: Path) -> None:
    """The baseline row, then one row per run, against the 4,000 reference digits saved in folder."""
    img_train, _, img_test, _ = mnist_split()
    np.save(folder / "train.npy", img_train[:, 0].numpy())      # (4000, 32, 32) uint8
    np.save(folder / "heldout.npy", img_test[:, 0].numpy())     # (1000, 32, 32) uint8
    metrics = ("fid", "kid", "pr", "dc", "is")
    real = str(folder / "train.npy")

    print("| input | FID | KID | precision | recall | density | coverage | IS | near-copy share |")
    print("|---|---|---|---|---|---|---|---|---|")
    baseline = evaluate(str(folder / "heldout.npy"), real, metrics, args.extractor, n=None)
    print(row("held-out real digits (1,000)", baseline))
    reports = [evaluate(run, real, metrics, args.extractor, n=args.n, seed=0) for run in args.runs]
    for run, report in zip(args.runs, reports):
        print(row(f"{Path(run).name} ({args.n} samples)", report))
    if len(reports) > 1:
        for c in COLUMNS:
            values = [r["metrics"][c] for r in reports]
            print(f"{c}: mean {statistics.mean(values):.4g}, std {statistics.stdev(values):.4g}")


if __name__ == "__main__":
    main()
