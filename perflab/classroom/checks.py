"""The exercises' checks: each one runs the student's code for real, measures it, and asserts.

A check cell in an exercise notebook calls one function here with the student's code and
nothing else: every threshold lives here, where the tests prove that the starting point and
gamed submissions fail (tests/perflab/classroom/test_checks.py). The checks measure the goal,
not a proxy for it:

- code the service runs (a repository, a cache, a middleware, a review model) is loaded *by the
  real catalog* through its plug-in settings (services/catalog/core/plugins.py) and driven by
  the lab's own Locust load, or by requests sent with a real token; what counts is read from
  the service: its per-request `X-DB-Queries` (SQL statements counted at the DB-API cursor, raw
  SQL included), its status codes and bodies (compared with the reference on every key, after a
  write and after a change behind the service's back), what it stored, its output and log lines;
- a client (retries, breaker, timeout) runs against a server that fails on purpose and counts
  every attempt and the gaps between them (`misbehaving.py`);
- a token check or a rate limiter gets hostile inputs and a clock it cannot outrun.

Each check prints what it measured and one `perflab-check: {json}` line (the grader's record),
then raises `CheckFailed` with a sentence saying what to look at, or returns a `CheckResult`.
Services run on a private copy of an SQLite database, so a check's writes never leak.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from perflab.errors import LabError
from perflab.traffic import Zipf

if TYPE_CHECKING:
    import pandas as pd

    from perflab.services import ServiceHandle

T = TypeVar("T")
MARKER = "perflab-check:"


class CheckFailed(AssertionError):
    """The exercise is not solved yet; the message says what was measured and what to change."""


@dataclass
class CheckResult:
    name: str
    measured: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        vals = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.measured.items()
        )
        return f"{self.name}, measured: {vals}"


class _Check:
    """One check's bookkeeping: what it measured, and the verdict line the grader reads."""

    def __init__(self, name: str) -> None:
        self.result = CheckResult(name)

    def measure(self, **values: Any) -> None:
        self.result.measured.update(values)

    def require(self, cond: bool, message: str) -> None:
        if not cond:
            self._record(False, message)
            raise CheckFailed(message)

    def passed(self) -> CheckResult:
        self._record(True, "every goal met")
        print(f"PASS: {self.result.name}: every goal met")
        return self.result

    def _record(self, ok: bool, feedback: str) -> None:
        print(self.result)
        line = {
            "check": self.result.name,
            "passed": ok,
            "measured": self.result.measured,
            "feedback": feedback,
        }
        print(MARKER, json.dumps(line, default=str))


@contextlib.contextmanager
def _checking(name: str) -> Iterator[_Check]:
    """A check whose unexpected errors (the student's code raising) become `CheckFailed`."""
    check = _Check(name)
    try:
        yield check
    except CheckFailed:
        raise
    except Exception as exc:
        message = f"your code raised {type(exc).__name__}: {exc}"
        check._record(False, message)
        raise CheckFailed(message) from exc


# --- the real catalog, with the student's plug-in ---------------------------------------------


def plugin_spec(spec: str) -> str:
    """`file.py:Name` with the file made absolute (the service runs in another folder)."""
    target, sep, name = spec.rpartition(":")
    if sep and target.endswith(".py"):
        path = Path(target).resolve()
        if not path.is_file():
            raise CheckFailed(f"no file {path}: run the %%writefile cell above first")
        return f"{path}:{name}"
    return spec


def private_copy(database_url: str, folder: Path) -> str:
    """An SQLite database copied into `folder` (a check writes to it); other URLs as they are."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return database_url
    copy = folder / "catalog.sqlite3"
    src, dst = sqlite3.connect(url.database), sqlite3.connect(copy)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return f"sqlite:///{copy}"


@dataclass
class _Catalog:
    svc: ServiceHandle
    database_url: str
    folder: Path
    dataset: dict

    client: Any = None

    def get(self, path: str, **kw: Any) -> Any:
        """One GET on a kept-alive connection (a new client per request costs more than the
        request on a busy machine, and the cache check's reads must fit in its TTL)."""
        return self._http().get(path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        """One POST on the same kept-alive connection."""
        return self._http().post(path, **kw)

    def _http(self) -> Any:
        import httpx

        if self.client is None:
            self.client = httpx.Client(base_url=self.svc.url, timeout=30, trust_env=False)
        return self.client

    def editor(self) -> dict[str, str]:
        from perflab import auth

        return auth.headers(self.svc, "editor")

    def load(self, mix: list[tuple[str, str]], seconds: float = 3, users: int = 4) -> pd.DataFrame:
        """The lab's Locust load on `mix` ([(name, path)]), every request recorded."""
        from perflab.loadgen import dataset_config, run_load
        from perflab.traffic import Endpoint, LoadProfile

        result = run_load(
            self.svc.url,
            [Endpoint(name, path) for name, path in mix],
            LoadProfile(users=users, duration=seconds, warmup=0),
            self.folder / "load",
            label="check",
            extra_config=dataset_config(self.dataset),
            progress=False,
        )
        return result.samples


@contextlib.contextmanager
def _catalog(database_url: str, label: str, **settings: object) -> Iterator[_Catalog]:
    from perflab.lab import service_env
    from perflab.services import start_service
    from perflab_services.catalog import datagen

    folder = Path(tempfile.mkdtemp(prefix=f"perflab-check-{label}-"))
    try:
        url = private_copy(database_url, folder)
        env = service_env("catalog", {"database_url": url, **settings})
        try:
            svc = start_service("catalog", env, folder / "logs", label=label)
        except LabError as exc:
            out = folder / "logs" / f"{label}.out"
            tail = out.read_text(errors="replace")[-1500:] if out.exists() else ""
            lines = [ln for ln in tail.splitlines() if "Error" in ln or "error" in ln]
            lines += [ln for ln in tail.splitlines() if "plug-in" in ln]  # the service's sentence
            raise CheckFailed(
                "the service did not start with your code: "
                + (lines[-1] if lines else str(exc).splitlines()[0])
            ) from None
        cat = _Catalog(svc, url, folder, datagen.dataset_info(url) or {})
        try:
            yield cat
        finally:
            if cat.client is not None:
                cat.client.close()
            svc.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _reference(database_url: str) -> Any:
    """A session factory and the shipped optimized repository: the answers to compare with."""
    from perflab_services.catalog.core.db import Database
    from perflab_services.catalog.repository import OptimizedRepository

    return Database(database_url), OptimizedRepository()


def _detail_json(db: Any, repo: Any, pid: int) -> dict:
    with db.read_session() as s:
        return json.loads(repo.get_product(s, pid).model_dump_json())


def _ids(database_url: str, model: str) -> list[int]:
    from sqlalchemy import select

    from perflab_services.catalog.models import Category, Product

    db, _ = _reference(database_url)
    try:
        table = Product if model == "product" else Category
        with db.read_session() as s:
            return sorted(i for (i,) in s.execute(select(table.id)))
    finally:
        db.dispose()


def _first_difference(expected: Any, got: Any, where: str = "") -> str | None:
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in expected:
            if key not in got:
                return f"{where}{key} is missing"
            diff = _first_difference(expected[key], got[key], f"{where}{key}.")
            if diff:
                return diff
        return None
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return f"{where.rstrip('.')} has {len(got)} items, expected {len(expected)}"
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            diff = _first_difference(e, g, f"{where}{i}.")
            if diff:
                return diff
        return None
    if isinstance(expected, float) and isinstance(got, int | float):
        return None if abs(expected - got) <= 1e-3 else f"{where.rstrip('.')} is {got!r}"
    return None if expected == got else f"{where.rstrip('.')} is {got!r}, expected {expected!r}"


def _queries(samples: pd.DataFrame) -> Any:
    import pandas as pd

    return pd.to_numeric(samples["x_db_queries"], errors="coerce")


# --- 07 validation ----------------------------------------------------------------------------

# Hostile review bodies: each one a valid review of this run (`review_bodies`) with one thing
# wrong, so nothing but the thing under attack tells it from a good one. A value of `_GONE`
# removes the field; `_Raw` values are written into the JSON as they are (NaN, Infinity, 1e400:
# not JSON a library writes, but Python's json, which FastAPI reads bodies with, reads them).
_GONE = object()


class _Raw(str):
    """A value written into the body's JSON text as it is."""


_ATTACKS: list[tuple[str, dict[str, object]]] = [
    ("no rating", {"rating": _GONE}),
    ("no text", {"text": _GONE}),
    ("no author", {"author": _GONE}),
    ("rating 0", {"rating": 0}),
    ("rating 6", {"rating": 6}),
    ("rating -1", {"rating": -1}),
    ("rating 10**30", {"rating": 10**30}),
    ('rating "5"', {"rating": "5"}),
    ('rating "five"', {"rating": "five"}),
    ("rating SQL", {"rating": "5; DROP TABLE reviews"}),
    ("rating 4.0", {"rating": 4.0}),
    ("rating 4.5", {"rating": 4.5}),
    ("rating true", {"rating": True}),
    ("rating null", {"rating": None}),
    ("rating [5]", {"rating": [5]}),
    ("rating object", {"rating": {"$gt": 0}}),
    ("rating NaN", {"rating": _Raw("NaN")}),
    ("rating Infinity", {"rating": _Raw("Infinity")}),
    ("rating -Infinity", {"rating": _Raw("-Infinity")}),
    ("rating 1e400", {"rating": _Raw("1e400")}),
    ("text empty", {"text": ""}),
    ("text blank", {"text": " \t\n "}),
    ("text 2001 chars", {"text": "x" * 2001}),
    ("text 2001 chars and spaces", {"text": "  " + "y" * 2001 + "  "}),
    ("text a number", {"text": 12345}),
    ("text a list", {"text": ["not", "a", "string"]}),
    ("text nested", {"text": {"a": [[{"b": None}]]}}),
    ("text null", {"text": None}),
    ("text lone surrogate", {"text": "fine until \ud800"}),
    ("author blank", {"author": "   "}),
    ("author 81 chars", {"author": "e" * 81}),
    ("author a number", {"author": 7}),
    ("author lone surrogate", {"author": "ev\udfffe"}),
    ("extra is_admin", {"is_admin": True}),
    ("extra product_id", {"product_id": 2}),
]
_NOT_A_REVIEW: list[tuple[str, bytes]] = [
    ("no field at all", b"{}"),
    ("a list, not an object", b"[{}]"),
    ("a string, not an object", b'"rating=3&text=ok&author=eve"'),
    ("null body", b"null"),
    ("200 lists deep", b"[" * 200 + b"]" * 200),
    ("not JSON", b'{"rating": 3, "text": "ok", "author": '),
    ("empty body", b""),
]
REVIEWS_ROUTE = "/products/{product_id}/reviews"


def _body(review: dict[str, object], attack: dict[str, object]) -> bytes:
    """`review` with `attack` applied, as JSON bytes (lone surrogates escaped, as JSON allows)."""
    body = {k: v for k, v in {**review, **attack}.items() if v is not _GONE}
    text = json.dumps({k: f"@raw@{k}" if isinstance(v, _Raw) else v for k, v in body.items()})
    for k, v in body.items():
        if isinstance(v, _Raw):
            text = text.replace(json.dumps(f"@raw@{k}"), v)
    return text.encode()


def review_bodies(
    seed: int | None = None,
) -> tuple[list[dict[str, object]], list[tuple[str, bytes]]]:
    """(good reviews, hostile bodies as (name, JSON bytes)), different on every run: a model that
    knows the check's bodies learns nothing. The good ones: every star, the shortest and longest
    text and author, whitespace to strip, non-ASCII text."""
    import random

    rnd = random.Random(seed)

    def word() -> str:
        return "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9)))

    def review(rating: int | None = None) -> dict[str, object]:
        rating = rating or rnd.randint(1, 5)
        return {"rating": rating, "text": f"{word()} {word()} {word()}.", "author": word()}

    good = [review(stars) for stars in rnd.sample(range(1, 6), 5)]
    good += [
        {"rating": rnd.randint(1, 5), "text": word()[0], "author": word()[0]},
        {"rating": rnd.randint(1, 5), "text": "x" * 1999 + word()[0], "author": word()[0] * 80},
        {"rating": rnd.randint(1, 5), "text": f"  {word()} \n", "author": f"\t{word()}  "},
        {"rating": rnd.randint(1, 5), "text": f"Très bien, {word()} ✓", "author": "Zoë"},
    ]
    hostile = [(name, _body(review(), attack)) for name, attack in _ATTACKS] + _NOT_A_REVIEW
    return good, hostile


def check_review_model(spec: str, database_url: str) -> CheckResult:
    """07_input_validation: a pydantic model (`file.py:Name`) that the catalog runs as the body of
    `POST /products/{id}/reviews` (its `review_model_plugin`). Posted with an editor's token, so
    every answer is validation's: each hostile body gets a 422 JSON answer (never a 201, never a
    500) and is not stored, its log line says 422; each good review gets a 201 and reads back
    through the API as sent, text and author stripped."""
    with (
        _checking("review model") as check,
        _catalog(database_url, "check-validation", review_model_plugin=plugin_spec(spec)) as cat,
    ):
        good, hostile = review_bodies()
        headers = {**cat.editor(), "Content-Type": "application/json"}
        hostile_pid, good_pid = _ids(cat.database_url, "product")[:2]
        stored_before = _review_count(cat, hostile_pid, check)
        wrong: dict[str, list[str]] = {"accepted": [], "crashed": [], "other": []}
        request_ids: dict[str, str] = {}  # the 422s: request id -> attack
        for name, body in hostile:
            r = cat.post(f"/products/{hostile_pid}/reviews", content=body, headers=headers)
            check.require(
                r.status_code not in (401, 403, 413, 429),
                f"the service refused the check's own request ({r.status_code}: {r.text[:120]})",
            )
            is_json = r.headers.get("content-type", "").startswith("application/json")
            if r.status_code == 422 and is_json and "detail" in r.json():
                request_ids[r.headers.get("x-request-id", "")] = name
            elif r.status_code < 300:
                wrong["accepted"].append(f"{name} ({r.status_code})")
            elif r.status_code >= 500:
                wrong["crashed"].append(f"{name} ({r.status_code})")
            else:
                wrong["other"].append(f"{name} ({r.status_code}, {r.text[:60]!r})")
        check.measure(
            hostile_bodies=len(hostile),
            answered_422=len(request_ids),
            accepted=len(wrong["accepted"]),
            crashed_5xx=len(wrong["crashed"]),
        )
        check.require(
            not wrong["accepted"],
            f"{len(wrong['accepted'])} hostile bodies were accepted, e.g. "
            f'{wrong["accepted"][:4]}: strict types (no "5" -> 5, no 4.0, no true), bounds on '
            "every field, no unknown fields",
        )
        check.require(
            not wrong["crashed"],
            f"{len(wrong['crashed'])} hostile bodies crashed the service (5xx), e.g. "
            f"{wrong['crashed'][:4]}: your model let them through to the database",
        )
        check.require(not wrong["other"], f"hostile bodies not answered 422: {wrong['other'][:3]}")
        stored = _review_count(cat, hostile_pid, check) - stored_before
        check.measure(stored_hostile=stored)
        check.require(stored == 0, f"{stored} hostile reviews were stored")
        stored_right = 0
        for payload in good:
            r = cat.post(f"/products/{good_pid}/reviews", json=payload, headers=cat.editor())
            check.require(
                r.status_code == 201,
                f"a good review was refused ({r.status_code}): {_short(payload)}: {r.text[:200]}",
            )
            want = {
                "rating": payload["rating"],
                "text": str(payload["text"]).strip(),
                "author": str(payload["author"]).strip(),
            }
            review_id = r.json().get("id")
            latest = cat.get(f"/products/{good_pid}").json().get("latest_reviews", [])
            back = next((x for x in latest if x.get("id") == review_id), None)
            got = {k: back.get(k) for k in want} if back else None
            check.require(
                got == want,
                f"a good review was stored as {_short(got)}, sent {_short(payload)} (text and "
                "author are stripped of surrounding whitespace; nothing else changes)",
            )
            stored_right += 1
        check.measure(good_bodies=len(good), stored_as_sent=stored_right)
        lines = _log_lines_of(cat.svc.log_file, set(request_ids))
        unlogged = [name for rid, name in request_ids.items() if rid not in lines]
        mislogged = [
            name
            for rid, name in request_ids.items()
            if rid in lines
            and (lines[rid].get("status") != 422 or lines[rid].get("route") != REVIEWS_ROUTE)
        ]
        check.measure(log_lines_422=len(request_ids) - len(unlogged) - len(mislogged))
        check.require(
            not unlogged and not mislogged,
            f"the service's log does not show these 422s: {(unlogged + mislogged)[:4]}",
        )
        return check.passed()


def _review_count(cat: _Catalog, pid: int, check: _Check) -> int:
    """How many reviews product `pid` has, as the service says."""
    r = cat.get(f"/products/{pid}")
    check.require(r.status_code == 200, f"product {pid} answered {r.status_code}: {r.text[:200]}")
    return int(r.json()["reviews"]["count"])


def _log_lines_of(path: Path, request_ids: set[str], timeout: float = 30) -> dict[str, dict]:
    """The service's log line of each request id, waiting (the line is written just after the
    answer is sent) until all are there or `timeout` s have passed."""
    found: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        for raw in text.splitlines():
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if (
                    isinstance(line, dict)
                    and line.get("event") == "request"
                    and line.get("request_id") in request_ids
                ):
                    found[line["request_id"]] = line
        if set(found) >= request_ids or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _short(payload: object) -> str:
    text = repr(payload)
    return text if len(text) < 80 else text[:77] + "..."


# --- 04 one log line per request --------------------------------------------------------------

LOG_FIELDS = ("request_id", "method", "path", "status", "duration_ms")


def check_request_log(spec: str, database_url: str) -> CheckResult:
    """04_request_log: an ASGI middleware (`file.py:Name`) that the catalog runs, printing exactly
    one JSON line per request with `request_id` (the response's X-Request-ID), `method`,
    `path`, `status` (the status sent) and `duration_ms`."""
    with (
        _checking("request log") as check,
        _catalog(
            database_url, "check-log", middleware_plugin=plugin_spec(spec), log_enabled=False
        ) as cat,
    ):
        samples = cat.load(
            [
                ("detail", "/products/{product}"),
                ("top", "/categories/{category}/top"),
                ("missing", "/products/0"),
            ]
        )
        cat.svc.stop()  # flushes the output; the lines are all there now
        lines = []
        for raw in cat.svc.output_file.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                obj = json.loads(raw)
                if isinstance(obj, dict):
                    lines.append(obj)
        by_id: dict[str, list[dict]] = {}
        for obj in lines:
            by_id.setdefault(str(obj.get("request_id")), []).append(obj)
        sent = samples[samples["request_id"].astype(str) != ""]
        missing, doubled, wrong = 0, 0, []
        for rid, status in zip(sent["request_id"].astype(str), sent["status"], strict=True):
            got = by_id.get(rid, [])
            missing += not got
            doubled += len(got) > 1
            if len(got) == 1:
                line = got[0]
                absent = [f for f in LOG_FIELDS if f not in line]
                if absent:
                    wrong.append(f"fields missing: {absent}")
                elif line["status"] != int(status):
                    wrong.append(f"status {line['status']!r}, the response was {int(status)}")
                elif line["method"] != "GET" or not str(line["path"]).startswith("/"):
                    wrong.append(f"method/path {line['method']!r} {line['path']!r}")
                elif not isinstance(line["duration_ms"], int | float) or line["duration_ms"] < 0:
                    wrong.append(f"duration_ms {line['duration_ms']!r}")
        check.measure(
            requests=len(sent),
            json_lines=len(lines),
            without_line=missing,
            with_several=doubled,
            wrong_lines=len(wrong),
            statuses=sorted({int(s) for s in sent["status"]}),
        )
        check.require(len(sent) > 0, "the load sent no request: see the Locust log")
        check.require(
            missing == 0,
            f"{missing} of {len(sent)} requests have no JSON line with their request_id (take "
            "it from perflab_services.common.context.get().request_id; print one line per "
            "request, flush=True)",
        )
        check.require(doubled == 0, f"{doubled} requests have more than one line: log once")
        check.require(not wrong, f"{len(wrong)} lines are wrong, e.g. {wrong[:2]}")
        return check.passed()


# --- 04 a metric named the Prometheus way ----------------------------------------------------

METRIC_COUNTER = "catalog_responses_total"
METRIC_HISTOGRAM = "catalog_request_duration_seconds"
MAX_ROUTE_LABELS = 6


def _families(text: str) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}


def check_metric(spec: str, database_url: str) -> CheckResult:
    """04_metric_naming: an ASGI middleware (`file.py:Name`) the catalog runs, adding to the
    service's own registry (`scope["app"].state.metrics.registry`) a counter
    `catalog_responses_total{route, status}` (route the template, status the class: 2xx...)
    and a histogram `catalog_request_duration_seconds` (seconds, the base unit). Under the
    lab's load the counts must equal what Locust sent, with few label values."""
    with (
        _checking("metric") as check,
        _catalog(database_url, "check-metric", middleware_plugin=plugin_spec(spec)) as cat,
    ):
        samples = cat.load(
            [
                ("detail", "/products/{product}"),
                ("top", "/categories/{category}/top"),
                ("missing", "/products/0"),
            ]
        )
        families = _families(cat.get("/metrics").text)
        counter = families.get(METRIC_COUNTER.removesuffix("_total"))
        check.require(
            counter is not None and counter.type == "counter",
            f"no counter {METRIC_COUNTER} on /metrics (register it in the service's registry: "
            f'scope["app"].state.metrics.registry; a counter\'s name ends in _total)',
        )
        assert counter is not None
        rows = [x for x in counter.samples if x.name == METRIC_COUNTER]
        routes = sorted({x.labels.get("route", "") for x in rows})
        statuses = sorted({x.labels.get("status", "") for x in rows})
        check.measure(route_labels=len(routes), routes=routes[:8], statuses=statuses)
        check.require(
            len(routes) <= MAX_ROUTE_LABELS,
            f"{len(routes)} different route labels, e.g. {routes[:3]}: label with the route's "
            'template (scope["route"].path, "/products/{product_id}"), not the path itself: '
            "every label value is a time series of its own",
        )
        check.require(
            set(statuses) <= {"1xx", "2xx", "3xx", "4xx", "5xx"},
            f"status labels {statuses}: use the class (2xx, 4xx...), a handful of values",
        )

        def counted(route: str, status: str) -> float:
            return sum(
                x.value
                for x in rows
                if x.labels.get("route") == route and x.labels.get("status") == status
            )

        sent_ok = int(((samples["endpoint"] == "detail") & (samples["status"] == 200)).sum())
        sent_404 = int((samples["endpoint"] == "missing").sum())
        got_ok = counted("/products/{product_id}", "2xx")
        got_404 = counted("/products/{product_id}", "4xx")
        check.measure(sent_ok=sent_ok, counted_ok=got_ok, sent_404=sent_404, counted_404=got_404)
        check.require(
            got_ok == sent_ok and got_404 == sent_404,
            f"Locust got {sent_ok} 200s and {sent_404} 404s from /products/{{product_id}}; your "
            f"counter says {got_ok:g} and {got_404:g}: count every response once, with the "
            "status that was sent",
        )
        hist = families.get(METRIC_HISTOGRAM)
        check.require(
            hist is not None and hist.type == "histogram",
            f"no histogram {METRIC_HISTOGRAM} on /metrics",
        )
        assert hist is not None
        total = sum(x.value for x in hist.samples if x.name.endswith("_sum"))
        count = sum(x.value for x in hist.samples if x.name.endswith("_count"))
        mean_s = total / count if count else float("nan")
        locust_mean_s = float(samples["latency_ms"].mean()) / 1000
        check.measure(histogram_mean_s=mean_s, locust_mean_s=locust_mean_s)
        check.require(
            count >= len(samples) and 0 < mean_s <= locust_mean_s * 1.5,
            f"the histogram's mean is {mean_s:.4g} over {count:g} observations; Locust measured "
            f"{locust_mean_s:.4g} s over {len(samples)} requests: observe every request, in "
            "seconds",
        )
        return check.passed()


# --- 05 the N+1 -------------------------------------------------------------------------------

N_PLUS_ONE_MAX_QUERIES = 3


def _post_review(cat: _Catalog, pid: int, rating: int) -> int:
    import httpx

    r = httpx.post(
        f"{cat.svc.url}/products/{pid}/reviews",
        json={"rating": rating, "text": "written by the check", "author": "check"},
        headers=cat.editor(),
        timeout=30,
        trust_env=False,
    )
    return r.status_code


SHIPPED_OFF = """\
# Written by perflab.classroom.checks: the shipped optimized list is off while the student's
# repository is checked, so delegating to it is not a solution.
from perflab_services.catalog import repository
from perflab_services.catalog.core import plugins


def _off(*args, **kwargs):
    raise RuntimeError(
        "the shipped optimized list is off during this check: write your own queries"
    )


repository.OptimizedRepository.list_products = _off
repository.optimized_page = _off
repository.ratings = _off
Repository = plugins.load({spec!r})
"""


def _without_shipped_answer(spec: str, folder: Path) -> str:
    """A plug-in that loads `spec` in a service where the shipped optimized list is off."""
    wrapper = folder / "check_wrapper.py"
    wrapper.write_text(SHIPPED_OFF.format(spec=plugin_spec(spec)), encoding="utf-8")
    return f"{wrapper}:Repository"


def check_n_plus_one(spec: str, database_url: str) -> CheckResult:
    """05_n_plus_one: a repository (`file.py:Name`) whose `list_products` the catalog serves at
    `/products?category=...&limit=...`: the same answer as the shipped code for every category
    (also right after a new review), in at most 3 SQL statements per request under load."""
    from perflab_services.catalog import schemas

    wrappers = Path(tempfile.mkdtemp(prefix="perflab-check-wrapper-"))
    with (
        _checking("N+1") as check,
        contextlib.ExitStack() as cleanup,
        _catalog(
            database_url,
            "check-nplus1",
            repository_plugin=_without_shipped_answer(spec, wrappers),
            queries="optimized",
        ) as cat,
    ):
        cleanup.callback(shutil.rmtree, wrappers, True)
        db, ref = _reference(cat.database_url)
        categories = _ids(cat.database_url, "category")
        most = 0

        def compare(category: int, limit: int) -> str | None:
            nonlocal most
            r = cat.get(f"/products?category={category}&limit={limit}")
            if r.status_code != 200:
                return f"/products?category={category} answered {r.status_code}"
            most = max(most, int(r.headers.get("x-db-queries", 0)))
            with db.read_session() as s:
                want = ref.list_products(s, schemas.ProductFilters(category=category, limit=limit))
            diff = _first_difference(json.loads(want.model_dump_json())["items"], r.json()["items"])
            return f"category {category}, limit {limit}: {diff}" if diff else None

        def too_many(n: int) -> str:
            return (
                f"requests ran up to {n} SQL statements; the goal is at most "
                f"{N_PLUS_ONE_MAX_QUERIES} (look for a query inside a loop, or a lazy "
                "relationship: p.category, p.reviews)"
            )

        try:
            diffs = [d for c in categories for n in (20, 7) if (d := compare(c, n))]
            check.measure(categories_checked=len(categories))
            check.require(not diffs, f"your answer differs from the reference: {diffs[:1]}")
            check.require(most <= N_PLUS_ONE_MAX_QUERIES, too_many(most))
            # A write between two reads: an answer computed once and kept is caught here.
            first = cat.get(f"/products?category={categories[0]}&limit=20").json()["items"][0]
            posted = _post_review(cat, first["id"], 1)
            check.require(posted == 201, f"posting a review got {posted}")
            after = compare(categories[0], 20)
            check.require(after is None, f"after a new review your answer is stale: {after}")
        finally:
            db.dispose()
        samples = cat.load([("list", "/products?category={category}&limit=20")])
        queries = _queries(samples)
        check.measure(
            requests=len(samples),
            errors=int((samples["status"] != 200).sum()),
            max_queries=int(queries.max()),
            mean_queries=float(queries.mean()),
            p95_ms=float(samples["latency_ms"].quantile(0.95)),
        )
        check.require(
            check.result.measured["errors"] == 0, "some requests under load failed: see the log"
        )
        check.require(
            check.result.measured["max_queries"] <= N_PLUS_ONE_MAX_QUERIES,
            too_many(check.result.measured["max_queries"]),
        )
        return check.passed()


# --- 05 the right index -----------------------------------------------------------------------

MAX_INDEXES = 2


def latest_reviews_sql(product_id: int) -> str:
    """The product page's "latest reviews" query, as the service runs it, with its literals."""
    from perflab_services.catalog.repository import latest_reviews

    return str(latest_reviews(product_id).compile(compile_kwargs={"literal_binds": True}))


def check_index(statements: list[str], database_url: str) -> CheckResult:
    """05_right_index: at most 2 `CREATE INDEX` statements after which SQLite answers the latest
    reviews of a product by *searching* an index, in order, with no full scan of `reviews` and
    no sort (EXPLAIN QUERY PLAN), on a copy of the lab's database without the lab's indexes."""
    from sqlalchemy import text

    from perflab_services.catalog.core.db import Database, is_sqlite, set_indexes

    with _checking("index") as check:
        check.require(is_sqlite(database_url), "this exercise reads SQLite's query plans")
        statements = [s for s in statements if s.strip()]
        check.require(
            0 < len(statements) <= MAX_INDEXES,
            f"give 1 to {MAX_INDEXES} CREATE INDEX statements (got {len(statements)}): every "
            "index costs on every write",
        )
        check.require(
            all(
                s.strip().upper().startswith(("CREATE INDEX", "CREATE UNIQUE INDEX"))
                for s in statements
            ),
            "each statement must be a CREATE INDEX",
        )
        folder = Path(tempfile.mkdtemp(prefix="perflab-check-index-"))
        db = Database(private_copy(database_url, folder))
        try:
            set_indexes(db.engine, present=False)
            pid = _hot_product(db)
            sql = latest_reviews_sql(pid)
            before = _timed_sql(db, sql)
            with db.engine.begin() as conn:
                for stmt in statements:
                    conn.execute(text(stmt))
                conn.execute(text("ANALYZE"))
            with db.engine.connect() as conn:
                plan = [row[-1] for row in conn.execute(text("EXPLAIN QUERY PLAN " + sql))]
            after = _timed_sql(db, sql)
        finally:
            db.dispose()
            shutil.rmtree(folder, ignore_errors=True)
        check.measure(
            plan=" | ".join(plan),
            before_ms=before,
            after_ms=after,
            speedup=before / max(after, 1e-6),
        )
        on_reviews = [p for p in plan if "reviews" in p]
        check.require(
            any(p.startswith("SEARCH reviews USING") and "INDEX" in p for p in on_reviews),
            f"SQLite does not search an index of reviews: plan {plan} (which column does the "
            "WHERE filter on?)",
        )
        check.require(
            not any("TEMP B-TREE" in p for p in plan),
            f"SQLite still sorts the rows itself: plan {plan} (an index can also hold the ORDER BY "
            "columns, after the filtered one)",
        )
        return check.passed()


def _hot_product(db: Any) -> int:
    from sqlalchemy import func, select

    from perflab_services.catalog.models import Review

    with db.read_session() as s:
        return int(
            s.execute(
                select(Review.product_id)
                .group_by(Review.product_id)
                .order_by(func.count().desc())
                .limit(1)
            ).scalar_one()
        )


def _timed_sql(db: Any, sql: str, runs: int = 50) -> float:
    """Median milliseconds of `sql` (informational: the plan is what the check asserts)."""
    from sqlalchemy import text

    times = []
    with db.engine.connect() as conn:
        for _ in range(runs):
            t0 = time.perf_counter()
            conn.execute(text(sql)).fetchall()
            times.append((time.perf_counter() - t0) * 1000)
    return sorted(times)[len(times) // 2]


# --- 05 keyset pagination ---------------------------------------------------------------------

PAGE = 17


def check_keyset(
    page: Callable[[Any, int | None, int], list[int]], database_url: str
) -> CheckResult:
    """05_keyset_pagination: `page(session, after_id, limit)` returns the ids of the next `limit`
    products after `after_id` (None: from the start), in id order, with one SQL statement that
    has a LIMIT and no OFFSET. The check walks every page while products are deleted behind the
    pages already read: every product that still exists must come exactly once."""
    from sqlalchemy import delete, event, select

    from perflab_services.catalog.core.db import Database
    from perflab_services.catalog.models import Product, Review

    with _checking("keyset pagination") as check:
        folder = Path(tempfile.mkdtemp(prefix="perflab-check-keyset-"))
        db = Database(private_copy(database_url, folder))
        statements: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", record)
        try:
            seen: list[int] = []
            deleted: list[int] = []
            after: int | None = None
            per_page: list[int] = []
            for n in range(10_000):
                statements.clear()
                with db.read_session() as s:
                    ids = [int(i) for i in page(s, after, PAGE)]
                per_page.append(len(statements))
                check.require(
                    len(ids) <= PAGE, f"a page of limit {PAGE} returned {len(ids)} products"
                )
                check.require(
                    all("LIMIT" in st.upper() for st in statements),
                    f"a page ran {statements}: ask the database for one page (LIMIT), not for "
                    "every row",
                )
                if not ids:
                    break
                seen.extend(ids)
                after = ids[-1]
                if n % 2 == 0 and len(seen) > 2:  # a product already shown goes away
                    victim = seen[-3]
                    with db.write_session() as s:
                        s.execute(delete(Review).where(Review.product_id == victim))
                        s.execute(delete(Product).where(Product.id == victim))
                        s.commit()
                    deleted.append(victim)
            with db.read_session() as s:
                remaining = sorted(i for (i,) in s.execute(select(Product.id)))
        finally:
            db.dispose()
            shutil.rmtree(folder, ignore_errors=True)
        shown = [i for i in seen if i not in set(deleted)]
        check.measure(
            pages=len(per_page),
            max_statements_per_page=max(per_page),
            products=len(remaining),
            shown=len(set(seen)),
            deleted_during_walk=len(deleted),
        )
        check.require(seen == sorted(set(seen)), "products came twice or out of id order")
        missed = sorted(set(remaining) - set(shown))
        check.require(
            not missed,
            f"{len(missed)} products were never shown (e.g. {missed[:3]}): when rows before the "
            "page go away, an OFFSET skips rows; start after the last id you returned",
        )
        check.require(max(per_page) == 1, f"a page ran {max(per_page)} statements; one is enough")
        return check.passed()


# --- 06 a TTL + LRU cache with invalidation ---------------------------------------------------

CACHE_TTL = 10.0  # longer than the LRU reads take, even on a busy machine
CACHE_MAX_ENTRIES = 50
MIN_HIT_RATIO = 0.5


def _detail_queries(cat: _Catalog, pid: int) -> tuple[int, Any]:
    r = cat.get(f"/products/{pid}")
    return int(r.headers.get("x-db-queries", -1)), r


def check_cache(spec: str, database_url: str) -> CheckResult:
    """06_cache_aside: a cache class (`file.py:Name`, built as `Name(ttl=..., max_entries=...)`)
    that the catalog puts in front of its product pages. Measured in the service, by the SQL
    statements each request ran (a hit runs none): at most `max_entries` products kept, the
    least recently used evicted first, every product's page right, a write seen at once
    (invalidation), a change behind the service's back seen after the TTL, hits under load."""
    with (
        _checking("cache") as check,
        _catalog(
            database_url,
            "check-cache",
            cache_plugin=plugin_spec(spec),
            cache_ttl_seconds=CACHE_TTL,
            cache_max_entries=CACHE_MAX_ENTRIES,
        ) as cat,
    ):
        products = _ids(cat.database_url, "product")
        check.require(
            len(products) > CACHE_MAX_ENTRIES + 5, "the dataset is too small for this check"
        )
        # LRU: A, then max-2 others, A again (now the most recent), then 3 new ones: the two
        # least recently used go, A stays. A cache that keeps everything, or evicts the oldest
        # insert (FIFO), is caught on the last reads. All within the TTL.
        a, others = products[-1], products[-CACHE_MAX_ENTRIES - 2 : -1]
        started = time.monotonic()
        _detail_queries(cat, a)
        twice, _ = _detail_queries(cat, a)
        check.require(twice == 0, f"reading a product twice ran SQL twice ({twice}): cache it")
        for pid in [*others[: CACHE_MAX_ENTRIES - 2], a, *others[CACHE_MAX_ENTRIES - 2 :]]:
            _detail_queries(cat, pid)
        a_again, _ = _detail_queries(cat, a)
        oldest, _ = _detail_queries(cat, others[0])
        second, _ = _detail_queries(cat, others[1])
        check.measure(recent_kept=a_again == 0, oldest_evicted=oldest > 0)
        lru_checked = time.monotonic() - started < CACHE_TTL  # else the TTL ran out meanwhile
        check.measure(lru_checked=lru_checked)
        if lru_checked:
            check.require(
                oldest > 0 and second > 0,
                f"after {CACHE_MAX_ENTRIES + 1} different products the oldest was still cached:"
                f" keep at most max_entries ({CACHE_MAX_ENTRIES}) products",
            )
            check.require(
                a_again == 0,
                "a product read again recently was evicted before older ones: evict the least "
                "recently *used* (an OrderedDict and move_to_end), not the oldest inserted",
            )
        db, ref = _reference(cat.database_url)
        try:
            wrong = []
            for pid in products:  # every key, twice (the second read is the cached one)
                for _ in range(2):
                    r = cat.get(f"/products/{pid}")
                    diff = _first_difference(_detail_json(db, ref, pid), r.json())
                    if r.status_code != 200 or diff:
                        wrong.append(f"product {pid}: {diff or r.status_code}")
                        break
            check.measure(products_checked=len(products), wrong_pages=len(wrong))
            check.require(not wrong, f"{len(wrong)} product pages are wrong, e.g. {wrong[:2]}")

            hot = products[0]
            cat.get(f"/products/{hot}")
            posted = _post_review(cat, hot, 2)
            check.require(posted == 201, f"posting a review got {posted}")
            diff = _first_difference(_detail_json(db, ref, hot), cat.get(f"/products/{hot}").json())
            check.require(
                diff is None,
                f"right after a new review, product {hot}'s page is stale ({diff}): a write "
                "calls invalidate(); forget those keys",
            )

            # Behind the service's back: only the TTL can bring this change in.
            from sqlalchemy import update

            from perflab_services.catalog.models import Product

            target = products[1]
            cat.get(f"/products/{target}")
            with db.write_session() as s:
                s.execute(update(Product).where(Product.id == target).values(name="renamed"))
                s.commit()
            changed_at = time.monotonic()
            deadline = changed_at + CACHE_TTL * 2 + 2
            fresh = False
            while time.monotonic() < deadline and not fresh:
                fresh = cat.get(f"/products/{target}").json().get("name") == "renamed"
                if not fresh:
                    time.sleep(0.2)
            check.measure(change_seen_after_s=time.monotonic() - changed_at if fresh else None)
            check.require(
                fresh,
                f"a change made in the database was still unseen {CACHE_TTL * 2:g} s later: "
                "entries must expire after ttl seconds",
            )
        finally:
            db.dispose()
        samples = cat.load([("detail", "/products/{product}")], seconds=4)
        hits = _queries(samples) == 0
        # The load starts with the popular products not cached: the second half, once the
        # cache is warm, is what the cache is for (on a busy machine the first is most of it).
        warm = samples["t_start"] >= samples["t_start"].median()
        hit_ratio = float(hits[warm].mean())
        check.measure(requests=len(samples), hit_ratio_all=float(hits.mean()), hit_ratio=hit_ratio)
        check.require(
            hit_ratio >= MIN_HIT_RATIO,
            f"only {hit_ratio:.0%} of the product pages in the second half of the load ran no "
            f"SQL; the goal is {MIN_HIT_RATIO:.0%} (is every key cached, and kept until the TTL?)",
        )
        return check.passed()


# --- 06 single-flight against a stampede ------------------------------------------------------

STAMPEDE = 16


def check_single_flight(spec: str, database_url: str) -> CheckResult:
    """06_single_flight: the cache (`file.py:Name`) loads a missing key once however many requests
    ask for it at the same moment (the others wait for that load), with every answer right,
    and a failing load (an unknown product) fails each waiter rather than hanging them."""
    import httpx

    from perflab import faults

    with (
        _checking("single-flight") as check,
        _catalog(
            database_url,
            "check-flight",
            cache_plugin=plugin_spec(spec),
            cache_ttl_seconds=60,
            cache_max_entries=10_000,
        ) as cat,
    ):
        products = _ids(cat.database_url, "product")
        one_load, _ = _detail_queries(cat, products[0])  # what one miss costs
        check.require(one_load > 0, "a first read ran no SQL: is the loader called?")
        faults.set(cat.svc, db_sleep_ms=100)  # a slow database: the burst arrives within one load

        def burst(pid: int) -> list[Any]:
            barrier = threading.Barrier(STAMPEDE)
            out: list[Any] = [None] * STAMPEDE

            def one(i: int) -> None:
                barrier.wait(timeout=30)
                try:
                    out[i] = httpx.get(f"{cat.svc.url}/products/{pid}", timeout=20, trust_env=False)
                except httpx.HTTPError as exc:
                    out[i] = exc

            threads = [threading.Thread(target=one, args=(i,)) for i in range(STAMPEDE)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            return out

        try:
            hot = products[len(products) // 2]
            answers = burst(hot)
            missing = burst(10**9 - 7)
        finally:
            faults.clear(cat.svc)
        db, ref = _reference(cat.database_url)
        try:
            want = _detail_json(db, ref, hot)
        finally:
            db.dispose()
        failed = [a for a in answers if not isinstance(a, httpx.Response) or a.status_code != 200]
        loads = sum(int(a.headers.get("x-db-queries", 0)) for a in answers if a not in failed)
        wrong = [a for a in answers if a not in failed and _first_difference(want, a.json())]
        not_404 = [
            getattr(a, "status_code", a)
            for a in missing
            if not (isinstance(a, httpx.Response) and a.status_code == 404)
        ]
        check.measure(
            concurrent_requests=STAMPEDE,
            statements_one_load=one_load,
            statements_in_burst=loads,
            loads=loads / one_load,
            failed=len(failed),
        )
        check.require(not failed, f"{len(failed)} of the burst's requests failed: {failed[:2]}")
        check.require(not wrong, f"{len(wrong)} answers differ from the product's page")
        check.require(
            loads <= one_load,
            f"{STAMPEDE} requests at once for a missing key ran {loads} SQL statements, "
            f"{loads / one_load:.1f} loads; the goal is one load (keep the running load per key, "
            "an asyncio.Task or Future, and let the others await it)",
        )
        check.require(
            not not_404,
            f"a burst for an unknown product did not give every request a 404: {not_404[:2]} "
            "(a failed load must fail its waiters too, and not stay cached)",
        )
        return check.passed()


# --- 07 a role check on a JWT -----------------------------------------------------------------

JWT_ISSUER = "perflab-catalog"
JWT_AUDIENCE = "perflab"
ROLES = ("viewer", "editor", "admin")  # each includes the ones before it


def _token(key: str, *, role: object = "editor", **over: object) -> str:
    import jwt

    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "student",
        "role": role,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    alg = str(over.pop("alg", "HS256"))
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key if alg != "none" else None, algorithm=alg)  # type: ignore[arg-type]


def check_role_check(authorize: Callable[[str, str, str], bool]) -> CheckResult:
    """07_role_check: `authorize(token, needed, key)` is True only for a genuine, current token
    (HS256 with `key`, our issuer and audience, not expired) whose role includes `needed`
    (viewer < editor < admin); every forged, expired, foreign or role-less token is False."""
    import base64
    import os

    key = os.urandom(32).hex()
    other = os.urandom(32).hex()
    now = int(time.time())
    cases: list[tuple[str, str, str, bool]] = []
    for have in ROLES:
        for needed in ROLES:
            ok = ROLES.index(have) >= ROLES.index(needed)
            cases.append((f"{have} token, {needed} needed", _token(key, role=have), needed, ok))
    good = _token(key, role="admin")
    head, _body, _sig = good.split(".")
    forged_body = (
        base64.urlsafe_b64encode(
            json.dumps(
                {
                    "sub": "x",
                    "role": "admin",
                    "iss": JWT_ISSUER,
                    "aud": JWT_AUDIENCE,
                    "exp": now + 300,
                }
            ).encode()
        )
        .rstrip(b"=")
        .decode()
    )
    cases += [
        ("signed with another key", _token(other, role="admin"), "viewer", False),
        ("alg none", _token(key, role="admin", alg="none"), "viewer", False),
        ("body changed after signing", f"{head}.{forged_body}.{_sig}", "viewer", False),
        (
            "expired",
            _token(key, role="admin", exp=now - 60, iat=now - 400, nbf=now - 400),
            "viewer",
            False,
        ),
        ("another audience", _token(key, role="admin", aud="someone-else"), "viewer", False),
        ("another issuer", _token(key, role="admin", iss="evil"), "viewer", False),
        ("no role", _token(key, role=None), "viewer", False),
        ("unknown role", _token(key, role="superuser"), "viewer", False),
        ("role as a list", _token(key, role=["admin"]), "viewer", False),
        ("not a token", "not-a-jwt", "viewer", False),
        ("empty", "", "viewer", False),
    ]
    with _checking("role check") as check:
        wrong = []
        for name, token, needed, expected in cases:
            got: object
            try:
                got = authorize(token, needed, key)
            except Exception as exc:  # refusing by raising is a crash in a request: a 500
                got = f"raised {type(exc).__name__}"
            if got is not expected:
                wrong.append(f"{name}: {got!r}, expected {expected}")
        check.measure(cases=len(cases), right=len(cases) - len(wrong))
        check.require(
            not wrong,
            f"{len(wrong)} of {len(cases)} tokens were judged wrong, e.g. {wrong[:3]} (return "
            "True or False, never raise)",
        )
        return check.passed()


# --- 07 a token bucket ------------------------------------------------------------------------


def check_token_bucket(make: Callable[[float, int], Any]) -> CheckResult:
    """07_token_bucket: `TokenBucket(rate, burst)` with `allow(now) -> bool`: a full bucket lets
    `burst` requests through at once, then `rate` per second; unused time never stores more than
    `burst`. Driven by a clock the check controls (no sleeping, exact counts)."""
    rate, burst = 10.0, 5
    with _checking("token bucket") as check:
        b = make(rate, burst)
        first = sum(bool(b.allow(100.0)) for _ in range(20))
        # 40 requests/s for 10 s: 5 (the burst) + 10/s x 10 s may pass, give or take one.
        steady = sum(bool(b.allow(100.0 + i / 40)) for i in range(1, 401))
        # Idle for a minute: the bucket refills to `burst`, not to 600.
        after_idle = sum(bool(b.allow(200.0)) for _ in range(50))
        # At a window's edge: a fixed window lets 2x through across the boundary; a bucket not.
        b2 = make(rate, burst)
        edge = sum(bool(b2.allow(300.999)) for _ in range(20)) + sum(
            bool(b2.allow(301.001)) for _ in range(20)
        )
        slow = make(rate, burst)  # under the rate, nothing is ever refused
        under = sum(bool(slow.allow(400.0 + i * 0.2)) for i in range(50))
        check.measure(
            burst_allowed=first,
            steady_allowed=steady,
            after_idle_allowed=after_idle,
            at_window_edge=edge,
            under_rate_allowed=under,
        )
        check.require(first == burst, f"a full bucket let {first} through at once, not {burst}")
        check.require(
            abs(steady - rate * 10) <= 1,
            f"at 40 requests/s for 10 s, {steady} passed; the rate allows {rate * 10:g}",
        )
        check.require(
            after_idle == burst,
            f"after a minute idle {after_idle} passed at once: the bucket holds at most {burst}",
        )
        check.require(edge <= burst + 1, f"{edge} passed within 2 ms: a burst is {burst}")
        check.require(under == 50, f"at 5 requests/s (under the rate) {50 - under} were refused")
        return check.passed()


# --- 08 retries with capped exponential backoff and jitter ------------------------------------

MAX_ATTEMPTS = 5
FIRST_DELAY = 0.05


def _run_with_deadline(fn: Callable[[], T], seconds: float) -> tuple[T | None, object, float]:
    """`fn()` in a thread: (result, error or None, seconds); error "timeout" if still running."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # the student's code may raise anything
            box["error"] = exc

    t0 = time.monotonic()
    t = threading.Thread(target=run, daemon=True, name="student-code")
    t.start()
    t.join(timeout=seconds)
    took = time.monotonic() - t0
    if t.is_alive():
        return None, "timeout", took
    return box.get("result"), box.get("error"), took


@contextlib.contextmanager
def _recording_sleeps() -> Iterator[list[float]]:
    """Every `time.sleep(s)` the student's code asks for meanwhile (other threads' excluded)."""
    real = time.sleep
    main = threading.get_ident()
    asked: list[float] = []

    def sleep(seconds: float) -> None:
        if threading.get_ident() != main and threading.current_thread().name == "student-code":
            asked.append(float(seconds))
        real(seconds)

    time.sleep = sleep  # type: ignore[assignment]
    try:
        yield asked
    finally:
        time.sleep = real


def check_retry(get: Callable[[str], Any]) -> CheckResult:
    """08_retry_with_backoff: `get(url)` returns an httpx response; on a 5xx or connection error it
    tries again after a delay that starts near 0.05 s, doubles (capped at 1 s) and is jittered,
    at most 5 attempts in all; a 4xx is returned at once. The server counts every attempt."""
    from perflab.classroom.misbehaving import MisbehavingServer

    with _checking("retries") as check, MisbehavingServer() as server:
        r, err, _ = _run_with_deadline(partial(get, f"{server.url}/flaky/recover?fail=2"), 30)
        check.require(err is None, f"a service that recovers after 2 failures: your get {err}")
        body: dict = {}
        with contextlib.suppress(Exception):
            body = dict(r.json())  # type: ignore[union-attr]
        check.require(
            getattr(r, "status_code", None) == 200
            and body.get("nonce") == server.nonces.get("recover", "not contacted"),
            f"a service that recovers after 2 failures: got {r!r}, not the service's 200 answer",
        )
        check.require(
            server.count("recover") == 3,
            f"the service saw {server.count('recover')} attempts; 2 failures + 1 success is 3",
        )
        r, err, _ = _run_with_deadline(partial(get, f"{server.url}/status/client?code=404"), 30)
        check.require(
            server.count("client") == 1 and getattr(r, "status_code", None) == 404,
            f"a 404 was tried {server.count('client')} times (got {r!r}): a client error "
            "does not get better by asking again; return it",
        )
        runs, slept = [], []
        for name in ("down-a", "down-b", "down-c"):
            # 20 failures, then it answers: a client without an attempt cap gets a 200 here.
            with _recording_sleeps() as sleeps:
                _, err, _took = _run_with_deadline(
                    partial(get, f"{server.url}/flaky/{name}?fail=20"), 30
                )
            check.require(err != "timeout", "your get was still retrying after 30 s")
            runs.append(server.gaps(name))
            slept.append(sleeps)
        attempts = [len(g) + 1 for g in runs]
        check.measure(attempts_when_down=attempts, gaps_s=[round(g, 3) for g in runs[0]])
        check.require(
            all(a == MAX_ATTEMPTS for a in attempts),
            f"against a service that stays down, your get made {attempts} attempts; the goal is "
            f"{MAX_ATTEMPTS} (then give up: return the last answer or raise)",
        )
        # The delays: the ones the client asked `time.sleep` for when it uses it (exact, and
        # blind to a busy machine's noise), else the gaps the server saw between attempts
        # (each also holds an attempt's own cost; their differences are the delays' alone).
        exact = all(len(d) == MAX_ATTEMPTS - 1 for d in slept)
        delays = slept if exact else runs
        check.measure(delays_s=[round(d, 3) for d in delays[0]], delays_from_sleep=exact)
        check.require(
            min(min(d) for d in delays) >= FIRST_DELAY * 0.4,
            f"attempts came {min(min(d) for d in delays) * 1000:.0f} ms apart: wait before "
            f"retrying (start near {FIRST_DELAY * 1000:.0f} ms)",
        )
        growth = sum(d[-1] - d[0] for d in delays) / len(delays)
        check.require(
            growth >= 0.1 and all(max(d) <= 1.6 for d in delays),
            f"the delays {[round(x, 3) for x in delays[0]]} do not grow exponentially "
            "(x2 each time, at most 1 s)",
        )
        spread = max(
            abs(x - y)
            for a_, b_ in ((0, 1), (0, 2), (1, 2))
            for x, y in zip(delays[a_], delays[b_], strict=False)
        )
        check.measure(jitter_s=spread)
        check.require(
            spread > (0.005 if exact else 0.03),
            "three clients that retry together wait exactly as long as each other (a "
            "thundering herd): add random jitter to every delay",
        )
        return check.passed()


# --- 08 a circuit breaker ---------------------------------------------------------------------

BREAKER_FAILURES = 3
BREAKER_RESET = 0.5


def check_breaker(make: Callable[[int, float], Any]) -> CheckResult:
    """08_circuit_breaker: `Breaker(max_failures, reset_after)`, `call(fn)`: after `max_failures`
    failures in a row it fails fast (raises without calling `fn`); after `reset_after` seconds
    one call goes through: success closes it, failure opens it again. Against a real server
    that goes down and comes back, which counts every request that reached it."""
    import httpx

    from perflab.classroom.misbehaving import MisbehavingServer

    with _checking("circuit breaker") as check, MisbehavingServer() as server:
        url = f"{server.url}/switch/svc"

        def fetch() -> int:
            r = httpx.get(url, timeout=5, trust_env=False)
            r.raise_for_status()
            return r.status_code

        breaker = make(BREAKER_FAILURES, BREAKER_RESET)

        def calls(n: int) -> tuple[int, int]:
            """(successes, hits at the server) of `n` calls through the breaker."""
            before, ok = server.count("svc"), 0
            for _ in range(n):
                with contextlib.suppress(Exception):
                    ok += breaker.call(fetch) == 200
            return ok, server.count("svc") - before

        up_ok, _ = calls(5)
        server.down("svc")
        _, down_hits = calls(10)
        time.sleep(BREAKER_RESET * 1.3)
        _, probe_hits = calls(4)  # still down: one probe, then open again
        server.down("svc", False)
        _, closed_while_open = calls(1)  # within reset_after of the failed probe: fails fast
        time.sleep(BREAKER_RESET * 1.3)
        recovered, rec_hits = calls(6)
        # Failures that are not consecutive never open it.
        fresh = make(BREAKER_FAILURES, BREAKER_RESET)
        breaker = fresh
        mixed_hits = 0
        for _ in range(3):
            server.down("svc")
            mixed_hits += calls(BREAKER_FAILURES - 1)[1]
            server.down("svc", False)
            mixed_hits += calls(1)[1]
        check.measure(
            hits_while_down=down_hits,
            probe_hits=probe_hits,
            hits_open_after_probe=closed_while_open,
            recovered_calls=recovered,
            hits_with_interleaved_failures=mixed_hits,
        )
        check.require(up_ok == 5, f"with the service up, {5 - up_ok} of 5 calls failed")
        check.require(
            down_hits == BREAKER_FAILURES,
            f"10 calls to a dead service reached it {down_hits} times; after {BREAKER_FAILURES} "
            "failures in a row the breaker opens and fails fast",
        )
        check.require(
            probe_hits == 1 and closed_while_open == 0,
            f"after reset_after, {probe_hits} calls reached the still-dead service (the goal: "
            "one probe, then open again for reset_after)",
        )
        check.require(
            recovered == 6 and rec_hits == 6,
            f"once the service was back, {recovered} of 6 calls succeeded: a successful probe "
            "closes the breaker",
        )
        check.require(
            mixed_hits == 3 * BREAKER_FAILURES,
            "failures separated by successes opened the breaker: count failures *in a row*",
        )
        return check.passed()


# --- 08 timeouts ------------------------------------------------------------------------------

TIME_BUDGET = 0.5


def check_timeout(fetch: Callable[[str], Any]) -> CheckResult:
    """08_timeouts: `fetch(url)` returns the body (bytes) of a 200 answer, or None when the
    service does not answer within 0.5 s or answers an error: a caller never hangs on a slow
    dependency, and a fast one still gets its real answer."""
    from perflab.classroom.misbehaving import MisbehavingServer

    with _checking("timeouts") as check, MisbehavingServer() as server:
        fast, err, fast_s = _run_with_deadline(partial(fetch, f"{server.url}/slow/fast?s=0.05"), 10)
        check.require(err is None, f"a service that answers in 50 ms: your fetch {err}")
        body = fast if isinstance(fast, bytes) else b""
        check.require(
            server.nonces.get("fast", "?").encode() in body,
            f"a service that answers in 50 ms: got {fast!r}, not its body",
        )
        slow, err, slow_s = _run_with_deadline(partial(fetch, f"{server.url}/slow/slow?s=4"), 10)
        failed, err2, _ = _run_with_deadline(
            partial(fetch, f"{server.url}/status/err?code=503"), 10
        )
        check.measure(fast_s=fast_s, slow_s=slow_s)
        check.require(
            err is None and slow is None,
            f"a service that takes 4 s: got {slow!r} {err or ''} (return None)",
        )
        check.require(
            slow_s <= TIME_BUDGET * 2,
            f"a service that takes 4 s kept your caller {slow_s:.1f} s; the budget is "
            f"{TIME_BUDGET:g} s (httpx's timeout=...)",
        )
        check.require(
            err2 is None and failed is None, f"a 503 answer: got {failed!r} (return None)"
        )
        return check.passed()


def zipf_keys(n_keys: int, count: int, s: float = 1.0, seed: int = 1) -> list[int]:
    """`count` keys in 1..n_keys with Zipf popularity (key 1 the hottest), as the load uses."""
    return Zipf(n_keys, s).sample(count, seed)
