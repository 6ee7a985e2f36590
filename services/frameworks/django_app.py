"""The endpoint in Django, a WSGI app, served by gunicorn as Django is in production.

`gunicorn perflab_services.frameworks.django_app:application` (`manage.py runserver` is for
development). A whole Django project in one module: the settings a JSON endpoint needs, one URL
pattern, one view.

Settings, and why:
- `DEBUG = False`: production mode (debug mode keeps every SQL query and renders tracebacks).
- `ALLOWED_HOSTS`: Django answers 400 to a Host header it does not know; the lab and its tests
  call the app on loopback.
- No `INSTALLED_APPS`, no `DATABASES`, no `MIDDLEWARE`: the view needs none of them, and the other
  frameworks in the comparison run without optional middleware too. A `startproject` site adds
  sessions, CSRF, authentication and messages middleware; what those cost is not measured here.
- `SECRET_KEY`: random per process; nothing here signs anything, Django only requires one.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path

from perflab_services.frameworks.body import product_detail

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_urlsafe(32),
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "[::1]", "testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        DATABASES={},
        USE_TZ=True,
    )


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok", "framework": "django"})


def product(request: HttpRequest, product_id: int) -> JsonResponse:
    # Compact separators, as Flask and FastAPI write JSON: the same bytes from every framework.
    return JsonResponse(product_detail(product_id), json_dumps_params={"separators": (",", ":")})


urlpatterns = [
    path("healthz", healthz),
    path("products/<int:product_id>", product),
]

application = get_wsgi_application()
