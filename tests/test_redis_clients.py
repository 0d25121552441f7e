"""The C command packer says exactly what redis-py's own packer says, and real Redis understands it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError

from app.storage.clients import HiredisPacking, command_client, reader_client

arguments = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)


class PackedHere(HiredisPacking, Connection):
    pass


def _wire(parts: list[Any]) -> bytes:
    return b"".join(bytes(p) for p in parts)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["EVALSHA", "SCRIPT LOAD", b"XADD", b"CLIENT SETNAME"]), st.lists(arguments, max_size=40))
def test_same_bytes_as_redis_py(command: str | bytes, args: list[Any]) -> None:
    ours = PackedHere().pack_command(command, *args)
    theirs = Connection().pack_command(command, *args)
    assert _wire(ours) == _wire(theirs)


def test_large_arguments_are_packed_whole() -> None:
    big = b"x" * 100_000
    view = memoryview(b"y" * 10)
    assert _wire(PackedHere().pack_command("SET", big, view)) == _wire(Connection().pack_command("SET", big, view))


async def test_clients_use_it_over_any_transport(redis_url: str, key_prefix: str) -> None:
    client = command_client(redis_url, pool_size=4)
    reader = reader_client(redis_url, block_seconds=1.0)
    try:
        for c in (client, reader):
            assert issubclass(c.connection_pool.connection_class, HiredisPacking)
        expected_base = UnixDomainSocketConnection if redis_url.startswith("unix") else Connection
        assert issubclass(client.connection_pool.connection_class, expected_base)
        # A script call the size of a 500-reading batch, through the real server.
        values = [f"v{i}é".encode() for i in range(3_500)]
        script = client.register_script("return #ARGV .. ':' .. ARGV[1] .. ':' .. ARGV[#ARGV]")
        assert await script(keys=[f"{key_prefix}k"], args=values) == b"3500:v0\xc3\xa9:v3499\xc3\xa9"
        await client.set(f"{key_prefix}f", 0.1)
        assert await reader.get(f"{key_prefix}f") == b"0.1"
    finally:
        await reader.aclose()
        await client.aclose()


def test_unpackable_argument_is_a_data_error() -> None:
    with pytest.raises(DataError):
        PackedHere().pack_command("SET", "k", object())
