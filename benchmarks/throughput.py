"""Train-step throughput of the DCGAN, side by side: the classic PyTorch example, a plain PyTorch
loop of the same network, and `ganforge train`; plus FLOPs per image-step, the machine's matmul
peak, a profile of where a step's time goes, and the peak memory of the default training.

    python benchmarks/throughput.py --example /path/to/examples/dcgan/main.py

Every row runs in its own process, one after the other, with PyTorch's default threads. The
classic example (pytorch/examples dcgan/main.py, read from its public source and never copied
here) runs as it is: `--dataset fake` (its FakeData pipeline, 3 x 64 x 64, DataLoader with its
default 2 workers), batch 64, one epoch; its img/s is taken from the times its per-iteration
lines arrive, after 3 warm-up iterations. The plain loop is the example's training step written
out (BCE losses, Adam 2e-4 / 0.5, D then G) on ganforge's DCGAN modules, which at width 64 are
the example's network, with the data already in memory. ganforge runs its real CLI with the
classic recipe (no R1, Adam 2e-4 / 0.5, no learning-rate decay) and everything on: EMA of G,
logging, sample grids and checkpoints; its img/s is the mean of `img_per_s` in log.jsonl after
the first interval.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from ganforge.logs import read_log
from ganforge.models.dcgan import Discriminator, Generator

PLAIN_STEPS = {32: 40, 64: 16}
GANFORGE_STEPS = {32: 120, 64: 48}
CLASSIC = ["loss=nonsaturating", "r1_gamma=0", "lr_g=2e-4", "lr_d=2e-4", "beta1=0.5", "beta2=0.999", "lr_decay=none",
           "g_width=64", "d_width=64", "batch_size=64", "conditional=0", "log_every=8", "sample_every=40",
           "checkpoint_every=40"]


def plain_step(G, D, opt_G, opt_D, real, z_dim=100):
    """The classic example's training step (BCE on sigmoid outputs, as it writes it)."""
    bce = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(len(real)), torch.zeros(len(real))
    D.zero_grad()
    loss_real = bce(D(real), ones)
    loss_real.backward()
    fake = G(torch.randn(len(real), z_dim))
    loss_fake = bce(D(fake.detach()), zeros)
    loss_fake.backward()
    opt_D.step()
    G.zero_grad()
    bce(D(fake), ones).backward()
    opt_G.step()


def models(resolution: int, channels: int):
    torch.manual_seed(0)
    G, D = Generator(100, resolution, channels, 64), Discriminator(resolution, channels, 64)
    return (G, D, torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999)),
            torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999)))


def run_plain(resolution: int, channels: int) -> float:
    """img/s of the plain loop (in a child process, so that every row starts alike)."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import throughput as t; "
            f"print(t._plain({resolution}, {channels}))")
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def _plain(resolution: int, channels: int) -> float:
    G, D, opt_G, opt_D = models(resolution, channels)
    data = torch.rand(2048, channels, resolution, resolution) * 2 - 1
    for i in range(3):
        plain_step(G, D, opt_G, opt_D, data[i * 64:(i + 1) * 64])
    began = time.perf_counter()
    for i in range(PLAIN_STEPS[resolution]):
        plain_step(G, D, opt_G, opt_D, data[(i * 64) % 1984:(i * 64) % 1984 + 64])
    return PLAIN_STEPS[resolution] * 64 / (time.perf_counter() - began)


def run_ganforge(resolution: int, data: str, extra: list[str], out: Path, name: str) -> float:
    subprocess.run([sys.executable, "-m", "ganforge", "train", "--data", data, "--resolution", str(resolution),
                    "--steps", str(GANFORGE_STEPS[resolution]), "--out", str(out), "--name", name, "--no-progress",
                    *CLASSIC, *extra], check=True, capture_output=True)
    steps = [e for e in read_log(out / name / "log.jsonl")[0] if "img_per_s" in e]  # not the event or FID lines
    return statistics.mean(e["img_per_s"] for e in steps[1:])


def run_example(script: Path, out: Path) -> float:
    proc = subprocess.Popen([sys.executable, "-u", str(script), "--dataset", "fake", "--imageSize", "64",
                             "--batchSize", "64", "--niter", "1", "--outf", str(out / "example"), "--manualSeed", "0"],
                            stdout=subprocess.PIPE, text=True)
    arrivals = [time.perf_counter() for line in proc.stdout if line.startswith("[0/1]")]
    proc.wait()
    warm = arrivals[3:]
    return (len(warm) - 1) * 64 / (warm[-1] - warm[0])


def flops_per_image(resolution: int, channels: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    G, D, opt_G, opt_D = models(resolution, channels)
    real = torch.rand(64, channels, resolution, resolution)
    with FlopCounterMode(display=False) as counter:
        plain_step(G, D, opt_G, opt_D, real)
    return counter.get_total_flops() / 64


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 3.0) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - began)


def profile(resolution: int, channels: int) -> list[tuple[str, float]]:
    G, D, opt_G, opt_D = models(resolution, channels)
    real = torch.rand(64, channels, resolution, resolution)
    plain_step(G, D, opt_G, opt_D, real)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            plain_step(G, D, opt_G, opt_D, real)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::") or "Backward" in e.key]
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    return [(e.key, e.self_cpu_time_total / total) for e in top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--example", type=Path, help="pytorch/examples dcgan/main.py (skipped when absent)")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="ganforge-speed-"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}")
    # First, before any other child process: ru_maxrss of children is the peak over all of them.
    subprocess.run([sys.executable, "-m", "ganforge", "train", "--steps", "300", "--out", str(out), "--name",
                    "default", "--no-progress"], check=True, capture_output=True)
    peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS of `ganforge train` (default settings, 300 steps): {peak_rss:.0f} MiB", flush=True)

    rows = []
    for resolution, channels, data in ((64, 3, "stacked-mnist"), (32, 1, "mnist5k")):
        plain = run_plain(resolution, channels)
        rows.append((resolution, "plain PyTorch loop, fp32", plain, 1.0))
        if resolution == 64 and args.example and args.example.exists():
            rows.append((64, "pytorch/examples dcgan/main.py, fp32", run_example(args.example, out), None))
        for label, extra in (("ganforge train, fp32", []),
                             ("ganforge train, channels_last", ["channels_last=1"]),
                             ("ganforge train, bf16", ["precision=bf16"]),
                             ("ganforge train, bf16 + channels_last", ["precision=bf16", "channels_last=1"]),
                             ("ganforge train, bf16 + channels_last + compile",
                              ["precision=bf16", "channels_last=1", "compile=1"])):
            rows.append((resolution, label, run_ganforge(resolution, data, extra, out, f"{resolution}-{len(rows)}"), None))
        print(f"... {resolution} px done", flush=True)

    print()
    print("| px | what | img/s | / plain loop |")
    print("|---|---|---|---|")
    plain_of = {r: v for r, label, v, _ in rows if label.startswith("plain")}
    for resolution, label, value, _ in rows:
        print(f"| {resolution} | {label} | {value:.1f} | {value / plain_of[resolution]:.2f}x |")

    print()
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(f"matmul peak (2048x2048): fp32 {peak32 / 1e9:.0f} GFLOP/s, bf16 {peak16 / 1e9:.0f} GFLOP/s")
    print("| px | GFLOP per image-step | plain fp32 loop: GFLOP/s | share of fp32 peak |")
    print("|---|---|---|---|")
    for resolution, channels, _ in ((64, 3, None), (32, 1, None)):
        gflop = flops_per_image(resolution, channels) / 1e9
        achieved = gflop * plain_of[resolution]
        print(f"| {resolution} | {gflop:.3f} | {achieved:.0f} | {achieved / (peak32 / 1e9):.0%} |")

    print()
    print("Where a plain fp32 step's time goes at 64 px (self CPU time, top ops):")
    for key, share in profile(64, 3):
        print(f"  {share:6.1%}  {key}")



if __name__ == "__main__":
    main()
