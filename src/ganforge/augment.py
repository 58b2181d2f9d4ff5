"""Differentiable augmentation for D on small data sets.

DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training", NeurIPS
2020): the same random colour, translation and cutout transforms are applied to every image D
sees, real and fake, in D's and G's updates; they are differentiable, so G learns through them
and never learns to make augmented images. Each image is augmented with probability `p`.

Adaptive p (Karras et al., "Training Generative Adversarial Networks with Limited Data",
NeurIPS 2020, ADA): D's overfitting signal r_t = E[sign(D(x))] over recent real batches is
compared with a target (0.6); p rises when D is too sure of the reals and falls otherwise, at a
speed that can move it from 0 to 1 in `ADA_KIMG` thousand images.

Every random draw comes from the generator passed in (the run's, saved in its checkpoints), so
augmented runs stay reproducible and resume exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ADA_TARGET = 0.6
ADA_KIMG = 100     # thousands of images for p to go from 0 to 1 at full speed (ADA uses 500 on big data)
ADA_INTERVAL = 4   # steps between adjustments


def _uniform(n: int, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, 1, 1, 1, generator=g).to(device)


def brightness(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x + (_uniform(len(x), g, x.device) - 0.5)


def saturation(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform(len(x), g, x.device) * 2) + mean


def contrast(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(len(x), g, x.device) + 0.5) + mean


def translation(x: torch.Tensor, g: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift by up to `ratio` of the size in each direction, filling with zeros (mid-grey in [-1, 1])."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n,), generator=g).to(x.device)
    dx = torch.randint(-sw, sw + 1, (n,), generator=g).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] - dy[:, None]).clamp(-1, h)  # (N, H) source rows, -1/h = pad
    cols = (torch.arange(w, device=x.device)[None, :] - dx[:, None]).clamp(-1, w)
    padded = F.pad(x, (1, 1, 1, 1))                                                  # (N, C, H+2, W+2)
    index_rows = (rows + 1)[:, None, :, None].expand(n, x.shape[1], h, w + 2)
    picked = padded.gather(2, index_rows)                                            # (N, C, H, W+2)
    index_cols = (cols + 1)[:, None, None, :].expand(n, x.shape[1], h, w)
    return picked.gather(3, index_cols)


def cutout(x: torch.Tensor, g: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero a square of `ratio` of the size at a random place in each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - ch % 2), (n,), generator=g).to(x.device) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (n,), generator=g).to(x.device) - cw // 2
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    inside_y = (ys >= top[:, None]) & (ys < top[:, None] + ch)                     # (N, H)
    inside_x = (xs >= left[:, None]) & (xs < left[:, None] + cw)                   # (N, W)
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])                           # (N, H, W)
    return x * keep[:, None].to(x.dtype)


POLICY = (brightness, saturation, contrast, translation, cutout)


def diff_augment(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """Images (N, C, H, W): each transform of POLICY applied to each image with probability p."""
    if p <= 0:
        return x
    for transform in POLICY:
        chosen = (torch.rand(len(x), generator=g) < p).to(x.device)[:, None, None, None]
        x = torch.where(chosen, transform(x, g), x)
    return x


def adjust_p(p: float, real_sign_mean: float, images: int) -> float:
    """ADA's update after `images` reals: p moves towards keeping E[sign(D(x))] at ADA_TARGET."""
    step = images / (ADA_KIMG * 1000)
    return min(1.0, max(0.0, p + step * (1 if real_sign_mean > ADA_TARGET else -1)))
