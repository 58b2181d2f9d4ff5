"""Where a run's numbers go: log.jsonl (always), TensorBoard (`tensorboard=1`) and, when the
output is not a terminal, one summary line per log interval.

Only rank 0 writes; the other ranks get a RunLog that does nothing.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import torch

from ganforge.errors import UserError

TENSORBOARD_DIR = "tensorboard"
CURVES = ("loss_D", "loss_G", "D_real", "D_fake", "img_per_s", "data_share", "skipped", "aug_p")

log = logging.getLogger(__name__)


class RunLog:
    """The run's log files, open for one training session (from `first_step` on)."""

    def __init__(self, run_dir: Path, first_step: int, last_step: int, main: bool, tensorboard: bool,
                 summary_lines: bool):
        self.main, self.summary_lines = main, summary_lines and main
        self.first_step, self.last_step, self.started = first_step, last_step, time.perf_counter()
        self.jsonl = (run_dir / "log.jsonl").open("a") if main else open(os.devnull, "w")
        self.board = _board(run_dir / TENSORBOARD_DIR, first_step) if main and tensorboard else None

    def scalars(self, entry: dict) -> None:
        """One log interval: a line of log.jsonl, TensorBoard curves, and a summary line."""
        self._write(entry)
        if self.board is not None:
            for key in CURVES:
                self.board.add_scalar(f"train/{key}", entry[key], entry["step"])
        if self.summary_lines:
            print(self._summary(entry), flush=True)

    def fid(self, step: int, nimg: int, fid: float) -> None:
        self._write(dict(step=step, nimg=nimg, fid=fid))
        if self.board is not None:
            self.board.add_scalar("eval/fid", fid, step)

    def samples(self, step: int, grid: torch.Tensor) -> None:
        """A grid of G_ema's samples (C, H, W) uint8, for TensorBoard's image tab."""
        if self.board is not None:
            self.board.add_image("samples", grid, step)

    def warning(self, found) -> None:
        """A training diagnostic (ganforge.diagnostics.Diagnosis): on the terminal, as an event line
        of log.jsonl, and as TensorBoard text."""
        if not self.main:
            return
        log.warning(found.message)
        self._write(found.event)
        if self.board is not None:
            self.board.add_text(f"warnings/{found.kind}", found.message, found.step)

    def event(self, entry: dict, message: str) -> None:
        """Something the run did (e.g. a new clustering): a line of log.jsonl and one on the terminal."""
        if self.main:
            self._write(entry)
            print(message, flush=True)

    def close(self) -> None:
        self.jsonl.close()
        if self.board is not None:
            self.board.close()

    def _write(self, entry: dict) -> None:
        self.jsonl.write(json.dumps(entry) + "\n")
        self.jsonl.flush()

    def _summary(self, entry: dict) -> str:
        """'step 500/6000 (8%) | 410 img/s | loss_D 1.21 loss_G 0.97 | D(x) 0.62 D(G(z)) 0.39 | ETA 6m40s'"""
        step, done = entry["step"], entry["step"] - self.first_step
        elapsed = time.perf_counter() - self.started
        eta = elapsed / done * (self.last_step - step) if done else float("nan")
        skipped = f" | {entry['skipped']} skipped" if entry["skipped"] else ""
        return (f"step {step}/{self.last_step} ({100 * step / self.last_step:.0f}%) | {entry['img_per_s']:.0f} img/s"
                f" | loss_D {entry['loss_D']:.3f} loss_G {entry['loss_G']:.3f}"
                f" | D(x) {entry['D_real']:.3f} D(G(z)) {entry['D_fake']:.3f}{skipped} | ETA {_duration(eta)}")


def _board(folder: Path, first_step: int):
    """A TensorBoard writer whose events from `first_step` on replace those a killed run left."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("tensorboard=1 needs the tensorboard package: pip install tensorboard "
                        "(or train with tensorboard=0)") from None
    # Steps up to first_step were logged before the checkpoint this session starts from; later ones are redone.
    return SummaryWriter(str(folder), purge_step=first_step + 1 if first_step else None, flush_secs=30)


def _duration(seconds: float) -> str:
    if math.isnan(seconds):  # nothing measured yet
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def read_log(path: Path) -> tuple[list[dict], int]:
    """(entries with a step, count of unreadable lines) of a run's log.jsonl; no file reads as no
    lines. Entries are training numbers, `fid` lines and event lines (`event`: warning, rollback);
    a line cut short by a kill is counted, not raised."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return [], 0
    entries, unreadable = [], 0
    for line in filter(str.strip, text.splitlines()):
        try:
            entry = json.loads(line)
            entry["step"] = int(entry["step"])
            entries.append(entry)
        except (ValueError, KeyError, TypeError):
            unreadable += 1
    return entries, unreadable


def is_terminal() -> bool:
    """Whether progress goes to a terminal (a bar) or to a log (summary lines)."""
    return sys.stderr.isatty()
