"""The frameworks comparison is fair only if the four apps answer the same request with the same
document: each is started the way the lab starts it (gunicorn for WSGI, uvicorn for ASGI) and
asked over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from perflab import services
from perflab.procs import free_port
from perflab.services import ServiceHandle, start_service
from perflab_services.catalog.schemas import ProductDetail
from perflab_services.frameworks.body import product_detail

FRAMEWORKS = {"flask": "gunicorn", "django": "gunicorn", "fastapi-def": "uvicorn"}
FRAMEWORKS["fastapi-async"] = "uvicorn"


@pytest.fixture(scope="module")
def served(tmp_root: Path) -> Iterator[dict[str, ServiceHandle]]:
    started: dict[str, ServiceHandle] = {}
    try:
        for name in FRAMEWORKS:
            started[name] = start_service(name, {}, tmp_root / "logs", label=f"frameworks-{name}")
        yield started
    finally:
        for svc in started.values():
            svc.stop()


@pytest.mark.slow
def test_every_framework_sends_the_same_document(served):
    answers = {name: httpx.get(f"{svc.url}/products/42") for name, svc in served.items()}
    for name, resp in answers.items():
        assert resp.status_code == 200, (name, resp.text)
        assert resp.headers["content-type"].startswith("application/json"), name
    # Same bytes, too (same key order and separators); Flask ends its JSON with a newline.
    raw = {name: resp.content.rstrip(b"\n") for name, resp in answers.items()}
    assert len(set(raw.values())) == 1, raw
    assert json.loads(raw["flask"]) == product_detail(42)
    # the path parameter reaches the body: a route that ignored it would not pass
    assert httpx.get(f"{served['django'].url}/products/43").json()["id"] == 43


@pytest.mark.slow
def test_each_is_served_by_its_production_server(served):
    for name, server in FRAMEWORKS.items():
        resp = httpx.get(f"{served[name].url}/healthz")
        assert resp.status_code == 200 and resp.json()["framework"] == name
        assert resp.headers["server"].startswith(server), (name, resp.headers["server"])


@pytest.mark.slow
def test_bad_paths_are_client_errors_with_no_traceback(served):
    for name, svc in served.items():
        for path in ("/products/abc", "/products/", "/nope", "/products/1/extra"):
            resp = httpx.get(svc.url + path)
            assert 400 <= resp.status_code < 500, (name, path, resp.status_code)
            assert "Traceback" not in resp.text


def test_the_document_has_the_shape_of_the_catalog_product_page():
    doc = ProductDetail.model_validate(product_detail(7))
    assert doc.id == 7 and len(doc.latest_reviews) == 5
    assert {r.product_id for r in doc.latest_reviews} == {7}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FRAMEWORKS))
def test_the_app_stops_when_the_lab_that_started_it_is_gone(name, tmp_path):
    """The parent watchdog, without the kernel's help: the server is started outside the lab's
    `spawn` (no PR_SET_PDEATHSIG), watching a stand-in for the lab that is then killed. gunicorn
    runs two workers: the master must take them down with it."""
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    port = free_port()
    if name in services.WSGI_APPS:
        argv = services._gunicorn_argv(services.WSGI_APPS[name], port, workers=2)
    else:
        argv = services._uvicorn_argv(services.APPS[name], port, workers=1)
    env = {**os.environ, "PERFLAB_PARENT_PID": str(stand_in.pid)}
    server = subprocess.Popen(
        argv,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the workers can be found after
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert server.poll() is None, "the server exited before it answered"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        stand_in.kill()
        stand_in.wait()
        assert server.wait(timeout=30) is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _group_alive(server.pid):
            time.sleep(0.1)
        assert not _group_alive(server.pid), "a worker outlived its master"
    finally:
        stand_in.kill()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in process group `pgid` (from /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
