"""``report.pdf``: ``report.html`` printed by headless Chromium (the report is circulated as a
PDF in hospital committees). The browser is found on the PATH (``chromium``,
``chromium-browser``, ``google-chrome``) or named by ``PATHOPIPE_CHROMIUM``; nothing is fetched:
the page is self-contained and the browser starts with its network features off."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pathopipe.errors import MissingProgramError, RenderError

__all__ = ["BROWSERS", "find_browser", "print_pdf"]

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
QUIET = [
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--mute-audio",
]


def find_browser() -> str:
    """The headless Chromium to print with, or an error that says how to get one."""
    named = os.environ.get("PATHOPIPE_CHROMIUM")
    if named:
        if shutil.which(named):
            return str(shutil.which(named))
        raise MissingProgramError(f"PATHOPIPE_CHROMIUM={named!r} is not an executable browser")
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise MissingProgramError(
        f"--pdf needs headless Chromium and none was found on the PATH ({', '.join(BROWSERS)}): install it "
        "(Debian/Ubuntu: `apt-get install chromium`) or set PATHOPIPE_CHROMIUM to its path; the HTML, "
        "Markdown and JSON report were written without it"
    )


def browser_flags(profile: str | Path) -> list[str]:
    """Chromium's command-line flags for a headless run in a throw-away ``profile`` folder
    (no sandbox when running as root, where Chromium refuses it)."""
    flags = [*QUIET, f"--user-data-dir={profile}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--no-sandbox")
    return flags


def print_pdf(page: str | Path, pdf: str | Path, *, timeout: float = 120.0) -> Path:
    """Print the local HTML file ``page`` to ``pdf`` with headless Chromium."""
    browser = find_browser()
    page, pdf = Path(page).resolve(), Path(pdf)
    with tempfile.TemporaryDirectory(prefix="pathopipe-chromium-") as profile:
        command = [
            browser,
            *browser_flags(profile),
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            page.as_uri(),
        ]
        try:
            ran = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise RenderError(f"{browser} did not print {page} within {timeout:.0f} s") from None
    if ran.returncode != 0 or not pdf.is_file() or pdf.stat().st_size == 0:
        tail = "\n".join(ran.stderr.strip().splitlines()[-5:])
        raise RenderError(f"{browser} could not print {page} to {pdf} (exit {ran.returncode}): {tail}")
    return pdf
