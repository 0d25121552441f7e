"""A wheel built from the repo serves the dashboard when installed outside the checkout.

The checkout keeps ``templates/`` and ``static/`` top-level; ``pyproject.toml``
maps them into the package for the wheel (``app/templates``, ``app/static``),
where ``app/web/assets.py`` looks first. These tests build that wheel (offline:
no build isolation, the venv's setuptools), install it with ``--no-deps`` into
a fresh venv under a temporary directory (its dependencies come from this
venv's site-packages through a ``.pth`` file, nothing is downloaded), and run
hypercorn from a directory outside the checkout. Without the mapping the page
is a TemplateNotFound 500 and the static files 404.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .servers import free_port
from .waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
# What the build reads. Copied out, so the build leaves no build/ or egg-info
# in the checkout (a stale build/lib would leak deleted modules into wheels).
SOURCES = ("pyproject.toml", "README.md", "app", "templates", "static")
STEP_TIMEOUT = 120  # seconds, for each build / install subprocess
GRACE = ("--graceful-timeout", "3")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    python: Path
    venv: Path
    run_dir: Path


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would point Python back at the checkout."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "REDIS_URL", "PORT")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("LIVEDASH_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    assert not base.resolve().is_relative_to(ROOT), "the temporary directory must lie outside the checkout"

    source = base / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    dist = base / "dist"
    build = ["wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(source)]
    _run([sys.executable, "-m", "pip", *build], cwd=base)
    (wheel,) = dist.glob("livedash-*.whl")

    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base)
    python = venv / "bin" / "python"
    install = ["--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)]
    _run([sys.executable, "-m", "pip", *install], cwd=base)
    # The dependencies: this venv's site-packages, appended to the new venv's
    # path. A plain path line adds the directory only; the .pth files in it
    # (this checkout's editable-install finder among them) are not run.
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site_packages = Path(_run([str(python), "-c", purelib], cwd=base).strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site_packages / "zz_livedash_test_deps.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))

    run_dir = base / "run"
    run_dir.mkdir()
    return Installed(wheel=wheel, python=python, venv=venv, run_dir=run_dir)


def _checkout_files(folder: str) -> list[str]:
    top = ROOT / folder
    return sorted(
        path.relative_to(top).as_posix()
        for path in top.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def test_wheel_carries_templates_static_and_lua(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    expected = [f"app/templates/{name}" for name in _checkout_files("templates")]
    expected += [f"app/static/{name}" for name in _checkout_files("static")]
    expected += [f"app/storage/lua/{path.name}" for path in sorted((ROOT / "app" / "storage" / "lua").glob("*.lua"))]
    assert any(name.startswith("app/static/vendor/") for name in expected)
    assert any(name.startswith("app/templates/fragments/") for name in expected)
    missing = [name for name in expected if name not in names]
    assert not missing, f"not in {installed.wheel.name}: {missing}"
    # Every package of the checkout (a directory with an __init__.py) is in the wheel.
    packages = sorted(path.parent.relative_to(ROOT).as_posix() for path in (ROOT / "app").rglob("__init__.py"))
    assert [package for package in packages if f"{package}/__init__.py" not in names] == []


@pytest.fixture
def served(installed: Installed, redis_url: str, server_env: dict[str, str]) -> Iterator[str]:
    """hypercorn from the installed wheel, run from a directory outside the checkout."""
    port = free_port()
    log_path = installed.run_dir / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(installed.python), "-m", "hypercorn", "app:create_app()", "--bind", f"127.0.0.1:{port}", *GRACE],
            cwd=installed.run_dir,
            env=_clean_env(**server_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
            try:
                return httpx.get(url + "/readyz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(ready, timeout=30, what=f"the installed app on {url}")
            yield url
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)


def test_installed_wheel_serves_the_dashboard(installed: Installed, served: str) -> None:
    # The server imported the wheel's copy, not the checkout's.
    show = "import app, app.web.assets as a; print(app.__file__); print(a.TEMPLATES); print(a.STATIC)"
    where = _run([str(installed.python), "-c", show], cwd=installed.run_dir, env=_clean_env()).split()
    venv = installed.venv.resolve()
    for path in where:
        assert Path(path).resolve().is_relative_to(venv), f"{path} is not inside {venv}"
        assert not Path(path).resolve().is_relative_to(ROOT), f"{path} is inside the checkout"

    page = httpx.get(served + "/", timeout=10.0)
    assert page.status_code == 200, page.text[:2000]
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="tiles"' in page.text and 'id="status"' in page.text

    # Every static file the page links to is served, byte for byte the checkout's.
    linked = sorted(set(re.findall(r'(?:src|href)="/static/([^"?#]+)', page.text)))
    assert "livedash.css" in linked
    assert any(name.startswith("vendor/htmx/htmx-") for name in linked), linked
    for name in linked:
        response = httpx.get(f"{served}/static/{name}", timeout=10.0)
        assert response.status_code == 200, f"/static/{name}: {response.status_code}"
        assert response.content == (ROOT / "static" / name).read_bytes(), f"/static/{name} differs from the checkout's"
