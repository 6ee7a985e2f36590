"""Start and stop the sample services on free loopback ports: ASGI apps under uvicorn, WSGI apps
(the frameworks comparison's Flask and Django) under gunicorn, each as a subprocess."""

from __future__ import annotations

import shutil
import ssl
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from perflab import paths
from perflab.errors import LabError
from perflab.procs import ManagedProcess, free_port, port_in_use, spawn, wait_until

if TYPE_CHECKING:
    from perflab.profiling import ProcessProfile, ProfileSession

APPS = {
    "catalog": "perflab_services.catalog.main:create_app",
    "gateway": "perflab_services.gateway.main:create_app",
    # The frameworks comparison (perflab_services/frameworks): the same endpoint in each.
    "fastapi-def": "perflab_services.frameworks.fastapi_app:create_def_app",
    "fastapi-async": "perflab_services.frameworks.fastapi_app:create_async_app",
}
# WSGI apps, served by gunicorn as in production (settings and why: GUNICORN_CONF).
WSGI_APPS = {
    "flask": "perflab_services.frameworks.flask_app:create_app()",
    "django": "perflab_services.frameworks.django_app:application",
}
GUNICORN_CONF = "python:perflab_services.frameworks.gunicorn_conf"
# How every uvicorn the lab starts runs (the lab's services, and deploy/entrypoint.py's):
# - X-Forwarded-For ignored: uvicorn would believe any loopback peer, and here every client is
#   on loopback; a proxy is trusted only by a service setting (perflab_services/common/clients.py)
# - request heads bounded in size (64 KiB, a 431 above) and in time (5 s from connecting or from
#   the head's first byte), which uvicorn's fast parser does not do itself
#   (perflab_services/common/http.py); 5 s is also uvicorn's idle keep-alive default.
UVICORN_OPTIONS = [
    "--http",
    "perflab_services.common.http:GuardedHttpToolsProtocol",
    "--no-proxy-headers",
    "--timeout-keep-alive",
    "5",
    "--h11-max-incomplete-event-size",
    str(64 * 1024),
]


@dataclass
class ServiceHandle:
    """A running service: its URL, its settings, its log files. Stop it, or use `with`."""

    name: str
    url: str
    port: int
    env: dict[str, str]
    log_file: Path
    output_file: Path
    proc: ManagedProcess | None = field(repr=False, default=None)
    metrics_dir: Path | None = field(repr=False, default=None)
    # Services this one depends on and that were started for it (the gateway's catalog).
    upstreams: list[ServiceHandle] = field(repr=False, default_factory=list)
    ca_file: Path | None = None  # with TLS: the certificate to verify the service with
    # With `profile=`: the sampling profiler attached to the service's processes; its files
    # are written when the service stops (`profiles` then says what was recorded, and how).
    profiler: ProfileSession | None = field(repr=False, default=None)

    @property
    def profiles(self) -> list[ProcessProfile]:
        """What the profiler recorded (after `stop()`): one entry per process, with its files."""
        return self.profiler.profiles if self.profiler is not None else []

    spans_file: Path | None = None  # its OpenTelemetry spans, JSON lines (tracing on)

    @property
    def span_files(self) -> list[Path]:
        """This service's span file and those of the services started for it."""
        own = [self.spans_file] if self.spans_file is not None else []
        return own + [f for u in self.upstreams for f in u.span_files]

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What to pass as httpx's `verify=` to talk to this service."""
        from perflab.tls import client_context

        return client_context(self.ca_file) if self.ca_file else True

    def stop(self) -> None:
        if self.profiler is not None and not self.profiler.profiles:
            self.profiler.__exit__(None, None, None)  # before the process goes: py-spy writes
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
        if self.metrics_dir is not None:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            self.metrics_dir = None
        for upstream in self.upstreams:
            upstream.stop()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def __enter__(self) -> ServiceHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_service(
    service: str,
    env: dict[str, str],
    log_dir: Path,
    *,
    label: str | None = None,
    port: int | None = None,
    workers: int = 1,
    timeout: float = 60.0,
    tls: bool = False,
    profile: Path | None = None,
) -> ServiceHandle:
    """Start `service` with settings `env` (e.g. CATALOG_QUERIES=naive); wait for /healthz.

    `env` comes from `perflab.lab.service_env`, which adds the lab's defaults (`LAB_DEFAULTS`:
    rate limit off, every request traced); this adds only where the service's files go.

    With `workers` > 1 the service's Prometheus metrics go to a private folder
    (PROMETHEUS_MULTIPROC_DIR), so /metrics counts the requests of every worker; the folder is
    removed when the service stops.

    `tls=True` serves HTTPS with the lab's self-signed certificate (perflab.tls); the handle's
    `url` is then https and `ca_file` verifies it. Per-install secrets (JWT key, demo users)
    live in the lab's data folder unless `env` says otherwise.

    `profile=folder` attaches the lab's sampling profiler (`perflab.profiling`) to the
    service's processes once they answer, until `stop()`; its files land in `folder`.
    """
    if service not in APPS and service not in WSGI_APPS:
        names = ", ".join([*APPS, *WSGI_APPS])
        raise LabError(f"unknown service {service!r}: choose one of {names}")
    if port is not None and port_in_use(port):
        raise LabError(f"port {port} is taken: stop what uses it, or leave --port out")
    port = port or free_port()
    label = label or service
    log_dir.mkdir(parents=True, exist_ok=True)
    prefix = service.upper().replace("-", "_")
    log_file = log_dir / f"{label}.jsonl"
    output = log_dir / f"{label}.out"
    spans_file = log_dir / f"{label}.spans.jsonl"
    env = {
        f"{prefix}_SECRETS_DIR": str(paths.DATA),
        **env,
        f"{prefix}_LOG_FILE": str(log_file),
        f"{prefix}_SPANS_FILE": str(spans_file),
        f"{prefix}_SERVICE_NAME": service,
    }
    metrics_dir: Path | None = None
    if profile is not None:
        from perflab.profiling import self_profile_env

        # the in-process fallback, where py-spy cannot attach
        env.update(self_profile_env(profile))
    if workers > 1:
        metrics_dir = Path(tempfile.mkdtemp(prefix=f"perflab-metrics-{label}-"))
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if service in WSGI_APPS:
        argv = _gunicorn_argv(WSGI_APPS[service], port, workers)
    else:
        argv = _uvicorn_argv(APPS[service], port, workers)
    ca_file: Path | None = None
    if tls:
        from perflab.tls import ensure_certificate

        cert = ensure_certificate()
        key, crt = (
            ("--keyfile", "--certfile")
            if service in WSGI_APPS
            else ("--ssl-keyfile", "--ssl-certfile")
        )
        argv += [key, str(cert.key_file), crt, str(cert.cert_file)]
        ca_file = cert.cert_file
    proc = spawn(label, argv, env=env, output=output)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        wait_until(_healthy(url + "/healthz", ca_file), proc, timeout, "answering /healthz")
    except LabError:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        raise
    handle = ServiceHandle(
        label,
        url,
        port,
        env,
        log_file,
        output,
        proc,
        metrics_dir=metrics_dir,
        ca_file=ca_file,
        spans_file=spans_file,
    )
    if profile is not None:
        from perflab import profiling

        session = profiling.profile(profiling.service_pids(proc.pid), profile, label=label)
        handle.profiler = session.__enter__()
    return handle


def _uvicorn_argv(app: str, port: int, workers: int) -> list[str]:
    """uvicorn serving the ASGI app factory `app` on loopback."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "3",
        *UVICORN_OPTIONS,
    ]


def _gunicorn_argv(app: str, port: int, workers: int) -> list[str]:
    """gunicorn serving the WSGI `app` on loopback, with the lab's settings (GUNICORN_CONF)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        GUNICORN_CONF,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        app,
    ]


def _healthy(url: str, ca_file: Path | None) -> Callable[[], bool]:
    from perflab.tls import client_context

    verify: ssl.SSLContext | bool = client_context(ca_file) if ca_file else True

    def check() -> bool:
        return httpx.get(url, timeout=1.0, verify=verify).status_code == 200

    return check
