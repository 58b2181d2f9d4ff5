"""Losses against values worked by hand: with D(x) = sigmoid(logit), logit = ln 3 gives D = 3/4."""
import math

import pytest
import torch

from ganforge.losses import (
    LOSSES,
    d_loss,
    d_loss_hinge,
    d_loss_least_squares,
    d_loss_relativistic,
    d_loss_wasserstein,
    g_loss_hinge,
    g_loss_least_squares,
    g_loss_minimax,
    g_loss_nonsaturating,
    g_loss_relativistic,
    gradient_penalty,
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
    assert set(LOSSES) == {"nonsaturating", "minimax", "hinge", "wgan", "lsgan", "rpgan"}


def test_gradient_signs():
    # D's loss pushes real logits up and fake logits down; both G losses push fake logits up.
    real, fake = t(0.3).requires_grad_(), t(-0.2).requires_grad_()
    d_loss(real, fake).backward()
    assert real.grad.item() < 0 < fake.grad.item()
    # (LSGAN's D pulls fakes to 0, so its fake must sit above 0 for "down" to be the direction.)
    for name, loss in LOSSES.items():
        real, fake = t(0.3).requires_grad_(), t(0.2).requires_grad_()
        loss.d(real, fake).backward()
        assert real.grad.item() < 0 < fake.grad.item(), name
        fake = t(-0.2).requires_grad_()
        loss.g(fake, t(0.3)).backward()
        assert fake.grad.item() < 0, name


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


def test_hinge_wasserstein_least_squares_and_relativistic_by_hand():
    real, fake = t(0.5, 2.0), t(-3.0, 0.25)
    # hinge: mean(relu(1 - [0.5, 2])) + mean(relu(1 + [-3, 0.25])) = 0.25 + 0.625
    assert d_loss_hinge(real, fake).item() == pytest.approx(0.25 + 0.625, abs=1e-12)
    assert g_loss_hinge(fake).item() == pytest.approx(1.375, abs=1e-12)
    # Wasserstein: mean(fake) - mean(real) = -1.375 - 1.25
    assert d_loss_wasserstein(real, fake).item() == pytest.approx(-2.625, abs=1e-12)
    # least squares: 0.5 * mean([0.25, 1]) + 0.5 * mean([9, 0.0625]); G: 0.5 * mean([16, 0.5625])
    assert d_loss_least_squares(real, fake).item() == pytest.approx(0.3125 + 2.265625, abs=1e-12)
    assert g_loss_least_squares(fake).item() == pytest.approx(4.140625, abs=1e-12)
    # relativistic pairing: D(x) - D(G(z)) = ln 3 gives D's loss softplus(-ln 3) = ln(4/3), G's ln 4
    assert d_loss_relativistic(t(LN3), t(0.0)).item() == pytest.approx(math.log(4 / 3), abs=1e-12)
    assert g_loss_relativistic(t(0.0), t(LN3)).item() == pytest.approx(math.log(4), abs=1e-12)


def test_hinge_stops_pushing_past_the_margin():
    real, fake = t(1.5).requires_grad_(), t(-1.5).requires_grad_()
    d_loss_hinge(real, fake).backward()
    assert real.grad.item() == 0 and fake.grad.item() == 0


def test_gradient_penalty_on_a_linear_critic_is_norm_minus_one_squared():
    # D(x) = w.x has gradient w everywhere: (|w| - 1)^2 with |w| = 5.
    w = t(3.0, 4.0)
    mixed = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    assert gradient_penalty(mixed, mixed @ w).item() == pytest.approx(16.0, abs=1e-12)
    unit = w / 5
    assert gradient_penalty(mixed, mixed @ unit).item() == pytest.approx(0.0, abs=1e-12)


def test_r1_on_a_linear_discriminator_is_the_squared_norm_of_w():
    # The check: R1 = E||grad_x D(x)||^2 = |w|^2 for D(x) = w.x (R2 is the same function at fakes).
    w = t(1.0, -2.0, 0.5)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert r1_penalty(x, x @ w).item() == pytest.approx(w.square().sum().item(), abs=1e-12)


@pytest.mark.parametrize("settings", [["loss=hinge"], ["loss=wgan", "gp_lambda=10"], ["loss=lsgan"],
                                      ["loss=rpgan", "r1_gamma=1", "r2_gamma=1"], ["loss=minimax", "r2_gamma=1"]])
def test_each_loss_and_penalty_trains_a_few_steps_without_non_finite_numbers(tmp_path, settings):
    import json

    from ganforge.cli import main

    assert main(["train", "--data", "digits", "--resolution", "16", "--steps", "6", "--out", str(tmp_path), "--name", "r",
                 "--no-progress", "g_width=8", "d_width=8", "batch_size=16", "log_every=3", "tensorboard=0",
                 *settings]) == 0
    logged = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged] == [3, 6]
    assert all(e["skipped"] == 0 and math.isfinite(e["loss_D"]) and math.isfinite(e["loss_G"]) for e in logged)


@pytest.mark.parametrize("arch", ["dcgan", "mlp", "resnet"])
def test_each_preset_trains_a_few_steps_without_non_finite_numbers(tmp_path, arch):
    import json

    from ganforge.cli import main
    from ganforge.config import PRESETS

    data = ["--data", "ring8"] if arch == "mlp" else ["--data", "digits", "--resolution", "32" if arch == "resnet" else "16"]
    small = [] if arch == "mlp" else ["g_width=8", "d_width=8"]
    assert main(["train", *data, "--arch", arch, "--steps", "8", "--out", str(tmp_path), "--name", "r", "--no-progress",
                 "batch_size=16", "log_every=4", "tensorboard=0", *small]) == 0
    logged = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    record = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert record["loss"] == PRESETS[arch].get("loss", "nonsaturating")  # the preset (digits are labelled) applied
    assert [e["step"] for e in logged] == [4, 8]
    assert all(e["skipped"] == 0 and math.isfinite(e["loss_D"]) and math.isfinite(e["loss_G"]) for e in logged)
