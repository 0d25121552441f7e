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


def load_lazy(redis: Redis, library: str, export: str, name: str) -> AsyncScript:
    """``name`` with ``library`` prepended as a lazy library (``lazy_library``)."""
    return redis.register_script(lazy_library(library, export) + "\n" + source(name))
