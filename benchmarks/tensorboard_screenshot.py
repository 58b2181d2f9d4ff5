"""Open a run folder in TensorBoard and take screenshots of its curves and sample grids, in
headless Chromium (Debian's chromium package, driven by Playwright).

    python benchmarks/tensorboard_screenshot.py RUN --out docs/tensorboard
writes docs/tensorboard-scalars.png and docs/tensorboard-images.png.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", default="tensorboard", help="prefix of the two PNG files")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(args.run), "--port", str(port),
                              "--host", "127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(url + "#scalars", wait_until="networkidle")
            page.wait_for_timeout(4000)
            page.screenshot(path=f"{args.out}-scalars.png", full_page=True)
            page.goto(url + "#images", wait_until="networkidle")
            page.wait_for_timeout(4000)
            page.screenshot(path=f"{args.out}-images.png", full_page=True)
            browser.close()
    finally:
        board.terminate()
        board.wait()
    print(f"wrote {args.out}-scalars.png and {args.out}-images.png")


if __name__ == "__main__":
    main()
