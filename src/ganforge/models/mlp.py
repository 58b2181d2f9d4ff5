"""Multilayer perceptrons for vector data, such as the 2-D Gaussian mixtures of the mode-collapse
literature (Metz et al. 2017, "Unrolled GANs"; Lin et al. 2018, "PacGAN").

Both networks carry the data's per-dimension mean and std as buffers: G's output and D's input
are in data units, while the layers inside work on standardised values. Data on any scale (a ring
of radius 1, a grid spanning [-4, 4]) is then equally easy, and a checkpoint needs nothing else.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _mlp(d_in: int, d_out: int, width: int, depth: int, activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(d_in, width), activation()]
        d_in = width
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


class _Standardised(nn.Module):
    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))


class Generator(_Standardised):
    """z (B, z_dim) -> x (B, dim) in data units."""

    def __init__(self, z_dim: int, dim: int, width: int = 256, depth: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__(mean or [0.0] * dim, std or [1.0] * dim)
        self.net = _mlp(z_dim, dim, width, depth, nn.ReLU)
        self.z_dim = z_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z) * self.std + self.mean


class Discriminator(_Standardised):
    """x (B, dim) in data units -> logits (B,)."""

    def __init__(self, dim: int, width: int = 256, depth: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__(mean or [0.0] * dim, std or [1.0] * dim)
        self.net = _mlp(dim, 1, width, depth, lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std).flatten()
