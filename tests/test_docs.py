"""Docs stay true to the code: every setting is documented."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def env_name(name: str) -> str:
    field = Settings.model_fields[name]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    if isinstance(alias, str):
        return alias
    return "LIVEDASH_" + name.upper()


def test_every_setting_is_documented() -> None:
    table = (ROOT / "docs" / "settings.md").read_text()
    missing = [env_name(n) for n in Settings.model_fields if f"`{env_name(n)}`" not in table]
    assert not missing, f"settings missing from docs/settings.md: {missing}"
