"""A real Directus's access tokens are livedash credentials through the Directus preset (issue 18).

Directus 11.16.1 (installed with npm by .ci/run, under
``LIVEDASH_TEST_DIRECTUS_DIR``) is bootstrapped against the machine's
PostgreSQL (a database of its own, dropped afterwards) and started on a free
port. Its ``/auth/login`` access token (HS256 with its SECRET; claims ``id``,
``role``, ``app_access``, ``admin_access``, ``iss: "directus"``) is then a
Bearer token for livedash: an admin user is admin, a user of a mapped role
is an editor. Skipped when Directus or PostgreSQL is not there, unless
``LIVEDASH_TEST_REQUIRE_DIRECTUS=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from app import create_app
from app.settings import Settings

from .servers import free_port
from .test_security import ADMIN_TOKEN, SECRET
from .waiting import wait_until

DIRECTUS_DIR = Path(os.environ.get("LIVEDASH_TEST_DIRECTUS_DIR", str(Path.home() / ".cache/livedash-directus")))
CLI = DIRECTUS_DIR / "node_modules" / "directus" / "cli.js"
REQUIRED = os.environ.get("LIVEDASH_TEST_REQUIRE_DIRECTUS") == "1"
DIRECTUS_SECRET = "directus-shared-secret-" + "0123456789abcdef" * 2
ADMIN_EMAIL = "admin@example.com"
PASSWORD = "directus-test-password-1"


def _missing() -> str | None:
    if not CLI.exists():
        return f"Directus is not installed at {DIRECTUS_DIR} (npm install directus@11.16.1; .ci/run does)"
    if shutil.which("node") is None or shutil.which("psql") is None:
        return "node or psql is missing"
    probe = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "select 1"], capture_output=True)
    if probe.returncode != 0:
        return "PostgreSQL does not answer on 127.0.0.1:5432 as postgres"
    return None


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True, capture_output=True)


@dataclass
class Directus:
    url: str

    def login(self, email: str, password: str) -> str:
        answer = httpx.post(f"{self.url}/auth/login", json={"email": email, "password": password}, timeout=10)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["data"]["access_token"])


@pytest.fixture(scope="module")
def directus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directus]:
    missing = _missing()
    if missing:
        if REQUIRED:
            pytest.fail(missing)
        pytest.skip(missing)
    database = "livedash_directus_" + uuid.uuid4().hex[:8]
    psql(f"CREATE DATABASE {database}")
    port = free_port()
    log_path = tmp_path_factory.mktemp("directus") / "directus.log"
    env = {
        **os.environ,
        "DB_CLIENT": "pg",
        "DB_HOST": "127.0.0.1",
        "DB_PORT": "5432",
        "DB_DATABASE": database,
        "DB_USER": "postgres",
        "SECRET": DIRECTUS_SECRET,
        "ADMIN_EMAIL": ADMIN_EMAIL,
        "ADMIN_PASSWORD": PASSWORD,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TELEMETRY": "false",
        "LOG_LEVEL": "warn",
        "CACHE_ENABLED": "false",
        "RATE_LIMITER_ENABLED": "false",
    }
    process: subprocess.Popen[bytes] | None = None
    try:
        with open(log_path, "wb") as log:
            subprocess.run(
                ["node", str(CLI), "bootstrap"],
                cwd=DIRECTUS_DIR,
                env=env,
                stdout=log,
                stderr=log,
                check=True,
                timeout=100,
            )
            process = subprocess.Popen(
                ["node", str(CLI), "start"], cwd=DIRECTUS_DIR, env=env, stdout=log, stderr=log, start_new_session=True
            )

        def up() -> bool:
            assert process is not None and process.poll() is None, log_path.read_text()[-2000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/server/ping", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=60, interval=0.2, what="Directus to answer /server/ping")
        yield Directus(f"http://127.0.0.1:{port}")
    finally:
        if process is not None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


@pytest.mark.timeout(240)
async def test_directus_access_tokens_map_to_livedash_roles(
    directus: Directus, make_settings: Callable[..., Settings]
) -> None:
    admin_token = directus.login(ADMIN_EMAIL, PASSWORD)
    auth = {"Authorization": f"Bearer {admin_token}"}
    # A role and a user in it, made through Directus's own API.
    role = httpx.post(f"{directus.url}/roles", json={"name": "Plant editors"}, headers=auth, timeout=10)
    assert role.status_code == 200, role.text
    role_id = role.json()["data"]["id"]
    email = "bob@example.com"
    user = httpx.post(
        f"{directus.url}/users", json={"email": email, "password": PASSWORD, "role": role_id}, headers=auth, timeout=10
    )
    assert user.status_code == 200, user.text
    user_id = user.json()["data"]["id"]
    editor_token = directus.login(email, PASSWORD)
    claims = jwt.decode(editor_token, options={"verify_signature": False})
    assert (claims["iss"], claims["id"], claims["role"], claims["admin_access"]) == (
        "directus",
        user_id,
        role_id,
        False,
    )

    settings = make_settings(
        auth="on",
        secret_key=SECRET,
        admin_token=ADMIN_TOKEN,
        jwt_preset="directus",
        jwt_secret=DIRECTUS_SECRET,
        jwt_role_map=f"{role_id}=editor",
    )
    application = create_app(settings)
    async with application.test_app():
        client = application.test_client()
        admin = await (await client.get("/api/session", headers=auth)).get_json()
        assert admin["role"] == "admin" and admin["subject"].startswith("jwt:")
        editor = {"Authorization": f"Bearer {editor_token}"}
        who = await (await client.get("/api/session", headers=editor)).get_json()
        assert (who["role"], who["subject"]) == ("editor", f"jwt:{user_id}")
        note = await client.post("/api/annotations", json={"device": "pump-1", "text": "from Directus"}, headers=editor)
        assert note.status_code == 201
        assert (await note.get_json())["author_id"] == f"jwt:{user_id}"
        rule = {"device": "pump-1", "metric": "t", "op": "above", "threshold": 1}
        assert (await client.post("/api/alerts/rules", json=rule, headers=editor)).status_code == 403
        # Another Directus (another SECRET) is not this one.
        forged = jwt.encode(
            {**claims, "admin_access": True}, "some-other-directus-secret-0123456789", algorithm="HS256"
        )
        refused = await client.get("/api/session", headers={"Authorization": f"Bearer {forged}"})
        assert refused.status_code == 401 and (await refused.get_json())["reason"] == "bad_signature"
