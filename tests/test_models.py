"""Every registered model family: output shapes, and a rebuild from its stored arguments."""
import math

import pytest
import torch

from ganforge.models import FAMILIES, build_discriminator, build_generator
from ganforge.models.dcgan import Discriminator, Generator


@pytest.mark.parametrize("resolution", [16, 32, 64, 128, 256])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(resolution, channels):
    G = Generator(z_dim=8, resolution=resolution, channels=channels, width=4)
    D = Discriminator(resolution=resolution, channels=channels, width=4)
    img = G(torch.randn(2, 8))
    assert img.shape == (2, channels, resolution, resolution)
    assert img.abs().max() <= 1
    assert D(img).shape == (2,)


def test_dcgan_64px_is_the_pytorch_example():
    # pytorch/examples dcgan/main.py, ngf = ndf = 64, nz = 100, nc = 3: 3,576,704 and 2,765,568 parameters
    G = Generator(z_dim=100, resolution=64, channels=3, width=64)
    D = Discriminator(resolution=64, channels=3, width=64)
    assert sum(p.numel() for p in G.parameters()) == 3_576_704
    assert sum(p.numel() for p in D.parameters()) == 2_765_568


@pytest.mark.parametrize("resolution", [8, 24, 512])
def test_dcgan_rejects_other_resolutions(resolution):
    with pytest.raises(ValueError, match="power-of-two"):
        Generator(resolution=resolution)


def test_mlp_works_in_data_units():
    G = build_generator(dict(arch="mlp", G=dict(z_dim=4, dim=2, width=8, depth=2, mean=[10.0, -5.0], std=[2.0, 3.0])))
    D = build_discriminator(dict(arch="mlp", D=dict(dim=2, width=8, depth=2, mean=[10.0, -5.0], std=[2.0, 3.0])))
    x = G(torch.randn(5, 4))
    assert x.shape == (5, 2) and D(x).shape == (5,)
    torch.nn.init.zeros_(G.net[-1].weight)
    torch.nn.init.zeros_(G.net[-1].bias)
    assert torch.equal(G(torch.randn(3, 4)), torch.tensor([[10.0, -5.0]] * 3))  # zero output = the data mean


def test_every_family_is_complete():
    for name, family in FAMILIES.items():
        assert family.kind in ("image", "vector"), name
        assert callable(family.Generator) and callable(family.Discriminator) and callable(family.model_args)


def test_spectral_norm_bounds_every_layer_of_D_and_its_runs_resume_exactly(tmp_path):
    from ganforge.checkpoint import load
    from ganforge.cli import main
    from ganforge.models.dcgan import Discriminator

    torch.manual_seed(0)  # power iteration converges at a rate set by the weights: fix them
    D = Discriminator(resolution=32, channels=1, width=8, num_classes=10, spectral_norm=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    for _ in range(200):  # power iterations run in training mode, one per forward pass
        D(torch.randn(2, 1, 32, 32), torch.arange(2))
    layers = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    for m in layers:
        assert torch.linalg.matrix_norm(m.weight.flatten(1), 2).item() == pytest.approx(1.0, abs=0.02)

    args = ["train", "--data", "digits", "--resolution", "16", "--out", str(tmp_path), "--no-progress", "g_width=8",
            "d_width=8", "batch_size=16", "tensorboard=0", "spectral_norm=1", "loss=hinge", "checkpoint_every=3", "lr_decay=none"]
    assert main([*args, "--name", "a", "--steps", "6"]) == 0
    assert main([*args, "--name", "b", "--steps", "3"]) == 0
    assert main(["train", "--resume", str(tmp_path / "b"), "--steps", "6", "--no-progress"]) == 0
    a, _ = load(tmp_path / "a" / "checkpoints" / "step-0000006.safetensors")
    b, _ = load(tmp_path / "b" / "checkpoints" / "step-0000006.safetensors")
    assert any("_u" in k for k in a) and all(torch.equal(a[k], b[k]) for k in a)


def test_D_without_batch_norm_judges_each_image_on_its_own():
    from ganforge.config import resolve
    from ganforge.errors import UserError

    torch.manual_seed(0)
    img = torch.randn(8, 3, 32, 32)
    for kw in ({}, {"num_classes": 10}):
        c = (torch.arange(8),) if kw else ()
        D = Discriminator(resolution=32, channels=3, width=8, batchnorm=False, **kw)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
        alone = D(img[:3], *(x[:3] for x in c))
        torch.testing.assert_close(alone, D(img, *c)[:3])  # the batch's other images play no part

    def conv_biases(**kw):
        return [m.bias is not None for m in Discriminator(resolution=32, width=8, **kw).modules()
                if isinstance(m, torch.nn.Conv2d)]

    assert conv_biases() == [False] * 4  # batch norm's shift stands in for the biases
    assert conv_biases(batchnorm=False) == conv_biases(spectral_norm=True) == [True] * 4  # else D(a x) = a D(x)
    with_bn = Discriminator(resolution=32, channels=3, width=8)
    assert not torch.allclose(with_bn(img[:3]), with_bn(img)[:3])  # batch norm: the same images, other logits
    with pytest.raises(UserError, match="dcgan family"):
        resolve({"d_batchnorm": False}, "resnet")


def test_pack_images_stacks_each_run_of_images_along_the_channels():
    from ganforge.train import pack_images

    img = torch.randn(6, 3, 8, 8)
    packed = pack_images(img, 2)
    assert packed.shape == (3, 6, 8, 8)
    for i in range(3):
        assert torch.equal(packed[i], torch.cat([img[2 * i], img[2 * i + 1]]))
    assert pack_images(img, 1) is img


def test_pack_settings_that_cannot_work_are_refused(tmp_path, capsys):
    from ganforge.cli import main
    from ganforge.config import resolve
    from ganforge.errors import UserError

    for user, message in [({"pack": 2}, "pack is for images"),
                          ({"pack": 2, "batch_size": 15}, "batch_size 15 must be a multiple of pack 2"),
                          ({"pack": 2, "loss": "wgan", "gp_lambda": 10.0}, "pack does not work with gp_lambda"),
                          ({"pack": 0}, "pack must be a whole number >= 1")]:
        with pytest.raises(UserError, match=message):
            resolve(user, "mlp" if message.startswith("pack is") else "dcgan")
    # digits are labelled, so a run is class-conditional unless told otherwise
    assert main(["train", "--data", "digits", "--out", str(tmp_path), "--steps", "1", "--no-progress", "pack=2"]) == 2
    assert "pack=2 needs an unconditional run (conditional=0)" in capsys.readouterr().err


def test_a_packed_run_trains_with_r1_and_D_judges_pairs(tmp_path):
    import json

    from ganforge.checkpoint import load
    from ganforge.cli import main

    args = ["train", "--data", "digits", "--resolution", "16", "--out", str(tmp_path), "--name", "packed",
            "--steps", "4", "--no-progress", "g_width=8", "d_width=8", "batch_size=16", "tensorboard=0",
            "conditional=0", "pack=2", "r1_gamma=1", "r1_every=2", "log_every=1"]
    assert main(args) == 0
    tensors, record = load(tmp_path / "packed" / "checkpoints" / "step-0000004.safetensors")
    assert record["model"]["D"]["channels"] == 2 and record["model"]["G"]["channels"] == 1
    assert tensors["D.net.0.weight"].shape[1] == 2  # D's first layer reads two digits at once
    log = [json.loads(line) for line in (tmp_path / "packed" / "log.jsonl").read_text().splitlines()]
    losses = [e["loss_D"] for e in log if "loss_D" in e]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert main(["sample", str(tmp_path / "packed"), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
