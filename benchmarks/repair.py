"""Image repair by GAN inversion on real digits that training never saw, against scikit-image's
biharmonic inpainting and mean filling, on the same images and masks.

    pip install scikit-image
    python benchmarks/repair.py --n 100 --out docs/repairs.png          # trains the GAN first
    python benchmarks/repair.py --run runs/held-out --n 100              # or uses a trained run

The mnist5k digits are split as the digit classifier splits them (`mnist_split`, seed 0): the GAN
trains with the default recipe on the 4,000 training digits only (from a .npy of them), and the
first --n of the 1,000 held-out digits are repaired. Masks: the top, bottom, left and right
halves, and random boxes covering 40% of the image (one per digit, seeded). The score is the PSNR
of the filled pixels against the original ([0, 1] range), per image, then mean and standard
deviation over images. GAN repair: `ganforge.inversion.repair` with the CLI's defaults
(300 steps, 8 restarts) unless set otherwise.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ganforge
from ganforge.metrics.digits import mnist_split
from ganforge.viz import image_grid, save_png


def masks(kind: str, n: int, r: int, seed: int) -> torch.Tensor:
    """(n, 1, r, r) bool, True = to fill."""
    fill = torch.zeros(n, 1, r, r, dtype=torch.bool)
    half = r // 2
    if kind == "top":
        fill[..., :half, :] = True
    elif kind == "bottom":
        fill[..., half:, :] = True
    elif kind == "left":
        fill[..., :, :half] = True
    elif kind == "right":
        fill[..., :, half:] = True
    else:  # a random box of 40% of the pixels, aspect ratio between 1:2 and 2:1
        rng = np.random.default_rng(seed)
        for i in range(n):
            aspect = rng.uniform(0.5, 2.0)
            h = min(r, int(round((0.4 * r * r * aspect) ** 0.5)))
            w = min(r, int(round(0.4 * r * r / h)))
            y, x = rng.integers(0, r - h + 1), rng.integers(0, r - w + 1)
            fill[i, :, y:y + h, x:x + w] = True
    return fill


def psnr(a: torch.Tensor, b: torch.Tensor, fill: torch.Tensor) -> list[float]:
    """Per image, over the filled pixels; images in [-1, 1] compared in [0, 1]."""
    err = (((a - b) / 2).square() * fill).flatten(1).sum(1) / fill.flatten(1).sum(1)
    return (10 * torch.log10(1 / err.clamp(min=1e-10))).tolist()


def biharmonic(img: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    from skimage.restoration import inpaint_biharmonic

    out = [inpaint_biharmonic(x[0].numpy().astype(np.float64), m[0].numpy()) for x, m in zip(img, fill)]
    return torch.from_numpy(np.stack(out)).float()[:, None]


def mean_fill(img: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    known = ~fill
    mean = (img * known).flatten(1).sum(1) / known.flatten(1).sum(1)
    return torch.where(fill, mean.view(-1, 1, 1, 1), img)


def train_on_split(out: Path) -> Path:
    img_train = mnist_split(0)[0]  # (4000, 1, 32, 32) uint8
    np.save(out / "train4000.npy", img_train[:, 0].numpy())
    subprocess.run([sys.executable, "-m", "ganforge", "train", "--data", str(out / "train4000.npy"), "--out", str(out),
                    "--name", "held-out", "--no-progress"], check=True)
    return out / "held-out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a run trained on the 4,000 training digits (default: train one)")
    parser.add_argument("--n", type=int, default=100, help="held-out digits repaired per mask")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--restarts", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("repairs.png"), help="picture of 16 repairs")
    args = parser.parse_args()

    run = args.run or train_on_split(Path(tempfile.mkdtemp(prefix="ganforge-repair-")))
    gen = ganforge.load(run, "cpu")
    img = mnist_split(0)[2][:args.n].float() / 127.5 - 1  # held-out digits, (n, 1, 32, 32) in [-1, 1]
    print(f"run {run} (step {gen.step}), {args.n} held-out digits, {args.steps} steps x {args.restarts} restarts")
    print("\n| mask | GAN repair PSNR (dB) | biharmonic | mean fill | GAN - biharmonic |")
    print("|---|---|---|---|---|")
    shown = []
    for kind in ("top", "bottom", "left", "right", "box40"):
        fill = masks(kind, args.n, img.shape[-1], args.seed)
        ours = gen.repair(img, fill, steps=args.steps, restarts=args.restarts, seed=args.seed)
        bih = biharmonic(img, fill)
        scores = [psnr(x, img, fill) for x in (ours, bih, mean_fill(img, fill))]
        means = [statistics.mean(s) for s in scores]
        stds = [statistics.stdev(s) for s in scores]
        print(f"| {kind} | {means[0]:.2f} +- {stds[0]:.2f} | {means[1]:.2f} +- {stds[1]:.2f} | "
              f"{means[2]:.2f} +- {stds[2]:.2f} | {means[0] - means[1]:+.2f} |", flush=True)
        if kind in ("top", "left", "box40"):
            k = 6 if kind == "box40" else 5
            masked = torch.where(fill, torch.zeros_like(img), img)[:k]
            shown.append(torch.cat([img[:k], masked, ours[:k], bih[:k]]))
    # Rows of the picture: original, masked (grey = to fill), GAN repair, biharmonic; 16 digits.
    picture = torch.cat([torch.cat([s[i * (len(s) // 4):(i + 1) * (len(s) // 4)] for s in shown]) for i in range(4)])
    grid = image_grid(picture, nrow=16)
    save_png(grid.resize((grid.width * 3, grid.height * 3), Image.Resampling.NEAREST), args.out)
    print(f"\nwrote {args.out}: rows = original, masked, GAN repair, biharmonic")


if __name__ == "__main__":
    main()
