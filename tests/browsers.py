"""What the Chromium tests share: the browser binary, its flags, the skip marks.

The ``browser`` fixture itself is in ``tests/conftest.py`` (one per module);
Playwright is imported only when a test asks for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 10_000

# A browser test module's marks: `browser`, and skipped without Debian's Chromium.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed at /usr/bin/chromium"),
]
