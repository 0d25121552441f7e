"""Where the templates and static files are.

In a checkout they are the top-level ``templates/`` and ``static/`` folders
(the layout fixes them there). A wheel maps those folders into the package
(``app/templates``, ``app/static``; see ``pyproject.toml``), so an install
outside the checkout finds them next to the code.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
CHECKOUT = PACKAGE.parent


def asset_dir(name: str) -> Path:
    """``templates`` or ``static``: inside the installed package, else the checkout's folder."""
    installed = PACKAGE / name
    return installed if installed.is_dir() else CHECKOUT / name


TEMPLATES = asset_dir("templates")
STATIC = asset_dir("static")
