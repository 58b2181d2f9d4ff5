"""Training diagnostics: a warning, with the setting to change, when D wins outright, when G_ema's
samples collapse onto one image, or when the losses diverge.

`Diagnostics` is fed each log interval's entry (`entry`) and each sample grid of G_ema on the
fixed z (`samples`); it returns the warnings that start there. A warning is given once when its
condition starts, and again only after the condition has cleared and come back. It reads only
numbers the loop already has (plus a distance matrix of the grid), so it draws nothing from the
run's random generators: a run's weights are the same bit for bit with `diagnostics=0`.

What is measured. The thresholds come from the losses' values at a perfect D and at equilibrium
and from a healthy run's samples; none was tuned on long runs that went wrong, so they are first
settings to revisit as such runs are benchmarked.

- D wins outright. Logistic losses (nonsaturating, minimax): mean D(x) - mean D(G(z)) above 0.9
  (e.g. 0.95 against 0.05) for 3 log intervals in a row. The other losses judge their own
  loss_D, which is 0 for a perfect D: hinge below 0.1 (nearly every real scored above +1 and
  every fake below -1; about 2 at equilibrium), lsgan below 0.02 (outputs near 1 on reals and 0
  on fakes; 0.25 at equilibrium), rpgan below 0.05 (D ranks nearly every real above its paired
  fake; log 2 at equilibrium). wgan is not judged: its critic is meant to be trained to
  optimality, and a large real-fake gap says the fakes are far, not that D overpowers G. The
  entry's D(x) and D(G(z)) (sigmoids of the raw score) are not used for these losses, whose
  score is not a logit. An interval with skipped steps is not judged (its means miss them).
- Collapse: the mean pairwise L2 distance of G_ema's samples on the fixed z (the sample grid: 64
  images, or the first 512 points) below 0.3 of the same measure on as many real items. A
  default mnist5k run's final samples score 0.98 (docs/compare.png); 2 distinct images repeated
  score about 0.55, 8 about 0.75, one image with faint noise about 0.1. So this catches samples
  that are nearly all alike, not the loss of some modes (for that: `ganforge eval`'s recall and
  coverage, or the mode counts of ring8, grid25 and stacked-mnist). Judged at each sample grid
  (every `sample_every` steps); one grid below starts it, two in a row above clear it.
- Divergence: non-finite steps skipped in the interval (the divergence guard's `skipped`
  count rose), or the losses' size (the larger of |loss_D| and |loss_G|; |loss_D| alone for
  wgan, whose loss_G drifts with the critic's free offset) above 100 times the smallest size
  seen so far (at least 1). Starts at once; clears after 3 intervals without.

D winning and collapse are not judged in the first WARMUP_STEPS steps: at initialisation G's
samples are nearly constant (0.02 to 0.2 of the real diversity, measured on ring8, grid25,
digits and mnist5k), and D can win for a while before G makes anything data-like.

The state lives in this object only: a resumed or rolled-back run starts it afresh, so a
condition still present is warned about again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ganforge.data import Dataset, to_model_space

WARMUP_STEPS = 500      # D winning and collapse are not judged before this step
D_WINS_GAP = 0.9        # logistic losses: mean D(x) - mean D(G(z)) above this
D_WINS_LOSS_D = {"hinge": 0.1, "lsgan": 0.02, "rpgan": 0.05}  # the others: loss_D below this
D_WINS_INTERVALS = 3    # log intervals in a row to start (and to clear) the D-wins warning
COLLAPSE_SHARE = 0.3    # samples' diversity below this share of the real data's
COLLAPSE_CLEAR = 2      # sample grids in a row above that share clear the collapse warning (one below starts it)
DIVERSITY_N = 512       # at most this many items in each diversity measure
BLOWUP = 100.0          # divergence: losses this many times their smallest size (at least 1)
CALM_INTERVALS = 3      # intervals without skips or blow-up that clear the divergence warning
LOGISTIC = ("nonsaturating", "minimax")


@dataclass(frozen=True)
class Diagnosis:
    """A warning that starts at `step`: kind is d_wins, collapse or divergence; message names the fix."""

    step: int
    kind: str
    message: str

    @property
    def event(self) -> dict:
        """The warning as a line of log.jsonl."""
        return dict(step=self.step, event="warning", kind=self.kind, message=self.message)


class _Streak:
    """A condition that starts after `start` observations in a row that show it and clears after
    `clear` in a row that do not."""

    def __init__(self, start: int, clear: int):
        self.start, self.clear = start, clear
        self.active, self.count = False, 0   # count: observations in a row against the current state

    def update(self, holds: bool) -> bool:
        """Record one observation; True when the condition starts with it."""
        self.count = self.count + 1 if holds != self.active else 0
        if self.count >= (self.clear if self.active else self.start):
            self.active, self.count = not self.active, 0
            return self.active
        return False


def diversity(x: torch.Tensor) -> float:
    """Mean L2 distance between distinct pairs of the first DIVERSITY_N items of x (N, ...)."""
    x = x[:DIVERSITY_N].flatten(1).double()
    n = len(x)
    if n < 2:
        return 0.0
    return torch.cdist(x, x).sum().item() / (n * (n - 1))


def real_diversity(data: Dataset, n: int, seed: int) -> float:
    """`diversity` of n real items in model space, picked by the seed with a generator of their
    own (so the run's generators are untouched)."""
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:min(n, DIVERSITY_N)]
    return diversity(to_model_space(data.data[pick]))


class Diagnostics:
    """The three conditions of one training session. `loss` is the run's loss name,
    `real_diversity` the real data's `diversity` (None: collapse is not judged), `skipped` the
    run's count of skipped steps when the session begins."""

    def __init__(self, loss: str, real_diversity: float | None, skipped: int = 0):
        self.loss, self.real_diversity, self.skipped = loss, real_diversity, skipped
        self.warmup = WARMUP_STEPS  # read here, not at import, so that a test can shorten it
        self.smallest = math.inf   # the losses' smallest size so far
        self.d_wins = _Streak(D_WINS_INTERVALS, D_WINS_INTERVALS)
        self.collapse = _Streak(1, COLLAPSE_CLEAR)
        self.divergence = _Streak(1, CALM_INTERVALS)

    def entry(self, entry: dict) -> list[Diagnosis]:
        """One log interval's entry (train.py's: step, loss_D, loss_G, D_real, D_fake, skipped, ...)."""
        step, found = entry["step"], []
        new_skips, self.skipped = entry["skipped"] - self.skipped, entry["skipped"]
        wins = self._d_wins(entry)
        # An interval with skipped steps is not judged: its means miss those steps (all skipped: zeros).
        if wins is not None and self.d_wins.update(step > self.warmup and not new_skips and wins[0]):
            found.append(Diagnosis(step, "d_wins", (
                f"D wins outright at step {step}: {wins[1]} for {D_WINS_INTERVALS} log intervals in a row, so G "
                "learns little from it: raise r1_gamma, try augment=ada on small data, or lower lr_d")))
        why = self._diverging(entry, new_skips)
        if self.divergence.update(why is not None):
            found.append(Diagnosis(step, "divergence", (
                f"training is diverging at step {step}: {why}: lower lr_g and lr_d or raise r1_gamma "
                "(gp_lambda for loss=wgan); nan_patience non-finite steps in a row send the run back to its "
                "last checkpoint with halved learning rates")))
        return found

    def samples(self, step: int, fake: torch.Tensor) -> list[Diagnosis]:
        """G_ema's samples on the fixed z (N, ...) at a sample grid."""
        if self.real_diversity is None or step <= self.warmup:
            return []
        share = diversity(fake) / max(self.real_diversity, 1e-12)
        if self.collapse.update(share < COLLAPSE_SHARE):
            return [Diagnosis(step, "collapse", (
                f"mode collapse at step {step}: G_ema's samples are {share:.0%} as varied as real data (mean "
                f"distance between items; below {COLLAPSE_SHARE:.0%}): try loss=rpgan with r1_gamma and r2_gamma, "
                "augment=ada, or a smaller lr_g"))]
        return []

    def _d_wins(self, entry: dict) -> tuple[bool, str] | None:
        """(whether D wins in this interval, what was measured), or None for a loss not judged."""
        if self.loss in LOGISTIC:
            gap = entry["D_real"] - entry["D_fake"]
            return gap > D_WINS_GAP, f"D(x) {entry['D_real']:.3f} and D(G(z)) {entry['D_fake']:.3f}"
        if self.loss in D_WINS_LOSS_D:
            limit = D_WINS_LOSS_D[self.loss]
            return entry["loss_D"] < limit, f"{self.loss} loss_D {entry['loss_D']:.3g} (below {limit})"
        return None

    def _diverging(self, entry: dict, new_skips: int) -> str | None:
        """Why the losses diverge in this interval (which skipped `new_skips` steps), or None."""
        if new_skips > 0:
            return f"{new_skips} non-finite step(s) skipped since the last log line ({entry['skipped']} in all)"
        losses = (entry["loss_D"],) if self.loss == "wgan" else (entry["loss_D"], entry["loss_G"])
        if not all(math.isfinite(v) for v in losses):
            return "a non-finite loss"
        size = max(abs(v) for v in losses)
        baseline = max(1.0, self.smallest)
        self.smallest = min(self.smallest, size)
        if size > BLOWUP * baseline:
            return (f"loss_D {entry['loss_D']:.3g} and loss_G {entry['loss_G']:.3g}, {size / baseline:.0f} times "
                    "their size earlier in the run")
        return None
