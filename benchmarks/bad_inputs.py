"""Feed ganforge each kind of bad input through the real CLI and print what it did, as a table.

    python benchmarks/bad_inputs.py

Each image case is a folder of 8 good 24x24 PNGs plus the bad file(s), trained on for one step
(`ganforge train --data FOLDER --steps 1`, tiny widths). The other cases are archives with unsafe
members, bad settings, bad .npy files, a checkpoint that is not one, an output path that cannot
be written, a read-only output folder (a read-only bind mount, root only), and a disk that fills
up (a file-size limit, so that writes fail with EFBIG). Prints one markdown row per case: the exit
code, what was loaded, and ganforge's own message.
"""
from __future__ import annotations

import io
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

TINY = ["--resolution", "16", "--steps", "1", "--no-progress", "g_width=4", "d_width=4", "batch_size=4"]


def png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def grey(w: int = 24, h: int = 24, value: int = 128) -> Image.Image:
    return Image.fromarray(np.full((h, w), value, np.uint8))


def palette_with_transparency() -> Image.Image:
    img = Image.new("P", (24, 24), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (0, 0, 12, 24))
    img.info["transparency"] = 0
    return img


def bomb(side: int) -> bytes:
    """A 1-bit PNG of side x side pixels: a few kB on disk, side**2 pixels once decoded."""
    return png(Image.new("1", (side, side)), optimize=True)


def image_cases(root: Path) -> dict[str, callable]:
    """name -> function that adds the bad file(s) to a folder."""
    good_png = png(grey())

    def write(name: str, data: bytes):
        return lambda folder: (folder / name).write_bytes(data)

    def symlink_loops(folder: Path):
        (folder / "loop").symlink_to(folder, target_is_directory=True)   # a folder that contains itself
        (folder / "a.png").symlink_to(folder / "b.png")                    # a.png -> b.png -> a.png
        (folder / "b.png").symlink_to(folder / "a.png")

    def mixed_sizes(folder: Path):
        for i, (w, h) in enumerate([(7, 7), (300, 40), (40, 300), (1, 1), (640, 480)]):
            (folder / f"size{i}.png").write_bytes(png(grey(w, h, 30 * i)))

    return {
        "random bytes named .png": write("noise.png", np.random.default_rng(0).bytes(3000)),
        "truncated PNG (first half)": write("half.png", png(Image.radial_gradient("L"))[:5000]),
        "truncated JPEG (first half)": write("half.jpg", jpeg(Image.radial_gradient("L").convert("RGB"))[:3000]),
        "zero-byte file": write("empty.png", b""),
        "text file named .jpg": write("notes.jpg", b"these are my notes, not a picture\n"),
        "CMYK JPEG": write("cmyk.jpg", jpeg(Image.new("CMYK", (24, 24), (0, 255, 255, 0)))),
        "16-bit grey PNG (I;16)": write("deep.png", png(Image.fromarray(np.full((24, 24), 60000, np.uint16)))),
        "palette PNG with transparency": write("palette.png", png(palette_with_transparency())),
        "RGBA PNG, half transparent": write("rgba.png", png(Image.new("RGBA", (24, 24), (0, 0, 255, 128)))),
        "mixed sizes (7x7 to 640x480, 1x1)": mixed_sizes,
        "symlink loops (folder and file)": symlink_loops,
        "decompression bomb, 100 Mpixel (PIL warns)": write("bomb1.png", bomb(10_000)),
        "decompression bomb, 196 Mpixel (PIL refuses)": write("bomb2.png", bomb(14_000)),
        "a good PNG named .PNG (upper case)": write("UPPER.PNG", good_png),
    }


def run(argv: list[str], limit: int | None = None) -> tuple[int, str]:
    def apply_limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "ganforge", *argv], capture_output=True, text=True,
                          preexec_fn=apply_limit if limit else None)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ganforge:")]
    message = " / ".join(lines)
    if "Traceback" in proc.stderr:
        message = "TRACEBACK: " + proc.stderr.strip().splitlines()[-1]
    return proc.returncode, message


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="ganforge-bad-"))
    try:
        table(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def table(root: Path) -> None:
    rows = []
    for name, add in image_cases(root).items():
        folder = root / f"case{len(rows)}"
        folder.mkdir()
        for i in range(8):
            (folder / f"good{i}.png").write_bytes(png(grey(value=20 * i)))
        add(folder)
        code, message = run(["train", "--data", str(folder), "--out", str(root / "runs"), "--name", folder.name, *TINY])
        if code == 0:
            message = message if "skipped" in message else "loaded, converted: " + _what_was_loaded(root / "runs" / folder.name)
        rows.append((name, code, message))

    npy = root / "npy"
    npy.mkdir()
    np.save(npy / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (npy / "pickle.npy").write_bytes(pickle.dumps([1, 2, 3]))
    np.save(npy / "strings.npy", np.array(["a", "b"]))
    with zipfile.ZipFile(root / "escape.zip", "w") as z:
        for i in range(8):
            z.writestr(f"good{i}.png", png(grey(value=20 * i)))
        z.writestr("../../escape.png", png(grey()))
        z.writestr("/etc/absolute.png", png(grey()))
    with tarfile.open(root / "links.tar.gz", "w:gz") as tar:
        for i in range(8):
            data = png(grey(value=20 * i))
            info = tarfile.TarInfo(f"imgs/good{i}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("imgs/passwd.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    evil = root / "evil.safetensors"
    evil.write_bytes(b"\x00" * 64)
    (root / "a-file").write_text("")
    other = [
        ("folder with no images", ["train", "--data", str(npy), "--out", str(root / "runs")]),
        ("every file unreadable", ["train", "--data", str(_all_bad(root)), "--out", str(root / "runs")]),
        ("path that does not exist", ["train", "--data", str(root / "nowhere"), "--out", str(root / "runs")]),
        (".npy of Python objects", ["train", "--data", str(npy / "objects.npy"), "--out", str(root / "runs")]),
        (".npy that is a pickle", ["train", "--data", str(npy / "pickle.npy"), "--out", str(root / "runs")]),
        (".npy of strings", ["train", "--data", str(npy / "strings.npy"), "--out", str(root / "runs")]),
        ("zip with members named ../../escape.png and /etc/absolute.png",
         ["train", "--data", str(root / "escape.zip"), "--out", str(root / "runs"), *TINY]),
        ("tar.gz with a symlink member to /etc/passwd",
         ["train", "--data", str(root / "links.tar.gz"), "--out", str(root / "runs"), *TINY]),
        ("setting: lr_g=-1", ["train", "lr_g=-1"]),
        ("setting: loss=wgan", ["train", "loss=wgan"]),
        ("setting: --resolution 48", ["train", "--resolution", "48"]),
        ("setting: unknown key lr=1e-3", ["train", "lr=1e-3"]),
        ("setting: --batch-size ten", ["train", "--batch-size", "ten"]),
        ("checkpoint that is not one", ["sample", str(evil), "--out", str(root / "x.png")]),
        ("output folder is a file", ["train", "--data", "ring8", "--out", str(root / "a-file"), *TINY]),
    ]
    for name, argv in other:
        rows.append((name, *run(argv)))

    # A disk that fills up: the first checkpoint fits, the next ones do not.
    runs = root / "runs"
    base = ["train", "--data", "digits", "--out", str(runs), "--name", "full", "--no-progress",
            "--resolution", "16", "g_width=8", "d_width=8", "batch_size=16", "checkpoint_every=2"]
    run([*base, "--steps", "2"])
    first = runs / "full" / "checkpoints" / "step-0000002.safetensors"
    size = first.stat().st_size
    code, message = run([*base, "--steps", "6"], limit=size // 2)
    intact = first.stat().st_size == size and not list((runs / "full").rglob(".*.tmp-*"))
    rows.append(("disk full while writing a checkpoint (EFBIG)", code,
                 message + (" [step-2 checkpoint intact, no temporary file left]" if intact else " [CHECKPOINT DAMAGED]")))

    # A read-only output folder: a read-only bind mount of the run (needs root; skipped otherwise).
    view = root / "read-only"
    view.mkdir()
    if subprocess.run(["mount", "--bind", str(runs), str(view)], capture_output=True).returncode == 0:
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True, capture_output=True)
            code, message = run(["train", "--resume", str(view / "full"), "--steps", "6", "--no-progress"])
            intact = first.stat().st_size == size
            rows.append(("read-only output folder (a read-only bind mount of the run)", code,
                         message + (" [checkpoint intact]" if intact else " [CHECKPOINT DAMAGED]")))
        finally:
            subprocess.run(["umount", str(view)], capture_output=True)
    else:
        rows.append(("read-only output folder", "-", "not tried: bind mounts need root"))

    print("| bad input | exit code | what ganforge did |")
    print("|---|---|---|")
    for name, code, message in rows:
        print(f"| {name} | {code} | {message.replace('|', '/').replace(str(root), '<tmp>')} |")


def _what_was_loaded(run: Path) -> str:
    import json

    info = json.loads((run / "config.json").read_text())["data"]
    return f"{info['count']} images, {info['skipped']} skipped"


def _all_bad(root: Path) -> Path:
    folder = root / "all-bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    (folder / "b.jpg").write_text("text")
    return folder


if __name__ == "__main__":
    main()
