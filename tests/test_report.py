"""`ganforge report`: one self-contained HTML page and one PNG from a run folder, finished or not."""
import json
import re
import shutil

import pytest
import torch
from PIL import Image

from ganforge import provenance
from ganforge.cli import main
from ganforge.report import write_report

IMAGE = "data:image/png;base64,"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--data", "digits", "--resolution", "16", "--steps", "30", "--out", str(out), "--name", "r",
                 "--no-progress", "g_width=8", "d_width=8", "batch_size=16", "log_every=5", "sample_every=10",
                 "eval_every=15", "eval_n=100"]) == 0
    return out / "r"


def log_lines(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_report_of_a_finished_evaluated_run(run, capsys):
    assert main(["eval", str(run), "--n", "100", "--cache", "none"]) == 0
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run / 'report.html'}, {run / 'report.png'}"
    page = (run / "report.html").read_text()
    # self-contained: every picture inline, nothing fetched, no script
    assert not re.search(r"(src|href)=['\"]?(https?:|//|file:)", page) and "<script" not in page
    # curves, 3 sample grids (steps 10, 20, 30), compare.png, eval.png
    assert page.count(IMAGE) == 1 + 3 + 1 + 1
    assert all(f"step {s}</figcaption>" in page for s in (10, 20, 30))
    last = [e for e in log_lines(run) if "loss_D" in e][-1]
    assert f"{last['loss_D']:.4g}" in page and f"{last['loss_G']:.4g}" in page
    fids = [e["fid"] for e in log_lines(run) if "fid" in e]
    assert len(fids) == 2 and all(f"{f:.4g}" in page for f in fids)  # steps 15 and 30
    assert re.search(r"<span class=changed>g_width</span></td><td>8</td>", page)
    assert "<td>digits</td>" in page and "Newest checkpoint: step 30" in page
    assert f"PyTorch {torch.__version__}, {torch.get_num_threads()} CPU threads" in page  # what the same weights need
    metrics = json.loads((run / "eval.json").read_text())["metrics"]
    assert f"{metrics['fid']:.4g}" in page and f"{metrics['precision']:.3f}" in page
    assert "Not evaluated" not in page and "Missing" not in page

    with Image.open(run / "report.png") as png:
        assert png.width == 1600 and 900 < png.height < 3000
    assert provenance.read(run / "report.png")["what"] == "run report"


def test_a_killed_run_gets_a_report_that_names_what_is_missing(run, tmp_path):
    killed = tmp_path / "killed"
    shutil.copytree(run, killed, ignore=shutil.ignore_patterns("*.safetensors", "compare.png", "eval.*", "report.*"))
    with (killed / "log.jsonl").open("a") as log:
        log.write('{"step": 35, "nimg": 560, "loss_D": 1.2')  # cut short by a kill mid-write
    out = tmp_path / "elsewhere"
    assert write_report(killed, out) == [out / "report.html", out / "report.png"]
    page = (out / "report.html").read_text()
    for text in ("1 unreadable line(s) of log.jsonl", "no compare.png", "no checkpoint yet", "Not evaluated yet",
                 f"<code>ganforge eval {killed}</code>"):
        assert text in page
    assert page.count(IMAGE) == 1 + 3
    assert not (killed / "report.html").exists()

    # no log lines and no samples at all: still a report, which says so
    (killed / "log.jsonl").write_text("")
    shutil.rmtree(killed / "samples")
    write_report(killed)
    page = (killed / "report.html").read_text()
    assert "no training numbers in log.jsonl yet" in page and "no sample grids yet" in page
    with Image.open(killed / "report.png") as png:
        assert png.width == 1600

    # one line
    (killed / "log.jsonl").write_text(json.dumps(log_lines(run)[0]) + "\n")
    write_report(killed)
    assert "the log stops at step 5 of 30" in (killed / "report.html").read_text()


def test_skipped_steps_and_rollbacks_are_shown(run, tmp_path):
    folder = tmp_path / "rough"
    shutil.copytree(run, folder, ignore=shutil.ignore_patterns("*.safetensors", "report.*"))
    lines = [e for e in log_lines(run) if "loss_D" in e]
    for i, e in enumerate(lines):
        e["skipped"] = i
    rollback = {"step": 10, "event": "rollback", "diverged_at": 14, "lr_scale": 0.5,
                "why": "10 steps in a row with a non-finite loss"}
    (folder / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [*lines[:3], rollback, *lines[3:]]))
    write_report(folder)
    page = (folder / "report.html").read_text()
    assert "Rollbacks" in page and rollback["why"] in page
    assert f"{len(lines) - 1} non-finite steps skipped, 1 rollbacks" in page


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no config.json" in err
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_a_vector_run(tmp_path):
    assert main(["train", "--data", "ring8", "--steps", "20", "--out", str(tmp_path), "--name", "v",
                 "--no-progress", "batch_size=64", "log_every=5", "sample_every=10"]) == 0
    assert main(["report", str(tmp_path / "v")]) == 0
    page = (tmp_path / "v" / "report.html").read_text()
    assert page.count(IMAGE) == 1 + 2 + 1 and "<td>ring8</td>" in page
    with Image.open(tmp_path / "v" / "report.png") as png:
        assert png.width == 1600
