"""Training diagnostics: warnings (with the fix) when D wins outright, samples collapse or losses diverge."""
import dataclasses
import json
import logging
import random

import pytest
import torch

from ganforge import checkpoint, diagnostics, train
from ganforge.cli import main
from ganforge.config import resolve
from ganforge.data import load_source
from ganforge.diagnostics import WARMUP_STEPS, Diagnostics, diversity, real_diversity
from ganforge.report import write_report
from ganforge.runs import resumed_config, truncate_log

AFTER = WARMUP_STEPS + 50  # the first judged log interval


def entry(step, D_real=0.6, D_fake=0.4, loss_D=1.3, loss_G=0.9, skipped=0):
    return dict(step=step, nimg=32 * step, loss_D=loss_D, loss_G=loss_G, D_real=D_real, D_fake=D_fake,
                img_per_s=400.0, data_share=0.01, skipped=skipped, aug_p=0.0, time=0.0)


def feed(diag, entries):
    """Every warning the entries start, as (step, kind)."""
    return [(found.step, found.kind) for e in entries for found in diag.entry(e)]


def varied(n=64, seed=0):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_a_healthy_run_gets_no_warning():
    diag = Diagnostics("nonsaturating", diversity(varied(seed=1)))
    u = random.Random(0).random
    entries = [entry(50 * i, D_real=0.6 + 0.1 * u(), D_fake=0.3 + 0.1 * u(), loss_D=1.0 + u(), loss_G=0.5 + 2 * u())
               for i in range(1, 121)]  # 6,000 steps
    assert feed(diag, entries) == []
    assert [diag.samples(step, varied(seed=step)) for step in range(1000, 7000, 1000)] == [[]] * 6


def test_d_wins_is_warned_once_when_it_starts_and_again_after_it_clears_and_returns():
    diag = Diagnostics("nonsaturating", None)
    wins = dict(D_real=0.97, D_fake=0.03)
    # In the warm-up a winning D is not judged (G is still noise).
    assert feed(diag, [entry(50 * i, **wins) for i in range(1, WARMUP_STEPS // 50 + 1)]) == []
    steps = range(AFTER, AFTER + 50 * 20, 50)
    pattern = [True] * 6 + [False] * 2 + [True] + [False] * 3 + [True] * 5 + [False] * 3
    found = feed(diag, [entry(s, **(wins if w else {})) for s, w in zip(steps, pattern)])
    # starts on its 3rd interval in a row; 2 healthy ones do not clear it, 3 do; back 3 intervals later
    assert found == [(steps[2], "d_wins"), (steps[14], "d_wins")]

    found = Diagnostics("nonsaturating", None).entry(entry(AFTER, **wins))
    assert found == []  # one interval is not enough


def test_d_wins_message_names_the_fix():
    diag = Diagnostics("minimax", None)
    found = [f for s in range(3) for f in diag.entry(entry(AFTER + 50 * s, D_real=0.99, D_fake=0.01))]
    assert len(found) == 1 and found[0].kind == "d_wins"
    assert "D(x) 0.990" in found[0].message and all(k in found[0].message for k in ("r1_gamma", "augment=ada", "lr_d"))
    assert found[0].event == dict(step=AFTER + 100, event="warning", kind="d_wins", message=found[0].message)


@pytest.mark.parametrize("loss, winning, healthy", [("hinge", 0.05, 1.5), ("lsgan", 0.01, 0.2), ("rpgan", 0.03, 0.6)])
def test_other_losses_judge_their_own_loss_D(loss, winning, healthy):
    # their D_real and D_fake (sigmoids of a score that is not a logit) are not read
    diag = Diagnostics(loss, None)
    steps = range(AFTER, AFTER + 50 * 6, 50)
    assert feed(diag, [entry(s, D_real=1.0, D_fake=0.0, loss_D=healthy) for s in steps]) == []
    found = feed(diag, [entry(s + 300, loss_D=winning) for s in steps])
    assert found == [(steps[2] + 300, "d_wins")]


def test_wgan_is_never_said_to_win_and_its_drifting_loss_G_is_not_divergence():
    diag = Diagnostics("wgan", None)
    entries = [entry(AFTER + 50 * i, D_real=1.0, D_fake=0.0, loss_D=-3.0, loss_G=-50.0 * i) for i in range(20)]
    assert feed(diag, entries) == []
    assert feed(diag, [entry(AFTER + 1000, loss_D=-400.0)]) == [(AFTER + 1000, "divergence")]


def test_collapse_of_identical_samples_against_varied_ones():
    diag = Diagnostics("nonsaturating", diversity(varied(seed=1)))
    one = varied(1, seed=2).repeat(64, 1, 1, 1)  # one image, 64 times
    assert diag.samples(WARMUP_STEPS, one) == []  # in the warm-up: G starts out nearly constant
    assert diag.samples(AFTER, varied(seed=3)) == []
    found = diag.samples(AFTER + 1000, one + 0.01 * varied(seed=4))
    assert [(f.step, f.kind) for f in found] == [(AFTER + 1000, "collapse")]
    assert "samples are 1% as varied as real data" in found[0].message
    assert all(k in found[0].message for k in ("loss=rpgan", "r1_gamma", "r2_gamma", "augment", "lr_g"))
    assert diag.samples(AFTER + 2000, one) == []                          # still collapsed: said once
    assert diag.samples(AFTER + 3000, varied(seed=5)) == []               # one varied grid does not clear it
    assert diag.samples(AFTER + 4000, one) == []
    assert diag.samples(AFTER + 5000, varied(seed=6)) == diag.samples(AFTER + 6000, varied(seed=7)) == []  # cleared
    assert [f.kind for f in diag.samples(AFTER + 7000, one)] == ["collapse"]  # and back


def test_divergence_from_skipped_steps_and_from_exploding_losses():
    diag = Diagnostics("nonsaturating", None, skipped=5)  # a resumed run that had skipped 5 steps
    found = [f for e in [entry(10, skipped=5), entry(20, skipped=7)] for f in diag.entry(e)]
    assert [(f.step, f.kind) for f in found] == [(20, "divergence")]
    assert "2 non-finite step(s) skipped" in found[0].message
    assert all(k in found[0].message for k in ("lr_g", "lr_d", "r1_gamma", "nan_patience"))
    # more skips: the same divergence; 3 calm intervals clear it; exploding losses start it again
    assert feed(diag, [entry(30, skipped=9), entry(40, skipped=9), entry(50, skipped=9), entry(60, skipped=9),
                       entry(70, skipped=9, loss_D=0.7, loss_G=3e3)]) == [(70, "divergence")]
    diag = Diagnostics("nonsaturating", None)
    assert feed(diag, [entry(10, loss_G=5.0), entry(20, loss_G=60.0), entry(30, loss_G=99.0)]) == []
    assert feed(diag, [entry(40, loss_G=float("nan"))]) == [(40, "divergence")]


def test_intervals_with_skipped_steps_are_not_taken_for_a_winning_d():
    # every step of these intervals skipped: the means are zeros, which is a perfect hinge loss_D
    diag = Diagnostics("hinge", None)
    found = feed(diag, [entry(AFTER + 10 * i, D_real=0.0, D_fake=0.0, loss_D=0.0, loss_G=0.0, skipped=10 * i)
                        for i in range(1, 6)])
    assert found == [(AFTER + 10, "divergence")]


def test_diversity_is_the_mean_distance_between_distinct_pairs():
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])  # distances 5, 3, 4
    assert diversity(points) == pytest.approx(4.0, abs=1e-12)
    assert diversity(points[:1]) == 0.0 and diversity(torch.zeros(10, 3, 4, 4)) == 0.0
    assert diversity(torch.arange(2000.0)[:, None]) == pytest.approx(diversity(torch.arange(512.0)[:, None]))


def test_real_diversity_leaves_every_random_generator_alone():
    data = load_source("digits", 16, None, "data")
    before = torch.get_rng_state()
    value = real_diversity(data, 64, 0)
    assert torch.equal(torch.get_rng_state(), before) and value == real_diversity(data, 64, 0) > 0
    assert value == pytest.approx(diversity(data.data[:64].float() / 127.5 - 1), rel=0.1)  # any 64 digits alike


def test_diagnostics_can_change_on_resume():
    saved = resolve({"data": "digits"}, "dcgan").to_dict()
    assert resumed_config(saved, {"diagnostics": False}).diagnostics is False


def test_truncate_log_keeps_the_warnings_of_the_steps_it_keeps(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = [entry(2), dict(step=2, event="warning", kind="d_wins", message="m"), entry(4),
             dict(step=6, event="warning", kind="collapse", message="m")]
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    truncate_log(path, 4)
    assert [json.loads(line) for line in path.read_text().splitlines()] == lines[:3]


# ---------------------------------------------------------------- real runs

ARGS = ["train", "--data", "digits", "--resolution", "16", "--steps", "12", "--no-progress", "g_width=8", "d_width=8",
        "batch_size=16", "log_every=2", "sample_every=4", "checkpoint_every=12"]


def _nan_on_calls(monkeypatch, bad_calls):
    """D's loss is NaN on the given calls (1-based): those steps are skipped by the divergence guard."""
    loss, calls = train.LOSSES["nonsaturating"], []

    def nan_d_loss(real_logits, fake_logits):
        calls.append(1)
        value = loss.d(real_logits, fake_logits)
        return value * float("nan") if len(calls) in bad_calls else value

    monkeypatch.setitem(train.LOSSES, "nonsaturating", dataclasses.replace(loss, d=nan_d_loss))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 12 steps with diagnostics on and off: NaN losses at steps 3 and 4, no warm-up."""
    out = tmp_path_factory.mktemp("runs")
    for name, on in (("on", 1), ("off", 0)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(diagnostics, "WARMUP_STEPS", 0)
            _nan_on_calls(mp, {3, 4})
            assert main([*ARGS, "--out", str(out), "--name", name, f"diagnostics={on}"]) == 0
    return out


def log_lines(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_a_real_run_writes_its_warnings_to_the_log_and_tensorboard(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    warnings = [e for e in log_lines(runs / "on") if e.get("event") == "warning"]
    assert {"step": 4, "event": "warning", "kind": "divergence"}.items() <= warnings[0].items()
    assert "non-finite step(s) skipped" in warnings[0]["message"]
    # G_ema at initialisation is nearly constant: a collapse when the warm-up is off
    assert "collapse" in [w["kind"] for w in warnings]
    assert [e["step"] for e in log_lines(runs / "on") if "event" not in e] == [2, 4, 6, 8, 10, 12]
    events = EventAccumulator(str(runs / "on" / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    assert "warnings/divergence/text_summary" in events.Tags()["tensors"]

    write_report(runs / "on")
    page = (runs / "on" / "report.html").read_text()
    assert "Warnings (training diagnostics" in page and "training is diverging at step 4" in page


def test_diagnostics_do_not_change_the_weights_and_can_be_turned_off(runs):
    on, _ = checkpoint.load(checkpoint.find(runs / "on"))
    off, record = checkpoint.load(checkpoint.find(runs / "off"))
    assert record["skipped"] == 2 and on.keys() == off.keys()
    assert all(torch.equal(on[k], off[k]) for k in on)
    assert not [e for e in log_lines(runs / "off") if e.get("event") == "warning"]


def test_warnings_reach_the_terminal(tmp_path, monkeypatch, caplog):
    _nan_on_calls(monkeypatch, {1})
    with caplog.at_level(logging.WARNING, logger="ganforge"):
        assert main([*ARGS, "--steps", "2", "--out", str(tmp_path), "--name", "r", "tensorboard=0"]) == 0
    assert "training is diverging at step 2: 1 non-finite step(s) skipped" in caplog.text
