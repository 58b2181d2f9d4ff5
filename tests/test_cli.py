"""The real command line, end to end, on tiny settings: train -> sample -> train again."""
import importlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge import checkpoint
from ganforge.cli import main

TINY = ["g_width=8", "d_width=8", "batch_size=16", "log_every=2", "sample_every=3", "checkpoint_every=3"]


def ganforge(*args, check=True):
    """Run `python -m ganforge` in a fresh process, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "ganforge", *map(str, args)], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def weights(run_dir, prefix="G_ema"):
    tensors, _ = checkpoint.load(checkpoint.find(run_dir))
    return {k: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def test_train_sample_resume(tmp_path):
    proc = ganforge("train", "--data", "digits", "--resolution", 16, "--steps", 6, "--out", tmp_path,
                    "--name", "run", *TINY)
    run = tmp_path / "run"
    assert f"run folder: {run}" in proc.stdout
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [2, 4, 6] and log[-1]["nimg"] == 96
    assert set(log[0]) >= {"loss_D", "loss_G", "D_real", "D_fake", "img_per_s"}
    assert [p.name for p in checkpoint.checkpoints(run)] == ["step-0000003.safetensors", "step-0000006.safetensors"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-0000003.png", "step-0000006.png"]
    assert Image.open(run / "compare.png").size[0] > 2 * Image.open(run / "samples" / "step-0000006.png").size[0]
    assert json.loads((run / "config.json").read_text())["config"]["steps"] == 6

    ganforge("sample", run, "--n", 5, "--seed", 3, "--out", tmp_path / "a.npy")
    ganforge("sample", run, "--n", 5, "--seed", 3, "--out", tmp_path / "b.npy")
    ganforge("sample", run, "--n", 5, "--seed", 4, "--out", tmp_path / "c.npy")
    a, b, c = (np.load(tmp_path / f"{x}.npy") for x in "abc")
    assert a.shape == (5, 1, 16, 16) and a.dtype == np.float32 and np.abs(a).max() <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    ganforge("sample", run, "--n", 5, "--out", tmp_path / "grid.png")
    assert Image.open(tmp_path / "grid.png").mode == "L"
    ganforge("sample", run, "--n", 3, "--out", tmp_path / "each")
    assert [Image.open(p).size for p in sorted((tmp_path / "each").iterdir())] == [(16, 16)] * 3

    proc = ganforge("train", "--resume", run, "--steps", 9)
    assert "from step 6 to 9" in proc.stdout
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["step"] == 9
    assert checkpoint.find(run).name == "step-0000009.safetensors"


def test_same_seed_same_weights_and_resume_is_exact(tmp_path, monkeypatch, capsys):
    args = ["--data", "digits", "--resolution", 16, "--out", tmp_path, *TINY]
    for name in "ab":
        assert main(["train", *map(str, args), "--steps", "9", "--name", name, "--no-progress"]) == 0
    train_module = importlib.import_module("ganforge.train")  # the module, not its train()
    save = train_module._save_checkpoint

    def save_then_stop(state, *rest):  # the run "c" is stopped right after its step-6 checkpoint
        save(state, *rest)
        if state.step == 6:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_stop)
    assert main(["train", *map(str, args), "--steps", "9", "--name", "c", "--no-progress"]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "c"), "--no-progress"]) == 0
    assert "note: this run started with other" not in capsys.readouterr().out
    a, b, c = (weights(tmp_path / n, "G") | weights(tmp_path / n, "D") for n in "abc")
    assert len(a) > 10
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed and config: identical weights
    assert all(torch.equal(a[k], c[k]) for k in a)  # interrupted at 6 and resumed: identical too
    recorded = json.loads((tmp_path / "a" / "config.json").read_text())  # what else the same weights need
    assert (recorded["torch"], recorded["cpu_threads"]) == (torch.__version__, torch.get_num_threads())
    other = tmp_path / "d"
    main(["train", *map(str, args), "--steps", "9", "--name", "d", "--seed", "1", "--no-progress"])
    assert not torch.equal(a["G.net.0.weight"], weights(other, "G")["G.net.0.weight"])
    recorded["cpu_threads"] += 1  # as if "c" had started on a machine with one more thread
    (tmp_path / "c" / "config.json").write_text(json.dumps(recorded))
    assert main(["train", "--resume", str(tmp_path / "c"), "--steps", "10", "--no-progress"]) == 0
    assert (f"CPU threads {torch.get_num_threads() + 1} -> {torch.get_num_threads()}); it continues"
            in capsys.readouterr().out)


def test_vector_data_end_to_end(tmp_path):
    points = np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32) * 3 + 10
    np.save(tmp_path / "points.npy", points)
    assert main(["train", "--data", str(tmp_path / "points.npy"), "--steps", "4", "--out", str(tmp_path),
                 "--name", "v", "--no-progress", "g_width=8", "d_width=8", "batch_size=64"]) == 0
    assert (tmp_path / "v" / "compare.png").exists()
    assert main(["sample", str(tmp_path / "v"), "--n", "7", "--out", str(tmp_path / "v.npy")]) == 0
    samples = np.load(tmp_path / "v.npy")
    assert samples.shape == (7, 2) and abs(samples.mean() - 10) < 5  # G speaks in data units
    assert main(["sample", str(tmp_path / "v"), "--n", "7", "--out", str(tmp_path / "v.png")]) == 0


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "no/such/folder"], "no such file or folder"),
    (["train", "--steps", "-1"], "steps must be a whole number >= 1"),
    (["train", "lr_gg=1"], "did you mean 'lr_g'"),
    (["train", "steps"], "is not key=value"),
    (["train", "--batch-size", "ten"], "'batch_size' needs int"),
    (["train", "loss=wasserstein"], "loss must be one of nonsaturating, minimax"),
    (["train", "--resolution", "48"], "power of two"),
    (["train", "--data", "ring8", "--arch", "dcgan"], "arch 'dcgan' models image data"),
    (["sample", "no/such/run", "--out", "x.png"], "no such run folder or checkpoint"),
])
def test_user_mistakes_get_one_line(tmp_path, capsys, args, message):
    assert main([*args, *(["--out", str(tmp_path)] if args[0] == "train" else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_bad_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path)]) == 2
    assert "no readable images" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.png").write_text("not an image")
    (bad / "zero.png").write_bytes(b"")
    assert main(["train", "--data", str(bad), "--out", str(tmp_path)]) == 2
    assert "no readable images" in capsys.readouterr().err


def test_corrupt_files_are_skipped_with_a_count(tmp_path, caplog):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(np.full((20, 24), i * 10, np.uint8)).save(folder / f"{i}.png")
    (folder / "notes.png").write_text("not an image")
    assert main(["train", "--data", str(folder), "--resolution", "16", "--steps", "2", "--out", str(tmp_path),
                 "--name", "f", "--no-progress", "g_width=4", "d_width=4", "batch_size=8"]) == 0
    assert "skipped 1 of 21" in caplog.text and "notes.png" in caplog.text


def test_checkpoint_that_is_not_one(tmp_path, capsys):
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"\x00" * 64)
    assert main(["sample", str(fake), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a readable ganforge checkpoint" in capsys.readouterr().err


def test_existing_folder_is_never_overwritten(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    assert main(["train", "--data", "ring8", "--out", str(tmp_path), "--name", "taken"]) == 2
    assert "is not a ganforge run: choose another --name" in capsys.readouterr().err
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_naming_an_existing_run_continues_it(tmp_path, capsys):
    args = ["train", "--data", "ring8", "--out", str(tmp_path), "--name", "r", "--no-progress",
            "g_width=4", "d_width=4", "batch_size=32", "checkpoint_every=2"]
    assert main([*args, "--steps", "2"]) == 0
    assert main([*args, "--steps", "4"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert checkpoint.find(tmp_path / "r").name == "step-0000004.safetensors"
    assert main([*args, "--steps", "4", "--seed", "1"]) == 2
    assert "cannot change seed when resuming" in capsys.readouterr().err


def test_a_setting_newer_than_the_run_cannot_change_on_resume():
    from ganforge.config import resolve
    from ganforge.errors import UserError
    from ganforge.runs import resumed_config

    saved = resolve({"steps": 4}, "dcgan").to_dict()
    del saved["pack"]  # a run begun before `pack` existed trained with pack=1
    assert resumed_config(saved, {"steps": 8, "pack": 1}).steps == 8
    with pytest.raises(UserError, match="cannot change pack when resuming"):
        resumed_config(saved, {"pack": 2})


def test_resume_drops_log_lines_after_its_checkpoint(tmp_path):
    args = ["--data", "digits", "--resolution", "16", "--out", str(tmp_path), "--name", "r", "--no-progress", *TINY]
    assert main(["train", *args, "--steps", "4", "checkpoint_every=4", "log_every=1"]) == 0
    log = tmp_path / "r" / "log.jsonl"
    lines = log.read_text().splitlines()
    # as if killed after logging steps 5 and 6 (the last line half-written) but before checkpoint 6
    log.write_text("\n".join(lines + [lines[-1].replace('"step": 4', '"step": 5'), '{"step": 6, "ni']) + "\n")
    assert main(["train", "--resume", str(tmp_path / "r"), "--steps", "6", "--no-progress"]) == 0
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]


def test_unwritable_output_is_one_line(tmp_path, capsys):
    run = tmp_path / "v"
    np.save(tmp_path / "p.npy", np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32))
    assert main(["train", "--data", str(tmp_path / "p.npy"), "--steps", "2", "--out", str(tmp_path), "--name", "v",
                 "--no-progress", "g_width=4", "d_width=4", "batch_size=32"]) == 0
    (tmp_path / "file").write_text("")
    assert main(["sample", str(run), "--out", str(tmp_path / "file" / "x.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganforge: error:") and str(tmp_path / "file") in err and len(err.splitlines()) == 1
