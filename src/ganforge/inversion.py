"""GAN inversion: the latent whose image best matches the known pixels of a target, and what it
gives: repairs (inpainting), projections onto what G can make (denoising), latents to edit.

The search is gradient descent on z (Adam), from several random starts at once, on the mean
squared error over the known pixels only, plus a small pull of z towards the prior's typical
shell (||z||^2 close to its dimension), so that z stays where G was trained. An optional
perceptual term compares the known parts of G(z) and of the target (unknown pixels set to black)
on the features of an extractor (`ganforge eval`'s: the digit classifier for grey images up to
64 px, Inception otherwise). The start with the lowest pixel error wins. A repair keeps every
known pixel and takes G's pixels where the mask is.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ganforge.sample import latents


class Inversion(NamedTuple):
    z: torch.Tensor              # (N, z_dim)
    image: torch.Tensor          # (N, C, H, W): G(z, class_)
    class_: torch.Tensor | None  # (N,) int64 for a class-conditional G, else None


@torch.enable_grad()
def invert(G: nn.Module, target: torch.Tensor, known: torch.Tensor | None = None, steps: int = 300,
           restarts: int = 8, lr: float = 0.05, prior: float = 1e-3, seed: int = 0,
           perceptual: float = 0.0, features=None, class_: int | None = None) -> Inversion:
    """Best latents for a batch of targets.

    target: (N, C, H, W) in [-1, 1]; known: (N, 1, H, W) bool, True where the pixel is known
    (default: all). `perceptual` > 0 weighs the feature term, with `features` a differentiable
    map of images to (B, D) (default: the extractor `ganforge eval` would pick).
    A class-conditional G is searched in `class_`, or when it is None in every class, with
    ceil(restarts / classes) starts each. The same seed gives the same result.
    """
    n, device = len(target), next(G.parameters()).device
    classes = getattr(G, "num_classes", 0)
    if classes and class_ is None:
        per_class = -(-restarts // classes)
        restarts = classes * per_class
        c = torch.arange(classes, device=device).repeat_interleave(per_class).repeat(n)  # (N * R,)
    else:
        c = torch.full((n * restarts,), class_, device=device) if classes else None
    generate = G if c is None else (lambda z: G(z, c))
    target = target.to(device)
    known = (torch.ones_like(target[:, :1], dtype=torch.bool) if known is None else known.to(device)).float()
    known_r = known.repeat_interleave(restarts, 0)
    target_r = target.repeat_interleave(restarts, 0)
    z = latents(n * restarts, G.z_dim, seed).to(device).requires_grad_(True)  # (N * R, z_dim)
    opt = torch.optim.Adam([z], lr=lr)
    count = known_r.flatten(1).sum(1).clamp(min=1) * target.shape[1]
    if perceptual > 0:
        features = features or _default_features(target, device)
        with torch.no_grad():
            target_f = features(_known_part(target_r, known_r))
    for _ in range(steps):
        img = generate(z)
        err = ((img - target_r).square() * known_r).flatten(1).sum(1) / count    # (N * R,)
        loss = err + prior * (z.square().mean(1) - 1).square()                   # 0 on the prior's shell
        if perceptual > 0:
            loss = loss + perceptual * (features(_known_part(img, known_r)) - target_f).square().mean(1)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        img = generate(z)
        err = ((img - target_r).square() * known_r).flatten(1).sum(1).view(n, restarts)
        best = err.argmin(1) + torch.arange(n, device=device) * restarts
    return Inversion(z.detach()[best].cpu(), img[best].float().cpu(), None if c is None else c[best].cpu())


def _known_part(img: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    return img * known - (1 - known)  # unknown pixels black (-1)


def _default_features(target: torch.Tensor, device):
    from ganforge.metrics.evaluate import default_extractor
    from ganforge.metrics.extractors import get_extractor

    extractor = get_extractor(default_extractor(tuple(target.shape[1:])), device)
    return lambda img: extractor.embed(img)[0].float()


def repair(G: nn.Module, img: torch.Tensor, fill: torch.Tensor, **search) -> torch.Tensor:
    """Fill the pixels where `fill` (N, 1, H, W) is True with G's best match to the rest of `img`
    (N, C, H, W) in [-1, 1]; the known pixels are kept as they are."""
    generated = invert(G, img, ~fill, **search).image
    return torch.where(fill.cpu(), generated, img.cpu())


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between latents (White 2016, "Sampling generative networks")."""
    cos = (a * b).sum(-1, keepdim=True) / (a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True))
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
