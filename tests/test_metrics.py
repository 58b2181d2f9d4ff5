"""Metrics: the shipped digit classifier, mode coverage, and benchmarks/check_samples.py on stand-ins."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge.data import load_source
from ganforge.errors import UserError
from ganforge.metrics import (
    classify_digits,
    digit_classifier_info,
    digit_report,
    load_digit_classifier,
    mnist_split,
    mode_report,
)
from ganforge.metrics.digits import WEIGHTS_PATH

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def split():
    return mnist_split()


@pytest.fixture(scope="module")
def heldout(split):
    """The 1,000 real digits the classifier never saw: float (1000, 1, 32, 32) in [-1, 1], labels."""
    _, _, img, y = split
    return img.float() / 127.5 - 1, y


@pytest.fixture(scope="module")
def classifier():
    return load_digit_classifier()


# --- digit classifier -------------------------------------------------------------------------


def test_classifier_is_accurate_on_heldout_digits(heldout, classifier):
    img, y = heldout
    pred, conf = classify_digits(img, classifier=classifier)
    assert (pred == y).double().mean() >= 0.97
    assert (conf >= 0.9).double().mean() >= 0.9


def test_split_is_fixed_and_disjoint(split):
    img_train, y_train, img_test, y_test = split
    assert img_train.shape == (4000, 1, 32, 32) and img_test.shape == (1000, 1, 32, 32)
    assert img_train.dtype == torch.uint8 and y_test.dtype == torch.int64
    assert torch.bincount(y_test, minlength=10).min() > 50  # shuffled: every digit held out
    train_rows = {bytes(r) for r in img_train.flatten(1).numpy()}
    assert not any(bytes(r) in train_rows for r in img_test.flatten(1).numpy())
    # The shipped weights were trained on this split: it must not move.
    assert y_test[:12].tolist() == [2, 5, 8, 1, 3, 3, 4, 0, 8, 0, 6, 3]


def test_shipped_weights_are_small_and_documented():
    assert WEIGHTS_PATH.stat().st_size < 1_000_000
    info = digit_classifier_info()
    for key in ("seed", "epochs", "heldout_accuracy", "heldout_recognised", "script"):
        assert key in info
    assert info["heldout_accuracy"] >= 0.98


def test_classify_digits_shapes_and_batching(heldout, classifier):
    img = heldout[0][:7]
    pred, conf = classify_digits(img, batch_size=3, classifier=classifier)
    assert pred.shape == (7,) and pred.dtype == torch.int64
    assert conf.shape == (7,) and conf.dtype == torch.float32
    assert ((conf >= 0.1) & (conf <= 1)).all()  # max of 10 probabilities
    pred_all, conf_all = classify_digits(img, classifier=classifier)
    assert torch.equal(pred, pred_all) and torch.allclose(conf, conf_all, atol=1e-6)


def test_classify_digits_loads_the_shipped_model_by_default(heldout):
    img = heldout[0][:4]
    assert classify_digits(img)[0].shape == (4,)
    assert not load_digit_classifier().training


def test_classify_digits_takes_uint8_and_other_sizes(heldout, classifier):
    img, y = heldout[0][:200], heldout[1][:200]
    as_uint8 = img.add(1).mul(127.5).round().to(torch.uint8)
    assert torch.equal(classify_digits(as_uint8, classifier=classifier)[0],
                       classify_digits(img, classifier=classifier)[0])
    small = torch.nn.functional.interpolate(img, size=28, mode="bilinear", antialias=True)
    pred, _ = classify_digits(small, classifier=classifier)  # resized back to 32 inside
    assert (pred == y).double().mean() >= 0.95


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 32, 32)])
def test_classify_digits_rejects_wrong_shapes(shape):
    with pytest.raises(ValueError, match="grayscale|shape"):
        classify_digits(torch.zeros(shape))


def test_digit_report_on_real_digits(heldout, classifier):
    report = digit_report(heldout[0], classifier=classifier)
    assert report["n"] == 1000
    assert report["recognised"] >= 0.9
    assert len(report["class_shares"]) == 10
    assert sum(report["class_shares"]) == pytest.approx(1.0)
    assert report["min_class_share"] == min(report["class_shares"]) >= 0.05


@pytest.mark.parametrize("kind", ["uniform", "gaussian", "blank"])
def test_digit_report_on_noise_recognises_little(kind, classifier):
    g = torch.Generator().manual_seed(123)
    img = {
        "uniform": torch.rand(500, 1, 32, 32, generator=g) * 2 - 1,
        "gaussian": (0.5 * torch.randn(500, 1, 32, 32, generator=g)).clamp(-1, 1),
        "blank": -torch.ones(500, 1, 32, 32),
    }[kind]
    report = digit_report(img, classifier=classifier)
    assert report["recognised"] <= 0.05
    assert sum(report["class_shares"]) == pytest.approx(1.0)


def test_digit_report_counts_a_dropped_digit(heldout, classifier):
    img, y = heldout
    report = digit_report(img[y != 3], classifier=classifier)
    assert report["class_shares"][3] < 0.01 and report["min_class_share"] < 0.01


# --- mode coverage ----------------------------------------------------------------------------

SQUARE = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])  # 4 modes


def test_mode_report_exact_values():
    sigma = 0.25  # 3 sigma = 0.75, exact in binary
    samples = torch.tensor([
        [-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0],  # mode 0, high quality
        [1.0, -1.0], [1.0, -1.0],                  # mode 1, high quality
        [-0.25, 1.0],                              # mode 2 at exactly 3 sigma: high quality
        [1.0, 2.0],                                # nearest mode 3, 4 sigma away: not high quality
        [-1.0, -2.0],                              # nearest mode 0, 4 sigma away: not high quality
    ])
    report = mode_report(samples, SQUARE, sigma)
    assert report["n"] == 8
    assert report["per_mode_counts"] == [3, 2, 1, 0]
    assert report["modes_covered"] == 3
    assert report["high_quality"] == 6 / 8
    assert report["per_mode_assigned"] == [4, 2, 1, 1]
    # p_model = (1/2, 1/4, 1/8, 1/8), p_true = 1/4 each:
    # KL = 1/2 log 2 + 1/4 log 1 + 2 * 1/8 log 1/2 = (1/2 - 1/4) log 2
    assert report["reverse_kl"] == pytest.approx(0.25 * math.log(2), abs=1e-12)
    assert mode_report(samples, SQUARE, sigma, min_count=2)["modes_covered"] == 2


def test_mode_report_extremes():
    collapsed = SQUARE[[2]].expand(100, 2)
    report = mode_report(collapsed, SQUARE, 0.1)
    assert report["modes_covered"] == 1 and report["high_quality"] == 1.0
    assert report["reverse_kl"] == pytest.approx(math.log(4), abs=1e-12)
    even = SQUARE.repeat(25, 1)
    assert mode_report(even, SQUARE, 0.1)["reverse_kl"] == 0.0
    far = torch.full((10, 2), 100.0)
    report = mode_report(far, SQUARE, 0.1)
    assert report["modes_covered"] == 0 and report["high_quality"] == 0.0


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mode_report_on_real_mixture_data(name):
    ds = load_source(name)
    report = mode_report(ds.data[:5000], ds.modes, ds.sigma)
    assert report["modes_covered"] == len(ds.modes)
    assert report["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)  # P(chi_2 <= 3)
    assert report["reverse_kl"] < 0.01


def test_mode_report_rejects_bad_input():
    with pytest.raises(ValueError, match="same D"):
        mode_report(torch.zeros(5, 3), SQUARE, 0.1)
    with pytest.raises(ValueError, match="sigma"):
        mode_report(torch.zeros(5, 2), SQUARE, 0.0)


# --- benchmarks/check_samples.py on stand-in generators ---------------------------------------


@pytest.fixture()
def check_samples():
    spec = importlib.util.spec_from_file_location("check_samples", ROOT / "benchmarks" / "check_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StandIn:
    """The interface check_samples uses: kind, config, sample(n, seed)."""

    def __init__(self, kind: str, data: str, pool: torch.Tensor):
        self.kind, self.config, self.pool = kind, {"data": data}, pool

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        idx = torch.randint(len(self.pool), (n,), generator=torch.Generator().manual_seed(seed))
        return self.pool[idx]


def run_script(module, monkeypatch, capsys, gen, argv):
    monkeypatch.setattr(module, "load_generator", lambda run, device: gen)
    result = module.main(argv)
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == result  # the last line is the JSON record
    return result, out


def test_check_samples_images(check_samples, monkeypatch, capsys, heldout):
    gen = StandIn("image", "mnist5k", heldout[0])
    result, out = run_script(check_samples, monkeypatch, capsys, gen, ["runs/x", "--n", "300"])
    assert result["kind"] == "image" and result["n"] == 300
    assert result["recognised"] >= 0.9 and len(result["class_shares"]) == 10
    assert any(line.startswith("recognised") for line in out)


def test_check_samples_vectors_use_the_runs_modes(check_samples, monkeypatch, capsys):
    ring = load_source("ring8")
    gen = StandIn("vector", "ring8", ring.modes[:5])  # a generator that found 5 of 8 modes
    result, _ = run_script(check_samples, monkeypatch, capsys, gen, ["runs/x"])
    assert result["n"] == 2500  # the vector default
    assert result["modes_covered"] == 5 and result["num_modes"] == 8 and result["high_quality"] == 1.0


def test_check_samples_npy_source_needs_modes(check_samples, monkeypatch, capsys, tmp_path):
    path = tmp_path / "points.npy"
    np.save(path, np.zeros((10, 2), dtype=np.float32))
    grid = load_source("grid25")
    gen = StandIn("vector", str(path), grid.modes)
    with pytest.raises(UserError, match="--modes"):
        run_script(check_samples, monkeypatch, capsys, gen, ["runs/x"])
    result, _ = run_script(check_samples, monkeypatch, capsys, gen, ["runs/x", "--modes", "grid25", "--n", "500"])
    assert result["modes_source"] == "grid25" and result["modes_covered"] == 25


def test_check_samples_rejects_colour_images(check_samples, monkeypatch, capsys):
    gen = StandIn("image", "cifar10", torch.zeros(4, 3, 32, 32))
    with pytest.raises(UserError, match="grayscale"):
        run_script(check_samples, monkeypatch, capsys, gen, ["runs/x", "--n", "4"])


def test_stacked_mnist_source_and_its_mode_count():
    from ganforge.data import load_source
    from ganforge.metrics import stacked_mnist_report

    ds = load_source("stacked-mnist", 32)
    assert ds.data.shape == (128_000, 3, 32, 32) and ds.data.dtype == torch.uint8
    assert torch.bincount(ds.labels, minlength=1000).eq(128).all()   # every triple of digits 128 times
    real = stacked_mnist_report(ds.data[:3000])
    truth = torch.unique(ds.labels[:3000]).numel()         # ~950 of the modes occur in 3,000 draws
    assert abs(real["modes"] - truth) <= 15 and real["kl"] < 0.25   # the judge reads the triples back
    collapsed = stacked_mnist_report(ds.data[:1].expand(500, -1, -1, -1))
    assert collapsed["modes"] == 1 and collapsed["kl"] == pytest.approx(math.log(1000), rel=1e-9)
    assert collapsed["channel_kl"] == pytest.approx([math.log(10)] * 3, rel=1e-9)
    assert max(real["channel_kl"]) < 0.01                  # mnist5k holds 500 of each digit
    assert min(real["recognised"]) > 0.9                   # real digits: named with confidence >= 0.9
    faded = stacked_mnist_report(ds.data[:3000] // 4 + 96)  # grey on grey, as a bias-free D let G draw
    assert max(faded["recognised"]) < min(real["recognised"])
