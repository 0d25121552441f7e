"""Every Redis key livedash writes, named in one place.

All keys share the configured prefix, so two deployments (or two test runs)
can share one Redis database without touching each other's data, and tests
clean up exactly what they created.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}epoch"

    @property
    def latest(self) -> str:
        return f"{self.prefix}latest"

    @property
    def latest_ts(self) -> str:
        return f"{self.prefix}latest-ts"

    def history(self, series: str) -> str:
        return f"{self.prefix}history:{series}"

    @property
    def rollup_open(self) -> str:
        """Hash: series -> its open (newest) rollup bucket of each tier (storage/rollups.py)."""
        return f"{self.prefix}rollup-open"

    @property
    def series_per_device(self) -> str:
        """Hash: device -> how many series it has (the per-device series limit)."""
        return f"{self.prefix}series-per-device"

    @property
    def demo_lease(self) -> str:
        return f"{self.prefix}demo-lease"

    # Presence (app/presence.py): per room, a sorted set of sessions scored by
    # their expiry and a hash of who each session is; per session, the heartbeat
    # key whose PX is the session's life; one index of rooms scored by their
    # earliest expiry, so the sweeper finds due rooms without scanning.
    @property
    def presence_rooms(self) -> str:
        return f"{self.prefix}presence:rooms"

    def presence_expiry(self, room: str) -> str:
        return f"{self.prefix}presence:expiry:{room}"

    def presence_members(self, room: str) -> str:
        return f"{self.prefix}presence:members:{room}"

    def presence_heartbeat(self, room: str, session: str) -> str:
        """Rooms and sessions cannot contain '/', so this is unambiguous."""
        return f"{self.prefix}presence:hb:{room}/{session}"

    # Annotations (app/documents/annotations.py): one hash per annotation (kept as a
    # tombstone for a while after delete), its revision list, and one index of
    # live annotation ids scored by ts.
    def annotation(self, annotation_id: str) -> str:
        return f"{self.prefix}annotation:{annotation_id}"

    def annotation_revisions(self, annotation_id: str) -> str:
        return f"{self.prefix}annotation-revisions:{annotation_id}"

    @property
    def annotations_by_ts(self) -> str:
        return f"{self.prefix}annotations:by-ts"

    # Alert rules (app/documents/alert_rules.py): one hash per rule (tombstone after delete),
    # its revisions, and three tables the evaluation script reads: rule JSON
    # by id, rule ids by series, and each rule's state by id.
    def alert_rule(self, rule_id: str) -> str:
        return f"{self.prefix}alert-rule:{rule_id}"

    def alert_rule_revisions(self, rule_id: str) -> str:
        return f"{self.prefix}alert-rule-revisions:{rule_id}"

    @property
    def alert_rules(self) -> str:
        return f"{self.prefix}alerts:rules"

    @property
    def alert_rules_by_series(self) -> str:
        return f"{self.prefix}alerts:by-series"

    @property
    def alert_state(self) -> str:
        return f"{self.prefix}alerts:state"

    # Alerting (app/alerts/, app/storage/lua/alert_eval.lua, which names the
    # same keys from the state hash's name): the transition history, the
    # delivery outbox (a stream read by a consumer group), silences and
    # acknowledgements by rule, no-data deadlines (zset) and last arrivals,
    # config the scripts read, channels, each channel's delivery log, and the
    # attempts made on each outbox entry.
    @property
    def alert_history(self) -> str:
        return f"{self.prefix}alerts:history"

    @property
    def alert_outbox(self) -> str:
        return f"{self.prefix}alerts:outbox"

    @property
    def alert_silences(self) -> str:
        return f"{self.prefix}alerts:silences"

    @property
    def alert_acks(self) -> str:
        return f"{self.prefix}alerts:acks"

    @property
    def alert_nodata_due(self) -> str:
        return f"{self.prefix}alerts:nodata-due"

    @property
    def alert_nodata_seen(self) -> str:
        return f"{self.prefix}alerts:nodata-seen"

    @property
    def alert_config(self) -> str:
        return f"{self.prefix}alerts:config"

    @property
    def alert_channels(self) -> str:
        return f"{self.prefix}alerts:channels"

    def alert_delivery_log(self, channel_id: str) -> str:
        return f"{self.prefix}alerts:delivery-log:{channel_id}"

    @property
    def alert_attempts(self) -> str:
        return f"{self.prefix}alerts:attempts"

    # Security (app/auth/tokens.py, app/auth/sessions.py, app/auth/ratelimit.py, app/auth/audit.py):
    # a token's record under the sha256 of its plaintext (never the plaintext),
    # an index of token ids -> that hash for listing and revoking, one hash per
    # browser session, one fixed-window counter per token, the audit stream
    # (security entries), and for refusals: one hash of counts per client
    # address (never per token presented) and the sampled refusal log.
    def token(self, token_hash: str) -> str:
        return f"{self.prefix}token:{token_hash}"

    @property
    def tokens(self) -> str:
        return f"{self.prefix}tokens"

    def session(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    def stream_ticket(self, ticket_id: str) -> str:
        """A stream ticket that was used (SET NX, expiring with the ticket): a second use finds it."""
        return f"{self.prefix}stream-ticket:{ticket_id}"

    def write_rate(self, token_hash: str) -> str:
        return f"{self.prefix}write-rate:{token_hash}"

    @property
    def audit(self) -> str:
        return f"{self.prefix}audit"

    def refusals(self, source: str) -> str:
        return f"{self.prefix}refusals:{source}"

    @property
    def audit_refusals(self) -> str:
        return f"{self.prefix}audit:refusals"

    @property
    def pattern(self) -> str:
        """Glob that matches every key of this deployment (for SCAN-based cleanup)."""
        return f"{self.prefix}*"


def series_id(device: str, metric: str, tags: Mapping[str, str] | None = None) -> str:
    """A series' canonical id: ``device/metric``, then ``{k=v,k2=v2}`` with the tags sorted by key.

    Slugs cannot contain '/', '{', '=' or ','; in tag values '\\', ',' and '}'
    are escaped with a backslash, so no two series share an id. A series
    without tags keeps the id it had before tags were part of the identity.
    """
    if not tags:
        return f"{device}/{metric}"
    inner = ",".join(f"{k}={_escape(tags[k])}" for k in sorted(tags))
    return f"{device}/{metric}{{{inner}}}"


def _escape(value: str) -> str:
    if "\\" in value or "," in value or "}" in value:
        return value.replace("\\", "\\\\").replace(",", "\\,").replace("}", "\\}")
    return value


def device_topic(device: str) -> str:
    return f"device/{device}"
