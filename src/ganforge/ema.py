"""The exponential moving average of G's weights (G_ema), which is what ganforge samples from."""
from __future__ import annotations

import torch
from torch import nn


def ema_beta(nimg: int, batch_size: int, half_life_kimg: float, rampup: float) -> float:
    """Per-step decay for a half-life counted in images (StyleGAN2-ADA's convention). Early in
    training the half-life is at most `rampup` * images seen, so G_ema is not stuck at the init."""
    if half_life_kimg == 0:
        return 0.0
    half_life = half_life_kimg * 1000
    if rampup > 0:
        half_life = min(half_life, nimg * rampup)
    return 0.5 ** (batch_size / max(half_life, 1e-8))


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    torch._foreach_lerp_(list(G_ema.parameters()), list(G.parameters()), 1.0 - beta)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


@torch.no_grad()
def refresh_batchnorm(G: nn.Module, z_dim: int, batches: int = 8, batch_size: int = 256) -> None:
    """Recompute G's batch-norm statistics for its current weights.

    G's running statistics were gathered by G's changing weights, not G_ema's averaged ones; in
    eval mode those mismatched statistics blur the samples. So the statistics are recomputed from
    fixed latents, as an exact average over `batches` batches. A no-op for G without batch norm.
    """
    norms = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    device = next(G.parameters()).device
    z = torch.randn(batches * batch_size, z_dim, generator=torch.Generator().manual_seed(0))
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    G.train()
    for chunk in z.split(batch_size):
        G(chunk.to(device))
    G.eval()
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
