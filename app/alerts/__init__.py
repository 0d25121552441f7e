"""Alerts that reach people: what runs beside the rules.

Rules themselves are versioned documents (``app/documents/alert_rules.py``)
evaluated in Lua (``alert_eval.lua``) on ingest and on rule writes. This
package holds what runs beside them:

- ``nodata.py``: the sweeper every process runs; ``alert_sweep.lua`` fires
  each no-data transition exactly once across processes.
- ``service.py``: ``Alerting``, the one object the app holds for all this.
"""
