"""Every exercise's check: the solution passes; the starting point and gamed submissions fail.

The starting point and the solution are read from the notebooks themselves (their cell tagged
`answer`), so what is tested is what students get. The gamed submissions are the shortcuts a
student (or an instructor reading the checks) would try: a constant, skipping the work, caching
everything forever, retrying without pause, trusting an unsigned token...
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from perflab import paths
from perflab.classroom import checks


def answer_cell(name: str, solution: bool) -> str:
    folder = "solutions" if solution else "exercises"
    nb = json.loads((paths.NOTEBOOKS / folder / f"{name}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "answer" in c["metadata"].get("tags", [])]
    assert len(cells) == 1, f"{folder}/{name}: one cell tagged answer"
    return "".join(cells[0]["source"])


def plugin(source: str, tmp_path: Path, name: str) -> str:
    """A `%%writefile` answer (or plain source) written to a file: its plug-in spec."""
    lines = source.splitlines()
    if lines and lines[0].startswith("%%writefile"):
        lines = lines[1:]
    path = tmp_path / f"sub_{abs(hash(source)):x}.py"
    path.write_text(textwrap.dedent("\n".join(lines)) + "\n")
    return f"{path}:{name}"


def defined(source: str, name: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(compile(textwrap.dedent(source), f"<{name}>", "exec", dont_inherit=True), namespace)
    return namespace[name]


def fails(check: Any, *args: Any, match: str | None = None) -> str:
    with pytest.raises(checks.CheckFailed, match=match) as info:
        check(*args)
    return str(info.value)


# --- 04 request log ---------------------------------------------------------------------------

LOG_HEAD = """
import json, os, time
from perflab_services.common import context

class RequestLog:
    def __init__(self, app):
        self.app = app
"""
LOG_AT_START = (
    LOG_HEAD
    + """
    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":  # logs before the answer: the status is a guess
            print(json.dumps({"request_id": context.get().request_id, "method": scope["method"],
                              "path": scope["path"], "status": 200, "duration_ms": 0}), flush=True)
        await self.app(scope, receive, send)
"""
)
LOG_RANDOM_IDS = (
    LOG_HEAD
    + """
    async def __call__(self, scope, receive, send):
        status = 0
        async def s(m):
            nonlocal status
            if m["type"] == "http.response.start":
                status = m["status"]
            await send(m)
        await self.app(scope, receive, s)
        if scope["type"] == "http":
            line = {"request_id": os.urandom(16).hex(), "method": scope["method"],
                    "path": scope["path"], "status": status, "duration_ms": 1}
            print(json.dumps(line), flush=True)
"""
)


@pytest.mark.slow
def test_request_log_solution_passes(database_url, tmp_path):
    solved = plugin(answer_cell("04_request_log", True), tmp_path, "RequestLog")
    result = checks.check_request_log(solved, database_url)
    assert result.measured["without_line"] == 0 and 404 in result.measured["statuses"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, says",
    [("start", "no JSON line"), (LOG_AT_START, "status"), (LOG_RANDOM_IDS, "no JSON line")],
    ids=["starting-point", "logged-before-the-answer", "made-up-ids"],
)
def test_request_log_gamed_fails(database_url, tmp_path, case, says):
    source = answer_cell("04_request_log", False) if case == "start" else case
    fails(
        checks.check_request_log, plugin(source, tmp_path, "RequestLog"), database_url, match=says
    )


# --- 04 metric naming ------------------------------------------------------------------------

METRIC_SOLVED = answer_cell("04_metric_naming", True)
METRIC_STATUS_CODES = METRIC_SOLVED.replace('status=f"{status // 100}xx"', "status=str(status)")
METRIC_MILLISECONDS = METRIC_SOLVED.replace(
    "observe(time.perf_counter() - start)", "observe((time.perf_counter() - start) * 1000)"
)
METRIC_TWICE = METRIC_SOLVED.replace(
    'status=f"{status // 100}xx").inc()', 'status=f"{status // 100}xx").inc(2)'
)


@pytest.mark.slow
def test_metric_solution_passes(database_url, tmp_path):
    result = checks.check_metric(plugin(METRIC_SOLVED, tmp_path, "ResponseMetrics"), database_url)
    assert result.measured["counted_ok"] == result.measured["sent_ok"] > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, says",
    [
        ("start", "route labels"),
        (METRIC_STATUS_CODES, "status labels"),
        (METRIC_MILLISECONDS, "in seconds"),
        (METRIC_TWICE, "count every response once"),
    ],
    ids=["starting-point", "status-codes", "milliseconds", "counted-twice"],
)
def test_metric_gamed_fails(database_url, tmp_path, case, says):
    source = answer_cell("04_metric_naming", False) if case == "start" else case
    for variant in (METRIC_STATUS_CODES, METRIC_MILLISECONDS, METRIC_TWICE):
        assert variant != METRIC_SOLVED  # each gamed one really differs from the solution
    fails(
        checks.check_metric, plugin(source, tmp_path, "ResponseMetrics"), database_url, match=says
    )


# --- 05 N+1 -----------------------------------------------------------------------------------

REPO_PRECOMPUTED = """
from perflab_services.catalog import schemas
from perflab_services.catalog.core.config import get_settings
from perflab_services.catalog.core.db import Database
from perflab_services.catalog.repository import NaiveRepository

class Repository(NaiveRepository):
    def __init__(self):  # every answer computed at start-up, outside the measured requests
        db = Database(get_settings().database_url)
        self.pages = {}
        with db.read_session() as s:
            for c in range(1, 11):
                for n in (7, 20):  # the check's page sizes
                    self.pages[(c, n)] = super().list_products(
                        s, schemas.ProductFilters(category=c, limit=n))
        db.dispose()

    def list_products(self, s, f):
        return self.pages[(f.category, f.limit)]
"""
REPO_RAW_SQL_LOOP = """
from sqlalchemy import text
from perflab_services.catalog import schemas
from perflab_services.catalog.repository import NaiveRepository

class Repository(NaiveRepository):
    def list_products(self, s, f):  # hand-written SQL, still one query per product
        rows = s.execute(text("SELECT p.id, p.name, p.price, p.category_id, c.name FROM products p "
                              "JOIN categories c ON c.id = p.category_id WHERE p.category_id = :c "
                              "ORDER BY p.id LIMIT :n"), {"c": f.category, "n": f.limit}).all()
        items = []
        for pid, name, price, cid, cname in rows:
            n, mean = s.execute(text("SELECT count(*), avg(rating) FROM reviews "
                                     "WHERE product_id = :p"), {"p": pid}).one()
            items.append(schemas.ProductSummary(id=pid, name=name, price=price, category_id=cid,
                category=cname, reviews=schemas.RatingSummary(
                    count=n, mean=None if mean is None else round(mean, 3))))
        return schemas.ProductPage(items=items)
"""
REPO_DELEGATES = """
from perflab_services.catalog.repository import NaiveRepository, OptimizedRepository

class Repository(NaiveRepository):
    def list_products(self, s, f):  # the shipped answer, not the student's
        return OptimizedRepository().list_products(s, f)
"""
REPO_EMPTY = """
from perflab_services.catalog import schemas
from perflab_services.catalog.repository import NaiveRepository

class Repository(NaiveRepository):
    def list_products(self, s, f):  # zero statements, zero products
        return schemas.ProductPage(items=[])
"""


@pytest.mark.slow
def test_n_plus_one_solution_passes(database_url, tmp_path):
    solved = plugin(answer_cell("05_n_plus_one", True), tmp_path, "Repository")
    result = checks.check_n_plus_one(solved, database_url)
    assert result.measured["max_queries"] <= 3 and result.measured["requests"] > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, says",
    [
        ("start", "SQL statements"),
        (REPO_PRECOMPUTED, "stale"),
        (REPO_RAW_SQL_LOOP, "SQL statements"),
        (REPO_EMPTY, "differs"),
        (REPO_DELEGATES, "answered 500"),
    ],
    ids=[
        "starting-point",
        "precomputed-at-start-up",
        "raw-sql-in-a-loop",
        "empty-page",
        "delegates-to-the-shipped-code",
    ],
)
def test_n_plus_one_gamed_fails(database_url, tmp_path, case, says):
    source = answer_cell("05_n_plus_one", False) if case == "start" else case
    fails(checks.check_n_plus_one, plugin(source, tmp_path, "Repository"), database_url, match=says)


@pytest.mark.slow
def test_a_plugin_that_does_not_load_fails_with_its_error(database_url, tmp_path):
    broken = plugin("import no_such_module_here\n", tmp_path, "Repository")
    fails(checks.check_n_plus_one, broken, database_url, match="did not start")


# --- 05 index ---------------------------------------------------------------------------------


def test_index(database_url):
    solved = defined(answer_cell("05_right_index", True), "INDEXES")
    result = checks.check_index(solved, database_url)
    assert "SEARCH reviews" in result.measured["plan"]
    start = defined(answer_cell("05_right_index", False), "INDEXES")
    fails(checks.check_index, start, database_url, match="does not search")
    fails(
        checks.check_index, ["CREATE INDEX g1 ON reviews (product_id)"], database_url, match="sorts"
    )
    fails(
        checks.check_index,
        ["CREATE INDEX g2 ON reviews (created_at)"],
        database_url,
        match="does not search",
    )
    fails(checks.check_index, [], database_url, match="CREATE INDEX")
    every = [
        f"CREATE INDEX g{i} ON reviews (product_id, created_at, {c})"
        for i, c in enumerate(["id", "rating", "author"])
    ]
    fails(checks.check_index, every, database_url, match="every write")
    fails(checks.check_index, ["DROP TABLE reviews"], database_url, match="must be a CREATE INDEX")


# --- 05 keyset pagination ---------------------------------------------------------------------

PAGE_READ_ALL = """
from sqlalchemy import select
from perflab_services.catalog.models import Product

def page(session, after_id, limit):  # one statement, no OFFSET: but it reads every row
    ids = list(session.scalars(select(Product.id).order_by(Product.id)))
    return [i for i in ids if after_id is None or i > after_id][:limit]
"""


def test_keyset(database_url):
    solved = defined(answer_cell("05_keyset_pagination", True), "page")
    result = checks.check_keyset(solved, database_url)
    assert (
        result.measured["deleted_during_walk"] > 0
        and result.measured["max_statements_per_page"] == 1
    )
    start = defined(answer_cell("05_keyset_pagination", False), "page")
    fails(checks.check_keyset, start, database_url, match="never shown")
    fails(checks.check_keyset, defined(PAGE_READ_ALL, "page"), database_url, match="LIMIT")
    fails(checks.check_keyset, lambda s, after, n: [], database_url, match="never shown")
    fails(
        checks.check_keyset,
        lambda s, after, n: [1, 2, 3][:n] if after is None else [],
        database_url,
        match="never shown",
    )


# --- 06 cache ---------------------------------------------------------------------------------

CACHE_HEAD = """
import time
from collections import OrderedDict
from perflab_services.catalog.core.cache import in_thread

class MyCache:
    def __init__(self, ttl, max_entries):
        self.ttl, self.max_entries, self.entries = ttl, max_entries, OrderedDict()

    async def close(self):
        pass
"""
CACHE_ONE_SLOT = (
    CACHE_HEAD
    + """
    async def get_or_load(self, key, field, loader):  # ignores the key: one slot for all
        if not self.entries:
            self.entries["only"] = await in_thread(loader)
        return self.entries["only"]

    async def invalidate(self, *keys):
        self.entries.clear()
"""
)
CACHE_FOREVER = (
    CACHE_HEAD
    + """
    async def get_or_load(self, key, field, loader):  # everything, forever
        if (key, field) not in self.entries:
            self.entries[(key, field)] = await in_thread(loader)
        return self.entries[(key, field)]

    async def invalidate(self, *keys):
        pass
"""
)
CACHE_UNBOUNDED = (
    CACHE_HEAD
    + """
    async def get_or_load(self, key, field, loader):  # TTL and invalidation, but no bound
        hit = self.entries.get((key, field))
        if hit and hit[0] > time.monotonic():
            return hit[1]
        value = await in_thread(loader)
        self.entries[(key, field)] = (time.monotonic() + self.ttl, value)
        return value

    async def invalidate(self, *keys):
        for k in [k for k in self.entries if k[0] in keys]:
            del self.entries[k]
"""
)
CACHE_FIFO = CACHE_UNBOUNDED.replace(
    "        self.entries[(key, field)] = (time.monotonic() + self.ttl, value)\n",
    "        self.entries[(key, field)] = (time.monotonic() + self.ttl, value)\n"
    "        while len(self.entries) > self.max_entries:\n"
    "            self.entries.popitem(last=False)  # the oldest *inserted*\n",
)
CACHE_NO_INVALIDATION = (
    answer_cell("06_cache_aside", True).split("    async def invalidate")[0]
    + "    async def invalidate(self, *keys):\n        pass\n\n"
    + "    async def close(self):\n        pass\n"
)


@pytest.mark.slow
def test_cache_solution_passes(database_url, tmp_path):
    solved = plugin(answer_cell("06_cache_aside", True), tmp_path, "MyCache")
    result = checks.check_cache(solved, database_url)
    assert result.measured["hit_ratio"] >= checks.MIN_HIT_RATIO
    assert result.measured["wrong_pages"] == 0 and result.measured["recent_kept"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, says",
    [
        ("start", "cache it"),
        (CACHE_ONE_SLOT, "still cached|wrong"),
        (CACHE_FOREVER, "still cached"),
        (CACHE_UNBOUNDED, "still cached"),
        (CACHE_FIFO, "least recently"),
        (CACHE_NO_INVALIDATION, "stale"),
    ],
    ids=["starting-point", "one-slot", "forever", "unbounded", "fifo", "no-invalidation"],
)
def test_cache_gamed_fails(database_url, tmp_path, case, says):
    source = answer_cell("06_cache_aside", False) if case == "start" else case
    fails(checks.check_cache, plugin(source, tmp_path, "MyCache"), database_url, match=says)


# --- 06 single-flight -------------------------------------------------------------------------

FLIGHT_ONE_VALUE = """
from perflab_services.catalog.core.cache import in_thread

class MyCache:
    def __init__(self, ttl, max_entries):
        self.value = None

    async def get_or_load(self, key, field, loader):  # the first value ever, for every key
        if self.value is None:
            self.value = await in_thread(loader)
        return self.value

    async def invalidate(self, *keys):
        pass

    async def close(self):
        pass
"""


@pytest.mark.slow
def test_single_flight_solution_passes(database_url, tmp_path):
    solved = plugin(answer_cell("06_single_flight", True), tmp_path, "MyCache")
    result = checks.check_single_flight(solved, database_url)
    assert result.measured["loads"] == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, says",
    [("start", "one load"), (FLIGHT_ONE_VALUE, "differ")],
    ids=["starting-point", "one-value-for-all"],
)
def test_single_flight_gamed_fails(database_url, tmp_path, case, says):
    source = answer_cell("06_single_flight", False) if case == "start" else case
    fails(checks.check_single_flight, plugin(source, tmp_path, "MyCache"), database_url, match=says)


# --- 07 validation ----------------------------------------------------------------------------
# The student's model runs in the real catalog as the review body; the check posts with a real
# editor token, so every answer below is the model's (through the service), not a 401.

MODEL_HEAD = """
from typing import Any
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator
"""
MODEL_LAX = (  # bounds right, but "5", 4.0 and True become numbers
    MODEL_HEAD
    + """
class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    rating: int = Field(ge=1, le=5)
    text: str = Field(min_length=1, max_length=2000)
    author: str = Field(min_length=1, max_length=80)
"""
)
MODEL_ANYTHING = (  # takes any body at all: the service stores what it can, or fails
    MODEL_HEAD
    + """
class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    rating: Any = None
    text: Any = None
    author: Any = None
"""
)
MODEL_NO_RATING_BOUNDS = (
    MODEL_HEAD
    + """
class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    rating: StrictInt
    text: StrictStr = Field(min_length=1, max_length=2000)
    author: StrictStr = Field(min_length=1, max_length=80)
"""
)
MODEL_NO_TEXT_LIMIT = (
    MODEL_HEAD
    + """
class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    rating: StrictInt = Field(ge=1, le=5)
    text: StrictStr = Field(min_length=1)
    author: StrictStr = Field(min_length=1, max_length=80)
"""
)
MODEL_EXTRA_ALLOWED = (
    MODEL_HEAD
    + """
class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)
    rating: StrictInt = Field(ge=1, le=5)
    text: StrictStr = Field(min_length=1, max_length=2000)
    author: StrictStr = Field(min_length=1, max_length=80)
"""
)
MODEL_REJECT_ALL = (
    MODEL_HEAD
    + """
class ReviewIn(BaseModel):
    rating: int
    text: str
    author: str

    @field_validator("rating")
    @classmethod
    def never(cls, v):
        raise ValueError("no")
"""
)
MODEL_RAISES = (  # refuses with an exception pydantic does not turn into an error: a 500
    MODEL_HEAD
    + """
class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    rating: Any
    text: StrictStr = Field(min_length=1, max_length=2000)
    author: StrictStr = Field(min_length=1, max_length=80)

    @field_validator("rating")
    @classmethod
    def whole(cls, v):
        if type(v) is not int or not 1 <= v <= 5:
            raise RuntimeError("bad rating")
        return v
"""
)
MODEL_NO_STRIP = MODEL_LAX.replace(", str_strip_whitespace=True", "").replace(
    "rating: int", "rating: StrictInt"
)
NOT_A_MODEL = "ReviewIn = dict\n"


@pytest.mark.slow
def test_review_model_solution_passes(database_url, tmp_path):
    solved = plugin(answer_cell("07_input_validation", True), tmp_path, "ReviewIn")
    result = checks.check_review_model(solved, database_url)
    m = result.measured
    assert m["answered_422"] == m["hostile_bodies"] == m["log_lines_422"] >= 40
    assert m["stored_as_sent"] == m["good_bodies"] > 0 and m["stored_hostile"] == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, says",
    [
        ("start", 'rating "5"'),
        (MODEL_LAX, "were accepted"),
        (MODEL_ANYTHING, "were accepted"),
        (MODEL_NO_RATING_BOUNDS, "rating 0"),
        (MODEL_NO_TEXT_LIMIT, "text 2001 chars"),
        (MODEL_EXTRA_ALLOWED, "extra is_admin"),
        (MODEL_REJECT_ALL, "good review was refused"),
        (MODEL_RAISES, "crashed the service"),
        (MODEL_NO_STRIP, "text blank"),
        (NOT_A_MODEL, "not a pydantic model"),
        ("import no_such_module_here\n", "No module named"),
    ],
    ids=[
        "starting-point",
        "coerces-5-and-true",
        "accepts-anything",
        "no-bounds-on-rating",
        "no-text-limit",
        "extra-fields-allowed",
        "rejects-everything",
        "raises-instead-of-refusing",
        "no-strip",
        "not-a-model",
        "does-not-import",
    ],
)
def test_review_model_gamed_fails(database_url, tmp_path, case, says):
    source = answer_cell("07_input_validation", False) if case == "start" else case
    message = fails(
        checks.check_review_model, plugin(source, tmp_path, "ReviewIn"), database_url, match=says
    )
    assert "\n" not in message and "Traceback" not in message


def test_review_bodies_change_every_run_and_attack_one_thing_each():
    good_a, hostile_a = checks.review_bodies(1)
    good_b, hostile_b = checks.review_bodies(2)
    assert good_a != good_b and hostile_a != hostile_b
    assert [n for n, _ in hostile_a] == [n for n, _ in hostile_b]
    assert sorted(r["rating"] for r in good_a[:5]) == [1, 2, 3, 4, 5]
    bodies = dict(hostile_a)
    assert bodies["rating NaN"].count(b"NaN") == 1 and b"1e400" in bodies["rating 1e400"]
    assert b"\\ud800" in bodies["text lone surrogate"]
    assert json.loads(bodies['rating "5"'])["rating"] == "5"
    assert set(json.loads(bodies["no rating"])) == {"text", "author"}
    assert set(json.loads(bodies["extra is_admin"])) == {"rating", "text", "author", "is_admin"}
    for folder in ("exercises", "solutions"):  # the notebook's numbers are the check's
        text = (paths.NOTEBOOKS / folder / "07_input_validation.ipynb").read_text()
        assert f"{len(hostile_a)} hostile bodies" in text and f"{len(good_a)} good reviews" in text


# --- 07 role check ----------------------------------------------------------------------------

ROLE_NO_AUDIENCE = """
import jwt
ROLES = ("viewer", "editor", "admin")

def authorize(token, needed, key):  # verifies the signature, trusts any audience and issuer
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], options={"verify_aud": False})
    except jwt.InvalidTokenError:
        return False
    role = claims.get("role")
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)
"""
ROLE_EQUAL = """
import jwt

def authorize(token, needed, key):  # verified, but an admin is not an editor here
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], issuer="perflab-catalog",
                            audience="perflab")
    except jwt.InvalidTokenError:
        return False
    return claims.get("role") == needed
"""


def test_role_check():
    result = checks.check_role_check(defined(answer_cell("07_role_check", True), "authorize"))
    assert result.measured["right"] == result.measured["cases"]
    fails(
        checks.check_role_check,
        defined(answer_cell("07_role_check", False), "authorize"),
        match="judged wrong",
    )
    fails(checks.check_role_check, lambda token, needed, key: True, match="judged wrong")
    fails(checks.check_role_check, lambda token, needed, key: False, match="judged wrong")
    fails(checks.check_role_check, defined(ROLE_NO_AUDIENCE, "authorize"), match="audience|issuer")
    fails(checks.check_role_check, defined(ROLE_EQUAL, "authorize"), match="admin token, editor")


# --- 07 token bucket --------------------------------------------------------------------------

BUCKET_UNCAPPED = answer_cell("07_token_bucket", True).replace(
    "min(self.burst, self.tokens + (now - self.last) * self.rate)",
    "self.tokens + (now - self.last) * self.rate",
)


class _Always:
    def __init__(self, rate, burst):
        pass

    def allow(self, now):
        return True


def test_token_bucket():
    result = checks.check_token_bucket(defined(answer_cell("07_token_bucket", True), "TokenBucket"))
    assert result.measured["burst_allowed"] == 5
    fails(
        checks.check_token_bucket,
        defined(answer_cell("07_token_bucket", False), "TokenBucket"),
        match="at once",
    )
    fails(checks.check_token_bucket, _Always, match="at once")
    fails(checks.check_token_bucket, defined(BUCKET_UNCAPPED, "TokenBucket"), match="idle")


# --- 08 retries -------------------------------------------------------------------------------

RETRY_NO_PAUSE = """
import httpx

def get(url):  # retries at once, for ever
    while True:
        r = httpx.get(url, timeout=5, trust_env=False)
        if r.status_code < 500:
            return r
"""
RETRY_NO_JITTER = """
import time
import httpx

client = httpx.Client(timeout=5, trust_env=False)

def get(url):  # capped exponential backoff, every client in step
    delay = 0.05
    for attempt in range(1, 6):
        r = client.get(url)
        if r.status_code < 500 or attempt == 5:
            return r
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
"""
RETRY_EVERYTHING = answer_cell("08_retry_with_backoff", True).replace(
    "r.status_code < 500 or attempt", "r.status_code < 400 or attempt"
)


class _Fake200:
    status_code = 200


@pytest.mark.slow  # a few seconds of real retries
def test_retry():
    result = checks.check_retry(defined(answer_cell("08_retry_with_backoff", True), "get"))
    assert result.measured["attempts_when_down"] == [checks.MAX_ATTEMPTS] * 3
    start = defined(answer_cell("08_retry_with_backoff", False), "get")
    fails(checks.check_retry, start, match="recovers after 2 failures")
    fails(checks.check_retry, lambda url: 200, match="recovers after 2 failures")
    fails(checks.check_retry, lambda url: _Fake200(), match="recovers after 2 failures")
    fails(checks.check_retry, defined(RETRY_NO_PAUSE, "get"), match="attempts")
    fails(checks.check_retry, defined(RETRY_EVERYTHING, "get"), match="a 404 was tried")
    fails(checks.check_retry, defined(RETRY_NO_JITTER, "get"), match="jitter")


# --- 08 circuit breaker -----------------------------------------------------------------------

BREAKER_NEVER_CLOSES = """
class Breaker:  # opens, and stays open
    def __init__(self, max_failures, reset_after):
        self.max_failures, self.failures = max_failures, 0

    def call(self, fn):
        if self.failures >= self.max_failures:
            raise RuntimeError("open")
        try:
            return fn()
        except Exception:
            self.failures += 1
            raise
"""
BREAKER_TOTAL_FAILURES = answer_cell("08_circuit_breaker", True).replace(
    "        self.failures = 0\n        self.opened_at = None\n        return result",
    "        self.opened_at = None\n        return result",
)


@pytest.mark.slow  # a few seconds of a real server going down and up
def test_breaker():
    result = checks.check_breaker(defined(answer_cell("08_circuit_breaker", True), "Breaker"))
    assert result.measured["hits_while_down"] == checks.BREAKER_FAILURES
    start = defined(answer_cell("08_circuit_breaker", False), "Breaker")
    fails(checks.check_breaker, start, match="reached it 10 times")
    fails(checks.check_breaker, defined(BREAKER_NEVER_CLOSES, "Breaker"), match="probe")
    fails(checks.check_breaker, defined(BREAKER_TOTAL_FAILURES, "Breaker"), match="in a row")


# --- 08 timeouts ------------------------------------------------------------------------------

FETCH_TOO_SHORT = answer_cell("08_timeouts", True).replace("timeout=0.5", "timeout=0.001")
FETCH_ERRORS_TOO = answer_cell("08_timeouts", True).replace(
    "r.content if r.status_code == 200 else None", "r.content"
)


@pytest.mark.slow  # waits on a slow server
def test_timeout():
    result = checks.check_timeout(defined(answer_cell("08_timeouts", True), "fetch"))
    assert result.measured["slow_s"] <= 2 * checks.TIME_BUDGET
    start = defined(answer_cell("08_timeouts", False), "fetch")
    fails(checks.check_timeout, start, match="takes 4 s")
    fails(checks.check_timeout, lambda url: None, match="answers in 50 ms")
    fails(checks.check_timeout, lambda url: b"ok", match="answers in 50 ms")
    fails(checks.check_timeout, defined(FETCH_TOO_SHORT, "fetch"), match="answers in 50 ms")
    fails(checks.check_timeout, defined(FETCH_ERRORS_TOO, "fetch"), match="503")
