"""Fault injection with real processes and real files: kill -9 then resume, a flipped byte, a write
that fails, a NaN loss, a malicious pickle. Each must end in the run's exact weights or in one clear
line, never in lost work."""
import dataclasses
import json
import pickle
import random
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganforge import checkpoint, train
from ganforge.cli import main
from ganforge.config import resolve
from ganforge.errors import UserError
from ganforge.state import new_state

SRC = Path(__file__).resolve().parents[1] / "src" / "ganforge"
TINY = ["--data", "digits", "--resolution", "16", "--no-progress", "g_width=8", "d_width=8", "batch_size=16",
        "log_every=1", "sample_every=50", "r1_gamma=1", "r1_every=2"]


def command(out: Path, name: str, steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ganforge", "train", "--out", str(out), "--name", name, "--steps", str(steps),
            *TINY, *extra]


def final_state(run: Path) -> dict[str, torch.Tensor]:
    tensors, record = checkpoint.load(checkpoint.find(run))
    return {**tensors, "step": torch.tensor(record["step"]), "nimg": torch.tensor(record["nimg"])}


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def last_logged_step(log: Path) -> int:
    """The step of the newest complete line of a run's log.jsonl (0 when there is none)."""
    try:
        lines = log.read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return json.loads(line)["step"]
        except (ValueError, KeyError):
            continue
    return 0


def test_kill_9_at_random_moments_then_resume_is_bitwise_exact(tmp_path):
    steps = 300
    subprocess.run(command(tmp_path, "ref", steps, "checkpoint_every=7"), check=True, capture_output=True)
    reference = final_state(tmp_path / "ref")

    # Each kill lands a random time after the run passes a random step (so on a busy or a quiet
    # machine alike), often inside a step or a checkpoint write; then the same command continues.
    rng = random.Random(0)
    argv = command(tmp_path, "killed", steps, "checkpoint_every=7")
    for target in sorted(rng.sample(range(30, steps - 30), 3)):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and last_logged_step(tmp_path / "killed" / "log.jsonl") < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.1))
        assert proc.poll() is None, f"the run ended before step {target}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_bitwise_equal(final_state(tmp_path / "killed"), reference)
    steps_logged = [json.loads(line)["step"] for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert steps_logged == list(range(1, steps + 1))
    assert not list((tmp_path / "killed").rglob(".*.tmp-*"))


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    subprocess.run(command(out, "run", 6, "checkpoint_every=3"), check=True, capture_output=True)
    return out / "run"


@pytest.mark.parametrize("where", ["record", "safetensors header", "tensor data", "last byte"])
def test_a_flipped_byte_is_detected_named_and_an_older_checkpoint_offered(two_checkpoints, tmp_path, where, capsys):
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(two_checkpoints), str(run)], check=True)
    older, newest = checkpoint.checkpoints(run)
    data = bytearray(newest.read_bytes())
    header_end = 8 + int.from_bytes(data[:8], "little")
    at = {"record": data.index(b'nimg') + 8,  # a digit of the image count: 96 becomes 86, still valid JSON
          "safetensors header": 12, "tensor data": (header_end + len(data)) // 2, "last byte": -1}[where]
    data[at] ^= 0x01
    newest.write_bytes(bytes(data))

    assert main(["sample", str(run), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert str(newest) in err and f"the newest intact one is {older}" in err and len(err.splitlines()) == 1
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    assert str(older) in capsys.readouterr().err

    assert main(["train", "--resume", str(older), "--no-progress"]) == 0  # the offer, taken
    assert_bitwise_equal(final_state(run), final_state(two_checkpoints))


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_failed_write_leaves_the_last_checkpoint_intact(two_checkpoints, tmp_path):
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(two_checkpoints), str(run)], check=True)
    newest = checkpoint.find(run)
    before = newest.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "ganforge", "train", "--resume", str(run), "--steps", "9",
                           "--no-progress"], capture_output=True, text=True,
                          preexec_fn=_limit_file_size(len(before) // 2))
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "could not write" in err and f"{newest}, is intact" in err, err
    assert newest.read_bytes() == before and checkpoint.find(run) == newest
    assert not list(run.rglob(".*.tmp-*"))
    assert main(["train", "--resume", str(run), "--steps", "9", "--no-progress"]) == 0  # space is back


def _nan_on_calls(monkeypatch, bad_calls):
    """Make D's loss NaN on the given calls (one call per step)."""
    calls, loss = [], train.LOSSES["nonsaturating"]

    def nan_d_loss(real_logits, fake_logits):
        calls.append(1)
        value = loss.d(real_logits, fake_logits)
        return value * float("nan") if len(calls) in bad_calls else value

    monkeypatch.setitem(train.LOSSES, "nonsaturating", dataclasses.replace(loss, d=nan_d_loss))


def test_nan_losses_are_skipped_then_rolled_back_and_training_recovers(tmp_path, monkeypatch):
    # Calls 12-30 give NaN: 10 skips in a row at steps 12-21 roll back to the checkpoint of step 20
    # with halved learning rates; 9 more skips there, then the losses are finite again.
    _nan_on_calls(monkeypatch, range(12, 31))
    argv = ["train", "--out", str(tmp_path), "--name", "nan", "--steps", "40", *TINY, "checkpoint_every=5"]
    assert main(argv) == 0
    tensors, record = checkpoint.load(checkpoint.find(tmp_path / "nan"))
    assert (record["step"], record["skipped"], record["rollbacks"], record["lr_scale"]) == (40, 19, 1, 0.5)
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    log = [json.loads(line) for line in (tmp_path / "nan" / "log.jsonl").read_text().splitlines()]
    events = [e for e in log if e.get("event") == "rollback"]
    assert [(e["step"], e["diverged_at"], e["lr_scale"]) for e in events] == [(20, 21, 0.5)]
    assert [e["step"] for e in log if "event" not in e] == list(range(1, 41))
    assert all(e["loss_D"] == e["loss_D"] for e in log if "event" not in e)  # no NaN reached the log


def test_a_run_that_keeps_diverging_stops_with_its_checkpoints_intact(tmp_path, monkeypatch, capsys):
    _nan_on_calls(monkeypatch, range(6, 10**6))
    argv = ["train", "--out", str(tmp_path), "--name", "nan", "--steps", "100", *TINY, "checkpoint_every=5",
            "nan_patience=3"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "did not recover after 3 rollbacks" in err and "lower lr_g and lr_d" in err
    assert checkpoint.load(checkpoint.find(tmp_path / "nan"))[1]["step"] == 5


def test_non_finite_weights_are_never_written(tmp_path):
    cfg = resolve({"data": "ring8", "g_width": 4, "d_width": 4}, "mlp")
    model = {"arch": "mlp", "G": {"z_dim": 16, "width": 4, "depth": 1, "dim": 2, "mean": [0, 0], "std": [1, 1]},
             "D": {"width": 4, "depth": 1, "dim": 2, "mean": [0, 0], "std": [1, 1]}}
    state = new_state(cfg, model, torch.device("cpu"), 100)
    with torch.no_grad():
        next(state.G.parameters())[0] = float("inf")
    with pytest.raises(train.Diverged, match="non-finite weights in G"):
        train._save_checkpoint(state, cfg, model, tmp_path)
    assert not list(tmp_path.rglob("*.safetensors"))


def test_a_checkpoint_whose_D_no_longer_fits_the_model_is_a_one_line_error(tmp_path):
    from ganforge import state as state_io

    cfg = resolve({"data": "ring8", "g_width": 4, "d_width": 4}, "mlp")
    model = {"arch": "mlp", "G": {"z_dim": 16, "width": 4, "depth": 1, "dim": 2, "mean": [0, 0], "std": [1, 1]},
             "D": {"width": 4, "depth": 1, "dim": 2, "mean": [0, 0], "std": [1, 1]}}
    state_io.save(new_state(cfg, model, torch.device("cpu"), 100), cfg, model, tmp_path / "old.safetensors")
    tensors, record = checkpoint.load(tmp_path / "old.safetensors")
    tensors.pop(next(k for k in tensors if k.startswith("D.") and k.endswith("bias")))  # a layer the old D lacked
    with pytest.raises(UserError, match=r"checkpoint's D \(ganforge .*\) does not fit .*Missing key"):
        state_io.restore(new_state(cfg, model, torch.device("cpu"), 100), tensors, record)


class Payload:
    """Unpickling this object creates a file: the proof that a payload ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("name", ["evil.pt", "evil.pth", "evil.safetensors"])
def test_a_malicious_pickle_never_runs(tmp_path, name, capsys):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / name
    evil.write_bytes(pickle.dumps({"G": Payload(marker)}))
    for argv in (["sample", str(evil), "--out", str(tmp_path / "x.png")],
                 ["train", "--resume", str(evil)],
                 ["eval", str(evil), "--real", "digits", "--n", "10", "--cache", "none", "--out", str(tmp_path)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
    assert not marker.exists()


def test_no_load_path_unpickles_and_no_shell_is_reached():
    """What the package may never contain: plain pickle loads, torch.load without weights_only,
    NumPy loads with pickles allowed, and shells."""
    forbidden = [r"\bimport pickle\b", r"\bpickle\.loads?\(", r"allow_pickle=True", r"shell=True",
                 r"\bos\.system\(", r"\bos\.popen\(", r"(?<![.\w])eval\(", r"(?<![.\w])exec\("]
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for pattern in forbidden:
            assert not re.search(pattern, text), f"{path.name}: {pattern}"
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path.name}: {call}"


def test_config_mistakes_name_the_field_and_the_allowed_values(capsys):
    with pytest.raises(UserError, match="nan_patience must be a whole number >= 1"):
        resolve({"nan_patience": 0}, "dcgan")


@pytest.fixture
def read_only_view(tmp_path):
    """A read-only bind mount of a folder (root only; skipped where mounting is not allowed)."""
    source, view = tmp_path / "rw", tmp_path / "ro"
    source.mkdir()
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(source), str(view)], capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield source, view
    finally:
        subprocess.run(["umount", str(view)], capture_output=True)


def test_a_read_only_output_folder_is_one_line_and_keeps_the_checkpoint(read_only_view):
    source, view = read_only_view
    subprocess.run(command(source, "run", 2, "checkpoint_every=2"), check=True, capture_output=True)
    before = checkpoint.find(source / "run").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "ganforge", "train", "--resume", str(view / "run"), "--steps", "4",
                           "--no-progress"], capture_output=True, text=True)
    err = proc.stderr.strip()
    assert proc.returncode == 1 and len(err.splitlines()) == 1, err
    assert f"cannot write {view / 'run'}" in err and "Read-only file system" in err
    assert checkpoint.find(source / "run").read_bytes() == before
