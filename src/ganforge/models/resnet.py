"""ResNet GANs with spectral normalisation, for 32 to 128 px images.

- Miyato, Kataoka, Koyama & Yoshida, "Spectral Normalization for Generative Adversarial Networks",
  ICLR 2018 (SNGAN): residual G and D, every layer of D divided by its largest singular value,
  global sum pooling, the first block of D without its leading ReLU.
- Miyato & Koyama, "cGANs with Projection Discriminator", ICLR 2018: a class-conditional D adds
  the inner product of a class embedding with its pooled features to the logit.
- Brock, Donahue & Simonyan, "Large Scale GAN Training for High Fidelity Natural Image
  Synthesis", ICLR 2019 (BigGAN): a class-conditional G has conditional batch norm whose gains and
  biases are linear maps of one class embedding shared by every layer.
- Karras, Aila, Laine & Lehtinen, "Progressive Growing of GANs", ICLR 2018: with `mbstd`, D's last
  block also sees the minibatch standard deviation of its features.

Sizes: the feature map at resolution r has width * min(8, R / r) channels in both nets, so
`width` is the channel count at full resolution and the 4x4 maps are at most 8 * width wide. At
32 px, G with width 32 is 256 -> 128 -> 64 -> 32 channels and D with width 16 is
32 -> 64 -> 128 -> 128, the widest layers of SNGAN's CIFAR-10 nets.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.models.dcgan import MinibatchStddev, default_labels

EMBED_DIM = 128  # G's shared class embedding (BigGAN's shared_dim)


def _check_resolution(resolution: int) -> int:
    """Number of residual blocks between 4x4 and the image."""
    if resolution not in (32, 64, 128):
        raise ValueError(f"the ResNet GAN is built for 32, 64 or 128 px, got {resolution}: use arch=dcgan "
                         "for other sizes")
    return int(math.log2(resolution)) - 2


def _channels(resolution: int, r: int, width: int) -> int:
    return width * min(8, resolution // r)


def _init(module: nn.Module) -> None:
    """SNGAN's initialisation: Xavier-uniform weights, gain sqrt(2) inside the residual branches
    (they feed ReLUs) and 1 elsewhere; zero biases. Conditional batch norm starts as plain batch
    norm: gain 1, bias 0 for every class."""
    for name, m in module.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, math.sqrt(2) if name.endswith(("conv1", "conv2")) else 1.0)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, ConditionalBatchNorm):
            for linear in (m.gain, m.bias):
                nn.init.zeros_(linear.weight)


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose per-channel gain and bias come from the class embedding e (B, EMBED_DIM):
    gain = 1 + W_g e + b_g, bias = W_b e + b_b, each W and b zero at first (see _init)."""

    def __init__(self, c: int, embed_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(c, affine=False)
        self.gain, self.bias = nn.Linear(embed_dim, c), nn.Linear(embed_dim, c)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        gain, bias = 1 + self.gain(e), self.bias(e)  # (B, C) each
        return self.bn(x) * gain[:, :, None, None] + bias[:, :, None, None]


class BatchNorm(nn.BatchNorm2d):
    """Plain batch norm that takes (and ignores) the class embedding, as ConditionalBatchNorm does."""

    def forward(self, x: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


class GBlock(nn.Module):
    """(B, c_in, r, r) -> (B, c_out, 2r, 2r): BN-ReLU-upsample-conv3x3-BN-ReLU-conv3x3, plus the
    input through a 1x1 conv, upsampled."""

    def __init__(self, c_in: int, c_out: int, embed_dim: int = 0):
        super().__init__()
        norm = (lambda c: ConditionalBatchNorm(c, embed_dim)) if embed_dim else BatchNorm
        self.norm1, self.conv1 = norm(c_in), nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.norm2, self.conv2 = norm(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.norm1(x, e)), scale_factor=2)  # nearest neighbour
        h = self.conv2(F.relu(self.norm2(self.conv1(h), e)))
        return h + F.interpolate(self.shortcut(x), scale_factor=2)  # 1x1 conv first: the same, 4x cheaper


class Generator(nn.Module):
    """z (B, z_dim) [, c (B,) int64] -> img (B, channels, resolution, resolution) in [-1, 1].

    A class-conditional G (`num_classes` > 0) given no labels cycles through the classes, or with
    `prior` (the buffer `class_prior`, for self-conditioning) gives each its share of the batch."""

    def __init__(self, z_dim: int = 128, resolution: int = 32, channels: int = 3, width: int = 32,
                 num_classes: int = 0, prior: bool = False):
        super().__init__()
        n_up = _check_resolution(resolution)
        self.z_dim, self.num_classes = z_dim, num_classes
        self.embed = nn.Embedding(num_classes, EMBED_DIM) if num_classes else None
        if prior:
            self.register_buffer("class_prior", torch.full((num_classes,), 1 / num_classes))
        c = _channels(resolution, 4, width)
        self.linear = nn.Linear(z_dim, c * 4 * 4)
        blocks, r = [], 4
        for _ in range(n_up):
            r *= 2
            c_out = _channels(resolution, r, width)
            blocks.append(GBlock(c, c_out, EMBED_DIM if num_classes else 0))
            c = c_out
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, channels, 3, 1, 1), nn.Tanh())
        _init(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        e = None
        if self.embed is not None:
            c = default_labels(len(z), self, z.device) if c is None else c
            e = self.embed(c)                                # (B, EMBED_DIM)
        h = self.linear(z).unflatten(1, (-1, 4, 4))          # (B, C, 4, 4), C = width * min(8, R / 4)
        for block in self.blocks:
            h = block(h, e)                                  # (B, C, r, r) -> (B, C', 2r, 2r)
        return self.out(h)                                   # (B, channels, R, R)


class DBlock(nn.Module):
    """(B, c_in, r, r) -> (B, c_out, r/2, r/2), or (B, c_out, r, r) without `down`:
    ReLU-conv3x3-ReLU-conv3x3-avgpool, plus the input through avgpool and a 1x1 conv (the identity
    when neither size nor channels change). SNGAN's first block reads the image: no leading ReLU."""

    def __init__(self, c_in: int, c_out: int, down: bool = True, first: bool = False):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if down or c_in != c_out else nn.Identity()
        self.down, self.first = down, first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.down:  # pooling before the 1x1 conv gives the same as after it, at a quarter of the cost
            h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
        return h + self.shortcut(x)


class Discriminator(nn.Module):
    """img (B, channels, resolution, resolution) [, c (B,)] -> logits (B,). No sigmoid: losses take logits.

    Every conv, linear and embedding is spectrally normalised (one power iteration per forward pass
    in training mode, its vectors kept as buffers, so they are checkpointed); D has no batch norm."""

    def __init__(self, resolution: int = 32, channels: int = 3, width: int = 16, num_classes: int = 0,
                 mbstd: bool = False):
        super().__init__()
        n_down = _check_resolution(resolution)
        blocks, c, r = [], channels, resolution
        for i in range(n_down):
            r //= 2
            c_out = _channels(resolution, r, width)
            blocks.append(DBlock(c, c_out, first=i == 0))
            c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.mbstd = MinibatchStddev() if mbstd else None
        self.last = DBlock(c + int(mbstd), c, down=False)  # at 4x4
        self.linear = nn.Linear(c, 1)
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, c) if num_classes else None
        _init(self)
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
                nn.utils.parametrizations.spectral_norm(m)

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """The features the projection reads: (B, C), sum-pooled over the last 4x4 map."""
        h = self.blocks(img)                            # (B, C, 4, 4)
        if self.mbstd is not None:
            h = self.mbstd(h)                           # (B, C + 1, 4, 4)
        return F.relu(self.last(h)).sum(dim=(2, 3))     # (B, C): global sum pooling

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(img)                          # (B, C)
        logits = self.linear(h).flatten()               # (B,)
        if self.embed is None:
            return logits
        if c is None:
            raise ValueError("a class-conditional D needs the labels c")
        return logits + (self.embed(c) * h).sum(1)      # projection: <embed(c), h>
