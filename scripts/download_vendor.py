"""Fetch the vendored front-end assets at their pinned versions from the npm registry.

    .venv/bin/python scripts/download_vendor.py

Uses ``npm pack`` (the ordinary npm client, no install, no node_modules), checks
nothing else: the pins below are the single source of truth, and
``tests/test_vendor.py`` checks that the files on disk carry these versions.
Re-run after changing a pin, then update ``templates/base.html``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "static" / "vendor"

HTMX_VERSION = "2.0.11"
UPLOT_VERSION = "1.6.31"

# package@version -> {path inside the tarball: path under static/vendor}
PACKAGES: dict[str, dict[str, str]] = {
    f"htmx.org@{HTMX_VERSION}": {
        "package/dist/htmx.min.js": f"htmx/htmx-{HTMX_VERSION}.min.js",
        "package/LICENSE": "htmx/LICENSE",
    },
    f"uplot@{UPLOT_VERSION}": {
        "package/dist/uPlot.iife.min.js": f"uplot/uPlot-{UPLOT_VERSION}.iife.min.js",
        "package/dist/uPlot.min.css": f"uplot/uPlot-{UPLOT_VERSION}.min.css",
    },
}

# uPlot's npm package names its licence (MIT, in package.json and the file
# banner) but ships no LICENSE file; this is the text of that licence.
UPLOT_LICENSE = """The MIT License (MIT)

Copyright (c) 2022 Leon Sorokin

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

SOURCES = {
    "htmx/SOURCE": f"htmx.org@{HTMX_VERSION} from the npm registry (npm pack), fetched by scripts/download_vendor.py\n",
    "uplot/SOURCE": f"uplot@{UPLOT_VERSION} from the npm registry (npm pack), fetched by scripts/download_vendor.py\n",
}


def fetch(spec: str, files: dict[str, str], workdir: Path) -> None:
    out = subprocess.run(
        ["npm", "pack", spec, "--silent", "--pack-destination", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    tarball = workdir / out.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as tar:
        for member, target in files.items():
            source = tar.extractfile(member)
            if source is None:
                raise SystemExit(f"{spec}: {member} is not a file")
            dest = VENDOR / target
            dest.parent.mkdir(parents=True, exist_ok=True)
            with source, open(dest, "wb") as fh:
                shutil.copyfileobj(source, fh)
            print(f"{spec}: {member} -> static/vendor/{target}")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for spec, files in PACKAGES.items():
            fetch(spec, files, Path(tmp))
    (VENDOR / "uplot" / "LICENSE").write_text(UPLOT_LICENSE)
    for name, text in SOURCES.items():
        (VENDOR / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
