"""Every setting livedash reads, in one place.

Nothing else in the package reads ``os.environ``: the app factory builds a
``Settings`` once and hands it to whoever needs it. The operator-facing names
(``PORT``, ``REDIS_URL``, ``WEB_CONCURRENCY``, ``SECRET_KEY``) follow the PaaS
conventions; everything else carries the ``LIVEDASH_`` prefix. The table in
``docs/settings.md`` documents each one, and a test keeps the two in step.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECONDS = 1.0
MILLISECONDS = 1

_DURATION_UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
MAX_TIERS = 4


def parse_duration_ms(text: str) -> int:
    """``90s``, ``1m``, ``6h``, ``7d``, ``2w``, ``250ms`` (or a bare number of ms) in milliseconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (e.g. 250ms, 90s, 1m, 6h, 7d, 2w)")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_tiers(text: str) -> tuple[tuple[int, int], ...]:
    """``step:retention,...`` (``1m:7d,1h:400d``) as (step ms, retention ms), finest first, checked."""
    tiers: list[tuple[int, int]] = []
    for part in (p for p in text.split(",") if p.strip()):
        step_text, sep, keep_text = part.partition(":")
        if not sep:
            raise ValueError(f"rollup tier {part!r}: expected step:retention, e.g. 1m:7d")
        step, keep = parse_duration_ms(step_text), parse_duration_ms(keep_text)
        if not 1_000 <= step <= 30 * 86_400_000:
            raise ValueError(f"rollup tier {part!r}: the step must be between 1s and 30d")
        if keep < step:
            raise ValueError(f"rollup tier {part!r}: the retention must be at least one step")
        if tiers and (step <= tiers[-1][0] or keep <= tiers[-1][1]):
            raise ValueError(f"rollup tier {part!r}: steps and retentions must grow from one tier to the next")
        tiers.append((step, keep))
    if len(tiers) > MAX_TIERS:
        raise ValueError(f"at most {MAX_TIERS} rollup tiers")
    return tuple(tiers)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIVEDASH_", extra="ignore", frozen=True, populate_by_name=True)

    # --- process and engine -------------------------------------------------
    port: int = Field(8000, ge=0, le=65535, validation_alias=AliasChoices("PORT", "LIVEDASH_PORT"))
    host: str = "127.0.0.1"
    web_concurrency: int = Field(
        1, ge=1, le=64, validation_alias=AliasChoices("WEB_CONCURRENCY", "LIVEDASH_WEB_CONCURRENCY")
    )
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "LIVEDASH_REDIS_URL"))
    secret_key: str | None = Field(None, validation_alias=AliasChoices("SECRET_KEY", "LIVEDASH_SECRET_KEY"))
    data_dir: Path = Path(".livedash")
    key_prefix: str = Field("livedash:", min_length=1, max_length=64)
    redis_pool_size: int = Field(64, ge=2, le=10_000)
    demo: bool = False

    # --- event log and streams ---------------------------------------------
    event_log_maxlen: int = Field(100_000, ge=100)
    keepalive_interval: float = Field(15 * SECONDS, gt=0)
    # Keep-alive pings go out to one of this many shares of the streams at a time
    # (each stream still once per interval): 1 pings every stream at once.
    keepalive_slices: int = Field(10, ge=1, le=1_000)
    retry_ms: int = Field(2_000 * MILLISECONDS, ge=100)
    retry_jitter_ms: int = Field(3_000 * MILLISECONDS, ge=0)
    stream_queue_size: int = Field(1_024, ge=8)
    # Writes per second per stream, and per process spread over its streams;
    # 0 turns either off. Each write carries everything pending, so this trades
    # a bounded delay for far fewer send() calls (see docs/scaling.md).
    stream_max_rate: float = Field(30.0, ge=0)
    stream_write_budget: float = Field(20_000.0, ge=0)
    max_streams: int = Field(10_000, ge=1)
    replay_page_size: int = Field(500, ge=1, le=10_000)
    poll_page_size: int = Field(500, ge=1, le=10_000)
    long_poll_max_wait: float = Field(30 * SECONDS, ge=0)

    # --- ingest -------------------------------------------------------------
    history_size: int = Field(240, ge=1, le=100_000)
    # Series (device + metric + tags) a device, and the whole deployment, may have;
    # a batch that would create more is refused whole (422 series_limit).
    max_series_per_device: int = Field(1_000, ge=1)
    max_series: int = Field(100_000, ge=1)
    # Series history (docs/series.md): raw points for this long, then rollup
    # buckets (min, max, sum, count, last) at each tier's step for its retention.
    raw_retention: float = Field(6 * 3600 * SECONDS, ge=1, le=30 * 86_400)
    # How far ahead of the server's clock a reading's ts may be. A reading from
    # the future holds its series' latest value until that time comes and its
    # history cannot be trimmed until then; a clock set to the wrong zone is at
    # most 14 h off, so a day leaves room for that and nothing more.
    max_future: float = Field(86_400 * SECONDS, ge=0, le=366 * 86_400)
    rollup_tiers: str = "1m:7d,1h:400d"
    # A dashboard tile looks stale once its series has been silent this many
    # times its usual interval (the median gap of its recent points).
    stale_factor: float = Field(3.0, gt=1)
    max_batch: int = Field(5_000, ge=1)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # JSON POST /api/metrics answered in front of Quart (app/ingest/fast_path.py).
    ingest_fast_path: bool = True
    # GET /api/stream answered in front of Quart when a token or session settles it (app/web/raw_stream.py).
    stream_fast_path: bool = True

    # --- demo simulator -----------------------------------------------------
    demo_interval: float = Field(1 * SECONDS, gt=0)

    # --- presence -------------------------------------------------------------
    # A tab is dropped once no heartbeat came for ttl + grace (Redis time), and
    # the leave goes out within one sweep after that: with the defaults a tab
    # killed without notice is gone in at most ~26 s, and a tab may lose a whole
    # heartbeat and still be 5 s late with the next before anyone sees a leave.
    presence_heartbeat_interval: float = Field(10 * SECONDS, gt=0)
    presence_ttl: float = Field(20 * SECONDS, gt=0)
    presence_grace: float = Field(5 * SECONDS, ge=0)
    presence_sweep_interval: float = Field(1 * SECONDS, gt=0)

    # --- collaborative writes (annotations, alert rules) -----------------------
    # A deleted document stays a tombstone this long, so a stale update made
    # from an old copy gets 410 instead of resurrecting it.
    tombstone_ttl: float = Field(7 * 24 * 3600 * SECONDS, gt=0)
    revisions_max: int = Field(100, ge=1, le=10_000)

    # --- alerts (app/alerts/, docs/alerts.md) ----------------------------------
    # Links in notifications start with this (e.g. https://dash.example.com); empty: a path only.
    public_url: str = Field("", max_length=500)
    # Every process checks no-data deadlines this often; each firing happens once.
    alert_sweep_interval: float = Field(1 * SECONDS, gt=0)
    alert_history_maxlen: int = Field(10_000, ge=100)
    # Webhook deliveries: per-attempt timeout, attempts per transition and channel,
    # exponential backoff (base, cap; each wait is 50-100 % of it), and how long a
    # delivery may sit unacknowledged before another process takes it over (its
    # process died). The claim idle must exceed timeout + the backoff cap.
    webhook_timeout: float = Field(5 * SECONDS, gt=0, le=60)
    webhook_attempts: int = Field(5, ge=1, le=20)
    webhook_backoff: float = Field(1 * SECONDS, gt=0)
    webhook_backoff_max: float = Field(60 * SECONDS, gt=0)
    webhook_claim_idle: float = Field(90 * SECONDS, gt=0)
    webhook_concurrency: int = Field(16, ge=1, le=1_000)
    webhook_log_size: int = Field(50, ge=1, le=1_000)
    # Networks a channel URL may point into although refused by default (loopback,
    # link-local, metadata, ...): a comma list of CIDRs, e.g. 127.0.0.0/8.
    webhook_allow_networks: str = Field("", max_length=2_000)

    # --- operations and integrations (app/ops/logs.py, app/ops/telemetry.py, ...) ------
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # The cyclic garbage collector (app/ops/gc_tuning.py): thresholds and freezing start-up objects.
    gc_threshold: tuple[int, int, int] = (7_000, 10, 10)
    gc_freeze: bool = True
    # A GC pause or an event-loop stall this long (seconds) or longer is logged as a WARNING.
    stall_log: float = Field(0.1, gt=0)
    # The event-loop lag probe's tick (app/ops/loop_lag.py); 0 turns it off.
    loop_lag_interval: float = Field(0.05, ge=0, le=10)
    # prometheus-client's own variable: set, /metrics adds up every worker
    # (multiprocess mode); `livedash run` sets it for its workers.
    prometheus_multiproc_dir: Path | None = Field(
        None, validation_alias=AliasChoices("PROMETHEUS_MULTIPROC_DIR", "LIVEDASH_PROMETHEUS_MULTIPROC_DIR")
    )
    # MQTT bridge: off unless a broker URL is set (mqtt://user:pass@host:1883).
    mqtt_url: str | None = None
    mqtt_topic: str = Field("sensors/{device}/{metric}", min_length=3, max_length=200)
    mqtt_qos: int = Field(1, ge=0, le=2)
    # Line protocol (POST /api/write): the tag that names the device.
    line_device_tag: str = Field("device", min_length=1, max_length=64)
    # Readings (numeric fields) per line-protocol request: Telegraf's default 1,000 metrics of up to 50 fields.
    line_max_readings: int = Field(50_000, ge=1)

    # --- security (app/auth/guard.py, app/auth/tokens.py, app/auth/sessions.py) ---------------
    # "off" turns authentication off entirely (a loud warning at start).
    auth: Literal["on", "off"] = "on"
    admin_token: str | None = Field(None, min_length=16)
    # A scrape credential for Prometheus: accepted as a Bearer token on /metrics only,
    # checked in process (no Redis), so scrapes still work while Redis is down.
    metrics_token: str | None = Field(None, min_length=16)
    session_ttl: float = Field(12 * 3600 * SECONDS, gt=0)
    # An open stream gets a `reauth` event this long before its session ends.
    session_reauth_before: float = Field(5 * 60 * SECONDS, gt=0)
    # How often each process re-checks the credentials behind its open streams.
    auth_recheck_interval: float = Field(2 * SECONDS, gt=0)
    streams_per_token: int = Field(20, ge=1)
    write_rate_limit: int = Field(1_200, ge=1)
    write_rate_window: float = Field(60 * SECONDS, gt=0)
    audit_maxlen: int = Field(10_000, ge=100)
    # Refusals (401, 403, 429, failed logins) are counted per client address in
    # a window and only sampled into their own log (app/auth/audit.py); failed
    # credentials past the limit get 429 for the rest of the window.
    auth_failure_limit: int = Field(30, ge=1)
    auth_failure_window: float = Field(60 * SECONDS, gt=0)
    audit_refusals_maxlen: int = Field(1_000, ge=10)
    # Pages on other origins (docs/embed.md): the origins allowed to call the API and follow the stream,
    # a comma list of scheme://host[:port]; empty: none (no CORS headers at all).
    cors_origins: str = Field("", max_length=4_000)
    # How long a stream ticket (POST /api/stream/ticket, for EventSource) may wait to be used, once.
    stream_ticket_ttl: float = Field(60 * SECONDS, gt=0, le=3_600)

    # --- JWTs from an external issuer (app/auth/issuer.py, docs/auth.md) --------------------
    # Accepted as Bearer tokens (and exchanged for a browser session) when a secret or a JWKS URL is set.
    # A preset fills the claim names (and, for Directus, the issuer); any setting below overrides it.
    jwt_preset: Literal["generic", "oidc", "directus"] = "generic"
    jwt_secret: str | None = Field(None, min_length=16)  # HS256 (Directus: its SECRET)
    jwt_jwks_url: str | None = Field(None, max_length=2_000)  # RS256 / ES256 keys, by kid
    jwt_algorithms: str | None = Field(None, max_length=200)  # comma list; default: what the keys allow
    jwt_issuer: str | None = Field(None, max_length=500)
    jwt_audience: str | None = Field(None, max_length=500)
    jwt_leeway: float = Field(30 * SECONDS, ge=0, le=600)
    jwt_claim_subject: str | None = Field(None, max_length=100)
    jwt_claim_name: str | None = Field(None, max_length=300)  # comma list: the first present is the name
    jwt_claim_role: str | None = Field(None, max_length=100)  # dotted path: realm_access.roles
    jwt_claim_scope: str | None = Field(None, max_length=100)
    jwt_claim_admin: str | None = Field(None, max_length=100)  # a boolean claim that means admin (Directus)
    # Claim value -> livedash role, e.g. "livedash-admin=admin,ops=editor"; a role named as itself always maps.
    jwt_role_map: str = Field("", max_length=4_000)
    # The role of a JWT whose claims map to none; empty: such a JWT is refused (401 no_role).
    jwt_default_role: Literal["", "viewer", "editor", "admin", "device"] = ""
    jwks_cache_ttl: float = Field(3600 * SECONDS, gt=0)
    # An unknown kid re-reads the JWKS at most this often (per process).
    jwks_refresh_interval: float = Field(30 * SECONDS, ge=0)

    @model_validator(mode="after")
    def _presence_outlives_heartbeat(self) -> Settings:
        # A TTL at or under the heartbeat interval would make every tab flap.
        if self.presence_ttl <= self.presence_heartbeat_interval:
            raise ValueError("LIVEDASH_PRESENCE_TTL must be longer than LIVEDASH_PRESENCE_HEARTBEAT_INTERVAL")
        return self

    @field_validator("auth", mode="before")
    @classmethod
    def _auth_switch(cls, value: object) -> object:
        # Operators write LIVEDASH_AUTH=off, OFF, 0 or false; all mean the same.
        if isinstance(value, str):
            value = value.strip().lower()
            return {"0": "off", "false": "off", "no": "off", "1": "on", "true": "on", "yes": "on"}.get(value, value)
        return value

    @model_validator(mode="after")
    def _reauth_inside_session(self) -> Settings:
        if self.session_reauth_before >= self.session_ttl:
            raise ValueError("LIVEDASH_SESSION_REAUTH_BEFORE must be shorter than LIVEDASH_SESSION_TTL")
        return self

    @model_validator(mode="after")
    def _claim_outlasts_an_attempt(self) -> Settings:
        # A delivery waiting out its backoff must not look abandoned to other processes.
        if self.webhook_claim_idle <= self.webhook_timeout + min(self.webhook_backoff_max, self.webhook_claim_idle / 2):
            raise ValueError("LIVEDASH_WEBHOOK_CLAIM_IDLE must exceed LIVEDASH_WEBHOOK_TIMEOUT plus a backoff wait")
        return self

    @field_validator("webhook_allow_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        for part in (p.strip() for p in value.split(",") if p.strip()):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(
                    f"LIVEDASH_WEBHOOK_ALLOW_NETWORKS: {part!r} is not a network (e.g. 127.0.0.0/8)"
                ) from None
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins_parse(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",") if o.strip()):
            if not re.fullmatch(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?", origin):
                raise ValueError(
                    f"LIVEDASH_CORS_ORIGINS: {origin!r} is not an origin (scheme://host[:port], no path, no '*')"
                )
        return value

    @property
    def cors_origin_set(self) -> frozenset[str]:
        """The allowed origins, as browsers send them in ``Origin`` (lower-case scheme and host)."""
        return frozenset(o.strip().lower() for o in self.cors_origins.split(",") if o.strip())

    @field_validator("rollup_tiers")
    @classmethod
    def _tiers_parse(cls, value: str) -> str:
        parse_tiers(value)  # refused at start, naming the tier
        return value

    @property
    def tiers(self) -> tuple[tuple[int, int], ...]:
        """The rollup tiers as (step ms, retention ms), finest first."""
        return parse_tiers(self.rollup_tiers)

    @property
    def auth_on(self) -> bool:
        return self.auth == "on"

    @property
    def embedded(self) -> bool:
        """True when no REDIS_URL is set and the app runs its own server."""
        return not self.redis_url
