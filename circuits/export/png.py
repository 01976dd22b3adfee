"""PNG rendering of a circuit (``render_png``): a screenshot of the HTML export (``to_html``)
taken by headless Chromium in a window of ``window_size`` pixels (1400 x 1000 by default), with
a throw-away profile (no sandbox, no GPU, background networking, component updates and sync
off); the PNG is written atomically, and ``RenderError`` says why when there is none."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from sparse_circuits.files import atomic_path

__all__ = ["CHROMIUM", "RenderError", "render_png"]

CHROMIUM = Path("/usr/bin/chromium")
"""Where ``render_png`` looks for Chromium unless told otherwise."""


class RenderError(RuntimeError):
    """A PNG that could not be rendered (no Chromium, or Chromium failed); says why."""


def render_png(
    html_path: str | Path,
    png_path: str | Path,
    *,
    chromium: str | Path = CHROMIUM,
    window_size: tuple[int, int] = (1400, 1000),
    timeout: float = 120.0,
) -> Path:
    """Screenshot ``html_path`` (e.g. from ``to_html``) into ``png_path`` with headless
    Chromium, atomically. ``RenderError`` if Chromium is missing or fails."""
    html_path, png_path = Path(html_path), Path(png_path)
    chromium = Path(chromium)
    if not chromium.is_file():
        raise RenderError(
            f"cannot render {png_path}: no Chromium at {chromium} "
            "(install it, e.g. `apt-get install chromium`, or pass chromium=...)"
        )
    if not html_path.is_file():
        raise FileNotFoundError(f"{html_path}: HTML file not found")
    with tempfile.TemporaryDirectory(prefix="sparse-circuits-chromium-") as scratch:
        shot = Path(scratch) / "screenshot.png"
        profile = Path(scratch) / "profile"
        command = [
            str(chromium),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            f"--window-size={window_size[0]},{window_size[1]}",
            html_path.resolve().as_uri(),
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RenderError(f"chromium took longer than {timeout} s on {html_path}") from None
        if result.returncode != 0 or not shot.is_file() or shot.stat().st_size == 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-5:])
            raise RenderError(
                f"chromium failed to render {html_path} (exit {result.returncode}): {tail}"
            )
        with atomic_path(png_path) as tmp:
            shutil.copyfile(shot, tmp)
    return png_path
