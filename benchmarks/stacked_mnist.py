"""Stacked MNIST: how many of its 1,000 modes a trained run covers, and the KL of its mode
histogram to uniform (the protocol of VEEGAN, PacGAN and R3GAN: 26,000 samples).

    python benchmarks/stacked_mnist.py --seeds 0                  # trains with the defaults, then judges
    python benchmarks/stacked_mnist.py steps=24000 precision=bf16 --seeds 0 1 2 3 4 --jobs 3
    python benchmarks/stacked_mnist.py steps=48000 --seeds 0 1 --jobs 2 --z-seeds 1000-1002
    python benchmarks/stacked_mnist.py --run runs/stacked --seeds 0   # judges a run

Each run is `python -m ganforge train --data stacked-mnist --seed S` plus the settings given (the
data: 128,000 colour images whose 3 channels are mnist5k digits, each of the 1,000 digit triples
128 times, 32 px). `--jobs N` trains N seeds at a time; on the CPU each then gets cores / N threads
unless OMP_NUM_THREADS is set (the thread count changes a run's weights slightly). Its EMA generator
draws 26,000 samples for each z seed (default 1000, the protocol; others show how much the draw of
z moves the KL); the shipped digit classifier names the digit in each channel, and the triple is
the mode. A perfect generator's histogram of 26,000 samples has KL ~0.019 from sampling noise
alone; `--data-draws K` first judges K draws of 26,000 training images (seeds 1000, 1001, ...), what
a G that learnt the data exactly would score (alone when no --seeds are named). The channel KLs are
each channel's digit shares against uniform: how much of the KL comes from G drawing some digits
more often than others; "recognised" is each channel's share of digits named with confidence >= 0.9
(real ones: about 0.97), so samples that are not digits read as broken, not as collapsed. CPU time
is the training process's user + system time.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import ganforge
from ganforge.data import load_source
from ganforge.metrics import stacked_mnist_report
from ganforge.sample import parse_seeds

N, SEED = 26_000, 1000
UNTIMED = (float("nan"), float("nan"))  # (wall, CPU minutes) of what this script did not train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0, none with --data-draws")
    parser.add_argument("--run", type=Path, help="judge this run instead of training (one seed)")
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at a time (default 1)")
    parser.add_argument("--z-seeds", default=str(SEED), help=f"draws of z to judge, e.g. 1000-1002 (default {SEED})")
    parser.add_argument("--data-draws", type=int, default=0, help="first judge this many draws of training images")
    parser.add_argument("settings", nargs="*", metavar="key=value")
    args = parser.parse_args()
    z_seeds = parse_seeds(args.z_seeds)
    seeds = args.seeds if args.seeds is not None else ([] if args.data_draws else [0])
    env = dict(os.environ)
    if args.jobs > 1 and args.run is None and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
        print(f"{args.jobs} runs at a time, each with OMP_NUM_THREADS={env['OMP_NUM_THREADS']}\n")

    print("| seed | z seed | minutes (wall) | CPU minutes | steps | modes (of 1,000) | KL to uniform | channel KLs | "
          "recognised |\n|---|---|---|---|---|---|---|---|---|")
    if args.data_draws:
        data = load_source("stacked-mnist", 32).data  # the training data: its seed is fixed
        for k in range(args.data_draws):
            pick = torch.randint(len(data), (N,), generator=torch.Generator().manual_seed(SEED + k))
            print_row(f"data, draw {SEED + k}", "-", UNTIMED, "-", stacked_mnist_report(data[pick]))
    if args.run is not None:
        runs = {seed: (args.run, UNTIMED) for seed in seeds}
    elif seeds:
        out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ganforge-stacked-"))
        print(f"runs are kept in {out}\n", file=sys.stderr)
        runs = train(seeds, args.settings, out, args.jobs, env)
    else:
        runs = {}
    for seed, (run, minutes) in runs.items():
        gen = ganforge.load(run, "cpu")
        for z_seed in z_seeds:
            print_row(seed, z_seed, minutes, gen.step, stacked_mnist_report(gen.sample(N, seed=z_seed)))


def train(seeds: list[int], settings: list[str], out: Path, jobs: int, env: dict) -> dict:
    """Train one run per seed, `jobs` at a time. Returns {seed: (run folder, (wall, CPU minutes))}
    in the order of `seeds`; exits if a run fails, once the others have finished."""
    queue, running, done, failed = list(seeds), {}, {}, []
    while queue or running:
        while queue and len(running) < jobs:
            seed = queue.pop(0)
            command = [sys.executable, "-m", "ganforge", "train", "--data", "stacked-mnist", "--seed", str(seed),
                       "--out", str(out), "--name", f"seed{seed}", "--no-progress", *settings]
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
            running[proc.pid] = (seed, proc, time.perf_counter())
        pid, status, usage = os.wait4(-1, 0)  # the finished run's own CPU time, even with others running
        seed, proc, start = running.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        if proc.returncode != 0:
            failed.append(seed)
        done[seed] = (out / f"seed{seed}", ((time.perf_counter() - start) / 60, (usage.ru_utime + usage.ru_stime) / 60))
    if failed:
        sys.exit(f"training failed for seed {', '.join(map(str, sorted(failed)))} (its error is printed above)")
    return {seed: done[seed] for seed in seeds}


def print_row(seed, z_seed, minutes: tuple[float, float], step, report: dict) -> None:
    print(f"| {seed} | {z_seed} | {minutes[0]:.1f} | {minutes[1]:.1f} | {step} | {report['modes']} | {report['kl']:.4f} | "
          f"{' / '.join(f'{k:.4f}' for k in report['channel_kl'])} | "
          f"{' / '.join(f'{r:.3f}' for r in report['recognised'])} |", flush=True)


if __name__ == "__main__":
    main()
