"""Train with ganforge's defaults on several seeds and judge each run by its samples.

    python benchmarks/default_runs.py --data mnist5k --seeds 0 1 2
    python benchmarks/default_runs.py --data ring8 --seeds 0 1 2 3 4
    python benchmarks/default_runs.py --data grid25.npy --modes grid25 --seeds 0 1 2

Each run is the real CLI (`python -m ganforge train --data D --seed S`, nothing else set), timed
wall-clock, then `check_samples.py` on its EMA generator: 1,000 images judged by the shipped digit
classifier, or 2,500 points against the mixture's modes. Prints one markdown row per seed and the
mean and spread, ready for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import check_samples  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", default=None, help="mixture for a .npy source: ring8 | grid25")
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()

    out = Path(args.out or tempfile.mkdtemp(prefix="ganforge-bench-"))
    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ganforge", "train", "--data", args.data, "--seed", str(seed),
                        "--out", str(out), "--name", f"seed{seed}", "--no-progress"], check=True,
                       stdout=subprocess.DEVNULL)
        minutes = (time.perf_counter() - start) / 60
        extra = ["--modes", args.modes] if args.modes else []
        report = check_samples.main([str(out / f"seed{seed}"), "--seed", "1000", *extra])
        rows.append((seed, minutes, report))

    if rows[0][2]["kind"] == "image":
        keys = ("recognised", "min_class_share")
        print("\n| seed | minutes | recognised (conf >= 0.9) | smallest digit share |\n|---|---|---|---|")
    else:
        keys = ("modes_covered", "high_quality")
        print("\n| seed | minutes | modes covered | high-quality share |\n|---|---|---|---|")
    for seed, minutes, report in rows:
        print(f"| {seed} | {minutes:.1f} | " + " | ".join(f"{report[k]:.3f}" if isinstance(report[k], float)
                                                      else str(report[k]) for k in keys) + " |")
    for key in ("minutes",) + keys:
        values = [m for _, m, _ in rows] if key == "minutes" else [float(r[key]) for _, _, r in rows]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{key}: mean {statistics.mean(values):.3f}, std {spread:.3f}, min {min(values):.3f}, max {max(values):.3f}")


if __name__ == "__main__":
    main()
