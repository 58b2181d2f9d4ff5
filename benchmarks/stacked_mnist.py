"""Stacked MNIST: how many of its 1,000 modes a trained run covers, and the KL of its mode
histogram to uniform (the protocol of VEEGAN, PacGAN and R3GAN: 26,000 samples).

    python benchmarks/stacked_mnist.py --seeds 0                  # trains with the defaults, then judges
    python benchmarks/stacked_mnist.py --run runs/stacked --seeds 0   # judges a run

Each run is `python -m ganforge train --data stacked-mnist --seed S` plus the settings given (the
data: 128,000 colour images whose 3 channels are mnist5k digits, each of the 1,000 digit triples
128 times, 32 px). Its EMA generator draws 26,000 samples (z from seed 1000); the shipped digit
classifier names the digit in each channel, and the triple is the mode. A perfect generator's
histogram of 26,000 samples has KL ~0.019 from sampling noise alone; `--data-draws K` first judges
K draws of 26,000 training images (seeds 1000, 1001, ...), what a G that learnt the data exactly
would score (alone when no --seeds are named). The channel KLs are each channel's digit shares
against uniform: how much of the KL comes from G drawing some digits more often than others. CPU
time is the training process's user + system time.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import ganforge
from ganforge.data import load_source
from ganforge.metrics import stacked_mnist_report

N, SEED = 26_000, 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0, none with --data-draws")
    parser.add_argument("--run", type=Path, help="judge this run instead of training (one seed)")
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--data-draws", type=int, default=0, help="first judge this many draws of training images")
    parser.add_argument("settings", nargs="*", metavar="key=value")
    args = parser.parse_args()
    out = Path(args.out) if args.out else None  # a temporary folder only when something is trained

    print("| seed | minutes (wall) | CPU minutes | steps | modes (of 1,000) | KL to uniform | channel KLs |\n"
          "|---|---|---|---|---|---|---|")
    if args.data_draws:
        data = load_source("stacked-mnist", 32).data  # the training data: its seed is fixed
        for k in range(args.data_draws):
            pick = torch.randint(len(data), (N,), generator=torch.Generator().manual_seed(SEED + k))
            print_row(f"data, draw {SEED + k}", float("nan"), float("nan"), "-", stacked_mnist_report(data[pick]))
    seeds = args.seeds if args.seeds is not None else ([] if args.data_draws else [0])
    for seed in seeds:
        run, wall, cpu = args.run, float("nan"), float("nan")
        if run is None:
            out = out or Path(tempfile.mkdtemp(prefix="ganforge-stacked-"))
            run = out / f"seed{seed}"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ganforge", "train", "--data", "stacked-mnist", "--seed", str(seed),
                            "--out", str(out), "--name", run.name, "--no-progress", *args.settings],
                           check=True, stdout=subprocess.DEVNULL)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall = (time.perf_counter() - start) / 60
            cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / 60
        gen = ganforge.load(run, "cpu")
        print_row(seed, wall, cpu, gen.step, stacked_mnist_report(gen.sample(N, seed=SEED)))


def print_row(what, wall: float, cpu: float, step, report: dict) -> None:
    print(f"| {what} | {wall:.1f} | {cpu:.1f} | {step} | {report['modes']} | {report['kl']:.3f} | "
          f"{' / '.join(f'{k:.4f}' for k in report['channel_kl'])} |", flush=True)


if __name__ == "__main__":
    main()
