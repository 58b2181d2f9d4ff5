"""GAN losses as pure functions on D's logits (D's raw, unbounded output).

D outputs a logit l; D(x) = sigmoid(l) is its probability that x is real. Every loss below is a
quantity to *minimise* and is written with softplus, so it is finite for every finite logit:
    log D(x)       = log sigmoid(l)     = -softplus(-l)
    log(1 - D(x))  = log sigmoid(-l)    = -softplus(l)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D maximises E[log D(x)] + E[log(1 - D(G(z)))]; this returns the negative, to minimise:
    E[softplus(-real_logits)] + E[softplus(fake_logits)]."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss_minimax(fake_logits: torch.Tensor) -> torch.Tensor:
    """The original minimax form: G minimises E[log(1 - D(G(z)))] = E[-softplus(fake_logits)].
    Its gradient vanishes when D rejects the fakes confidently, early in training."""
    return -F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating form: G maximises E[log D(G(z))], i.e. minimises
    E[softplus(-fake_logits)]. Same fixed point as the minimax form, strong gradients early."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real: torch.Tensor, real_logits: torch.Tensor, scale: torch.Tensor | float = 1.0,
               grad_scale: float = 1.0) -> torch.Tensor:
    """R1 (Mescheder, Geiger & Nowozin 2018, "Which training methods for GANs actually
    converge?"): E[||grad_x D(x)||^2] at real x, to be added to D's loss times gamma / 2. `real`
    must require grad and `real_logits` come from it. The gradient is multiplied by `scale`
    (the data's std per dimension), so that gamma means the same whatever the data's units.
    Under fp16 the inner gradient is taken at `grad_scale` times the logits and divided back, as
    PyTorch's AMP recipe for gradient penalties does, so that it does not underflow."""
    (grad,) = torch.autograd.grad(real_logits.sum() * grad_scale, real, create_graph=True)
    return (grad.float() / grad_scale * scale).square().flatten(1).sum(1).mean()


def d_loss_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge (Lim & Ye 2017; SNGAN, BigGAN): D minimises E[relu(1 - D(x))] + E[relu(1 + D(G(z)))],
    with D's raw output (the logit) as its score: real scores are pushed above +1, fakes below -1."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_loss_hinge(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    """Hinge's G (and Wasserstein's): G minimises -E[D(G(z))], raising the fakes' score."""
    return -fake_logits.mean()


def d_loss_wasserstein(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Wasserstein (Arjovsky et al. 2017): the critic minimises E[D(G(z))] - E[D(x)], an estimate
    of the negative earth mover's distance when D is 1-Lipschitz. Pair it with the gradient
    penalty (Gulrajani et al. 2017, `gradient_penalty`), which keeps D near 1-Lipschitz."""
    return fake_logits.mean() - real_logits.mean()


def d_loss_least_squares(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Least squares (LSGAN, Mao et al. 2017, targets a=0, b=1): D minimises
    1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2], D's raw output being regressed to 1 on reals, 0 on fakes."""
    return 0.5 * (real_logits - 1).square().mean() + 0.5 * fake_logits.square().mean()


def g_loss_least_squares(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    """LSGAN's G (c=1): minimises 1/2 E[(D(G(z)) - 1)^2], pulling the fakes' output to the reals' target."""
    return 0.5 * (fake_logits - 1).square().mean()


def d_loss_relativistic(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Relativistic pairing (RpGAN, Jolicoeur-Martineau 2019; R3GAN, Huang et al. 2024): D minimises
    E[softplus(D(G(z)) - D(x))] over pairs (x, G(z)) of the batch, i.e. maximises the log-probability
    that each real is more realistic than its paired fake. Both batches must have the same size."""
    return F.softplus(fake_logits - real_logits).mean()


def g_loss_relativistic(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    """RpGAN's G minimises E[softplus(D(x) - D(G(z)))]: each fake should look more real than its
    paired real. `real_logits` are constants for G (pass them detached)."""
    return F.softplus(real_logits - fake_logits).mean()


def gradient_penalty(mixed: torch.Tensor, mixed_logits: torch.Tensor, grad_scale: float = 1.0) -> torch.Tensor:
    """WGAN-GP's penalty (Gulrajani et al. 2017): E[(||grad D(x_hat)|| - 1)^2] at points x_hat on
    lines between real and fake samples; to be added to D's loss times lambda (10 in the paper).
    `mixed` must require grad and `mixed_logits` come from it."""
    (grad,) = torch.autograd.grad(mixed_logits.sum() * grad_scale, mixed, create_graph=True)
    return ((grad.float() / grad_scale).flatten(1).norm(dim=1) - 1).square().mean()


@dataclass(frozen=True)
class Loss:
    """A named GAN objective: D's loss on (real_logits, fake_logits), G's on (fake_logits,
    real_logits). Only the relativistic G reads real_logits."""

    d: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g: Callable[..., torch.Tensor]
    uses_real_for_g: bool = False


def _standard_g(g_loss):
    return lambda fake_logits, real_logits=None: g_loss(fake_logits)


LOSSES: dict[str, Loss] = {
    "nonsaturating": Loss(d_loss, _standard_g(g_loss_nonsaturating)),
    "minimax": Loss(d_loss, _standard_g(g_loss_minimax)),
    "hinge": Loss(d_loss_hinge, g_loss_hinge),
    "wgan": Loss(d_loss_wasserstein, g_loss_hinge),
    "lsgan": Loss(d_loss_least_squares, g_loss_least_squares),
    "rpgan": Loss(d_loss_relativistic, g_loss_relativistic, uses_real_for_g=True),
}
G_LOSSES = {name: loss.g for name, loss in LOSSES.items()}
