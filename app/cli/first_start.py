"""Secure by default for ``livedash run``, and ``livedash token`` on the console.

``livedash run`` with auth on (the default):

- uses ``SECRET_KEY`` if set, else a key generated once and kept in
  ``<data dir>/secret_key`` (mode 0600), handed to the workers through the
  environment, so the README's run command needs no configuration and
  sessions survive restarts;
- on first start (no admin token in Redis yet) creates one, stores only its
  hash, and prints it once as a ready login link.

``livedash token create|list|revoke`` manage tokens against the same Redis
(``REDIS_URL``, or the embedded server under the data dir).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from redis.asyncio import Redis

from app.auth.audit import AuditLog
from app.auth.tokens import Role, TokenCreate, TokenStore
from app.settings import Settings
from app.storage.embedded import EmbeddedServer
from app.storage.keyspace import Keys

T = TypeVar("T")

SECRET_FILE = "secret_key"
FIRST_ADMIN = "first-admin"


def ensure_secret_key(data_dir: Path) -> str:
    """The key kept under the data dir, created (owner-only) on first use."""
    path = data_dir / SECRET_FILE
    if path.exists():
        key = path.read_text().strip()
        if len(key) >= 32:
            return key
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # O_EXCL-free but owner-only from the first byte: no window where others can read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def login_url(host: str, port: int, token: str) -> str:
    # A wildcard bind is reachable on loopback; a link to 0.0.0.0 is not one to click.
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/login?token={quote(token)}"


async def _with_redis(url: str, prefix: str, work: Callable[[TokenStore, AuditLog], Awaitable[T]]) -> T:
    redis = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    try:
        keys = Keys(prefix)
        return await work(TokenStore(redis, keys), AuditLog(redis, keys, 10_000))
    finally:
        await redis.aclose()


async def first_admin(url: str, settings: Settings) -> str | None:
    """Create the first admin token if there is no admin yet; its plaintext, or None."""

    async def work(store: TokenStore, audit: AuditLog) -> str | None:
        if await store.count_admins():
            return None
        plaintext, record = await store.create(TokenCreate(role=Role.ADMIN, name=FIRST_ADMIN))
        await audit.record("token-created", "livedash run", token=record.id, role=record.role, name=record.name)
        return plaintext

    return await _with_redis(url, settings.key_prefix, work)


# --- `livedash token ...` ------------------------------------------------------
def _redis_for_console(settings: Settings) -> tuple[str, EmbeddedServer | None]:
    if settings.redis_url:
        return settings.redis_url, None
    server = EmbeddedServer(settings.data_dir)
    started = server.ensure_running()
    return server.url, server if started else None


def _run(settings: Settings, work: Callable[[TokenStore, AuditLog], Awaitable[int]]) -> int:
    url, started = _redis_for_console(settings)
    try:
        return asyncio.run(_with_redis(url, settings.key_prefix, work))
    finally:
        if started is not None:
            started.stop()


def cmd_token_create(args: argparse.Namespace) -> int:
    settings = Settings()
    spec = TokenCreate(
        role=Role(args.role),
        name=args.name,
        scope=[p.strip() for p in args.scope.split(",") if p.strip()] if args.scope else None,
        devices=[d.strip() for d in args.devices.split(",") if d.strip()] if args.devices is not None else None,
        expires_in=args.expires_in,
    )

    async def work(store: TokenStore, audit: AuditLog) -> int:
        plaintext, record = await store.create(spec)
        await audit.record("token-created", "console", token=record.id, role=record.role, name=record.name)
        print(f"token {record.id} ({record.role}, {record.name}) created; it is shown only this once:")
        print(f"  {plaintext}")
        print(f"  curl -H 'Authorization: Bearer {plaintext}' http://127.0.0.1:{settings.port}/api/session")
        if record.role is not Role.DEVICE:
            print(f"  browser: {login_url(settings.host, settings.port, plaintext)}")
        return 0

    return _run(settings, work)


def _when(epoch_ms: int) -> str:
    """Epoch ms as a time people read: ``2026-12-02 10:40`` (UTC)."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def cmd_token_list(args: argparse.Namespace) -> int:
    settings = Settings()

    async def work(store: TokenStore, _audit: AuditLog) -> int:
        records = await store.list()
        print(f"{'id':12}  {'role':7}  {'name':20}  {'created (UTC)':16}  {'expires (UTC)':16}  scope / devices")
        for r in records:
            limits = ",".join(r.scope or []) + (f" devices={','.join(r.devices)}" if r.devices is not None else "")
            created = _when(r.created_at)
            expires = _when(r.expires_at) if r.expires_at else "never"
            print(f"{r.id:12}  {r.role:7}  {r.name[:20]:20}  {created:16}  {expires:16}  {limits or '-'}")
        return 0

    return _run(settings, work)


def cmd_token_revoke(args: argparse.Namespace) -> int:
    settings = Settings()

    async def work(store: TokenStore, audit: AuditLog) -> int:
        record = await store.revoke(args.id)
        if record is None:
            print(f"no token {args.id!r}")
            return 1
        await audit.record("token-revoked", "console", token=record.id, name=record.name)
        print(f"revoked {record.id} ({record.role}, {record.name}); its open streams end within seconds")
        return 0

    return _run(settings, work)


def add_token_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser("token", help="create, list or revoke API tokens")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a token and print it once")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", default="token", help="who or what it is for (shown in lists and the audit log)")
    create.add_argument("--scope", default=None, help="topic patterns it may see, comma-separated (device/line-2-*)")
    create.add_argument("--devices", default=None, help="device tokens: the devices it may post for, comma-separated")
    create.add_argument("--expires-in", type=float, default=None, help="seconds until it expires (default: never)")
    create.set_defaults(func=cmd_token_create)
    listing = actions.add_parser("list", help="list tokens (never their secrets)")
    listing.set_defaults(func=cmd_token_list)
    revoke = actions.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id")
    revoke.set_defaults(func=cmd_token_revoke)


def prepare_run(settings: Settings, redis_url: str, host: str, port: int) -> list[str]:
    """Before ``livedash run`` starts hypercorn: the secret key and the first admin. Lines to print."""
    if not settings.auth_on:
        return [
            "livedash: WARNING: LIVEDASH_AUTH=off: authentication is DISABLED; "
            "anyone reaching the port has full access",
            "livedash: POST /api/tokens is refused while auth is off; `livedash token create` still makes tokens",
        ]
    if not settings.secret_key:
        os.environ["SECRET_KEY"] = ensure_secret_key(settings.data_dir)
    token = asyncio.run(first_admin(redis_url, settings))
    if token is None:
        return [
            "livedash: authentication is on. Log in with a token link; make one with "
            "`livedash token create --role admin` (or viewer, editor, device)."
        ]
    return [
        "livedash: authentication is on. First start: an admin token was created (shown once, only its hash is kept).",
        f"livedash: log in: {login_url(host, port, token)}",
        f"livedash: API:    curl -H 'Authorization: Bearer {token}' -N http://127.0.0.1:{port}/api/stream",
    ]
