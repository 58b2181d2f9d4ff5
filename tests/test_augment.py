"""Differentiable augmentation and ADA's adaptive probability."""
import json

import pytest
import torch

from ganforge.augment import ADA_TARGET, adjust_p, cutout, diff_augment, translation
from ganforge.checkpoint import load
from ganforge.cli import main


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_p_zero_is_the_identity_and_p_one_changes_every_image_differentiably():
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    assert torch.equal(diff_augment(x, 0.0, gen()), x)
    x.requires_grad_(True)
    y = diff_augment(x, 1.0, gen())
    assert y.shape == x.shape and all(not torch.equal(a, b) for a, b in zip(y, x))
    y.square().sum().backward()
    assert x.grad.abs().sum() > 0  # G learns through the augmentation
    assert torch.equal(diff_augment(x.detach(), 1.0, gen(3)), diff_augment(x.detach(), 1.0, gen(3)))


def test_translation_moves_a_pixel_within_an_eighth_and_zero_shift_is_the_identity():
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0
    y = translation(x, gen())
    where = y.flatten(1).argmax(1)
    dy, dx = where // 16 - 8, where % 16 - 8
    assert y.sum() == 64 and dy.abs().max() <= 2 and dx.abs().max() <= 2 and (dy != 0).any()
    assert torch.equal(translation(x, gen(), ratio=0.0), x)


def test_cutout_zeroes_at_most_a_half_size_square():
    y = cutout(torch.ones(32, 1, 16, 16), gen())
    zeros = (y == 0).flatten(1).sum(1)
    assert zeros.max() == 64 and zeros.min() > 0  # 8 x 8 when inside, less at an edge


def test_ada_raises_p_when_D_is_too_sure_of_the_reals_and_lowers_it_otherwise():
    assert adjust_p(0.5, ADA_TARGET + 0.1, 1000) == pytest.approx(0.51)
    assert adjust_p(0.5, ADA_TARGET - 0.1, 1000) == pytest.approx(0.49)
    assert adjust_p(0.0, 0.0, 1000) == 0.0 and adjust_p(1.0, 1.0, 10**6) == 1.0


@pytest.mark.parametrize("mode", ["diffaug", "ada"])
def test_augmented_runs_log_p_and_resume_exactly(tmp_path, mode):
    args = ["train", "--data", "digits", "--resolution", "16", "--out", str(tmp_path), "--no-progress", "g_width=8",
            "d_width=8", "batch_size=16", "tensorboard=0", f"augment={mode}", "checkpoint_every=6", "log_every=6",
            "lr_decay=none"]
    assert main([*args, "--name", "a", "--steps", "12"]) == 0
    assert main([*args, "--name", "b", "--steps", "6"]) == 0
    assert main(["train", "--resume", str(tmp_path / "b"), "--steps", "12", "--no-progress"]) == 0
    a, record = load(tmp_path / "a" / "checkpoints" / "step-0000012.safetensors")
    b, _ = load(tmp_path / "b" / "checkpoints" / "step-0000012.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ps = [json.loads(line)["aug_p"] for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    if mode == "diffaug":
        assert ps == [1.0, 1.0]
    else:  # a fresh D calls most reals real, so p starts to rise
        assert 0 < ps[0] < ps[1] == record["aug_p"] < 0.01
