"""Redis Lua scripts, one file each, loaded once per process.

Each script's header says what it guarantees. ``load`` registers them with a
client; redis-py sends EVALSHA and falls back to EVAL after a server restart
that emptied the script cache. A library file (functions only, such as
``versioned.lua``) is prepended to the scripts that use it: Redis scripts
cannot call one another.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@cache
def source(name: str) -> str:
    return files(__package__).joinpath(f"{name}.lua").read_text()


def load(redis: Redis, *names: str) -> AsyncScript:
    """One script made of these files, in order (libraries first)."""
    return redis.register_script("\n".join(source(name) for name in names))


def lazy_library(name: str, export: str) -> str:
    """A library wrapped in ``<export>_library()``, which makes its functions and returns ``export``.

    A script body runs whole on every call, so a prepended library's functions
    are made on every call; wrapped, a script that rarely needs them (ingest
    without rules) does not pay for them.
    """
    return f"local function {export}_library()\n{source(name)}\nreturn {export}\nend"


def load_lazy(redis: Redis, library: str, export: str, name: str, prologue: str = "") -> AsyncScript:
    """``name`` with ``library`` prepended as a lazy library (``lazy_library``), after ``prologue``."""
    return redis.register_script(lazy_library(library, export) + "\n" + prologue + source(name))


LuaValue = int | str | list[int] | list[str]


def constants(values: dict[str, LuaValue]) -> str:
    """Lua ``local`` declarations of these values, to prepend to a script.

    A script's settings made constants of its text are compiled once, where
    arguments are parsed on every run (``tonumber`` of a string costs as much
    as a cheap command). Each distinct set of values is a script of its own in
    Redis' script cache, so only settings go here, never a key prefix.
    """
    return "".join(f"local {name} = {_literal(value)}\n" for name, value in values.items())


def _literal(value: LuaValue) -> str:
    if isinstance(value, list):
        return "{" + ", ".join(_literal(v) for v in value) + "}"
    if isinstance(value, int):
        return str(value)
    # Lua's decimal escapes cover any byte: nothing in a value can end the string or the line.
    return '"' + "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\{b:03d}" for b in value.encode()) + '"'
