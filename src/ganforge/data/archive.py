"""A .zip or .tar (.tar.gz, .tgz, .tar.bz2, .tar.xz) archive of images, read without extracting.

Members follow the folder rules (image extensions, hidden names left out, first-level folders
are classes) and are decoded in memory, so nothing is ever written outside the archive. Members
that are unsafe or not plain files are refused and counted with the unreadable ones: names that
are absolute or climb out of the archive's root with "..", links and devices (tar), and members
larger than MAX_MEMBER_BYTES once uncompressed (a zip bomb).
"""
from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from ganforge.data.dataset import Dataset
from ganforge.data.folder import IMAGE_EXTENSIONS, decode_images, is_image_name
from ganforge.errors import UserError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
MAX_MEMBER_BYTES = 256 * 2**20


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def load_archive(path: Path, resolution: int, channels: int | None) -> Dataset:
    """Every readable image in the archive as uint8 (N, C, R, R); see the module docstring."""
    try:
        members = _zip_members(path) if path.name.lower().endswith(".zip") else _tar_members(path)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as err:
        raise UserError(f"{path} is not a readable archive ({err}): pass a .zip or .tar(.gz) of images") from None
    accepted = sorted((name, data) for name, data, why in members if why is None)
    rejected = [f"{name} ({why})" for name, _, why in members if why is not None]
    names = [name for name, _ in accepted]
    return decode_images(path, names, [io.BytesIO(data) for _, data in accepted], resolution, channels, rejected)


def unsafe(name: str) -> str | None:
    """Why a member name may not be used, or None: absolute, a drive, or climbing out with ".."."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or (posix.parts and posix.parts[0].endswith(":")):
        return "absolute path refused"
    if ".." in posix.parts:
        return "path outside the archive refused"
    return None


def _wanted(name: str, why_unsafe: str | None) -> bool:
    """An image member to load, or an unsafe one with an image name (refused and counted)."""
    return is_image_name(name) or (why_unsafe is not None and name.lower().endswith(IMAGE_EXTENSIONS))


def _zip_members(path: Path) -> list[tuple[str, bytes | None, str | None]]:
    """(name, bytes or None, why refused or None) per image member of a zip."""
    out = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            why = unsafe(info.filename)
            if info.is_dir() or not _wanted(info.filename, why):
                continue
            if why is None and info.file_size > MAX_MEMBER_BYTES:
                why = f"{info.file_size} bytes uncompressed, over the {MAX_MEMBER_BYTES} limit"
            data = None
            if why is None:
                try:
                    data = archive.read(info)
                except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as err:
                    why = f"unreadable member: {err}"
            out.append((info.filename, data, why))
    return out


def _tar_members(path: Path) -> list[tuple[str, bytes | None, str | None]]:
    """(name, bytes or None, why refused or None) per image member of a tar, read in one pass."""
    out = []
    with tarfile.open(path) as archive:
        for info in archive:
            why = unsafe(info.name)
            if info.isdir() or not _wanted(info.name, why):
                continue
            if why is None and not info.isfile():
                why = "a link or device, not a file: refused"
            if why is None and info.size > MAX_MEMBER_BYTES:
                why = f"{info.size} bytes, over the {MAX_MEMBER_BYTES} limit"
            data = archive.extractfile(info).read() if why is None else None
            out.append((info.name, data, why))
    return out
