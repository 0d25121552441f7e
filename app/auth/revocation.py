"""Open streams end when their credential does, within a few seconds.

A stream is authorised when it opens, but it may live for hours. Each
process therefore re-checks, every ``LIVEDASH_AUTH_RECHECK_INTERVAL``
seconds, the credentials behind its own open streams and long polls, in two
pipelined round trips whatever the number of streams (one EXISTS per distinct
token, one HGET per distinct session). The hub's subscriptions already
carry them: their topic filter is a ``ScopedTopics`` holding the identity.

- a token revoked or expired (its key is gone): its streams get
  ``bye {"reason": "revoked"}`` and end; a reconnect then gets 401. A
  session opened with ``LIVEDASH_ADMIN_TOKEN`` carries that token's
  fingerprint: live while it is this process's own (``TokenStore.live_hashes``),
  gone once the token was rotated or unset.
- a browser session logged out or past its end: the same, reason
  ``signed-out``.
- a JWT from an external issuer past its ``exp`` (Bearer, or the session it
  was exchanged for): ``bye {"reason": "expired"}``. Nothing in Redis says
  a JWT is live: its ``exp`` is checked here, by the clock.
- a session ending within ``LIVEDASH_SESSION_REAUTH_BEFORE``: its streams get
  one ``reauth {"expires_at", "renew"}`` event, so the page can
  ``POST /api/session/renew`` over plain HTTP; the renewed end is read from
  Redis at the next check, so a renewal made on any worker counts.

Polling here rather than broadcasting revocations on the event log keeps
expiry (which nobody announces) and revocation on one path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict

from redis.exceptions import RedisError

from app.auth.access import ScopedTopics
from app.auth.sessions import SessionStore
from app.auth.tokens import TokenStore
from app.events.hub import Hub, Subscription
from app.events.sse import control_frame

log = logging.getLogger(__name__)

# Between the `bye` frame and closing, so the stream gets to write it.
CLOSE_DELAY = 0.5
RENEW_PATH = "/api/session/renew"
JWT_LIVE = "(jwt)"  # groups sessions opened with a JWT: no token record to ask Redis about


def end_subscriptions(subs: list[Subscription], reason: str) -> None:
    loop = asyncio.get_running_loop()
    for sub in subs:
        if sub.closed:
            continue
        if sub.push(control_frame("bye", {"reason": reason})):
            loop.call_later(CLOSE_DELAY, sub.close, reason)
        else:
            sub.close(reason)


async def recheck_once(tokens: TokenStore, sessions: SessionStore, hub: Hub, reauth_before: float) -> int:
    """One pass over this process's open streams; returns how many were ended."""
    groups: dict[tuple[str, str | None], list[Subscription]] = defaultdict(list)
    now = time.time() * 1000
    ended = 0
    expired: list[Subscription] = []
    for sub in tuple(hub.subscriptions):
        topics = sub.topics
        if isinstance(topics, ScopedTopics) and not sub.closed:
            identity = topics.identity
            if identity.kind == "jwt":
                # Its end is its exp (already the earlier of exp and its session's end at open); a session
                # opened with it is still checked below (logout, renewal), its token never.
                if identity.expires_at is not None and identity.expires_at <= now:
                    expired.append(sub)
                elif identity.session_id is not None:
                    groups[(JWT_LIVE, identity.session_id)].append(sub)
            elif identity.token_hash:
                groups[(identity.token_hash, identity.session_id)].append(sub)
    if expired:
        end_subscriptions(expired, "expired")
        ended += len(expired)
    if not groups:
        return ended
    live_tokens = {JWT_LIVE} | await tokens.live_hashes(sorted({h for h, _ in groups} - {JWT_LIVE}))
    session_ends = await sessions.expiries(sorted({s for _, s in groups if s is not None}))
    for (token_hash, session_id), subs in groups.items():
        if token_hash not in live_tokens:
            end_subscriptions(subs, "revoked")
            ended += len(subs)
            continue
        if session_id is None:
            continue
        expires_at = session_ends.get(session_id)
        if expires_at is None:
            end_subscriptions(subs, "signed-out")
            ended += len(subs)
            continue
        if expires_at - now <= reauth_before * 1000:
            frame = control_frame("reauth", {"expires_at": expires_at, "renew": RENEW_PATH})
            for sub in subs:
                topics = sub.topics
                if isinstance(topics, ScopedTopics) and topics.stream and topics.reauth_sent != expires_at:
                    topics.reauth_sent = expires_at
                    sub.push(frame)
    return ended


async def run_rechecks(
    tokens: TokenStore,
    sessions: SessionStore,
    hub: Hub,
    interval: float,
    reauth_before: float,
    stop: asyncio.Event,
) -> None:
    """Re-check until ``stop`` is set (every process runs one)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        if stop.is_set():
            return
        try:
            ended = await recheck_once(tokens, sessions, hub, reauth_before)
        except (RedisError, OSError) as exc:
            # Fail open for streams already authorised: Redis being down must
            # not cut every dashboard; new requests cannot authenticate anyway.
            log.warning("credential re-check: Redis unavailable (%s); retrying", exc)
            continue
        if ended:
            log.info("ended %d stream(s) whose credential was revoked, expired or signed out", ended)
