"""The ResNet family (SNGAN / BigGAN style) and the minibatch-stddev option of D (resnet and dcgan)."""
import json

import pytest
import torch

from ganforge.config import resolve
from ganforge.errors import UserError
from ganforge.models import build_discriminator, build_generator, dcgan
from ganforge.models.dcgan import MinibatchStddev
from ganforge.models.resnet import ConditionalBatchNorm, Discriminator, Generator


@pytest.mark.parametrize("resolution", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_shapes(resolution, channels, num_classes):
    G = Generator(z_dim=8, resolution=resolution, channels=channels, width=4, num_classes=num_classes)
    D = Discriminator(resolution=resolution, channels=channels, width=4, num_classes=num_classes, mbstd=True)
    c = (torch.tensor([0, 2]),) if num_classes else ()
    img = G(torch.randn(2, 8), *c)
    assert img.shape == (2, channels, resolution, resolution)
    assert img.abs().max() <= 1
    assert D(img, *c).shape == (2,)
    assert (G.z_dim, G.num_classes) == (8, num_classes)  # what sample.py and export.py read


@pytest.mark.parametrize("resolution", [16, 48, 256])
def test_other_resolutions_are_refused(resolution):
    with pytest.raises(ValueError, match="32, 64 or 128"):
        Generator(resolution=resolution)
    with pytest.raises(UserError, match="32, 64"):  # 48: not a power of two; 16, 256: not for resnet
        resolve({"resolution": resolution}, "resnet")


def test_every_layer_of_D_has_spectral_norm_1_and_no_batch_norm():
    torch.manual_seed(0)  # power iteration converges at a rate set by the weights: fix them
    D = Discriminator(resolution=32, channels=1, width=8, num_classes=10, mbstd=True)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in D.modules())
    for _ in range(200):  # power iterations run in training mode, one per forward pass
        D(torch.randn(4, 1, 32, 32), torch.arange(4))
    layers = [m for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding))]
    assert len(layers) == 14  # 4 blocks of 3 convs (1x1 shortcut included), the linear, the projection
    for m in layers:
        assert torch.linalg.matrix_norm(m.weight.flatten(1), 2).item() == pytest.approx(1.0, abs=0.02)


def test_conditional_batch_norm_conditions_G():
    torch.manual_seed(0)
    G = Generator(z_dim=8, resolution=32, channels=1, width=4, num_classes=3).eval()
    z = torch.randn(1, 8).expand(3, 8)   # one z for every class
    c = torch.arange(3)
    same = G(z, c)
    assert torch.allclose(same[0], same[1], atol=1e-6) and torch.allclose(same[0], same[2], atol=1e-6)  # gain 1, bias 0: plain batch norm at first
    norms = [m for m in G.modules() if isinstance(m, ConditionalBatchNorm)]
    assert len(norms) == 6  # two per block, each fed by the shared embedding
    for m in norms:  # as after training: the layers' gains and biases depend on the class
        torch.nn.init.normal_(m.gain.weight, std=0.1)
        torch.nn.init.normal_(m.bias.weight, std=0.1)
    img = G(z, c)
    assert all((img[i] - img[j]).abs().max() > 1e-3 for i, j in [(0, 1), (0, 2), (1, 2)])
    assert torch.allclose(G(z[:2], torch.tensor([2, 2]))[0], img[2], atol=1e-6)  # the class, not the batch, sets each image
    assert torch.equal(G(z), img)  # no labels: the classes in turn, 0, 1, 2, ...


def test_minibatch_stddev_groups_of_4_and_what_is_left_over():
    x = torch.randn(7, 2, 3, 3)
    out = MinibatchStddev()(x)
    assert out.shape == (7, 3, 3, 3) and torch.equal(out[:, :2], x)

    def spread(group):
        return (group.var(0, correction=0) + 1e-8).sqrt().mean()

    expected = [spread(x[:4])] * 4 + [spread(x[4:])] * 3  # 7 = a group of 4, then one of 3
    assert torch.allclose(out[:, 2], torch.stack(expected)[:, None, None].expand(7, 3, 3))
    assert torch.allclose(MinibatchStddev()(x[:3])[:, 2], spread(x[:3]).expand(3, 3, 3))  # B < 4: one group
    alone = MinibatchStddev()(x[:1])[0, 2]  # a group of one has no spread
    assert torch.allclose(alone, torch.full((3, 3), 1e-4))


@pytest.mark.parametrize("family", ["resnet", "dcgan"])
def test_mbstd_lets_D_see_the_batch_variety_at_any_batch_size(family):
    build = Discriminator if family == "resnet" else dcgan.Discriminator
    torch.manual_seed(0)
    varied = torch.rand(4, 1, 32, 32) * 2 - 1
    collapsed = varied[:1].expand(4, 1, 32, 32)  # the same first image, among copies of itself
    for mbstd in (False, True):
        D = build(resolution=32, channels=1, width=4, num_classes=10, mbstd=mbstd).eval()
        c = torch.zeros(4, dtype=torch.long)
        changed = not torch.allclose(D(varied, c)[0], D(collapsed, c)[0], rtol=1e-3, atol=0)  # DCGAN's logits start tiny
        assert changed == mbstd
        for n in (1, 3, 6):  # batch 1, fewer than 4, not a multiple of 4
            assert torch.isfinite(D(varied.repeat(2, 1, 1, 1)[:n], c.repeat(2)[:n])).all()


def test_dcgan_default_D_is_unchanged_by_the_option():
    torch.manual_seed(0)
    default = dcgan.Discriminator(resolution=32, width=4).state_dict()
    torch.manual_seed(0)
    off = dcgan.Discriminator(resolution=32, width=4, mbstd=False).state_dict()
    assert default.keys() == off.keys() and all(torch.equal(default[k], off[k]) for k in default)
    assert not any("net.8.1" in k for k in default)  # the last conv keeps its checkpoint name
    on = dcgan.Discriminator(resolution=32, width=4, mbstd=True).state_dict()
    assert on["net.8.1.weight"].shape[1] == default["net.8.weight"].shape[1] + 1


def test_dcgan_conditional_spectral_norm_D_is_finite():
    # Its projection embedding once started at zero, which spectral norm divides by zero.
    D = dcgan.Discriminator(resolution=16, width=4, num_classes=10, spectral_norm=True)
    assert torch.isfinite(D(torch.randn(3, 1, 16, 16), torch.arange(3))).all()


def test_G_and_D_rebuild_from_their_stored_arguments():
    model = dict(arch="resnet", G=dict(z_dim=8, resolution=32, channels=3, width=4, num_classes=5),
                 D=dict(resolution=32, channels=3, width=4, num_classes=5, mbstd=True))
    G = build_generator(json.loads(json.dumps(model)))  # plain values: survives JSON
    G2 = build_generator(model)
    G2.load_state_dict(G.state_dict())
    z = torch.randn(4, 8)
    assert torch.equal(G.eval()(z), G2.eval()(z))
    D = build_discriminator(model)
    assert isinstance(D.mbstd, MinibatchStddev)


def test_mbstd_is_for_images():
    assert resolve({"mbstd": True}, "resnet").mbstd and resolve({"mbstd": True}, "dcgan").mbstd
    with pytest.raises(UserError, match="mbstd=1 is for images"):
        resolve({"mbstd": True}, "mlp")
    with pytest.raises(UserError, match="resnet's D always has it"):
        resolve({"spectral_norm": True}, "resnet")
    for user in ({}, {"mbstd": True}, {"pack": 2}):  # the unknown family is named first
        with pytest.raises(UserError, match="arch must be one of"):
            resolve(user, "resnets")


def test_a_conditional_run_trains_resumes_exactly_samples_and_exports_to_onnx(tmp_path, capsys):
    from ganforge.checkpoint import load
    from ganforge.cli import main

    args = ["train", "--data", "digits", "--resolution", "32", "--out", str(tmp_path), "--no-progress", "arch=resnet",
            "g_width=8", "d_width=8", "z_dim=16", "batch_size=8", "tensorboard=0", "conditional=1", "mbstd=1",
            "log_every=1", "lr_decay=none"]
    assert main([*args, "--name", "a", "--steps", "4", "checkpoint_every=4"]) == 0  # each checkpoint costs a BN refresh
    assert main([*args, "--name", "b", "--steps", "2", "checkpoint_every=2"]) == 0
    assert main(["train", "--resume", str(tmp_path / "b"), "--steps", "4", "--no-progress"]) == 0
    a, record = load(tmp_path / "a" / "checkpoints" / "step-0000004.safetensors")
    b, _ = load(tmp_path / "b" / "checkpoints" / "step-0000004.safetensors")
    assert record["model"]["arch"] == "resnet" and record["model"]["D"]["mbstd"]
    assert any("_u" in k for k in a) and all(torch.equal(a[k], b[k]) for k in a)  # power iterations resumed too
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(torch.isfinite(torch.tensor([e["loss_D"], e["loss_G"]])).all() for e in log)
    assert all(e["skipped"] == 0 for e in log)

    assert main(["sample", str(tmp_path / "a"), "--class", "3", "--n", "4", "--out", str(tmp_path / "x.png"),
                 "--device", "cpu"]) == 0
    assert (tmp_path / "x.png").is_file()

    pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx"
    assert main(["export", str(tmp_path / "a"), "--out", str(out), "--format", "onnx", "--device", "cpu"]) == 0
    assert "onnx check: 64 seeds" in capsys.readouterr().out
    check = json.loads((out / "config.json").read_text())["onnx"]
    assert check["inputs"] == {"z": [-1, 16], "class": [-1]} and check["check"]["max_abs_difference"] <= 1e-4
