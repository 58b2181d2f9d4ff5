"""Peak memory of training from a memory-mapped data set of 200,000 32x32 colour images.

    python benchmarks/memmap_rss.py --n 200000 --steps 200

Writes a uint8 [N, 32, 32, 3] .npy (the layout `ganforge prepare` writes; here filled with mnist5k
digits, one per channel, so that building it takes seconds), then trains on it with the DCGAN
preset for --steps steps, and on mnist5k (5,000 images, held in memory) for the same steps, each
in its own process, and prints each run's peak resident memory (ru_maxrss) beside the data set's
decoded size. The mapped file is trained on twice: from a cold page cache (emptied first, which
needs root), as a data set larger than RAM would be, and again with the file already cached,
where the kernel maps cached neighbours of each touched page into the process (they count in RSS,
but are clean file pages it can drop at any time).

Then `ganforge eval` with a memory-mapped real side: --eval-n images of 32x32x3 in a second file
(the fake side is 1,000 of the same images), against scikit-learn's 1,797 digits held in memory.
The real side is embedded chunk by chunk from the file; each run's peak RSS is printed beside the
real side's decoded size.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ganforge.data import load_source


def drop_page_cache() -> bool:
    """Empty the kernel's page cache (root only), so the mapped file starts cold, as a data set
    larger than RAM would; otherwise pages the cache already holds count in RSS when touched."""
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


def peak_rss_mib(argv: list[str]) -> float:
    """ru_maxrss of one child process running `argv` (a fresh wrapper, so no other child counts)."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True).stdout
    return int(out) / 1024


def write_digits(path: Path, n: int, resolution: int) -> float:
    """A uint8 [n, R, R, 3] .npy of mnist5k digits, one per channel; returns its size in MiB."""
    digits = load_source("mnist5k", resolution).data[:, 0].numpy()  # (5000, R, R)
    big = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, resolution, resolution, 3))
    rng = np.random.default_rng(0)
    for start in range(0, n, 10_000):
        stop = min(n, start + 10_000)
        big[start:stop] = digits[rng.integers(0, len(digits), (stop - start, 3))].transpose(0, 2, 3, 1)
    big.flush()
    del big
    return n * resolution * resolution * 3 / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-n", type=int, default=100_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ganforge-mmap-") as tmp:
        path = Path(tmp) / "big.npy"
        decoded = write_digits(path, args.n, 32)

        train = [sys.executable, "-m", "ganforge", "train", "--steps", str(args.steps), "--out", tmp, "--no-progress"]
        cold = drop_page_cache()
        mapped = peak_rss_mib([*train, "--data", str(path), "--name", "mapped"])
        warm = peak_rss_mib([*train, "--data", str(path), "--name", "mapped-warm"])
        small = peak_rss_mib([*train, "--data", "mnist5k", "--name", "small", "conditional=0"])  # as the .npy
        print(f"| data | images | decoded size (MiB) | peak RSS of {args.steps} training steps (MiB) |")
        print("|---|---|---|---|")
        print(f"| memory-mapped .npy, 32x32x3, {'cold page cache' if cold else 'page cache not emptied'} "
              f"| {args.n:,} | {decoded:.0f} | {mapped:.0f} |")
        print(f"| the same file again, every page already in the page cache | {args.n:,} | {decoded:.0f} | {warm:.0f} |")
        print(f"| mnist5k in memory, 32x32x1 | 5,000 | {5000 * 1024 / 2**20:.0f} | {small:.0f} |")

        path.unlink()
        real = Path(tmp) / "real.npy"
        decoded = write_digits(real, args.eval_n, 32)

        def evaluate(real_side: str) -> float:
            return peak_rss_mib([sys.executable, "-m", "ganforge", "eval", "--fake", str(real), "--n", "1000",
                                 "--real", real_side, "--extractor", "mnist", "--metrics", "fid", "--cache", "none",
                                 "--out", tmp])
        cold = drop_page_cache()
        peak = evaluate(str(real))
        small = evaluate("digits")
        print("\n| real side of `ganforge eval` | images | decoded size (MiB) | peak RSS (MiB) |")
        print("|---|---|---|---|")
        print(f"| memory-mapped .npy, 32x32x3, {'cold page cache' if cold else 'page cache not emptied'} "
              f"| {args.eval_n:,} | {decoded:.0f} | {peak:.0f} |")
        print(f"| scikit-learn digits in memory, 32x32x1 | 1,797 | {1797 * 32 * 32 / 2**20:.0f} | {small:.0f} |")


if __name__ == "__main__":
    main()
