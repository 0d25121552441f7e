"""JSON answers, built one way: orjson bytes, the right content type, any headers."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from quart import Response

NO_STORE: Mapping[str, str] = {"Cache-Control": "no-store"}


def json_response(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json", headers=dict(headers or {}))
