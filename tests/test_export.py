"""`ganforge export`: the exported folder samples exactly as its run, carries its eval numbers,
refuses altered weights and foreign folders; ONNX matches PyTorch for every kind of generator."""
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import ganforge
from ganforge import export as export_module
from ganforge.cli import main
from ganforge.errors import UserError
from ganforge.export import export
from ganforge.provenance import read as read_provenance
from ganforge.sample import latents

TINY = ["--no-progress", "g_width=8", "d_width=8", "batch_size=16", "tensorboard=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An unconditional image run with an eval.json, a class-conditional one and a vector one."""
    out = tmp_path_factory.mktemp("runs")
    digits = ["train", "--data", "digits", "--resolution", "16", "--steps", "30", "--out", str(out)]
    assert main(digits + ["--name", "image", *TINY, "conditional=0"]) == 0
    assert main(digits + ["--name", "conditional", *TINY, "conditional=1"]) == 0
    assert main(["train", "--data", "ring8", "--steps", "20", "--out", str(out), "--name", "vector", "--no-progress",
                 "tensorboard=0"]) == 0
    assert main(["eval", str(out / "image"), "--n", "200", "--metrics", "fid,kid", "--cache", "none"]) == 0
    return {name: out / name for name in ("image", "conditional", "vector")}


def pixels(path):
    with Image.open(path) as img:
        return np.array(img)


@pytest.mark.parametrize("kind", ["image", "conditional", "vector"])
def test_an_exported_folder_samples_exactly_as_its_run(runs, kind, tmp_path, capsys):
    run, out = runs[kind], tmp_path / "exported"
    assert main(["export", str(run), "--out", str(out), "--device", "cpu"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no temporary folder left beside it
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors", "samples.png"]
    gen, loaded = ganforge.load(run, "cpu"), ganforge.load(out, "cpu")
    seeds = list(range(8))
    assert torch.equal(gen.sample_seeds(seeds), loaded.sample_seeds(seeds))
    assert torch.equal(gen.sample(10, seed=3), loaded.sample(10, seed=3))
    assert (loaded.sha256, loaded.step, loaded.model, loaded.kind) == (gen.sha256, gen.step, gen.model, gen.kind)

    config = json.loads((out / "config.json").read_text())
    assert config["library_name"] == "ganforge" and config["model_sha256"] == gen.sha256
    assert config["model"] == gen.model and config["config"] == gen.config and config["step"] == gen.step
    with safe_open(out / "model.safetensors", "pt") as f:  # G_ema's weights alone
        assert f.metadata()["model_sha256"] == gen.sha256 and set(f.keys()) == set(gen.G.state_dict())
    meta = read_provenance(out / "samples.png")
    assert meta["model_sha256"] == gen.sha256
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: ganforge\n") and "(samples.png)" in card and gen.sha256 in card
    assert ("class-conditional-image-generation" in card) == (kind == "conditional")
    assert ("pipeline_tag: unconditional-image-generation" in card) == (kind == "image")

    if kind == "vector":
        for source, name in ((run, "a.npy"), (out, "b.npy")):
            assert main(["sample", str(source), "--seeds", "0-7", "--out", str(tmp_path / name), "--device", "cpu"]) == 0
        assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
        return
    assert meta["seeds"] == list(range(16))
    for source, folder in ((run, "a"), (out, "b")):
        assert main(["sample", str(source), "--seeds", "0-7", "--out", str(tmp_path / folder), "--device", "cpu"]) == 0
    for name in (f"seed{s:04d}.png" for s in seeds):
        assert np.array_equal(pixels(tmp_path / "a" / name), pixels(tmp_path / "b" / name))
    assert main(["interpolate", str(out), "--seeds", "0,1", "--frames", "2", "--out", str(tmp_path / "w.png")]) == 0


def test_the_card_gives_the_eval_numbers_and_the_command_that_reproduces_them(runs, tmp_path, capsys):
    run, out = runs["image"], tmp_path / "image-gan"
    export(run, out, device="cpu")
    measured = json.loads((run / "eval.json").read_text())
    card = (out / "README.md").read_text()
    assert f"| FID | {measured['metrics']['fid']:.4g} |" in card and f"| KID | {measured['metrics']['kid_mean']:.4g} ± " in card
    command = "ganforge eval image-gan --real digits --extractor mnist --metrics fid,kid --n 200 --seed 0"
    assert command in card and "1,797 images of `digits`" in card

    # the same numbers from the folder, with the real side defaulting to the run's training data
    assert main(["eval", str(out), "--n", "200", "--metrics", "fid,kid", "--cache", "none", "--json",
                 "--out", str(tmp_path / "again")]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == measured["metrics"]

    config = json.loads((out / "config.json").read_text())
    config["config"]["data"] = str(tmp_path / "gone")  # training data that is not here
    (out / "config.json").write_text(json.dumps(config))
    assert main(["eval", str(out), "--n", "20", "--metrics", "fid", "--cache", "none", "--out", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--real" in err

    export(runs["conditional"], tmp_path / "no-eval", device="cpu")
    card = (tmp_path / "no-eval" / "README.md").read_text()
    assert "no `eval.json`" in card and "ganforge eval no-eval --n 5000 --seed 0" in card


def test_altered_weights_are_refused_in_one_line(runs, tmp_path, capsys):
    out = tmp_path / "gan"
    export(runs["image"], out, device="cpu")
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-3] ^= 1  # one bit of the last weight
    (out / "model.safetensors").write_bytes(bytes(data))
    assert main(["sample", str(out), "--seeds", "0", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.safetensors has been altered" in err and "Traceback" not in err
    (out / "model.safetensors").write_bytes(bytes(data[:200]))  # truncated
    with pytest.raises(UserError, match="not a readable ganforge export"):
        ganforge.load(out, "cpu")


def test_a_foreign_folder_is_refused_and_an_earlier_export_replaced(runs, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["export", str(runs["image"]), "--out", str(foreign)]) == 2
    assert "not a ganforge export" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"] and (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(UserError, match="not a ganforge export"):
        export(runs["image"], runs["conditional"])  # a run folder is not an export either

    out = tmp_path / "gan"
    export(runs["image"], out, device="cpu")
    (out / "eval.json").write_text("{}")  # what `ganforge eval DIR` leaves
    export(runs["conditional"], out, device="cpu")
    assert json.loads((out / "config.json").read_text())["model"]["G"]["num_classes"] == 10
    assert not (out / "eval.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gan", "mine"]


@pytest.mark.parametrize("kind", ["image", "conditional", "vector"])
def test_onnx_matches_pytorch_on_64_seeds(runs, kind, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx"
    assert main(["export", str(runs[kind]), "--out", str(out), "--format", "onnx", "--device", "cpu"]) == 0
    assert "onnx check: 64 seeds, max abs difference" in capsys.readouterr().out
    gen = ganforge.load(out, "cpu")  # the ONNX folder is a full export too
    session = ort.InferenceSession(str(out / "generator.onnx"), providers=["CPUExecutionProvider"])
    classes = gen.model["G"].get("num_classes", 0)
    assert [(i.name, i.type) for i in session.get_inputs()] == [("z", "tensor(float)")] + (
        [("class", "tensor(int64)")] if classes else [])
    assert session.get_outputs()[0].name == ("x" if kind == "vector" else "img")

    seeds = list(range(64))
    z = torch.cat([latents(1, gen.G.z_dim, s) for s in seeds]).numpy()
    feed = {"z": z} | ({"class": np.array(seeds) % classes} if classes else {})  # seed s: class s mod K
    want = ganforge.load(runs[kind], "cpu").sample_seeds(seeds).numpy()
    got = session.run(None, feed)[0]
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4
    some = session.run(None, {k: v[:5] for k, v in feed.items()})[0]  # any batch size
    assert some.shape == (5, *want.shape[1:]) and np.abs(some - want[:5]).max() <= 1e-4
    recorded = json.loads((out / "config.json").read_text())["onnx"]["check"]
    assert recorded["seeds"] == 64 and recorded["max_abs_difference"] <= 1e-4


def test_onnx_needs_its_packages_and_a_failed_check_leaves_nothing(runs, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(export_module, "ONNX_LIMIT", -1.0)  # no model can pass
    with pytest.raises(UserError, match="differs from PyTorch"):
        export(runs["image"], tmp_path / "out", "onnx", device="cpu")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as without onnxruntime
    assert main(["export", str(runs["image"]), "--out", str(tmp_path / "out"), "--format", "onnx"]) == 2
    assert "pip install 'ganforge[onnx]'" in capsys.readouterr().err and list(tmp_path.iterdir()) == []
