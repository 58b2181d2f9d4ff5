"""Provenance: every image ganforge writes says what made it, and `ganforge provenance` reads it back."""
import json

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import ganforge
from ganforge import __version__, provenance
from ganforge.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--data", "digits", "--resolution", "16", "--steps", "10", "--out", str(out), "--name", "r",
                 "--no-progress", "g_width=8", "d_width=8", "batch_size=16", "conditional=1", "tensorboard=0"]) == 0
    return out / "r"


def test_each_seed_file_names_its_model_seed_class_and_truncation(run, tmp_path, capsys):
    assert main(["sample", str(run), "--seeds", "3-4", "--class", "7", "--truncation", "0.5", "--out", str(tmp_path)]) == 0
    meta = provenance.read(tmp_path / "seed0004.png")
    sha = provenance.model_sha256(ganforge.load(run, "cpu").G)
    assert meta == {"ganforge": __version__, "what": "generated", "model_sha256": sha, "arch": "dcgan",
                    "step": 10, "class": 7, "seed": 4, "truncation": 0.5}
    capsys.readouterr()
    assert main(["provenance", str(tmp_path / "seed0004.png"), "--model", str(run)]) == 0
    assert "seed 4 redrawn, every pixel identical" in capsys.readouterr().out


def test_a_grid_names_its_seeds_and_an_edited_image_is_caught(run, tmp_path, capsys):
    assert main(["sample", str(run), "--seeds", "0-3", "--out", str(tmp_path / "grid.png")]) == 0
    assert provenance.read(tmp_path / "grid.png")["seeds"] == [0, 1, 2, 3]
    assert main(["sample", str(run), "--seeds", "5", "--out", str(tmp_path / "one")]) == 0
    edited = tmp_path / "one" / "seed0005.png"
    with Image.open(edited) as img:
        info = img.info
        pixels = np.array(img)
    pixels[0, 0] ^= 1   # one pixel, one bit
    keep = PngImagePlugin.PngInfo()
    keep.add_itxt("ganforge", info["ganforge"])
    Image.fromarray(pixels).save(edited, pnginfo=keep)
    capsys.readouterr()
    assert main(["provenance", str(edited), "--model", str(run)]) == 1
    assert "DOES NOT MATCH" in capsys.readouterr().out


def test_a_plain_image_has_no_record_and_exits_1(tmp_path, capsys):
    Image.new("L", (8, 8)).save(tmp_path / "camera.png")
    assert main(["provenance", str(tmp_path / "camera.png")]) == 1
    assert "no ganforge metadata" in capsys.readouterr().out
    assert main(["provenance", str(tmp_path / "missing.png")]) == 2


def test_training_pictures_walks_and_repairs_carry_records(run, tmp_path, capsys):
    assert provenance.read(run / "samples" / "step-0000010.png")["what"] == "training samples"
    assert provenance.read(run / "compare.png")["what"] == "real beside generated"
    for name in ("walk.gif", "walk.mp4", "walk.png"):
        assert main(["interpolate", str(run), "--seeds", "0-1", "--frames", "2", "--out", str(tmp_path / name)]) == 0
        assert provenance.read(tmp_path / name)["seeds"] == [0, 1], name
    Image.new("L", (16, 16), 128).save(tmp_path / "in.png")
    assert main(["repair", str(run), "--image", str(tmp_path / "in.png"), "--mask-box", "0,0,16,8", "--steps", "2",
                 "--restarts", "1", "--out", str(tmp_path / "fixed.png")]) == 0
    meta = provenance.read(tmp_path / "fixed.png")
    assert meta["what"] == "repaired" and meta["source"] == "in.png"
    capsys.readouterr()
    assert main(["provenance", str(tmp_path / "fixed.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split(": ", 1)[1])["what"] == "repaired"
