"""Starting the gateway from the lab and from the command line, with a catalog variant behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from perflab.lab import Lab
from perflab.paths import ROOT

pytestmark = pytest.mark.slow  # real gateways and catalogs


def test_lab_starts_a_catalog_variant_behind_the_gateway(database_url, tmp_root):
    with Lab(size="tiny", database_url=database_url, log_dir=tmp_root / "logs") as lab:
        gw = lab.service("gateway", label="lab-gw", queries="naive", retries=1)
        (catalog,) = gw.upstreams
        assert httpx.get(f"{catalog.url}/variant").json()["queries"] == "naive"
        assert gw.env["GATEWAY_CATALOG_URL"] == catalog.url
        assert gw.env["GATEWAY_RETRIES"] == "1"
        assert httpx.get(f"{gw.url}/products/1").status_code == 200
        # An explicit catalog_url: the gateway fronts that one and starts none.
        other = lab.service("gateway", label="lab-gw2", catalog_url=catalog.url)
        assert other.upstreams == []
        assert httpx.get(f"{other.url}/products/1").status_code == 200
        gw.stop()
        assert not catalog.running, "stopping the gateway stops the catalog started for it"
    assert not other.running


def test_perflab_serve_gateway(database_url, tmp_root):
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "perflab.cli", "serve", "gateway", "--size", "tiny",
         "--queries", "naive", "--cache", "memory"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        out = "".join(lines)
        catalog_url = re.search(r"catalog \(queries=naive, cache=memory[^)]*\) at (\S+)", out)
        gateway_url = re.search(r"gateway at (\S+)", out)
        assert catalog_url and gateway_url, out
        variant = httpx.get(f"{catalog_url[1]}/variant").json()
        assert (variant["queries"], variant["cache"]) == ("naive", "memory")
        assert httpx.get(f"{gateway_url[1]}/products/2").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    for url in (catalog_url[1], gateway_url[1]):
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            raise AssertionError(f"{url} still answers after serve stopped")
        except httpx.TransportError:
            pass
