"""Redis Lua scripts, one file each, loaded once per process.

Each script's header says what it guarantees. ``load`` registers them with a
client; redis-py sends EVALSHA and falls back to EVAL after a server restart
that emptied the script cache. A library file (functions only, such as
``versioned.lua``) is prepended to the scripts that use it: Redis scripts
cannot call one another. Ingest, paid per reading, is a Redis Function
library instead (``Library``), with its settings made constants of its code
(``constants``).
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError


@cache
def source(name: str) -> str:
    return files(__package__).joinpath(f"{name}.lua").read_text()


def load(redis: Redis, *names: str) -> AsyncScript:
    """One script made of these files, in order (libraries first)."""
    return redis.register_script("\n".join(source(name) for name in names))


class Library:
    """Lua files as one Redis Function library, called by name (FCALL).

    A script body runs whole on every call: each helper it defines is a new
    closure, each table of settings a new table, on every run. A library's
    top level runs once, when it is loaded, so a call pays for its own work
    only. That matters for a script called per reading (ingest): its fixed
    cost per run was most of a single reading's Redis CPU.

    The library is named after a digest of its code (``<base>_<digest>``, one
    function of that name, ``entry`` in the code): deployments with the same
    code and settings share it, different ones never replace each other's.
    A server without it (restarted, flushed, another node) gets it on the
    call that finds it missing, then the call is made again: nothing of a
    call that found no function ran. Functions need Redis 7 or Valkey.
    """

    def __init__(self, redis: Redis, base: str, entry: str, code: str) -> None:
        self.redis = redis
        self.name = f"{base}_{hashlib.sha1(code.encode()).hexdigest()[:16]}"
        self.code = f"#!lua name={self.name}\n{code}\nredis.register_function('{self.name}', {entry})\n"

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        try:
            return await self.redis.fcall(self.name, len(keys), *keys, *args)
        except ResponseError as e:
            if "function not found" not in str(e).lower():
                raise
        await self.redis.function_load(self.code, replace=True)
        return await self.redis.fcall(self.name, len(keys), *keys, *args)


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
