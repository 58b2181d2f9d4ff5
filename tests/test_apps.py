"""Using a trained generator: seeds, truncation, interpolation, inversion and repair, CLI and API."""
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ganforge
from ganforge.cli import main
from ganforge.config import parse_value, resolve, with_data_defaults
from ganforge.data import Dataset
from ganforge.errors import UserError
from ganforge.inversion import invert, slerp
from ganforge.sample import latents, parse_seeds


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--data", "digits", "--resolution", "16", "--steps", "30", "--out", str(out), "--name", "r",
                 "--no-progress", "g_width=8", "d_width=8", "batch_size=16", "conditional=0"]) == 0
    return out / "r"


def test_parse_seeds():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7] and parse_seeds("5") == [5]
    with pytest.raises(UserError, match="write seeds as"):
        parse_seeds("a-b")
    with pytest.raises(UserError, match="each range goes up"):
        parse_seeds("5-2")


def test_a_seed_gives_the_same_image_in_the_cli_and_the_api_in_any_batch(run, tmp_path):
    assert main(["sample", str(run), "--seeds", "3-5", "--out", str(tmp_path / "many")]) == 0
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["seed0003.png", "seed0004.png", "seed0005.png"]
    assert main(["sample", str(run), "--seeds", "4", "--out", str(tmp_path / "one")]) == 0
    assert (tmp_path / "many" / "seed0004.png").read_bytes() == (tmp_path / "one" / "seed0004.png").read_bytes()
    gen = ganforge.load(run, "cpu")
    api = gen.sample_seeds([4])
    assert torch.equal(api, gen.sample_seeds([9, 4])[1:]) and torch.equal(api, ganforge.load(run, "cpu").sample_seeds([4]))
    on_disk = np.array(Image.open(tmp_path / "one" / "seed0004.png"))
    assert np.array_equal(on_disk, ((api[0, 0] + 1) * 127.5).round().clamp(0, 255).numpy().astype(np.uint8))


def test_truncation_pulls_samples_together(run):
    gen = ganforge.load(run, "cpu")
    full, low = gen.sample(200, seed=1), gen.sample(200, seed=1, truncation=0.3)
    assert low.std(0).mean() < full.std(0).mean()
    with pytest.raises(UserError, match=r"truncation must be in \(0, 1\]"):
        gen.sample(2, truncation=1.5)
    with pytest.raises(UserError, match="not class-conditional"):
        gen.sample(2, class_=3)


def test_slerp_ends_and_norm():
    a, b = torch.randn(100), torch.randn(100)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    assert abs(slerp(a, b, 0.5).norm() - (a.norm() + b.norm()) / 2) < 0.2 * a.norm()


def test_interpolate_gif_grid_and_mp4(run, tmp_path, capsys, monkeypatch):
    assert main(["interpolate", str(run), "--seeds", "0-2", "--frames", "4", "--out", str(tmp_path / "w.gif")]) == 0
    with Image.open(tmp_path / "w.gif") as gif:
        assert gif.n_frames == 12 and gif.size == (64, 64)
    assert main(["interpolate", str(run), "--seeds", "0,1", "--frames", "3", "--no-loop",
                 "--out", str(tmp_path / "w.png")]) == 0
    assert len(ganforge.load(run, "cpu").interpolate([0, 1], 3, loop=False)) == 4

    av = pytest.importorskip("av")
    assert main(["interpolate", str(run), "--seeds", "0-2", "--frames", "4", "--out", str(tmp_path / "w.mp4")]) == 0
    with av.open(str(tmp_path / "w.mp4")) as video:
        frames = [f.to_ndarray(format="gray") for f in video.decode(video=0)]
    assert len(frames) == 12 and frames[0].shape == (64, 64)
    monkeypatch.setitem(sys.modules, "av", None)  # as without PyAV
    assert main(["interpolate", str(run), "--out", str(tmp_path / "x.mp4")]) == 2
    assert "pip install av" in capsys.readouterr().err


def test_inversion_finds_an_image_the_generator_made(run):
    gen = ganforge.load(run, "cpu")
    target = gen.sample_seeds([123])
    z, found, class_ = gen.invert(target, steps=150, restarts=4)
    far = gen.sample_seeds([7])
    assert z.shape == (1, gen.G.z_dim) and class_ is None
    assert (found - target).square().mean() < 0.25 * (far - target).square().mean()
    plain = gen.invert(target, steps=10, restarts=2).z
    pooled = gen.invert(target, steps=10, restarts=2, perceptual=1.0, features=lambda img: img.mean((2, 3)))[0]
    assert not torch.equal(plain, pooled)  # the feature term takes part in the search


def test_the_default_perceptual_features_pass_gradients_on_digits():
    from ganforge.inversion import _default_features
    from ganforge.metrics.digits import mnist_split

    digits = (mnist_split(0)[2][:4].float() / 127.5 - 1).requires_grad_(True)
    features = _default_features(digits, "cpu")  # the digit classifier, as `ganforge eval` picks it
    features(digits).square().sum().backward()
    assert digits.grad.abs().sum() > 0


def test_repair_keeps_known_pixels_and_fills_the_rest(run, tmp_path):
    gen = ganforge.load(run, "cpu")
    img = gen.sample_seeds([5, 6])
    fill = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    fill[..., 8:, :] = True
    damaged = torch.where(fill, torch.ones_like(img), img)
    fixed = gen.repair(damaged, fill, steps=100, restarts=4)
    assert torch.equal(fixed[~fill.expand_as(fixed)], damaged[~fill.expand_as(damaged)])
    assert (fixed - img)[fill.expand_as(img)].square().mean() < (damaged - img)[fill.expand_as(img)].square().mean()


def test_repair_and_invert_from_the_cli(run, tmp_path, capsys):
    Image.fromarray(np.full((20, 20), 200, np.uint8)).save(tmp_path / "in.png")
    mask = np.zeros((16, 16), np.uint8)
    mask[:, 8:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    common = ["--image", str(tmp_path / "in.png"), "--steps", "20", "--restarts", "2"]
    assert main(["repair", str(run), *common, "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "a.png")]) == 0
    out = np.array(Image.open(tmp_path / "a.png"))
    assert out.shape == (16, 16) and (out[:, :8] == 200).all()
    assert main(["repair", str(run), *common, "--mask-box", "0,0,16,4", "--out", str(tmp_path / "b.png")]) == 0
    assert main(["repair", str(run), *common, "--denoise", "--out", str(tmp_path / "c.png")]) == 0
    assert main(["repair", str(run), *common, "--mask-box", "0,0,16,8", "--perceptual", "0.1",
                 "--out", str(tmp_path / "p.png")]) == 0
    assert (np.array(Image.open(tmp_path / "p.png"))[8:] == 200).all()  # the known half, kept
    assert main(["invert", str(run), *common, "--latent-out", str(tmp_path / "z.npy"), "--out", str(tmp_path / "d.png")]) == 0
    assert np.load(tmp_path / "z.npy").shape == (100,)
    for argv, message in ((["repair", str(run), *common, "--out", "x.png"], "--mask MASK.png or --mask-box"),
                          (["repair", str(run), *common, "--mask-box", "1,2", "--out", "x.png"], "write X,Y,W,H"),
                          (["repair", str(run), *common, "--mask-box", "0,4,16,-3", "--out", "x.png"], "W and H >= 1"),
                          (["repair", str(run), *common, "--mask-box", "0,-9,16,3", "--out", "x.png"], "marks no pixel"),
                          (["repair", str(run), "--image", str(tmp_path / "nope.png"), "--denoise", "--out", "x.png"],
                           "cannot read")):
        assert main(argv) == 2
        assert message in capsys.readouterr().err


def test_labelled_images_train_a_conditional_run_that_samples_the_class_asked_for(tmp_path, capsys):
    args = ["train", "--data", "digits", "--resolution", "16", "--steps", "4", "--out", str(tmp_path), "--no-progress",
            "g_width=8", "d_width=8", "batch_size=16"]
    assert main([*args, "--name", "c"]) == 0  # digits are labelled: class-conditional by default
    assert "class-conditional on the data's 10 classes" in capsys.readouterr().out
    gen = ganforge.load(tmp_path / "c", "cpu")
    assert gen.G.num_classes == 10
    three = gen.sample(4, seed=0, class_=3)
    assert three.shape == (4, 1, 16, 16) and not torch.equal(three, gen.sample(4, seed=0, class_=4))
    # Without a class, seed s is drawn from class s mod 10, alone or in any batch.
    assert torch.equal(gen.sample_seeds([13]), gen.sample_seeds([5, 13])[1:])
    assert torch.equal(gen.sample_seeds([13]), gen.sample_seeds([13], class_=3))
    # And sample i of `sample` is of class i mod 10, however the samples are batched.
    assert torch.equal(gen.sample(30, seed=0, batch_size=7), gen.sample(30, seed=0))
    assert torch.equal(gen.sample(30, seed=0)[23], gen.generate(latents(30, gen.G.z_dim, 0)[23:24], 3)[0])
    assert main(["sample", str(tmp_path / "c"), "--class", "3", "--seeds", "0-1", "--out", str(tmp_path / "s")]) == 0
    assert main(["sample", str(tmp_path / "c"), "--class", "10", "--out", str(tmp_path / "x.png")]) == 2
    assert "classes 0 to 9" in capsys.readouterr().err
    Image.fromarray(np.full((16, 16), 200, np.uint8)).save(tmp_path / "in.png")
    search = ["--image", str(tmp_path / "in.png"), "--steps", "2", "--restarts", "1"]
    assert main(["invert", str(tmp_path / "c"), *search, "--out", str(tmp_path / "i.png")]) == 0
    assert re.search(r"^class \d$", capsys.readouterr().out, re.M)  # the class the search settled on
    assert main(["repair", str(tmp_path / "c"), *search, "--mask-box", "0,0,16,8", "--class", "3",
                 "--out", str(tmp_path / "r.png")]) == 0
    assert main(["repair", str(tmp_path / "c"), *search, "--mask-box", "0,0,16,8", "--class", "12",
                 "--out", str(tmp_path / "r.png")]) == 2
    assert "classes 0 to 9" in capsys.readouterr().err
    assert main(["train", "--data", "ring8", "--out", str(tmp_path), "conditional=1"]) == 2
    assert "needs labelled images" in capsys.readouterr().err


def test_class_conditional_is_on_by_default_for_labelled_images_only():
    img = torch.zeros(4, 1, 16, 16, dtype=torch.uint8)
    two = torch.tensor([0, 1, 0, 1])
    auto = resolve({}, "dcgan")
    assert auto.conditional is None
    assert with_data_defaults(auto, Dataset("d", "image", img, two, ("a", "b"))).conditional is True
    assert with_data_defaults(resolve({}, "resnet"), Dataset("d", "image", img, two, ("a", "b"))).conditional is True
    assert with_data_defaults(auto, Dataset("d", "image", img)).conditional is False       # no labels
    assert with_data_defaults(auto, Dataset("d", "image", img, two * 0, ("a",))).conditional is False  # one class
    modes = Dataset("d", "image", img, two, ("a", "b"), labels_are_modes=True)  # stacked-mnist's modes
    assert with_data_defaults(auto, modes).conditional is False
    told = resolve({"conditional": parse_value("conditional", "off")}, "dcgan")
    assert with_data_defaults(told, Dataset("d", "image", img, two, ("a", "b"))).conditional is False
    assert parse_value("conditional", "auto") is None and parse_value("conditional", "1") is True
    with pytest.raises(UserError, match="needs true or false"):
        parse_value("conditional", "maybe")


def test_the_mlp_latent_is_twice_the_data_dimension_unless_set():
    def points(dim):
        return Dataset("d", "vector", torch.zeros(8, dim))

    assert resolve({}, "mlp").z_dim is None
    assert with_data_defaults(resolve({}, "mlp"), points(2)).z_dim == 4
    assert with_data_defaults(resolve({}, "mlp"), points(10)).z_dim == 20
    assert with_data_defaults(resolve({"z_dim": 16}, "mlp"), points(2)).z_dim == 16
    assert with_data_defaults(resolve({}, "dcgan"), points(2)).z_dim == 100   # only the mlp preset leaves it open


def test_the_dcgan_loss_is_relativistic_without_a_class_and_non_saturating_with_one():
    img = torch.zeros(4, 1, 16, 16, dtype=torch.uint8)
    labelled = Dataset("d", "image", img, torch.tensor([0, 1, 0, 1]), ("a", "b"))
    unlabelled = Dataset("d", "image", img)

    def chosen(user, data, arch="dcgan"):
        cfg = with_data_defaults(resolve(user, arch), data)
        return cfg.loss, cfg.r2_gamma

    assert resolve({}, "dcgan").loss is None and resolve({}, "dcgan").r2_gamma is None
    assert chosen({}, unlabelled) == ("rpgan", 2.0)                                # R3GAN: R2 as strong as R1
    assert chosen({}, labelled) == ("nonsaturating", 0.0)
    assert chosen({"conditional": False}, labelled) == ("rpgan", 2.0)
    assert chosen({"clusters": 4}, unlabelled) == ("nonsaturating", 0.0)           # G is told its cluster
    assert chosen({"r1_gamma": 0.5}, unlabelled) == ("rpgan", 0.5)
    assert chosen({"r2_gamma": 0.0}, unlabelled) == ("rpgan", 0.0)                 # the user's values stand
    assert chosen({"loss": "hinge"}, unlabelled) == ("hinge", 0.0)
    assert chosen({"loss": "rpgan"}, labelled) == ("rpgan", 2.0)
    assert chosen({}, unlabelled, "resnet") == ("hinge", 0.0)                      # the other presets name theirs
    assert chosen({}, Dataset("d", "vector", torch.zeros(8, 2)), "mlp") == ("rpgan", 0.03)


class ClassPainter(nn.Module):
    """A class-conditional 'generator' whose 2x2 image is grey level class / 4, whatever z is."""
    z_dim, num_classes = 3, 5

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, z, c):
        return (c.float() / 4 + self.bias + 0 * z.sum(1))[:, None, None, None].expand(-1, 1, 2, 2)


def test_inversion_of_a_conditional_generator_searches_every_class_unless_told_one():
    targets = torch.tensor([0.75, 0.25])[:, None, None, None].expand(-1, 1, 2, 2)
    z, found, class_ = invert(ClassPainter(), targets, steps=2, restarts=2)  # fewer starts than classes
    assert class_.tolist() == [3, 1] and torch.equal(found, targets) and z.shape == (2, 3)
    assert invert(ClassPainter(), targets, steps=2, restarts=2, class_=4).class_.tolist() == [4, 4]
