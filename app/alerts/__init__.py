"""Alerts that reach people: no-data deadlines, notification channels and their deliveries.

Rules themselves are versioned documents (``app/documents/alert_rules.py``)
evaluated in Lua (``alert_eval.lua``) on ingest and on rule writes. This
package holds what runs beside them:

- ``nodata.py``: the sweeper every process runs; ``alert_sweep.lua`` fires
  each no-data transition exactly once across processes.
- ``addresses.py``: which hosts a channel URL may point at.
- ``channels.py``: the channels admins manage and each one's delivery log.
- ``payloads.py``: the bodies a webhook and a chat webhook receive, signed.
- ``delivery.py``: the outbox consumer: a Redis Stream with a consumer
  group, taken over with XAUTOCLAIM when a process dies, retried with
  exponential backoff and jitter, bounded attempts.
- ``marks.py``: acknowledge and silence (``alert_mark.lua``), the firing
  list and the transition history.
- ``service.py``: ``Alerting``, the one object the app holds for all this.
"""
