"""Distributed load across two "hosts": the Locust master and its only worker in two network
namespaces joined by a veth pair, each in its own working directory, so that no sample can
reach the master's run folder through a shared file: only over Locust's own connection.

The target (a `perflab.targets` server) runs in the master's namespace, as the services would.
Needs root and `ip netns` (Linux); skipped, saying why, where namespaces cannot be made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from harness_helpers import saved_run

from perflab.procs import ManagedProcess, spawn

BIN = Path(sys.executable).parent


def locust_total(log: Path) -> int:
    """The request count of the table Locust prints when it stops (its final count)."""
    for line in log.read_text().splitlines():
        if line.split()[:1] == ["Aggregated"]:
            return int(line.split()[1])
    raise AssertionError(f"no summary table in {log}")


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@dataclass
class TwoHosts:
    master_ns: str
    worker_ns: str
    master_ip: str
    worker_ip: str


@pytest.fixture
def two_hosts() -> Iterator[TwoHosts]:
    if not sys.platform.startswith("linux") or shutil.which("ip") is None:
        pytest.skip("needs Linux network namespaces and the `ip` command (iproute2)")
    tag = f"{os.getpid() % 100000}"
    hosts = TwoHosts(f"plab-m{tag}", f"plab-w{tag}", "10.231.0.1", "10.231.0.2")
    veth_m, veth_w = f"plm{tag}", f"plw{tag}"
    made: list[str] = []
    try:
        for ns in (hosts.master_ns, hosts.worker_ns):
            r = _ip("netns", "add", ns)
            if r.returncode != 0:
                pytest.skip(f"cannot create a network namespace (root needed): {r.stderr.strip()}")
            made.append(ns)
        steps = [
            ["link", "add", veth_m, "type", "veth", "peer", "name", veth_w],
            ["link", "set", veth_m, "netns", hosts.master_ns],
            ["link", "set", veth_w, "netns", hosts.worker_ns],
            ["-n", hosts.master_ns, "addr", "add", f"{hosts.master_ip}/24", "dev", veth_m],
            ["-n", hosts.worker_ns, "addr", "add", f"{hosts.worker_ip}/24", "dev", veth_w],
            ["-n", hosts.master_ns, "link", "set", veth_m, "up"],
            ["-n", hosts.worker_ns, "link", "set", veth_w, "up"],
            ["-n", hosts.master_ns, "link", "set", "lo", "up"],
            ["-n", hosts.worker_ns, "link", "set", "lo", "up"],
        ]
        for step in steps:
            r = _ip(*step)
            if r.returncode != 0:
                pytest.skip(f"cannot join the namespaces (`ip {' '.join(step)}`): {r.stderr}")
        yield hosts
    finally:
        for ns in made:  # deleting a namespace deletes its end of the veth pair, and the pair
            _ip("netns", "del", ns)


def _in(ns: str, name: str, argv: list[str], cwd: Path, out: Path) -> ManagedProcess:
    env = {
        "PERFLAB_DATA_DIR": str(cwd / "data"),
        "PERFLAB_RESULTS_DIR": str(cwd / "results"),
    }
    cwd.mkdir(parents=True, exist_ok=True)
    full = ["ip", "netns", "exec", ns, *argv]
    proc = spawn(name, full, env=env, output=out, cwd=cwd)
    return proc


@pytest.mark.slow
def test_the_only_worker_on_another_host_sends_every_sample(
    two_hosts: TwoHosts, tmp_path: Path
) -> None:
    master_dir, worker_dir = tmp_path / "master-host", tmp_path / "worker-host"
    h = two_hosts
    target_port, master_port = 18080, 15557  # a fresh namespace: nothing else listens there
    started: list[ManagedProcess] = []
    try:
        started.append(
            _in(h.master_ns, "target", [str(BIN / "python"), "-m", "perflab.targets", "--mode",
                "sleep", "--ms", "3", "--host", h.master_ip, "--port", str(target_port)],
                master_dir, tmp_path / "target.out")
        )  # fmt: skip
        master = _in(
            h.master_ns, "master",
            [str(BIN / "perflab"), "load", "--host", f"http://{h.master_ip}:{target_port}",
             "--path", "/", "--users", "4", "--duration", "6", "--warmup", "1",
             "--expect-workers", "1", "--master-bind", f"{h.master_ip}:{master_port}",
             "--allow-remote"],
            master_dir, tmp_path / "master.out",
        )  # fmt: skip
        started.append(master)
        worker = _in(
            h.worker_ns, "worker",
            [str(BIN / "perflab"), "worker", "--master", f"{h.master_ip}:{master_port}",
             "--wait", "120", "--log", str(tmp_path / "worker-locust.log")],
            worker_dir, tmp_path / "worker.out",
        )  # fmt: skip
        started.append(worker)
        code = master.popen.wait(timeout=300)
        out = (tmp_path / "master.out").read_text()
        assert code == 0, out[-3000:]
        worker.popen.wait(timeout=60)  # the master's quit ends the worker too
    finally:
        for proc in reversed(started):
            proc.stop()

    run = saved_run(out)
    assert run.is_relative_to(master_dir)
    samples = pd.read_csv(run / "samples.csv.gz", dtype={"request_id": "string"})
    raw = pd.read_csv(run / "raw" / "samples-target.csv")
    # every sample came from the worker's process, on the other host
    assert len(set(raw["worker"])) == 1
    assert not list(worker_dir.rglob("samples*.csv")), "the worker wrote samples locally"
    # ... and the master has all of them: Locust's own final count, request for request
    locust = locust_total(run / "raw" / "locust-target.log")
    print(f"\nLocust counted {locust} requests; the master's run folder holds {len(raw)} samples")
    assert locust == len(raw) == len(samples) > 0
    report = pd.read_json(run / "raw" / "samples-target.workers.json")
    assert report["samples"].sum() == len(raw) and not report["silent"].any()


def test_a_worker_that_cannot_reach_its_master_says_so_in_one_line(capsys) -> None:
    from perflab import cli
    from perflab.procs import free_port

    port = free_port()  # nothing listens there
    assert cli.main(["worker", "--master", f"127.0.0.1:{port}", "--wait", "0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"cannot reach the Locust master at 127.0.0.1:{port}" in err
    assert cli.main(["worker", "--master", "127.0.0.1:notaport"]) == 2
    assert "not a number" in capsys.readouterr().err
