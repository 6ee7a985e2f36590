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
