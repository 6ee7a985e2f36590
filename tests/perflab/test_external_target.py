"""`perflab run EXPERIMENT --target URL`: an experiment's traffic against a service the lab did
not start (deployed on a cluster, say). Non-loopback targets are refused without
`--allow-remote`; what cannot be done there (start variants, profile, collect logs) is refused
or said; the samples are recorded as for any run, and the manifest says the target was external.
"""

from __future__ import annotations

import json
import socket

import pandas as pd
from harness_helpers import perflab_cli, saved_run

from perflab import paths
from perflab.cli import main

REMOTE = "http://192.0.2.1:8000"  # TEST-NET-1: never this machine, never routed


def one_line_error(capsys, argv: list[str]) -> str:
    before = set(paths.RESULTS.glob("*")) if paths.RESULTS.exists() else set()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out = capsys.readouterr()
    assert code == 2, out
    assert out.err.count("\n") == 1 and out.err.startswith("perflab"), out.err
    assert "Traceback" not in out.err
    after = set(paths.RESULTS.glob("*")) if paths.RESULTS.exists() else set()
    assert after == before, "a refused run made a run folder"
    return out.err


def test_a_remote_target_without_allow_remote_is_refused_in_one_line(capsys) -> None:
    err = one_line_error(capsys, ["run", "caching", "--target", REMOTE])
    assert "not a loopback address" in err and "--allow-remote" in err
    # a name that resolves off this machine is refused too, before any name is trusted
    err = one_line_error(capsys, ["run", "queries", "--target", "http://192.0.2.7"])
    assert "--allow-remote" in err


def test_bad_target_urls_are_one_line_errors(capsys) -> None:
    assert "not an http(s) URL" in one_line_error(
        capsys, ["run", "caching", "--target", "127.0.0.1:8000"]
    )
    assert "not an http(s) URL" in one_line_error(
        capsys, ["run", "caching", "--target", "ftp://127.0.0.1/"]
    )
    assert "invalid port" in one_line_error(
        capsys, ["run", "caching", "--target", "http://127.0.0.1:http"]
    )
    assert "cannot resolve" in one_line_error(
        capsys, ["run", "caching", "--target", "http://no-such-host.invalid:8000"]
    )
    with socket.socket() as s:  # a port nobody listens on: refused, not a run of errors
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        err = one_line_error(capsys, ["run", "caching", "--target", f"http://127.0.0.1:{port}"])
    assert "nothing answers at" in err


def test_what_an_external_target_cannot_do_is_refused_in_one_line(capsys) -> None:
    err = one_line_error(capsys, ["run", "caching", "--target", REMOTE, "--allow-remote",
                                  "--profile"])  # fmt: skip
    assert "--profile" in err and "did not start" in err
    err = one_line_error(capsys, ["run", "caching", "--target", REMOTE, "--allow-remote",
                                  "--variants", "none,redis"])  # fmt: skip
    assert "one variant" in err
    err = one_line_error(capsys, ["run", "caching", "--target", REMOTE, "--allow-remote",
                                  "--variants", "../x"])  # fmt: skip
    assert "one name of letters" in err
    err = one_line_error(capsys, ["run", "caching", "--allow-remote"])
    assert "--allow-remote goes with --target" in err


def test_a_run_against_a_service_started_separately_records_its_samples(start_catalog) -> None:
    """The catalog is started by the test, not by the run: the run only loads it."""
    svc = start_catalog("t-external", queries="optimized", cache="memory")
    r = perflab_cli(
        "run", "caching", "--target", svc.url, "--allow-remote", "--size", "tiny",
        "--users", "2", "--duration", "3", "--warmup", "0.5", "--variants", "memory",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    said = [ln for ln in r.stdout.splitlines() if ln.startswith("external target")]
    assert len(said) == 1, r.stdout  # what is not done, in one line
    assert "no profiler" in said[0] and "logs" in said[0] and "scraped" in said[0]
    path = saved_run(r.stdout)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["target"]["external"] is True and manifest["target"]["url"] == svc.url
    assert set(manifest["target"]["not_collected"]) >= {"variants", "profiles", "logs"}
    entry = manifest["experiments"]["caching"]
    assert list(entry["variants"]) == ["memory"] and entry["target"] == svc.url
    assert manifest["dataset"]["products"] == 200  # the tiny dataset the catalog serves

    samples = pd.read_csv(path / "samples.csv.gz")
    assert len(samples) > 20
    assert set(samples["experiment"]) == {"caching"} and set(samples["variant"]) == {"memory"}
    assert samples["ok"].all() and (samples["status"] == 200).all()  # ids exist in tiny
    assert samples["endpoint"].eq("GET /products/{id}").all()
    # every request Locust made is a sample: its own final count, from the table it prints
    # when it stops (its --csv stats are rewritten once a second and may miss the last ones)
    log = next((path / "raw").glob("locust-*.log")).read_text()
    total = next(int(ln.split()[1]) for ln in log.splitlines() if ln.split()[:1] == ["Aggregated"])
    assert len(samples) == total
    # its /metrics was scraped through the same URL; the lab started nothing to collect logs from
    metrics = pd.read_csv(path / "metrics.csv")
    assert "http_requests_total" in set(metrics["metric"])
    assert (path / "logs.jsonl").read_text() == ""
    assert svc.running  # the run did not stop what it did not start


def test_a_warm_run_against_an_external_target_reads_its_warm_set_first(start_catalog) -> None:
    svc = start_catalog("t-external-warm", queries="optimized", cache="memory")
    r = perflab_cli(
        "run", "caching", "--target", svc.url, "--size", "tiny", "--warm", "30",
        "--users", "2", "--duration", "2", "--warmup", "0",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    path = saved_run(r.stdout)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["experiments"]["caching"]["warm"] == 30
    samples = pd.read_csv(path / "samples.csv.gz")
    assert len(samples) > 20 and (samples["x_cache"] == "hit").all()
