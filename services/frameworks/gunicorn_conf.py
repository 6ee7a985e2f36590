"""How the lab serves a WSGI app with gunicorn: `gunicorn -c python:<this module> APP`.

The choices a deployment would make, and why:
- `gthread` workers, 4 threads each: the default `sync` worker closes the connection after every
  response, because it expects a buffering proxy (nginx) in front to keep clients' connections
  alive. Measured without one, it would time a TCP handshake per request, which uvicorn (keep-
  alive on) does not pay. gthread keeps connections alive and hands requests to a thread pool.
  Threads do not add CPU for Python code (one GIL per process); they let a slow client or a wait
  on I/O not block the others, as uvicorn's thread pool does for FastAPI's `def` handlers.
- Keep-alive of 5 s, as uvicorn's default, so the two servers treat idle connections alike.
- No access log (uvicorn runs with `--no-access-log` in the lab too), warnings only.
- No control socket: gunicorn (25.1+) creates one at a fixed per-user path by default, so two
  apps served at once (a test, an experiment) would fight over it.
- The parent watchdog in the master: when the lab that started gunicorn is gone, the master is
  told to stop and stops its workers (on Linux the kernel already kills the master with the lab;
  the workers notice their parent changed and exit).
The number of worker processes comes from the command line (the lab's `workers`, 1 by default,
as for uvicorn), so each framework gets the same number of processes.
"""

from __future__ import annotations

from typing import Any

from perflab_services.common.watchdog import start_parent_watchdog

worker_class = "gthread"
threads = 4
keepalive = 5
graceful_timeout = 3
loglevel = "warning"
accesslog = None
control_socket_disable = True


def when_ready(server: Any) -> None:
    start_parent_watchdog()
