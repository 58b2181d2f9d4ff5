"""Every registered model family: output shapes, and a rebuild from its stored arguments."""
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
