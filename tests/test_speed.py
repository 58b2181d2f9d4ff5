"""Distributed training on gloo, precision, memory layout and compilation, on the CPU."""
import json
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


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    single = subprocess.run([sys.executable, "-m", "ganforge", "train", "--out", str(tmp_path), "--name", "one", *MLP],
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "ganforge", "train", "--out", str(tmp_path), "--name", "two", *MLP],
                         capture_output=True, text=True)
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
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "ganforge", "train", "--out", str(tmp_path), *MLP, "batch_size=63"],
                          capture_output=True, text=True)
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
