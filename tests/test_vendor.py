"""The vendored front-end assets are the pinned versions, with their licences and source notes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "static" / "vendor"


def _pins() -> ModuleType:
    spec = importlib.util.spec_from_file_location("download_vendor", ROOT / "scripts" / "download_vendor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_htmx_is_the_pinned_version() -> None:
    version = _pins().HTMX_VERSION
    text = (VENDOR / "htmx" / f"htmx-{version}.min.js").read_text()
    assert f'version:"{version}"' in text
    assert (VENDOR / "htmx" / "LICENSE").is_file()
    assert version in (VENDOR / "htmx" / "SOURCE").read_text()


def test_uplot_is_the_pinned_version() -> None:
    pins = _pins()
    uplot = (VENDOR / "uplot" / f"uPlot-{pins.UPLOT_VERSION}.iife.min.js").read_text()
    assert f"(v{pins.UPLOT_VERSION})" in uplot
    assert "MIT" in (VENDOR / "uplot" / "LICENSE").read_text()


def test_pages_load_the_vendored_files() -> None:
    pins = _pins()
    base = (ROOT / "templates" / "base.html").read_text()
    assert f"htmx-{pins.HTMX_VERSION}.min.js" in base
    series = (ROOT / "templates" / "series.html").read_text()
    assert f"uPlot-{pins.UPLOT_VERSION}.iife.min.js" in series


def test_every_vendored_asset_is_loaded_by_a_page() -> None:
    """A vendored file no page loads is dead weight shipped in the wheel (the htmx SSE extension once was)."""
    pages = "".join(path.read_text() for path in (ROOT / "templates").rglob("*.html"))
    assets = [path for path in VENDOR.rglob("*") if path.suffix in (".js", ".css")]
    assert assets
    unused = [str(path.relative_to(VENDOR)) for path in assets if path.name not in pages]
    assert unused == [], "vendored but loaded by no template"
