"""The endpoint in Flask, a WSGI app, served by gunicorn as Flask is in production.

`gunicorn 'perflab_services.frameworks.flask_app:create_app()'`. WSGI is synchronous: a worker
thread runs one request from start to finish. Flask's development server (`flask run`) is not for
production, so the lab serves this app with gunicorn (settings in `gunicorn_conf.py`). A view that
returns a dict is serialized by `app.json`, Flask's JSON provider; it is told to keep the
document's key order, so every framework in the comparison sends the same bytes.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from perflab_services.frameworks.body import product_detail


def create_app() -> Flask:
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # the document's own key order
    app.json.compact = True  # type: ignore[attr-defined]  # no indentation, whatever the mode

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "framework": "flask"}

    @app.get("/products/<int:product_id>")
    def product(product_id: int) -> dict[str, Any]:
        return product_detail(product_id)

    return app
