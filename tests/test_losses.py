"""Losses against values worked by hand: with D(x) = sigmoid(logit), logit = ln 3 gives D = 3/4."""
import math

import pytest
import torch

from ganforge.losses import (
    G_LOSSES,
    d_loss,
    g_loss_minimax,
    g_loss_nonsaturating,
    r1_penalty,
)

LN3 = math.log(3.0)


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_d_loss_at_even_odds_is_2_ln_2():
    # D(x) = D(G(z)) = 1/2: -(log 1/2 + log 1/2) = 2 ln 2
    assert d_loss(t(0.0), t(0.0)).item() == pytest.approx(2 * math.log(2), abs=1e-12)


def test_d_loss_by_hand():
    # D(x) = 3/4 and D(G(z)) = 1/4: -(log 3/4 + log(1 - 1/4)) = -2 log 0.75
    assert d_loss(t(LN3), t(-LN3)).item() == pytest.approx(-2 * math.log(0.75), abs=1e-12)
    # means over the batch: D(x) in {3/4, 1/4}, D(G(z)) = 1/2
    expected = -(math.log(0.75) + math.log(0.25)) / 2 - math.log(0.5)
    assert d_loss(t(LN3, -LN3), t(0.0, 0.0)).item() == pytest.approx(expected, abs=1e-12)


def test_g_losses_by_hand():
    # D(G(z)) = 1/4. Non-saturating: -log 1/4. Minimax: log(1 - 1/4).
    assert g_loss_nonsaturating(t(-LN3)).item() == pytest.approx(-math.log(0.25), abs=1e-12)
    assert g_loss_minimax(t(-LN3)).item() == pytest.approx(math.log(0.75), abs=1e-12)
    assert set(G_LOSSES) == {"nonsaturating", "minimax"}


def test_gradient_signs():
    # D's loss pushes real logits up and fake logits down; both G losses push fake logits up.
    real, fake = t(0.3).requires_grad_(), t(-0.2).requires_grad_()
    d_loss(real, fake).backward()
    assert real.grad.item() < 0 < fake.grad.item()
    for g_loss in G_LOSSES.values():
        fake = t(-0.2).requires_grad_()
        g_loss(fake).backward()
        assert fake.grad.item() < 0


def test_minimax_saturates_where_nonsaturating_does_not():
    # When D confidently rejects fakes (logit -10), minimax gradient ~ sigmoid(-10) ~ 4.5e-5.
    fakes = [t(-10.0).requires_grad_() for _ in range(2)]
    g_loss_minimax(fakes[0]).backward()
    g_loss_nonsaturating(fakes[1]).backward()
    assert abs(fakes[0].grad.item()) == pytest.approx(1 / (1 + math.exp(10)), rel=1e-9)
    assert abs(fakes[1].grad.item()) == pytest.approx(1 / (1 + math.exp(-10)), rel=1e-9)


@pytest.mark.parametrize("logit", [-1e4, 1e4])
def test_finite_at_extreme_logits(logit):
    for value in (d_loss(t(logit), t(-logit)), d_loss(t(-logit), t(logit)),
                  g_loss_minimax(t(logit)), g_loss_nonsaturating(t(logit)), g_loss_nonsaturating(t(-logit))):
        assert torch.isfinite(value)
    x = torch.tensor([logit], requires_grad=True)
    g_loss_nonsaturating(x).backward()
    assert torch.isfinite(x.grad).all()


def test_r1_of_a_linear_discriminator_is_its_squared_weight_norm():
    # D(x) = w.x + b has grad_x D = w everywhere, so R1 = |w|^2; with scale s, |w * s|^2.
    w = torch.tensor([0.5, -2.0, 1.0], dtype=torch.float64)
    real = torch.randn(7, 3, dtype=torch.float64).requires_grad_()
    logits = real @ w + 0.3
    assert r1_penalty(real, logits).item() == pytest.approx(5.25, abs=1e-12)
    scale = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    assert r1_penalty(real, real @ w, scale).item() == pytest.approx(1 + 4 + 0.25, abs=1e-12)
