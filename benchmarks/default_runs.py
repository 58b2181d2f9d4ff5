"""Train with ganforge's defaults on several seeds and judge each run by its samples.

    python benchmarks/default_runs.py --data mnist5k --seeds 0 1 2
    python benchmarks/default_runs.py --data ring8 --seeds 0 1 2 3 4
    python benchmarks/default_runs.py --data grid25.npy --modes grid25 --seeds 0 1 2
    python benchmarks/default_runs.py steps=3000 precision=bf16 channels_last=1 --seeds 0 1

Each run is the real CLI (`python -m ganforge train --data D --seed S` and the key=value settings
given, nothing else), timed wall-clock, then `check_samples.py` on its EMA generator: 1,000 images
judged by the shipped digit classifier (and FID on the `mnist` extractor, 2,000 samples against
the training data), or 2,500 points against the mixture's modes. Prints one markdown row per seed and the
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

from ganforge.metrics.evaluate import evaluate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", default=None, help="mixture for a .npy source: ring8 | grid25")
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("settings", nargs="*", metavar="key=value", help="settings added to every run")
    args = parser.parse_args()

    out = Path(args.out or tempfile.mkdtemp(prefix="ganforge-bench-"))
    print(f"runs are kept in {out}", file=sys.stderr)
    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ganforge", "train", "--data", args.data, "--seed", str(seed),
                        "--out", str(out), "--name", f"seed{seed}", "--no-progress", *args.settings], check=True,
                       stdout=subprocess.DEVNULL)
        minutes = (time.perf_counter() - start) / 60
        extra = ["--modes", args.modes] if args.modes else []
        report = check_samples.main([str(out / f"seed{seed}"), "--seed", "1000", *extra])
        if report["kind"] == "image":
            report["fid"] = evaluate(out / f"seed{seed}", metrics=("fid",), extractor="mnist", n=2000, seed=1000,
                                     memorisation=False)["metrics"]["fid"]
        rows.append((seed, minutes, report))

    if rows[0][2]["kind"] == "image":
        keys = ("recognised", "min_class_share", "fid")
        print("\n| seed | minutes | recognised (conf >= 0.9) | smallest digit share | FID (mnist extractor, 2,000 samples) |"
              "\n|---|---|---|---|---|")
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
