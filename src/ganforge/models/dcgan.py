"""DCGAN: Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR 2016.

Layer sizes follow the classic PyTorch example (pytorch/examples dcgan/main.py: ngf = ndf = 64,
nz = 100), generalised from 64 px to any power of two from 16 to 256: the feature map at
resolution r has width * min(8, R / (2r)) channels, so 64 px gives the example's network exactly
and smaller images drop its widest layers.

Class-conditional variants (`num_classes` > 0): G reads a learned class embedding beside z (the
conditional GAN of Mirza & Osindero 2014); D is a projection discriminator (Miyato & Koyama,
"cGANs with Projection Discriminator", ICLR 2018): its logit gains the inner product of a class
embedding with its last features. Without labels, G cycles through the classes (0, 1, 2, ...),
so grids and batch-norm statistics see every class alike; a G with a class prior (`prior`, for
self-conditioning: ganforge.clusters) gives each class its share of the batch instead.

With `mbstd`, D's last layer also sees the minibatch standard deviation of its features (Karras et
al., "Progressive Growing of GANs", ICLR 2018), a hint against G collapsing onto few modes.
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
    """The paper's initialisation: conv weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02), zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


CLASS_DIM = 32  # size of G's class embedding


def cycled_labels(n: int, num_classes: int, device) -> torch.Tensor:
    return torch.arange(n, device=device) % num_classes


def default_labels(n: int, G: nn.Module, device) -> torch.Tensor:
    """The classes of a batch of n given no labels: 0, 1, 2, ... in turn or, for a G with a class
    prior, each class for its share of the n items, in order (item i: the prior's (i + 0.5) / n quantile)."""
    prior = getattr(G, "class_prior", None)
    if prior is None:
        return cycled_labels(n, G.num_classes, device)
    quantiles = (torch.arange(n, device=prior.device) + 0.5) / n
    return torch.searchsorted(prior.cumsum(0), quantiles).clamp(max=len(prior) - 1).to(device)


class MinibatchStddev(nn.Module):
    """(B, C, H, W) -> (B, C + 1, H, W): one more feature map holding how much the images of a
    group differ (ProGAN's layer: the standard deviation of each feature over the group, averaged
    over features and pixels), so D can tell a varied batch from a collapsed one.

    Groups are consecutive runs of min(4, B) images. When B does not divide by that, the images left
    over form one smaller last group; a group of one image has no spread: its map is sqrt(eps)."""

    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        self.group_size, self.eps = group_size, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        g = min(self.group_size, B)
        n = B // g * g  # images in full groups
        std = self._spread(x[:n].unflatten(0, (-1, g))).repeat_interleave(g)  # (n,)
        if n < B:
            std = torch.cat([std, self._spread(x[n:][None]).expand(B - n)])    # (B,)
        return torch.cat([x, std[:, None, None, None].expand(B, 1, H, W)], dim=1)

    def _spread(self, groups: torch.Tensor) -> torch.Tensor:
        """(groups, g, C, H, W) -> (groups,)"""
        return (groups.var(1, correction=0) + self.eps).sqrt().mean(dim=(1, 2, 3))


class Generator(nn.Module):
    """z (B, z_dim) [, c (B,) int64] -> img (B, channels, resolution, resolution) in [-1, 1].

    With `prior`, G keeps how often each class is to be drawn, as the buffer `class_prior` (K,)."""

    def __init__(self, z_dim: int = 100, resolution: int = 32, channels: int = 1, width: int = 64,
                 num_classes: int = 0, prior: bool = False):
        super().__init__()
        n_up = _check_resolution(resolution)
        c = _channels(resolution, 4, width)
        extra = CLASS_DIM if num_classes else 0
        layers = [nn.ConvTranspose2d(z_dim + extra, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c), nn.ReLU(True)]
        r = 4
        for _ in range(n_up - 1):
            r *= 2
            c_out = _channels(resolution, r, width)
            layers += [nn.ConvTranspose2d(c, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
            c = c_out
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.z_dim, self.num_classes = z_dim, num_classes
        self.embed = nn.Embedding(num_classes, CLASS_DIM) if num_classes else None
        if prior:
            self.register_buffer("class_prior", torch.full((num_classes,), 1 / num_classes))
        init_weights(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            c = default_labels(len(z), self, z.device) if c is None else c
            z = torch.cat([z, self.embed(c)], dim=1)
        return self.net(z[:, :, None, None])  # (B, z_dim, 1, 1) -> (B, C, R, R)


class Discriminator(nn.Module):
    """img (B, channels, resolution, resolution) [, c (B,)] -> logits (B,). No sigmoid: losses take logits.

    With `spectral_norm`, every layer's weight is divided by its largest singular value (Miyato et
    al., "Spectral Normalization for GANs", ICLR 2018: one power iteration per forward pass, its
    vectors kept as buffers, so they are checkpointed) and D has no batch norm, as in SNGAN. Without
    `batchnorm`, D has no normalisation between layers either: each image's logit is its own, not
    relative to the batch it came in. A D without batch norm gives every conv a bias: without one, D
    would be positively homogeneous (D(a x) = a D(x), D(0) = 0), and G could drive its logits to 0 by
    shrinking every image towards mid-grey. With `mbstd`, the last layer sees one more feature map: the
    batch's spread (MinibatchStddev)."""

    def __init__(self, resolution: int = 32, channels: int = 1, width: int = 64, num_classes: int = 0,
                 spectral_norm: bool = False, mbstd: bool = False, batchnorm: bool = True):
        super().__init__()
        n_down = _check_resolution(resolution)
        r = resolution // 2
        c = _channels(resolution, r, width)
        normed = batchnorm and not spectral_norm  # batch norm's shift stands in for the biases
        layers = [nn.Conv2d(channels, c, 4, 2, 1, bias=not normed), nn.LeakyReLU(0.2, True)]
        for _ in range(n_down - 1):
            r //= 2
            c_out = _channels(resolution, r, width)
            norm = nn.BatchNorm2d(c_out) if normed else nn.Identity()
            layers += [nn.Conv2d(c, c_out, 4, 2, 1, bias=not normed), norm, nn.LeakyReLU(0.2, True)]
            c = c_out
        last = nn.Conv2d(c + int(mbstd), 1, 4, 1, 0, bias=not normed)  # 4x4 -> 1x1
        layers += [nn.Sequential(MinibatchStddev(), last) if mbstd else last]  # mbstd: (B, C + 1, 4, 4) into `last`
        self.net = nn.Sequential(*layers)
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, c) if num_classes else None
        init_weights(self)
        if self.embed is not None and not spectral_norm:  # a zero matrix has no spectral norm to divide by
            nn.init.zeros_(self.embed.weight)  # starts as the unconditional D
        if spectral_norm:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Embedding)):
                    nn.utils.parametrizations.spectral_norm(m)

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """The features the projection reads: (B, C), sum-pooled over the last 4x4 map."""
        return self.net[:-1](img).sum(dim=(2, 3))

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is None:
            return self.net(img).flatten()
        if c is None:
            raise ValueError("a class-conditional D needs the labels c")
        h = self.net[:-1](img)                                   # (B, C, 4, 4)
        projection = (self.embed(c) * h.sum(dim=(2, 3))).sum(1)  # <embed(c), sum-pooled features>
        return self.net[-1](h).flatten() + projection
