"""Capacity search: the SLO syntax, the verdict of one step (the generator's limit told apart
from the service's), the search itself, and - end to end, with real Locust - the known capacity
of a loopback server that serves at most N requests per second."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from perflab import capacity, cli, paths
from perflab.capacity import SLO, Step, find_capacity, judge
from perflab.errors import LabError
from perflab.recorder import COLUMNS


def test_slo_syntax() -> None:
    assert SLO.parse("p99<250ms") == SLO(99, 250, 0.01)
    assert SLO.parse("p95<0.5s,errors<0.1%") == SLO(95, 500, 0.001)
    for bad in ("p95>100ms", "latency<1", "p100<5ms", "errors<x%"):
        with pytest.raises(LabError, match="SLO"):
            SLO.parse(bad)


def _samples(n: int, rate: float, service_ms: float, lateness_ms: float, ok: bool = True):
    t = 1e6 + np.arange(n) / rate
    late = lateness_ms / 1000
    return pd.DataFrame(
        {c: 0.0 for c in COLUMNS}
        | {
            "t_intended": t,
            "t_start": t + late,
            "service_ms": service_ms,
            "lateness_ms": lateness_ms,
            "latency_ms": service_ms + lateness_ms,
            "ok": ok,
        }
    )


def test_a_late_generator_is_not_blamed_on_the_service() -> None:
    slo = SLO(95, 100, 0.01)
    fine = judge(_samples(500, 100, 5, 0.1), 100, slo, warmup=0)
    assert fine.verdict == "ok"
    # requests left 300 ms late while the service answered in 5 ms: the generator's limit
    gen = judge(_samples(500, 100, 5, 300), 100, slo, warmup=0)
    assert gen.verdict == "generator" and "lateness" in gen.reason
    # sent on time, answered slowly: the service's limit
    slow = judge(_samples(500, 100, 300, 0.1), 100, slo, warmup=0)
    assert slow.verdict == "slow"
    errors = judge(_samples(500, 100, 5, 0.1, ok=False), 100, slo, warmup=0)
    assert errors.verdict == "errors"
    # Locust itself said its CPU was saturated
    assert judge(_samples(500, 100, 5, 0.1), 100, slo, 0, cpu_warning=True).verdict == "generator"


def _model(capacity_rps: float, generator_rps: float = 1e9):
    """A pure function of the rate, to test the search (not a measurement)."""

    def measure(rate: float) -> Step:
        if rate > generator_rps:
            return Step(rate, 1, rate, rate, 500, 1, 499, 0, False, "generator", "late")
        verdict = "ok" if rate <= capacity_rps else "slow"
        latency = 1 if verdict == "ok" else 1000  # far past the SLO: not marginal
        return Step(rate, 1, rate, rate, latency, 1, 0, 0, False, verdict, verdict)

    return measure


def test_the_search_brackets_the_capacity() -> None:
    slo = SLO()
    cap = find_capacity(_model(730), slo, start=50, precision=0.05)
    assert cap.low is not None and cap.high is not None
    assert cap.low <= 730 < cap.high and cap.high / cap.low - 1 <= 0.05
    assert not cap.generator_bound
    gen = find_capacity(_model(5000, generator_rps=300), slo, start=50)
    assert gen.generator_bound and gen.low == 200 and "generator" in gen.describe()
    early = find_capacity(_model(5000, generator_rps=10), slo, start=50)
    assert early.generator_bound and early.low is None and "saturated" in early.describe()
    low = find_capacity(_model(20), slo, start=50)  # below the start rate: bisects down
    assert low.low is not None and low.low <= 20 < (low.high or 0)


def test_a_step_that_breaks_by_little_is_measured_again() -> None:
    calls: list[float] = []

    def stall_once(rate: float) -> Step:  # holds up to 400/s, but the first 200/s step stalls
        calls.append(rate)
        if rate == 200 and calls.count(200) == 1:
            return Step(rate, 1, rate, rate, 150, 150, 0, 0, False, "slow", "a stall")
        verdict = "ok" if rate <= 400 else "slow"
        return Step(rate, 1, rate, rate, 1 if verdict == "ok" else 1000, 1, 0, 0, False,
                    verdict, verdict)  # fmt: skip

    cap = find_capacity(stall_once, SLO(95, 100, 0.01), start=50, precision=0.1)
    assert calls.count(200) == 2 and cap.low is not None and cap.low >= 400


N = 40  # requests per second the test server serves at most


class _AtMostN(BaseHTTPRequestHandler):
    """One request at a time, each 1/N s: a queue whose server finishes N requests a second.
    Slots are handed out on a clock (not by sleeping 1/N after the last), so no drift."""

    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    next_free = 0.0

    def do_GET(self) -> None:
        with _AtMostN.lock:
            slot = max(time.monotonic(), _AtMostN.next_free)
            _AtMostN.next_free = slot + 1 / N
        time.sleep(max(0.0, slot + 1 / N - time.monotonic()))
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def n_per_second_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AtMostN)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_finds_the_capacity_of_a_server_that_serves_n_per_second(n_per_second_server: str) -> None:
    code = cli.main(
        ["capacity", "--host", n_per_second_server, "--path", "/", "--slo", "p95<250ms",
         "--start", str(N // 4), "--step-duration", "5", "--step-warmup", "1",
         "--precision", "10%"]
    )  # fmt: skip
    assert code == 0
    run_dir = sorted(paths.RESULTS.glob("*-capacity"))[-1]
    doc = json.loads((run_dir / "capacity.json").read_text())
    found = doc["variants"][0]
    steps = pd.read_csv(run_dir / "capacity-steps.csv")
    print(f"\n{steps[['rate', 'verdict', 'latency_ms', 'ok_rps', 'reason']]}\n{found['verdict']}")
    assert not found["generator_bound"]
    # Served one at a time at 1/N s each, it sustains a bit under N and breaks above it
    # (a stall of a busy machine can cost a step below N: the lower bound has room for that).
    assert 0.6 * N <= found["low"] <= N * 1.05
    assert found["low"] < found["high"] <= 1.3 * N
    assert (run_dir / "capacity.png").stat().st_size > 0
    assert len(list((run_dir / "raw").glob("samples-target-*rps*.csv"))) == len(steps)
    assert capacity.SLO(**doc["slo"]) == SLO(95, 250, 0.01)
    # a server the lab did not start: the run's manifest says so
    target = json.loads((run_dir / "manifest.json").read_text())["target"]
    assert target["external"] is True and target["url"] == n_per_second_server


def test_bad_capacity_input_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, says in [
        (["capacity", "caching", "--slo", "p95>1ms"], "SLO 'p95>1ms' not understood"),
        (["capacity"], "give an EXPERIMENT, or --host URL"),
        (["capacity", "--host", "http://127.0.0.1:1"], "--host needs --path"),
        (["capacity", "--host", "http://10.1.2.3:80", "--path", "/"], "not a loopback"),
        (["capacity", "caching", "--step-warmup", "9"], "--step-warmup must be shorter"),
    ]:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
