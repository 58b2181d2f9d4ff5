"""The run folder: a new one, an existing one to continue, and its log around a resume."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ganforge import checkpoint
from ganforge.checkpoint import atomic_write
from ganforge.config import RESUMABLE, TrainConfig, resolve
from ganforge.errors import UserError


def truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from (those steps run again), and
    a last line cut short by a crash."""
    def before(line: str) -> bool:
        try:
            return json.loads(line)["step"] <= step
        except (ValueError, KeyError):
            return False

    if path.exists():
        lines = [line for line in path.read_text().splitlines(keepends=True) if before(line)]
        atomic_write(path, "".join(lines).encode())


def new_run_dir(cfg: TrainConfig, started: float) -> Path:
    """out/name, or out/<data>-<date>-<time> of `started` (the same on every rank)."""
    name = cfg.name or f"{Path(cfg.data).stem or 'data'}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(started))}"
    run_dir = Path(cfg.out) / name
    # Hidden files are what a run killed while writing its config.json left: nothing to keep.
    if run_dir.exists() and any(not p.name.startswith(".") for p in run_dir.iterdir()):
        what = ("is a run: continue it with --resume" if (run_dir / "config.json").is_file()
                else "is not a ganforge run: choose another --name")
        raise UserError(f"folder {run_dir} already exists and {what}")
    return run_dir


def existing_run(user: dict) -> Path | None:
    """The run folder out/name when the user names one that exists: the command continues it."""
    if user.get("name") is None:
        return None
    run_dir = Path(user.get("out", TrainConfig.out)) / user["name"]
    return run_dir if (run_dir / "config.json").is_file() else None


def open_run(path: Path) -> tuple[Path, dict | None, dict | None, dict]:
    """(run folder, tensors, record, saved) of a run to continue: from the given checkpoint file,
    else the run's newest; saved is config.json with the checkpoint's config and model. Tensors and
    record are None when the run was stopped before its first checkpoint (it then starts again from
    step 0)."""
    run_dir = path.parent.parent if path.is_file() else path
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{path} is not a ganforge run folder or one of its checkpoints "
                        f"(no readable {run_dir / 'config.json'})") from None
    if not path.is_file() and not checkpoint.checkpoints(run_dir):
        return run_dir, None, None, saved
    _, tensors, record = checkpoint.load_newest(path)
    return run_dir, tensors, record, {**saved, "config": record["config"], "model": record["model"]}


def resumed_config(saved: dict, user: dict) -> TrainConfig:
    """The saved config, with the few settings a resumed run may change. A setting that did not exist
    when the run began has the value the run trained with: its default."""
    cfg = resolve({**saved, **{k: v for k, v in user.items() if k in RESUMABLE}}, saved["arch"])
    changed = sorted(k for k, v in user.items() if k not in RESUMABLE and getattr(cfg, k, v) != v)
    if changed:
        raise UserError(f"cannot change {', '.join(changed)} when resuming; only "
                        f"{', '.join(sorted(RESUMABLE))} may change (or start a new run)")
    return cfg
