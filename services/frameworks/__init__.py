"""The same endpoint in four Python web frameworks, each served the way it is in production.

`GET /products/{id}` returns one product page (a product with its rating summary and latest
reviews) in Flask and Django (WSGI, served by gunicorn) and in FastAPI with a `def` and with an
`async def` handler (ASGI, served by uvicorn). `perflab run frameworks` puts the same load on
each and compares throughput and p50/p99 with confidence intervals.

Why a fixed body, not the catalog's database read: the question is what the framework and its
server cost per request. A database read is the same work in all four and, at a few hundred
microseconds, would dilute exactly the difference this chapter measures (the `queries` and
`caching` experiments measure the data path). It would also confound the `async def` variant: a
synchronous driver inside `async def` blocks the event loop, a different lesson. So every app
returns the same document (`body.product_detail`), shaped like the catalog's product detail and
about its size, and every app serializes it per request with its own JSON machinery, as a real
handler does with the data it loaded. What differs is only routing, the request and response
objects, serialization and the server.

What is deliberately equal: one server process each (the lab's `workers`), no optional
middleware, no per-request logging, the same key order and separators in the JSON. What each
framework gives you besides speed (Django's ORM, admin and middleware; Flask's small core and
extensions; FastAPI's validation and OpenAPI from type hints) is not on this code path and is not
measured here.
"""
