"""Distributed training on gloo, precision, memory layout and compilation, on the CPU."""
import json
import os
import subprocess
import sys

import pytest
import torch

from ganforge import checkpoint
from ganforge.cli import main

MLP = ["--data", "ring8", "--steps", "20", "--no-progress", "--device", "cpu", "g_width=16", "d_width=16",
       "batch_size=64", "checkpoint_every=5", "log_every=5"]
IMAGES = ["--data", "digits", "--resolution", "16", "--steps", "6", "--no-progress", "g_width=8", "d_width=8",
          "batch_size=16", "r1_every=2", "checkpoint_every=3"]


def tensors(run):
    return checkpoint.load(checkpoint.find(run))[0]


def torchrun_train(tmp_path, *args):
    """`ganforge train` in two gloo processes; torchrun's scratch folder goes in tmp_path, not /tmp."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "ganforge", "train", *args], capture_output=True, text=True,
                          env={**os.environ, "TMPDIR": str(tmp_path)})


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    single = subprocess.run([sys.executable, "-m", "ganforge", "train", "--out", str(tmp_path), "--name", "one", *MLP],
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    two = torchrun_train(tmp_path, "--out", str(tmp_path), "--name", "two", *MLP)
    assert two.returncode == 0, two.stderr
    assert "x 2 processes" in two.stdout and two.stdout.count("run folder:") == 1  # rank 0 alone prints

    one, both = tensors(tmp_path / "one"), tensors(tmp_path / "two")
    for key in one:
        if key.startswith(("G.", "D.", "G_ema.")):
            assert torch.allclose(one[key], both[key], rtol=0, atol=1e-5), key
    # Every checkpoint passed check_in_sync (the ranks' weights equal); rank 0 alone wrote files.
    assert [p.name for p in checkpoint.checkpoints(tmp_path / "two")][-1] == "step-0000020.safetensors"
    log_one, log_two = ([json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
                        for name in ("one", "two"))
    assert [e["step"] for e in log_two] == [e["step"] for e in log_one] == [5, 10, 15, 20]
    assert all(abs(a["loss_D"] - b["loss_D"]) < 1e-4 for a, b in zip(log_one, log_two))


def test_a_global_batch_that_does_not_split_is_refused(tmp_path):
    proc = torchrun_train(tmp_path, "--out", str(tmp_path), *MLP, "batch_size=63")
    assert proc.returncode != 0 and "must divide by the 2 processes" in proc.stderr


@pytest.mark.parametrize("settings", [["precision=bf16"], ["precision=fp16"], ["channels_last=true"],
                                      ["precision=bf16", "channels_last=on"]])
def test_precision_and_layout_train_without_nan(tmp_path, settings):
    assert main(["train", "--out", str(tmp_path), "--name", "r", *IMAGES, *settings]) == 0
    ckpt, record = checkpoint.load(checkpoint.find(tmp_path / "r"))
    assert record["step"] == 6 and record["skipped"] == 0
    assert all(torch.isfinite(t).all() for t in ckpt.values() if t.is_floating_point())
    assert all(k in record["config"] for k in ("precision", "channels_last"))


def test_fp32_and_channels_last_agree(tmp_path):
    assert main(["train", "--out", str(tmp_path), "--name", "a", *IMAGES]) == 0
    assert main(["train", "--out", str(tmp_path), "--name", "b", *IMAGES, "channels_last=1"]) == 0
    a, b = tensors(tmp_path / "a"), tensors(tmp_path / "b")
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a if k.startswith("G_ema."))


def test_compile_keeps_checkpoints_loadable(tmp_path):
    """torch.compile on the CPU (inductor, with the C++ compiler) and R1's eager double backward."""
    assert main(["train", "--out", str(tmp_path), "--name", "c", *MLP, "--steps", "4", "compile=true"]) == 0
    assert main(["sample", str(tmp_path / "c"), "--n", "8", "--out", str(tmp_path / "x.npy")]) == 0
    assert "G.net.0.weight" in tensors(tmp_path / "c")  # the compiled wrapper adds no key prefix


def test_bad_precision_and_booleans_are_one_line(capsys):
    assert main(["train", "precision=fp8"]) == 2
    assert "precision must be fp32, bf16 or fp16" in capsys.readouterr().err
    assert main(["train", "compile=maybe"]) == 2
    assert "needs true or false" in capsys.readouterr().err


def test_prepare_a_folder_then_train_from_the_mapped_file(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    from ganforge.data import load_source
    from ganforge.data import prepare as prepare_module

    for k, cls in enumerate(("a", "b")):
        for i in range(10):
            (tmp_path / "imgs" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((20, 30), 100 * k + i, np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "imgs" / "a" / "broken.png").write_bytes(b"")
    monkeypatch.setattr(prepare_module, "CHUNK", 6)  # several chunks, one with a broken file
    out = tmp_path / "prep.npy"
    assert main(["prepare", str(tmp_path / "imgs"), "--out", str(out), "--resolution", "16"]) == 0
    arr = np.load(out)
    assert arr.shape == (20, 16, 16, 1) and arr.dtype == np.uint8
    assert arr[:10].min() < 10 and arr[10:].min() >= 100  # class a, then class b, in order
    ds = load_source(str(out), resolution=16)
    assert ds.info["memory_mapped"] and ds.class_names == ("a", "b") and ds.labels.tolist() == [0] * 10 + [1] * 10
    assert torch.equal(ds.data, load_source(str(tmp_path / "imgs"), resolution=16).data)
    assert main(["train", "--data", str(out), "--out", str(tmp_path), "--name", "m", "--resolution", "16", *IMAGES[4:]]) == 0
    assert json.loads((tmp_path / "m" / "log.jsonl").read_text().splitlines()[-1])["data_share"] >= 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_prepare_a_builtin_source_and_a_resolution_mismatch_decodes_in_memory(tmp_path):
    from ganforge.data import load_source

    out = tmp_path / "digits.npy"
    assert main(["prepare", "digits", "--out", str(out), "--resolution", "16"]) == 0
    assert load_source(str(out), resolution=16).info["memory_mapped"]
    other = load_source(str(out), resolution=32)
    assert not other.info.get("memory_mapped") and other.data.shape[-1] == 32 and len(other.labels) == 1797
