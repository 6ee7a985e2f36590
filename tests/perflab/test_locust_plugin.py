"""The recorder plugin on a locustfile written from Locust's documentation, unchanged.

`perflab load --locustfile mine.py` must record every request Locust made (the same count as
Locust's own, per request name, failures included), with sub-millisecond resolution, each with
the `X-Request-ID` the server really received, in the same run folder as any run. The server is
a small standard-library HTTP server in this process that notes what each request carried.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
from harness_helpers import perflab_cli, saved_run

from perflab.loopback import check_target

pytestmark = pytest.mark.slow  # real Locust processes

# As Locust's documentation writes one: two user classes, weighted tasks, think time, an
# on_start, nothing about perflab.
DOC_LOCUSTFILE = """
from locust import FastHttpUser, HttpUser, between, task


class WebsiteUser(HttpUser):
    wait_time = between(1, 2)

    def on_start(self):
        self.client.get("/")  # every name below is requested at least once, whatever the dice

    @task
    def index(self):
        self.client.get("/")

    @task(3)
    def view_items(self):
        for item_id in range(3):
            self.client.get(f"/item?id={item_id}", name="/item")


class ApiUser(FastHttpUser):
    wait_time = between(1, 2)

    def on_start(self):
        self.client.get("/missing")

    @task
    def about(self):
        self.client.get("/about")

    @task
    def missing(self):
        self.client.get("/missing")
"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Locust's clients use it

    def do_GET(self) -> None:
        self.server.seen.append(  # type: ignore[attr-defined]
            (self.path.split("?")[0], self.headers.get("Host"), self.headers.get("X-Request-ID"))
        )
        status = 404 if self.path == "/missing" else 200
        body = b"ok\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Cache", "hit")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def noting_server() -> Iterator[tuple[str, list]]:
    """Listens where `localhost` leads (check_target tells), so the test can use the name."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", port), _Handler)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{port}", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def locust_summary(log: Path) -> dict[str, tuple[int, int]]:
    """{name: (requests, failures)} from the table Locust prints when it stops (its final
    count; its --csv stats are rewritten once a second and may miss the last one)."""
    rows = {}
    for line in log.read_text().splitlines():
        m = re.match(r"^(?:GET|POST)\s+(\S+)\s+(\d+)\s+(\d+)\(", line)
        if m:
            rows.setdefault(m.group(1), (int(m.group(2)), int(m.group(3))))
        if line.split()[:1] == ["Aggregated"]:
            break
    return rows


def test_a_documentation_locustfile_records_every_request(noting_server, tmp_path) -> None:
    host, received = noting_server
    mine = tmp_path / "mine.py"
    mine.write_text(DOC_LOCUSTFILE)
    r = perflab_cli(
        "load", "--host", host, "--locustfile", str(mine),
        "--users", "6", "--duration", "5", "--warmup", "0.5",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    run = saved_run(r.stdout)
    samples = pd.read_csv(run / "samples.csv.gz", dtype={"request_id": "string"})
    seen = [r for r in received if r[0] != "/metrics"]  # `load` looks for /metrics first

    # every request Locust counted, per name, failures too
    locust = locust_summary(run / "raw" / "locust-target.log")
    assert set(locust) == {"/", "/item", "/about", "/missing"}, locust
    for name, (count, failures) in locust.items():
        mine_ = samples[samples["endpoint"] == name]
        assert len(mine_) == count, (name, len(mine_), count)
        assert int((~mine_["ok"].astype(bool)).sum()) == failures, name
    assert (samples.loc[samples["endpoint"] == "/missing", "status"] == 404).all()
    assert samples.loc[samples["endpoint"] != "/missing", "ok"].astype(bool).all()
    assert len(samples) == len(seen)  # and the server saw exactly those

    # sub-millisecond resolution (Locust's own stats round to whole ms): nearly every latency
    # has a fractional millisecond, and the summary's percentiles keep it. No speed asserted:
    # on a busy machine loopback answers may take tens of milliseconds.
    lat = samples["latency_ms"].to_numpy(dtype=float)
    assert (lat % 1.0 > 0).mean() > 0.9, lat[:20]
    assert len(np.unique(np.round(lat, 3))) > len(lat) / 2  # microseconds, not coarse buckets
    assert (samples["lateness_ms"] == 0).all()  # closed model: sent when meant
    assert np.allclose(samples["latency_ms"], samples["service_ms"], atol=1e-3)
    assert set(samples.loc[samples["endpoint"] != "/missing", "x_cache"]) == {"hit"}

    # each request carried an X-Request-ID (a W3C trace id) that the server received
    ids = samples["request_id"].tolist()
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) and set(i) != {"0"} for i in ids)
    assert sorted(ids) == sorted(rid for _, _, rid in seen)
    # the host name was resolved once, Locust connected to that address, the name kept
    port = urlsplit(host).port
    assert check_target(host).host_header == f"localhost:{port}"
    assert {h for _, h, _ in seen} == {f"localhost:{port}"}

    # the run folder holds Locust's own files beside ours
    raw = run / "raw"
    for name in ("locust-target.html", "locust-target_stats.csv", "samples-target.csv"):
        assert (raw / name).is_file(), name
    assert "/about" in (raw / "locust-target.html").read_text()
    summary = pd.read_csv(run / "summary.csv")
    assert set(summary["endpoint"]) <= set(locust)
    assert (summary["p50_ms"] % 1.0 > 0).any(), summary  # sub-ms percentiles


def test_open_model_needs_the_lab_locustfile(tmp_path) -> None:
    mine = tmp_path / "mine.py"
    mine.write_text(DOC_LOCUSTFILE)
    r = perflab_cli(
        "load", "--host", "http://127.0.0.1:9", "--locustfile", str(mine), "--rate", "10"
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "--rate (the open model) needs --path" in r.stderr
