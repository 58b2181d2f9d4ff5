"""DCGAN: Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR 2016.

Layer sizes follow the classic PyTorch example (pytorch/examples dcgan/main.py: ngf = ndf = 64,
nz = 100), generalised from 64 px to any power of two from 16 to 256: the feature map at
resolution r has width * min(8, R / (2r)) channels, so 64 px gives the example's network exactly
and smaller images drop its widest layers.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def _check_resolution(resolution: int) -> int:
    """Number of stride-2 layers between 4x4 and the image."""
    if resolution < 16 or resolution > 256 or resolution & (resolution - 1):
        raise ValueError(f"DCGAN needs a power-of-two resolution from 16 to 256, got {resolution}")
    return int(math.log2(resolution)) - 2


def _channels(resolution: int, r: int, width: int) -> int:
    return width * min(8, resolution // (2 * r))


def init_weights(module: nn.Module) -> None:
    """The paper's initialisation: conv weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z (B, z_dim) -> img (B, channels, resolution, resolution) in [-1, 1]."""

    def __init__(self, z_dim: int = 100, resolution: int = 32, channels: int = 1, width: int = 64):
        super().__init__()
        n_up = _check_resolution(resolution)
        c = _channels(resolution, 4, width)
        layers = [nn.ConvTranspose2d(z_dim, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c), nn.ReLU(True)]
        r = 4
        for _ in range(n_up - 1):
            r *= 2
            c_out = _channels(resolution, r, width)
            layers += [nn.ConvTranspose2d(c, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
            c = c_out
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.z_dim = z_dim
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])  # (B, z_dim, 1, 1) -> (B, C, R, R)


class Discriminator(nn.Module):
    """img (B, channels, resolution, resolution) -> logits (B,). No sigmoid: losses take logits."""

    def __init__(self, resolution: int = 32, channels: int = 1, width: int = 64):
        super().__init__()
        n_down = _check_resolution(resolution)
        r = resolution // 2
        c = _channels(resolution, r, width)
        layers = [nn.Conv2d(channels, c, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for _ in range(n_down - 1):
            r //= 2
            c_out = _channels(resolution, r, width)
            layers += [nn.Conv2d(c, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
            c = c_out
        layers += [nn.Conv2d(c, 1, 4, 1, 0, bias=False)]  # 4x4 -> 1x1
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(img).flatten()
