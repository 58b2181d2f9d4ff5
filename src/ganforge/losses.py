"""GAN losses as pure functions on D's logits.

D outputs a logit l; D(x) = sigmoid(l) is its probability that x is real. Every loss below is a
quantity to *minimise* and is written with softplus, so it is finite for every finite logit:
    log D(x)       = log sigmoid(l)     = -softplus(-l)
    log(1 - D(x))  = log sigmoid(-l)    = -softplus(l)
"""
from __future__ import annotations

from collections.abc import Callable

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


# Name -> G loss. D's loss is the same for both forms.
G_LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "nonsaturating": g_loss_nonsaturating,
    "minimax": g_loss_minimax,
}
