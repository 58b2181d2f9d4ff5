"""Feature extractors, the feature cache, the memorisation check and `ganforge eval`, offline."""
import json
import math
import pickle
import urllib.error

import numpy as np
import pytest
import torch

from ganforge.cli import main
from ganforge.errors import UserError
from ganforge.metrics import extractors
from ganforge.metrics.evaluate import cached_features, evaluate, load_images, memorisation_check
from ganforge.metrics.extractors import Extractor, inception_extractor, mnist_extractor


def digits_uint8(n, seed=0):
    from ganforge.data import load_source

    data = load_source("mnist5k", 32).data
    return data[torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]]


def test_mnist_extractor_gives_features_and_logits():
    img = digits_uint8(20)
    features, logits = mnist_extractor()(img)
    assert features.shape == (20, 128) and logits.shape == (20, 10)
    assert features.dtype == torch.float64
    same, _ = mnist_extractor()(img.float() / 127.5 - 1)   # float in [-1, 1] gives the same features
    assert torch.allclose(features, same, atol=1e-5)


def test_inception_offline_without_weights_names_the_file_and_the_place(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url, dst, progress=True):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError, match=r"weights-inception-2015-12-05-6726825d\.pth.*put it at .*hub/checkpoints"):
        inception_extractor()
    with pytest.raises(UserError, match="not found at"):
        inception_extractor(weights=tmp_path / "missing.pth")


def test_cli_offline_inception_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    code = main(["eval", "--fake", "digits", "--real", "digits", "--extractor", "inception", "--n", "50",
                 "--out", str(tmp_path), "--cache", "none"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "weights-inception" in err


def inception_state(tmp_path, monkeypatch):
    """Random weights of the right shapes, saved as a plain state dict (the real file is 95 MB)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    monkeypatch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
    monkeypatch.setattr(torch, "load", lambda *a, **k: {})
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="unused")
    monkeypatch.undo()
    path = tmp_path / "inception.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_from_a_local_weights_file(tmp_path, monkeypatch):
    path = inception_state(tmp_path, monkeypatch)
    ext = inception_extractor(weights=path)
    features, logits = ext(digits_uint8(3), batch_size=2)   # 1 channel, 32 px: made 3 x 299 inside
    assert features.shape == (3, 2048) and logits.shape == (3, 1008)
    assert torch.isfinite(features).all()
    assert ext.weights_sha256 == extractors._file_hash(path)


class Payload:
    def __reduce__(self):
        return (print, ("PAYLOAD RAN",))


def test_a_pickle_with_code_is_refused_and_never_runs(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"x": Payload()}))
    with pytest.raises(UserError, match="not a plain Inception state dict"):
        inception_extractor(weights=path)
    assert "PAYLOAD RAN" not in capsys.readouterr().out


def test_feature_cache_is_keyed_by_content(tmp_path):
    calls = []

    def embed(img):
        calls.append(len(img))
        return img.flatten(1).float()[:, :4], None

    ext = Extractor("toy", embed, "0" * 64, torch.device("cpu"))
    a, b = digits_uint8(10, seed=0), digits_uint8(10, seed=1)
    first, _ = cached_features(a, ext, tmp_path)
    again, _ = cached_features(a, ext, tmp_path)
    cached_features(b, ext, tmp_path)   # same name, count and size, other content: a new entry
    assert torch.equal(first, again) and calls == [10, 10]
    assert len(list(tmp_path.glob("toy-*.safetensors"))) == 2


def test_memorisation_check_finds_copies_and_not_new_samples():
    rng = np.random.default_rng(0)
    train = torch.from_numpy(rng.normal(size=(500, 16)))
    copies = train[:100] + 1e-6
    fresh = torch.from_numpy(rng.normal(size=(100, 16)))
    assert memorisation_check(train, copies)[0]["near_copy_share"] == 1.0
    assert memorisation_check(train, fresh)[0]["near_copy_share"] < 0.05
    _, shown = memorisation_check(train, copies, shown=5)
    assert torch.equal(shown["real"], shown["fake"])   # each copy's nearest training item is its source


def test_real_against_real_with_the_mnist_extractor(tmp_path):
    same = evaluate("digits", "digits", n=None, extractor="mnist", memorisation=False)
    assert abs(same["metrics"]["fid"]) < 1e-4   # rounding only: traces are ~1e3
    assert same["metrics"]["precision"] == same["metrics"]["recall"] == 1.0
    report = evaluate("digits", "mnist5k", n=1000, extractor="mnist", metrics=("fid", "pr", "is"), memorisation=False)
    assert report["metrics"]["fid"] > 10 * max(abs(same["metrics"]["fid"]), 1e-3)
    assert 1 <= report["metrics"]["is_mean"] <= 10


def test_cli_eval_of_a_run_writes_eval_json_and_nearest_png(tmp_path, capsys):
    assert main(["train", "--data", "digits", "--resolution", "16", "--steps", "4", "--out", str(tmp_path),
                 "--name", "r", "--no-progress", "g_width=8", "d_width=8", "batch_size=16"]) == 0
    run = tmp_path / "r"
    capsys.readouterr()
    assert main(["eval", str(run), "--n", "300", "--cache", str(tmp_path / "cache"), "--metrics", "fid,kid,pr,dc,is"]) == 0
    out = capsys.readouterr().out
    report = json.loads((run / "eval.json").read_text())
    assert {"fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "is_mean"} <= set(report["metrics"])
    assert report["extractor"] == "mnist" and report["fake"]["n"] == 300 and report["real"]["source"] == "digits"
    assert report["warnings"] == []   # 300 samples, 128-d features
    assert (run / "nearest.png").is_file() and (run / "eval.png").is_file() and "near-copy share" in out
    assert main(["eval", str(run), "--n", "300", "--json", "--cache", "none", "--out", str(tmp_path / "j")]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["fid"] == pytest.approx(report["metrics"]["fid"], rel=1e-9)
    assert main(["eval", str(run), "--n", "60", "--metrics", "fid", "--cache", "none", "--out", str(tmp_path / "k")]) == 0
    assert "FID from fewer samples (60) than feature dimensions (128)" in capsys.readouterr().out


def test_a_conditional_runs_samples_are_the_same_whichever_batch_makes_them(tmp_path):
    # nearest.png remakes the closest samples by index: each must be the image the metrics measured.
    assert main(["train", "--data", "digits", "--resolution", "16", "--steps", "2", "--out", str(tmp_path),
                 "--name", "r", "--no-progress", "g_width=8", "d_width=8", "batch_size=16"]) == 0
    fakes = load_images(tmp_path / "r", n=30, seed=0)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["config"]["conditional"]
    picked = torch.tensor([7, 3, 25, 12])
    assert torch.equal(fakes.make(picked), fakes.make(torch.arange(30))[picked])


@pytest.mark.parametrize("argv, message", [
    (["eval"], "name the generated side once"),
    (["eval", "--fake", "digits"], "name the real images with --real"),
    (["eval", "--fake", "digits", "--real", "digits", "--metrics", "fid,nope"], "unknown metric 'nope'"),
    (["eval", "--fake", "digits", "--real", "digits", "--extractor", "vgg"], "unknown extractor 'vgg'"),
])
def test_eval_mistakes_are_one_line(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path), "--cache", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_eval_every_logs_fid_and_keeps_the_best_checkpoint(tmp_path):
    from ganforge import checkpoint
    from ganforge.sample import load_generator

    assert main(["train", "--data", "digits", "--resolution", "16", "--steps", "6", "--out", str(tmp_path),
                 "--name", "e", "--no-progress", "g_width=8", "d_width=8", "batch_size=16",
                 "--eval-every", "2", "eval_n=50", "checkpoint_every=3"]) == 0
    run = tmp_path / "e"
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    fids = {e["step"]: e["fid"] for e in lines if "fid" in e}
    assert sorted(fids) == [2, 4, 6]
    best = checkpoint.best_path(run)
    _, record = checkpoint.load(best)
    assert record["best_fid"] == min(fids.values()) and fids[record["step"]] == record["best_fid"]
    assert checkpoint.find(run).name == "step-0000006.safetensors"   # resume still takes the newest
    assert load_generator(best).step == record["step"]


def test_a_diverged_g_emas_fid_is_nan_not_an_error():
    from ganforge.config import resolve
    from ganforge.data import load_source
    from ganforge.monitor import fid_judge

    data = load_source("digits", 16, 1)
    judge = fid_judge(resolve({"data": "digits", "resolution": 16, "eval_n": 20}, "dcgan"), data, torch.device("cpu"))
    assert judge(lambda z: torch.zeros(len(z), 1, 16, 16)) > 0
    assert math.isnan(judge(lambda z: torch.full((len(z), 1, 16, 16), float("nan"))))
