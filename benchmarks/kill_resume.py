"""Kill -9 a real training run at random moments, continue it, and compare with a run never killed.

    python benchmarks/kill_resume.py --kills 10 --steps 400 --seed 0

First one uninterrupted run of the default training (`ganforge train`, shortened to --steps, a
checkpoint every --every steps) is timed. Then, for each kill, a fresh run with the same command is
started, sent SIGKILL at a moment drawn uniformly over the reference run's wall time (start-up,
data loading and checkpoint writes included), and continued by running the same command again
until it finishes. Its final checkpoint (every tensor: G, D, G_ema, both optimizers, every random
generator's state) is compared bit for bit with the reference's. Prints one markdown row per kill.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ganforge import checkpoint


def final_tensors(run: Path) -> tuple[dict[str, torch.Tensor], dict]:
    return checkpoint.load(checkpoint.find(run))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=50, help="steps between checkpoints")
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    args = parser.parse_args()

    out = Path(tempfile.mkdtemp(prefix="ganforge-kill-"))

    def command(name: str) -> list[str]:
        return [sys.executable, "-m", "ganforge", "train", "--data", args.data, "--steps", str(args.steps),
                "--out", str(out), "--name", name, "--no-progress", f"checkpoint_every={args.every}"]

    try:
        began = time.perf_counter()
        subprocess.run(command("reference"), check=True, capture_output=True)
        duration = time.perf_counter() - began
        reference, ref_record = final_tensors(out / "reference")
        print(f"reference run: {args.steps} steps in {duration:.1f} s, {len(reference)} tensors in its last checkpoint")
        print()
        print("| kill | SIGKILL after (s) | newest checkpoint at the kill | resumed from step | "
              "final step | tensors bitwise equal |")
        print("|---|---|---|---|---|---|")
        rng = random.Random(args.seed)
        identical = 0
        for k in range(1, args.kills + 1):
            name = f"kill{k}"
            moment = rng.uniform(0, duration)
            proc = subprocess.Popen(command(name), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout=moment)
                killed = False
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed = True
            kept = checkpoint.checkpoints(out / name)
            at_kill = kept[-1].name if kept else "none"
            resumed = subprocess.run(command(name), capture_output=True, text=True)
            start = next((line.split("from step ")[1].split()[0] for line in resumed.stdout.splitlines()
                          if "from step" in line), "-")
            tensors, record = final_tensors(out / name)
            equal = (tensors.keys() == reference.keys()
                     and all(torch.equal(tensors[key], reference[key]) for key in reference)
                     and (record["step"], record["nimg"]) == (ref_record["step"], ref_record["nimg"]))
            identical += equal
            print(f"| {k} | {moment:.1f}{'' if killed else ' (had finished)'} | {at_kill} | {start} | "
                  f"{record['step']} | {'yes' if equal else 'NO'} |", flush=True)
            if resumed.returncode != 0:
                print(f"  resume exited {resumed.returncode}: {resumed.stderr.strip()[-300:]}")
            shutil.rmtree(out / name)
        print()
        print(json.dumps({"kills": args.kills, "bitwise_identical": identical, "steps": args.steps,
                          "checkpoint_every": args.every, "reference_seconds": round(duration, 1)}))
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
