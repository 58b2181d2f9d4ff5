"""Checkpoints: one safetensors file each, tensors plus a JSON record in its header.

Nothing is pickled, so loading a checkpoint can never run code. Writes are atomic: a temporary file
in the same folder, fsync, rename, fsync of the folder; a crash leaves the old file or the new one,
never half of one. Each file carries a SHA-256 of its record and tensors, checked on every load, so
a damaged file (a flipped bit, a bad disk) is named instead of silently resumed from.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from ganforge.errors import UserError

FORMAT = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"step-(\d+)\.safetensors")
_TEMPORARY = ".*.tmp-*"  # what atomic_write leaves behind when its process is killed mid-write


class DamagedCheckpoint(UserError):
    """A file that is a ganforge checkpoint but whose contents no longer match its checksum."""


def atomic_write(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write `data` to `path` so that it holds the old bytes or the new, never part of either.
    `data` is bytes, or a function that writes to the open file (to stream what does not fit in
    memory). A failure (a full disk, a read-only folder) raises OSError naming `path`, not the
    temporary file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise OSError(err.errno, f"cannot write {path} ({reason}): free space, or write to another folder") from err
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # a read-only folder holds no temporary file to remove
            pass
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save(path: Path, tensors: dict[str, torch.Tensor], record: dict) -> None:
    """Write tensors and a JSON-able record as one safetensors file, atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    text = json.dumps({"format": FORMAT, **record})
    header = {"ganforge": text, "sha256": digest(text, tensors)}
    atomic_write(Path(path), save_bytes(tensors, metadata=header))


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by `save`. A file that is not one raises UserError; one whose
    checksum does not match raises DamagedCheckpoint."""
    path = Path(path)
    try:
        data = path.read_bytes()
        tensors = load_bytes(data)
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
        text = header["__metadata__"]["ganforge"]
        record = json.loads(text)
    except FileNotFoundError:
        raise UserError(f"no such checkpoint: {path}") from None
    except (SafetensorError, ValueError, KeyError, TypeError, OSError) as err:
        raise UserError(f"{path} is not a readable ganforge checkpoint ({err})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else None
        raise UserError(f"{path} has checkpoint format {found}; this ganforge reads {FORMAT}")
    if header["__metadata__"].get("sha256") != digest(text, tensors):
        raise DamagedCheckpoint(f"{path} is damaged: its contents do not match its checksum")
    return tensors, record


def digest(record_text: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a record and of every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256(record_text.encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = [p for p in folder.glob("step-*.safetensors") if _NAME.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(_NAME.fullmatch(p.name).group(1)))


def find(run_or_file: str | Path) -> Path:
    """A checkpoint file as given, or the newest checkpoint of a run folder."""
    path = Path(run_or_file)
    if path.is_file():
        return path
    if not path.exists():
        raise UserError(f"no such run folder or checkpoint: {path}")
    found = checkpoints(path)
    if not found:
        raise UserError(f"{path} holds no checkpoints (looked in {path / CHECKPOINT_DIR}); "
                        "train first or pass a .safetensors checkpoint")
    return found[-1]


def load_newest(run_or_file: str | Path) -> tuple[Path, dict[str, torch.Tensor], dict]:
    """(path, tensors, record) of `find`'s checkpoint. When a run's newest checkpoint is damaged or
    unreadable, the error names it and offers the newest intact older one."""
    path = find(run_or_file)
    try:
        return (path, *load(path))
    except UserError as err:
        if Path(run_or_file).is_file():
            raise
        older = next((p for p in reversed(checkpoints(run_or_file)[:-1]) if _intact(p)), None)
        offer = (f"the newest intact one is {older}: pass that file instead of the run folder"
                 if older else "no older intact checkpoint is left")
        raise type(err)(f"{err}; {offer}") from None


def _intact(path: Path) -> bool:
    try:
        load(path)
        return True
    except UserError:
        return False


def remove_temporaries(run_dir: Path) -> None:
    """Delete what a killed `atomic_write` left behind in a run folder (hidden .tmp-PID files)."""
    for folder in (Path(run_dir), Path(run_dir) / CHECKPOINT_DIR, Path(run_dir) / "samples"):
        for tmp in folder.glob(_TEMPORARY):
            tmp.unlink(missing_ok=True)


def path_for(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:07d}.safetensors"


def best_path(run_dir: Path) -> Path:
    """Where the checkpoint with the best FID check is kept (never pruned)."""
    return Path(run_dir) / CHECKPOINT_DIR / "best.safetensors"


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints."""
    for old in checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)


def flatten(prefix: str, state: dict, tensors: dict[str, torch.Tensor]) -> dict:
    """Move the tensors of a nested state dict (an optimizer's) into `tensors` under dotted keys;
    return the rest, JSON-able, with each tensor replaced by its key."""
    def walk(key: str, value):
        if isinstance(value, torch.Tensor):
            tensors[key] = value
            return {"tensor": key}
        if isinstance(value, dict):
            return {str(k): walk(f"{key}.{k}", v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(f"{key}.{i}", v) for i, v in enumerate(value)]
        return value
    return walk(prefix, state)


def unflatten(record, tensors: dict[str, torch.Tensor]):
    """Inverse of `flatten`. Dict keys that were integers (optimizer state ids) become ints again."""
    if isinstance(record, dict):
        if set(record) == {"tensor"}:
            return tensors[record["tensor"]]
        return {int(k) if k.isdigit() else k: unflatten(v, tensors) for k, v in record.items()}
    if isinstance(record, list):
        return [unflatten(v, tensors) for v in record]
    return record


def prefixed(prefix: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state_dict.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_module(module: torch.nn.Module, name: str, tensors: dict[str, torch.Tensor], record: dict, fix: str) -> None:
    """Load the checkpoint's weights of `name` (G, D, G_ema) into `module`. A module whose layers
    changed since the checkpoint was written raises a one-line UserError that ends with `fix`."""
    try:
        module.load_state_dict(unprefixed(name, tensors))
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:200]  # load_state_dict's message spans lines
        raise UserError(f"the checkpoint's {name} (ganforge {record.get('version', '?')}) does not fit this "
                        f"ganforge's {name} ({detail}): {fix}") from None
