"""Where a Stacked MNIST run's KL over the ~0.019 floor comes from: G's digit shares per channel.

    python benchmarks/stacked_mnist_shares.py RUN                      # shares, and what D says of them
    python benchmarks/stacked_mnist_shares.py RUN --average-last 1 4 8   # G_ema averaged over checkpoints
    python benchmarks/stacked_mnist_shares.py --degraded-real          # the judge on degraded real digits

For a run (26,000 samples of G_ema, z seed 1000, as in stacked_mnist.py), per channel:
- the digit shares of all samples, of the recognised ones (classifier confidence >= 0.9) and of
  the rest, each with its KL to uniform;
- D's mean logit on the samples of each digit, and the channel KL after weighting each sample by
  exp(logit): what discriminator rejection sampling (Azadi et al. 2019) could correct, since for
  the non-saturating loss D's logit estimates log p_data / p_G. D runs in train mode on batches of
  32 fakes, as in training (its batch norm normalises each batch); a packed D's logit (pack=N) is
  given to each of the N images it judged.
`--average-last N ...`: the KL and channel KLs of G_ema's weights averaged over the run's last N
checkpoints (batch-norm statistics recomputed), i.e. what a longer EMA would draw.
`--degraded-real`: the judge's shares on mnist5k's 5,000 real digits (exactly 10% each) after
elastic distortion, blur, or blending with another digit, at strengths where it recognises about
as many as it does of G's: does the judge's own error skew the shares?
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torchvision.transforms.v2 as T

import ganforge
from ganforge import checkpoint
from ganforge.checkpoint import unprefixed
from ganforge.data import load_source
from ganforge.ema import refresh_batchnorm
from ganforge.errors import UserError
from ganforge.metrics import stacked_mnist_report
from ganforge.metrics.digits import RECOGNISED_CONFIDENCE, classify_digits
from ganforge.metrics.modes import _kl_to_uniform as kl_to_uniform  # the one stacked_mnist_report uses
from ganforge.models import build_discriminator, build_generator
from ganforge.sample import draws
from ganforge.train import pack_images

N, SEED = 26_000, 1000
CHANNELS = ("red", "green", "blue")


def shares(pred: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Digit shares (10,) of predictions, optionally weighted per sample."""
    w = torch.ones(len(pred), dtype=torch.double) if weight is None else weight.double()
    return torch.zeros(10, dtype=torch.double).index_add_(0, pred, w) / w.sum()


def row(label: str, p: torch.Tensor) -> str:
    return f"| {label} | {kl_to_uniform(p):.4f} | " + " ".join(f"{v:.3f}" for v in p.tolist()) + " |"


def judge_shares(run: Path) -> None:
    gen = ganforge.load(run, "cpu")
    _, tensors, record = checkpoint.load_newest(run)
    D = build_discriminator(record["model"])
    try:
        checkpoint.load_module(D, "D", tensors, record, fix="judge it with the ganforge version that trained it")
    except UserError as err:
        sys.exit(f"{run}: {err}")
    D.requires_grad_(False).train()  # train-mode batch norm on all-fake batches of 32, as in training
    z, classes = draws(N, gen.G, SEED)  # the samples of gen.sample(N, seed=SEED), and their classes
    img = gen.generate(z, classes)
    pack = record["config"].get("pack", 1)  # a packed D's logit judges `pack` images: each gets it
    # A self-conditioned D judges each sample with its cluster.
    c = [()] * -(-N // 32) if classes is None else [(chunk,) for chunk in classes.split(32)]
    with torch.no_grad():
        logits = torch.cat([D(pack_images(chunk, pack), *c_chunk).float().repeat_interleave(pack)
                            for chunk, c_chunk in zip(img.split(32), c)])
    weight = (logits - logits.max()).exp()
    print(f"{run}, step {gen.step}: D's logits on G_ema's samples mean {logits.mean():.3f}, std {logits.std():.3f}; "
          f"exp(logit) weights keep an effective {float(weight.sum() ** 2 / (weight ** 2).sum()):.0f} of {N} samples\n")
    print("| channel: samples | KL to uniform | shares of digits 0-9 |\n|---|---|---|")
    for c, name in enumerate(CHANNELS):
        pred, conf = classify_digits(img[:, c:c + 1])
        sure = conf >= RECOGNISED_CONFIDENCE
        print(row(f"{name}: all", shares(pred)))
        print(row(f"{name}: recognised ({float(sure.float().mean()):.3f})", shares(pred[sure])))
        print(row(f"{name}: the rest", shares(pred[~sure])))
        print(row(f"{name}: all, weighted by exp(D's logit)", shares(pred, weight)))
        mean_logit = [float(logits[pred == d].mean()) for d in range(10)]
        print(f"| {name}: D's mean logit per digit | | " + " ".join(f"{v:+.2f}" for v in mean_logit) + " |")


def averaged_generator(paths: list[Path], model: dict) -> torch.nn.Module:
    """G_ema with its weights averaged over checkpoints, batch-norm statistics recomputed."""
    states = [unprefixed("G_ema", checkpoint.load(p)[0]) for p in paths]
    mean = {k: torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[-1].items()}
    G = build_generator(model)
    G.load_state_dict(mean)
    refresh_batchnorm(G, G.z_dim)
    return G.eval().requires_grad_(False)


def judge_averages(run: Path, windows: list[int]) -> None:
    paths = checkpoint.checkpoints(run)
    _, record = checkpoint.load(paths[-1])
    print(f"\n{run}: {len(paths)} checkpoints kept, every {record['config']['checkpoint_every']} steps\n")
    print("| G_ema averaged over the last | modes | KL to uniform | channel KLs |\n|---|---|---|---|")
    for w in windows:
        if w > len(paths):
            print(f"| {w} checkpoints | (only {len(paths)} kept) | | |")
            continue
        G = averaged_generator(paths[-w:], record["model"])
        with torch.no_grad():
            z, classes = draws(N, G, SEED)
            c = [()] * -(-N // 512) if classes is None else [(chunk,) for chunk in classes.split(512)]
            img = torch.cat([G(chunk, *c_chunk) for chunk, c_chunk in zip(z.split(512), c)])
        report = stacked_mnist_report(img)
        print(f"| {w} checkpoints | {report['modes']} | {report['kl']:.4f} | "
              + " / ".join(f"{v:.4f}" for v in report["channel_kl"]) + " |", flush=True)


def judge_degraded_real() -> None:
    real = load_source("mnist5k", 32).data.float() / 127.5 - 1  # (5000, 1, 32, 32), 500 of each digit
    torch.manual_seed(0)  # torchvision's random transforms draw from the global generator
    other = real[torch.randperm(len(real))]
    cases = {"clean": real}
    for alpha in (35.0, 50.0):
        elastic = T.ElasticTransform(alpha=alpha, sigma=4.0)
        cases[f"elastic, alpha {alpha:.0f} (3 draws)"] = torch.cat([torch.stack([elastic(x) for x in real])
                                                                    for _ in range(3)])
    cases["blur, sigma 1.5"] = T.GaussianBlur(7, sigma=1.5)(real)
    for w in (0.3, 0.4):
        cases[f"blend, {w} of another digit"] = ((1 - w) * real + w * other).clamp(-1, 1)
    print("| real mnist5k digits | recognised | KL to uniform | shares of digits 0-9 |\n|---|---|---|---|")
    for label, img in cases.items():
        pred, conf = classify_digits(img)
        p = shares(pred)
        print(f"| {label} | {float((conf >= RECOGNISED_CONFIDENCE).float().mean()):.3f} | {kl_to_uniform(p):.4f} | "
              + " ".join(f"{v:.3f}" for v in p.tolist()) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="?", help="a Stacked MNIST run folder")
    parser.add_argument("--average-last", type=int, nargs="+", default=[], metavar="N")
    parser.add_argument("--degraded-real", action="store_true")
    args = parser.parse_args()
    if args.run is None and not args.degraded_real:
        parser.error("name a run folder, or pass --degraded-real")
    if args.degraded_real:
        judge_degraded_real()
    if args.run is not None:
        judge_shares(args.run)
        if args.average_last:
            judge_averages(args.run, args.average_last)


if __name__ == "__main__":
    main()
