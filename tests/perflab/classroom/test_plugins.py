"""The catalog's plug-in point runs the class named in its settings, inside the real service."""

from __future__ import annotations

import httpx
import pytest

from perflab.errors import LabError

PLUGIN = """
from perflab_services.catalog.core.cache import in_thread
from perflab_services.catalog.repository import NaiveRepository


class Marker:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def marked(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-plugin", b"yes")]
            await send(message)

        await self.app(scope, receive, marked)


class CountingCache:  # no `kind`: the service names it
    loads = 0

    def __init__(self, ttl, max_entries):
        self.ttl, self.max_entries = ttl, max_entries

    async def get_or_load(self, key, field, loader):
        CountingCache.loads += 1
        return await in_thread(loader)

    async def invalidate(self, *keys):
        pass

    async def close(self):
        pass


class Repository(NaiveRepository):
    def get_brief(self, s, product_id):
        brief = super().get_brief(s, product_id)
        return brief.model_copy(update={"name": "from the plug-in"})
"""


def test_the_catalog_runs_plugins(start_catalog, tmp_path):
    path = tmp_path / "plugin.py"
    path.write_text(PLUGIN)
    svc = start_catalog(
        "t-plugins",
        middleware_plugin=f"{path}:Marker",
        cache_plugin=f"{path}:CountingCache",
        repository_plugin=f"{path}:Repository",
    )
    r = httpx.get(svc.url + "/products/1/brief", trust_env=False, timeout=30)
    assert r.status_code == 200 and r.json()["name"] == "from the plug-in"
    assert r.headers["x-plugin"] == "yes"
    assert int(r.headers["x-db-queries"]) > 0  # the plug-in cache called the loader


@pytest.mark.parametrize(
    "spec, says",
    [("nowhere.py:Cache", "no file"), ("json:NoSuchThing", "has no"), ("nocolon", "write it as")],
)
def test_a_bad_plugin_stops_the_service_with_a_sentence(start_catalog, spec, says):
    with pytest.raises(LabError) as info:
        start_catalog(f"t-bad-plugin-{says.split()[0]}", cache_plugin=spec)
    assert says in str(info.value) or "plug-in" in str(info.value)


THREE_STARS = """
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr


class ThreeStars(BaseModel):  # stricter than the shipped model: at most 3 stars, short texts
    model_config = ConfigDict(extra="forbid")
    rating: StrictInt = Field(ge=1, le=3)
    text: StrictStr = Field(min_length=1, max_length=20)
    author: StrictStr = Field(min_length=1, max_length=20)


NOT_A_MODEL = dict
AN_INSTANCE = 42
"""


def test_the_catalog_validates_reviews_with_the_plugin_model(start_catalog, login, tmp_path):
    path = tmp_path / "three_stars.py"
    path.write_text(THREE_STARS)
    svc = start_catalog("t-review-model", review_model_plugin=f"{path}:ThreeStars")
    editor = login(svc, "editor")

    def post(body: dict) -> httpx.Response:
        return httpx.post(
            svc.url + "/products/1/reviews", json=body, headers=editor, trust_env=False, timeout=30
        )

    refused = post({"rating": 4, "text": "four stars", "author": "ana"})  # fine for ours
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "rating"]
    assert post({"rating": 2, "text": "x" * 21, "author": "ana"}).status_code == 422
    assert post({"rating": "2", "text": "ok", "author": "ana"}).status_code == 422
    ok = post({"rating": 2, "text": "two stars", "author": "ana"})
    assert ok.status_code == 201, ok.text
    page = httpx.get(svc.url + "/products/1", trust_env=False, timeout=30).json()
    assert {"id": ok.json()["id"], "rating": 2, "text": "two stars"}.items() <= next(
        r for r in page["latest_reviews"] if r["id"] == ok.json()["id"]
    ).items()
    schema = httpx.get(svc.url + "/openapi.json", trust_env=False, timeout=30).json()
    assert "ThreeStars" in schema["components"]["schemas"]


@pytest.mark.parametrize(
    "name, says",
    [
        ("NOT_A_MODEL", "is the class dict, not a pydantic model"),
        ("AN_INSTANCE", "is an object of type int, not a pydantic model"),
        ("Missing", "has no 'Missing'"),
    ],
)
def test_a_review_model_plugin_must_be_a_pydantic_model(tmp_path, name, says):
    from perflab_services.catalog.core import plugins

    path = tmp_path / "models.py"
    path.write_text(THREE_STARS)
    assert plugins.load_model(f"{path}:ThreeStars").__name__ == "ThreeStars"
    with pytest.raises(plugins.PluginError, match=says) as info:
        plugins.load_model(f"{path}:{name}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "source, says",
    [("NotAModel = dict\n", "not a pydantic model"), ("import nowhere_at_all\n", "No module")],
    ids=["not-a-model", "import-error"],
)
def test_a_bad_review_model_stops_the_service_with_one_line(start_catalog, tmp_path, source, says):
    path = tmp_path / f"bad_{says.split()[0].lower()}.py"
    path.write_text(source)
    with pytest.raises(LabError) as info:
        start_catalog(f"t-bad-model-{says.split()[0]}", review_model_plugin=f"{path}:NotAModel")
    message = str(info.value)
    assert says in message and "Traceback" not in message, message
    (said,) = [line for line in message.splitlines() if "plug-in" in line]
    assert said.startswith("catalog: plug-in") and says in said
