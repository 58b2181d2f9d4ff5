"""The run's logs: TensorBoard curves and grids beside log.jsonl, summary lines off a terminal."""
import json

import pytest

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ganforge.cli import main

TINY = ["--data", "digits", "--resolution", "16", "g_width=8", "d_width=8", "batch_size=16", "log_every=10"]


def board(run):
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


def test_tensorboard_holds_the_curves_and_grids_and_a_resume_replaces_the_redone_steps(tmp_path, capsys):
    args = ["train", *TINY, "--out", str(tmp_path), "--name", "r", "--no-progress", "sample_every=20", "checkpoint_every=20"]
    assert main([*args, "--steps", "40"]) == 0
    events = board(tmp_path / "r")
    assert {"train/loss_D", "train/loss_G", "train/D_real", "train/D_fake", "train/img_per_s"} <= set(events.Tags()["scalars"])
    logged = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert [(e.step, e.value) for e in events.Scalars("train/loss_D")] == \
        [(e["step"], pytest.approx(e["loss_D"])) for e in logged]
    grids = events.Images("samples")
    assert [g.step for g in grids] == [20, 40] and grids[0].width > 16

    # Continue from step 20 to 60: steps 30 and 40 are redone, and TensorBoard shows each step once.
    assert main(["train", "--resume", str(tmp_path / "r" / "checkpoints" / "step-0000020.safetensors"),
                 "--steps", "60", "--no-progress"]) == 0
    steps = [e.step for e in board(tmp_path / "r").Scalars("train/loss_G")]
    assert steps == [10, 20, 30, 40, 50, 60]


def test_tensorboard_can_be_turned_off(tmp_path):
    assert main(["train", *TINY, "--out", str(tmp_path), "--name", "r", "--no-progress", "--steps", "10",
                 "tensorboard=0"]) == 0
    assert not (tmp_path / "r" / "tensorboard").exists()


def test_off_a_terminal_progress_is_a_summary_line_per_interval(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path), "--name", "r", "--steps", "20", "tensorboard=0"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert len(lines) == 2
    assert lines[0].startswith("step 10/20 (50%) | ") and "img/s" in lines[0] and "loss_D" in lines[0]
    assert "ETA" in lines[0] and lines[1].endswith("ETA 0m00s")
