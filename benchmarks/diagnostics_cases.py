"""Do the training diagnostics fire on runs that really go wrong, and stay quiet on healthy ones?

    python benchmarks/diagnostics_cases.py                  # the failing cases below
    python benchmarks/diagnostics_cases.py --healthy RUN... # also count warnings in finished runs

Each failing case is a real `ganforge train` through the CLI with settings known to break
training; the table gives the warnings that each run's log.jsonl holds (kind and first step) and
whether the expected kind is among them. Finished healthy runs (for example the default runs of
benchmarks/default_runs.py --out DIR) are read the same way: any warning there is a false alarm.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from ganforge.logs import read_log

CASES = [  # (name, expected warning kind, settings)
    ("ring8, plain GAN: logistic loss, no R1/R2, Adam 1e-4 (0.5, 0.999), batch 256", "collapse",
     ["--data", "ring8", "--steps", "6000", "loss=nonsaturating", "r1_gamma=0", "r2_gamma=0", "lr_g=1e-4",
      "lr_d=1e-4", "beta1=0.5", "beta2=0.999", "lr_decay=none", "batch_size=256", "sample_every=500"]),
    ("mnist5k, G's learning rate 1e-6: D overpowers a G that cannot learn", "d_wins",
     ["--steps", "1500", "lr_g=1e-6", "r1_gamma=0", "conditional=0", "loss=nonsaturating", "log_every=50",
      "sample_every=500"]),
    ("mnist5k, learning rates 1.0 without R1: training breaks, the logistic losses stay bounded", "d_wins",
     ["--steps", "600", "lr_g=1", "lr_d=1", "r1_gamma=0", "conditional=0", "loss=nonsaturating", "lr_decay=none",
      "log_every=20"]),
    ("mnist5k, Wasserstein loss without its gradient penalty: the critic's scores grow without bound",
     "divergence", ["--steps", "2000", "loss=wgan", "r1_gamma=0", "conditional=0", "lr_decay=none", "log_every=20"]),
]


def warnings_of(run: Path) -> list[tuple[str, int]]:
    """(kind, step) of every warning in a run's log.jsonl, in order."""
    entries, _ = read_log(run / "log.jsonl")
    return [(e["kind"], e["step"]) for e in entries if e.get("event") == "warning"]


def describe(found: list[tuple[str, int]]) -> str:
    return ", ".join(f"{kind} at step {step}" for kind, step in found) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, nargs="*", help="run only these cases (0-based; default all)")
    parser.add_argument("--healthy", nargs="*", default=[], help="finished run folders expected to raise no warning")
    args = parser.parse_args()

    print("| run | settings | warnings in log.jsonl | expected warning given |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="ganforge-diag-") as tmp:
        for i, (name, expected, settings) in enumerate(CASES):
            if args.cases is not None and i not in args.cases:
                continue
            subprocess.run([sys.executable, "-m", "ganforge", "train", "--seed", str(args.seed), "--out", tmp,
                            "--name", f"case{i}", "--no-progress", *settings],
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            found = warnings_of(Path(tmp) / f"case{i}")
            given = "yes" if expected in {kind for kind, _ in found} else "**no**"
            print(f"| {name} | `{' '.join(settings)}` | {describe(found)} | {expected}: {given} |")
    for run in map(Path, args.healthy):
        found = warnings_of(run)
        print(f"| healthy: {run} | its config.json | {describe(found)} | none: {'yes' if not found else '**no**'} |")


if __name__ == "__main__":
    main()
