"""Self-conditioning (Liu et al., "Diverse Image Generation via Self-Conditioned GANs", CVPR 2020):
unlabelled images are clustered in D's features, and the cluster ids train G and D as classes.

G then draws each cluster in proportion to its size, so how often it makes each kind of image is set
by the clustering rather than left to what D can see. The clusters are made again from time to time,
as D's features improve; each new clustering starts from the old clusters' means in the new features,
so cluster k keeps its meaning (the paper matches old and new clusters instead).
"""
from __future__ import annotations

import torch
from torch import nn

FIT_IMAGES = 25_000  # images the k-means is fitted on (the paper's 25,000-50,000); the rest are assigned
ITERS = 30           # Lloyd steps
CHUNK = 1024         # images per pass of D


@torch.no_grad()
def features(D: nn.Module, images: torch.Tensor, to_input, autocast) -> torch.Tensor:
    """D's pooled last features of uint8 images (N, C, H, W), unit length: (N, F) float32, on the
    CPU. D runs in eval mode (batch norm from its running statistics, spectral norm without a power
    step), so nothing of D changes. `to_input` turns a uint8 chunk into D's input on its device."""
    was_training = D.training
    D.eval()
    try:
        out = []
        for chunk in images.split(CHUNK):
            with autocast():
                out.append(D.features(to_input(chunk)).float().cpu())
    finally:
        D.train(was_training)
    return nn.functional.normalize(torch.cat(out), dim=1)


def kmeans(x: torch.Tensor, centres: torch.Tensor, iters: int = ITERS) -> torch.Tensor:
    """Lloyd's k-means on the rows of x (N, F) from the given centres (K, F); returns the centres.
    A cluster left empty restarts at the point farthest from its centre, so none stays empty."""
    centres = centres.clone()
    for _ in range(iters):
        dist = torch.cdist(x, centres)                          # (N, K)
        nearest, assigned = dist.min(1)
        sums = torch.zeros_like(centres).index_add_(0, assigned, x)
        counts = torch.bincount(assigned, minlength=len(centres))
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
        for k in (counts == 0).nonzero().flatten().tolist():
            far = nearest.argmax()
            centres[k], nearest[far] = x[far], 0.0
    return centres


def assign(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Each row's nearest centre: (N,) int64."""
    return torch.cat([torch.cdist(part, centres).argmin(1) for part in x.split(65536)])


def seeds(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ (Arthur & Vassilvitskii 2007): k starting centres (k, F) among the rows of x, each
    next one drawn with probability in proportion to its squared distance from the nearest chosen."""
    chosen = [int(torch.randint(len(x), (1,), generator=generator))]
    d2 = (x - x[chosen[0]]).square().sum(1)
    for _ in range(k - 1):
        chosen.append(int(torch.multinomial(d2.clamp_min(1e-12), 1, generator=generator)))
        d2 = torch.minimum(d2, (x - x[chosen[-1]]).square().sum(1))
    return x[chosen]


def cluster(feats: torch.Tensor, k: int, old: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    """Cluster ids (N,) of the feature rows. k-means is fitted on up to FIT_IMAGES of them, drawn with
    `generator`, starting from the means of the `old` clusters where given (clusters with no member
    keep a k-means++ seed), else from k-means++ seeds; then every row goes to its nearest centre."""
    fit = feats[torch.randperm(len(feats), generator=generator)[:FIT_IMAGES]]
    centres = seeds(fit, k, generator)
    if old is not None:
        sums = torch.zeros(k, feats.shape[1]).index_add_(0, old, feats)
        counts = torch.bincount(old, minlength=k)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
    return assign(feats, kmeans(fit, centres))


def sizes(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Each cluster's share of the images: (k,) float32, summing to 1."""
    counts = torch.bincount(labels.cpu(), minlength=k).float()
    return counts / counts.sum()
