from __future__ import annotations

import httpx

from .servers import AppServer
from .types import QuartClient


async def test_healthz(client: QuartClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200


def test_real_server(server: AppServer) -> None:
    assert httpx.get(server.url + "/readyz").json()["status"] == "ok"
