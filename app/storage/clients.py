"""This process's Redis clients: the command pool and the broker's reader.

Both pack commands with hiredis's C packer. redis-py's asyncio connections
pack every argument in Python, re-joining a growing buffer per argument; an
ingest batch of 500 readings is a script call of ~3,500 arguments, and
packing it that way cost more CPU than validating the batch. The sync client
of redis-py uses ``hiredis.pack_command`` when hiredis is installed; this
gives the asyncio connections the same, for whatever connection class the URL
picked (TCP, unix socket, TLS). Replies are parsed by hiredis already (redis-py
picks its hiredis parser on its own when the package is there).
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import DataError
from redis.maint_notifications import MaintNotificationsConfig

# How long a command may wait for a free pooled connection, and for its reply.
COMMAND_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0


def _no_maint_notifications() -> MaintNotificationsConfig:
    """Maintenance notifications off (a Redis Enterprise / cloud feature we do not use).

    redis-py 8 defaults them to "auto" on TCP connections, and while they are
    on its pool skips the check it makes on every connection it hands out:
    that the socket is not closed or dirty. After Redis restarts, every pooled
    connection is then a dead one that fails exactly one command (a stray 503
    per pooled connection). Off, the pool notices the EOF and reconnects first.
    """
    return MaintNotificationsConfig(enabled=False)


class HiredisPacking:
    """Mixin for a redis-py asyncio connection class: pack commands in C."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # Multi-word command names ("SCRIPT LOAD") go out as separate words,
        # as redis-py's own packers do.
        if isinstance(args[0], str):
            args = tuple(args[0].encode().split()) + args[1:]
        elif b" " in args[0]:
            args = tuple(args[0].split()) + args[1:]
        words: Any = tuple(bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args)
        try:
            # (hiredis's stub types the tuple as one element long.)
            return [hiredis.pack_command(words)]
        except TypeError as exc:
            raise DataError(str(exc)) from None


def use_hiredis_packing(pool: ConnectionPool) -> ConnectionPool:
    cls: type[AbstractConnection] = pool.connection_class
    if not issubclass(cls, HiredisPacking):
        pool.connection_class = type(f"Hiredis{cls.__name__}", (HiredisPacking, cls), {})
    return pool


def command_client(url: str, pool_size: int) -> Redis:
    """The shared pool for commands.

    Bounded, and a command waits for a free connection (up to COMMAND_TIMEOUT)
    rather than failing: a burst of streams reconnecting after a deploy must
    queue, not answer 503. redis-py's default pool refuses outright past 100
    connections.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=COMMAND_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        health_check_interval=30,
        maint_notifications_config=_no_maint_notifications(),
    )
    return Redis.from_pool(use_hiredis_packing(pool))


def reader_client(url: str, block_seconds: float) -> Redis:
    """The one connection the broker's ``XREAD BLOCK`` uses."""
    pool = ConnectionPool.from_url(
        url,
        socket_timeout=block_seconds + COMMAND_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        max_connections=2,
        maint_notifications_config=_no_maint_notifications(),
    )
    return Redis.from_pool(use_hiredis_packing(pool))
